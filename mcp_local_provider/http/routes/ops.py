"""``/health`` (liveness), ``/health/deep`` (each component and why), ``/health/ready``
(an agent can serve) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from mcp_local_provider import __version__
from mcp_local_provider.core.registry import SessionState
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import json_reply
from mcp_local_provider.http.state import OPENAPI, STATE, State
from mcp_local_provider.obs import health
from mcp_local_provider.obs.figures import live_figures

routes = web.RouteTableDef()
operations = [
    Operation("get", "/health", "Liveness"),
    Operation("get", "/health/deep", "Each component's health and why"),
    Operation("get", "/health/ready", "Whether an agent can serve"),
    Operation("get", "/metrics", "Prometheus metrics", media_types=("text/plain",)),
    Operation("get", "/openapi.json", "This document"),
]


def _counts(state: State) -> dict[str, int]:
    now = live_figures(state.registry, state.router)
    return {
        "active": now.active_sessions,
        "pending": now.pending_sessions,
        "connected": now.connected_agents,
    }


@routes.get("/health")
async def health_check(request: web.Request) -> web.Response:
    """Liveness: the process answers. Cheap enough to poll every second."""
    state = request.app[STATE]
    return json_reply(
        {
            "status": "ok",
            "version": __version__,
            "uptime_seconds": round(time.time() - state.started_at, 3),
            "sessions": _counts(state),
            "in_flight": state.router.in_flight,
        }
    )


@routes.get("/health/deep")
async def health_deep(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = live_figures(state.registry, state.router)
    registry = state.registry
    capacity = sum(s.max_concurrency for s in registry.in_state(SessionState.ACTIVE) if s.connected)
    components: dict[str, dict[str, Any]] = {
        "registry": health.component(
            health.HEALTHY,
            sessions=len(registry),
            **{s.value: registry.count(s) for s in SessionState},
        ),
        "router": health.router(now, closing=state.router.closing, capacity=capacity),
        "agents": health.agents(now),
        "event_loop": health.event_loop(await _loop_lag(), len(asyncio.all_tasks())),
        "requests": health.requests(state.traffic.snapshot()),
    }
    for name, check in state.health_checks.items():
        components[name] = check()
    status = health.worst(components)
    return json_reply(
        {
            "status": status,
            "version": __version__,
            "uptime_seconds": round(time.time() - state.started_at, 3),
            "components": components,
        },
        status=503 if status == health.UNHEALTHY else 200,
    )


async def _loop_lag() -> float:
    """How long a callback scheduled now waits for its turn: the loop's current backlog."""
    loop = asyncio.get_running_loop()
    before = loop.time()
    await asyncio.sleep(0)
    return loop.time() - before


@routes.get("/health/ready")
async def health_ready(request: web.Request) -> web.Response:
    """Readiness: 200 once an approved agent is connected and can serve, else 503."""
    state = request.app[STATE]
    now = live_figures(state.registry, state.router)
    if state.router.closing:
        reason: str | None = "the daemon is shutting down"
    elif not now.connected_agents:
        reason = "no active agent session is connected"
    else:
        reason = None
    return json_reply(
        {
            "status": "ready" if reason is None else "not_ready",
            "reason": reason,
            "agents_connected": now.connected_agents,
            "active_sessions": now.active_sessions,
        },
        status=200 if reason is None else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (or OpenMetrics when the scraper asks for it)."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


@routes.get("/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """The OpenAPI document of every route but the agent socket."""
    return json_reply(request.app[OPENAPI])
