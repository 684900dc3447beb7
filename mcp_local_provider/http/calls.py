"""From an HTTP request to router calls: ``call_for`` builds the router's view of a request,
``plan`` resolves a request whose tools are optional, and ``fetch_embeddings`` runs the one
call both API families make for embeddings."""

from __future__ import annotations

from typing import Any, Protocol

import structlog
from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Call
from mcp_local_provider.core.catalog import Entry
from mcp_local_provider.core.protocol import AnswerFrame
from mcp_local_provider.http.state import SCOPE, STATE
from mcp_local_provider.translate.embeddings import embedding_payload, usage_of, vectors

log = structlog.get_logger("mcp_local_provider.calls")


async def fetch_embeddings(
    request: web.Request, entry: Entry, texts: list[str], dimensions: int | None
) -> tuple[list[list[float]], dict[str, Any]]:
    """Ask the agent for embeddings of ``texts``: (vectors, usage), for either API family."""
    payload = embedding_payload(entry, texts, dimensions)
    call = call_for(
        request, "embedding", entry.target, payload, False, ["embedding"], scope="embeddings"
    )
    last: AnswerFrame | None = None
    async with request.app[STATE].router.open(call) as events:
        async for event in events:
            last = event
        if last is None:  # pragma: no cover - the router always ends with a frame or an error
            raise errors.AgentFailed("the agent ended the request without an answer")
        return vectors(last, len(texts)), usage_of(last)


class ToolOffering(Protocol):
    """A request from a client that offers tools on every call (Claude Code, Codex)."""

    model: str

    @property
    def offers_tools(self) -> bool: ...

    def needs(self, tools_optional: bool = False) -> list[str]: ...

    def payload(self, target: str | None = None, with_tools: bool = True) -> dict[str, Any]: ...


def plan(request: web.Request, asked: ToolOffering) -> tuple[Entry, dict[str, Any], list[str]]:
    """(entry, agent payload, needs) for a request whose tools are optional: a model that does
    not declare ``tools`` gets the request without them (and answers in text) unless the
    client forces a tool call, which is refused as unsupported."""
    entry = request.app[STATE].catalog.resolve(asked.model, asked.needs(tools_optional=True))
    with_tools = entry.supports("tools")
    if asked.offers_tools and not with_tools:
        log.info("tools_dropped", model=asked.model, reason="the model does not declare tools")
    payload = asked.payload(entry.target, with_tools)
    return entry, payload, asked.needs(tools_optional=not with_tools)


#: Names the session to route to, instead of letting the router choose.
SESSION_HEADER = "X-MCP-Session"


def call_for(
    request: web.Request,
    kind: str,
    model: str,
    payload: dict[str, Any],
    stream: bool,
    needs: list[str],
    scope: str = "inference",
) -> Call:
    """The router's view of an HTTP request: what to ask which model for."""
    request_scope = request[SCOPE]
    call = Call(
        kind=kind,
        model=model,
        payload=payload,
        stream=stream,
        scope=scope,
        needs=tuple(needs),
        session_hint=request.headers.get(SESSION_HEADER),
        request_id=request_scope.call_id(),
        request=request_scope,
    )
    if request_scope.call is None:
        request_scope.call = call  # the audit line describes the request's first call
    return call
