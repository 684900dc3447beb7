"""``/control/*``: the user's side of consent. Every route needs the bridge token."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcp_local_provider.core.names import AGENT_ID_PATTERN, SCOPE_PATTERN, printable
from mcp_local_provider.core.protocol import ModelSpec
from mcp_local_provider.http.auth import require_bridge_token
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import json_reply
from mcp_local_provider.http.state import STATE, USAGE
from mcp_local_provider.http.usage import described, grouped, since_days
from mcp_local_provider.translate.common import parse_body

routes = web.RouteTableDef()


class RegisterRequest(BaseModel):
    """Pre-register a session; an agent claims it by sending the token in its hello."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str
    label: str = Field("", max_length=200)
    models: list[ModelSpec] = Field(default_factory=list, max_length=64)
    scopes: list[str] = Field(default_factory=lambda: ["inference"], max_length=16)
    ttl_seconds: float | None = Field(None, gt=0)
    max_requests: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("agent_id")
    @classmethod
    def _agent_id(cls, value: str) -> str:
        if not AGENT_ID_PATTERN.match(value):
            raise ValueError("agent_id is 1-128 letters, digits and . _ : @ / -")
        return value

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        return printable(value)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        if not all(SCOPE_PATTERN.match(scope) for scope in value):
            raise ValueError("scopes are 1-64 lower-case letters, digits and _ . : -")
        return value


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str


operations = [
    Operation("get", "/control/sessions", "Every session", bridge_token=True),
    Operation(
        "post", "/control/sessions/{session_id}/approve", "Approve a session", bridge_token=True
    ),
    Operation("post", "/control/sessions/{session_id}/deny", "Deny a session", bridge_token=True),
    Operation(
        "post", "/control/sessions/{session_id}/revoke", "End a session now", bridge_token=True
    ),
    Operation(
        "post",
        "/control/register",
        "Pre-register a session",
        RegisterRequest,
        bridge_token=True,
        status=201,
    ),
    Operation("post", "/control/revoke", "End a session by id", RevokeRequest, bridge_token=True),
    Operation(
        "get",
        "/control/usage",
        "Usage per day, session and model (?since=7d&by=day|session|model)",
        bridge_token=True,
    ),
]


def _view(request: web.Request, session_id: str) -> dict[str, Any]:
    state = request.app[STATE]
    return state.registry.get(session_id).describe(state.registry.clock())


@routes.get("/control/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    require_bridge_token(request)
    state = request.app[STATE]
    registry = state.registry
    return json_reply({"sessions": await described(registry, registry.clock(), state.usage)})


@routes.get("/control/usage")
async def usage(request: web.Request) -> web.Response:
    """Requests, errors, tokens, failovers and cool-down per day, session and model, kept
    across restarts; ``since`` (``7d``, ``24h``) and ``by`` (``day``, ``session``, ``model``)."""
    require_bridge_token(request)
    days = since_days(request.query.get("since"))
    by = request.query.get("by") or None
    rows = await request.app[USAGE].rows(days)
    return json_reply({"since_days": days, "by": by, "rows": grouped(rows, by)})


@routes.post("/control/sessions/{session_id}/approve")
async def approve(request: web.Request) -> web.Response:
    require_bridge_token(request)
    session = request.app[STATE].hub.approve(request.match_info["session_id"])
    return json_reply({"session": _view(request, session.id)})


@routes.post("/control/sessions/{session_id}/deny")
async def deny(request: web.Request) -> web.Response:
    require_bridge_token(request)
    session = request.app[STATE].hub.deny(request.match_info["session_id"])
    return json_reply({"session": _view(request, session.id)})


@routes.post("/control/sessions/{session_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    require_bridge_token(request)
    session = await request.app[STATE].hub.revoke(request.match_info["session_id"])
    return json_reply({"session": _view(request, session.id)})


@routes.post("/control/register")
async def register(request: web.Request) -> web.Response:
    require_bridge_token(request)
    body = parse_body(RegisterRequest, await request.read())
    session, token = request.app[STATE].hub.register(
        agent_id=body.agent_id,
        label=body.label,
        models=body.models,
        scopes=body.scopes,
        ttl_seconds=body.ttl_seconds,
        max_requests=body.max_requests,
        max_concurrency=body.max_concurrency,
    )
    return json_reply(
        {
            "session_id": session.id,
            "session_token": token,
            "allowed_scopes": list(session.scopes),
            "expires_at": session.expires_at_iso(),
            "max_requests": session.max_requests,
            "max_concurrency": session.max_concurrency,
        },
        status=201,
    )


@routes.post("/control/revoke")
async def revoke_by_body(request: web.Request) -> web.Response:
    require_bridge_token(request)
    body = parse_body(RevokeRequest, await request.read())
    session = await request.app[STATE].hub.revoke(body.session_id)
    return json_reply({"session_id": session.id, "state": session.state.value})
