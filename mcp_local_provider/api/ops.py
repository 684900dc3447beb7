"""``/health`` and ``/health/deep``."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .. import __version__
from ..app import STATE, State
from ..registry import SessionState

routes = web.RouteTableDef()


def _counts(state: State) -> dict[str, int]:
    registry = state.registry
    active = registry.in_state(SessionState.ACTIVE)
    return {
        "active": len(active),
        "pending": registry.count(SessionState.PENDING),
        "connected": sum(1 for s in active if s.connected),
    }


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "uptime_seconds": round(time.time() - state.started, 3),
            "sessions": _counts(state),
            "in_flight": state.router.in_flight,
        }
    )


@routes.get("/health/deep")
async def health_deep(request: web.Request) -> web.Response:
    state = request.app[STATE]
    counts = _counts(state)
    components: dict[str, dict[str, Any]] = {
        "registry": {"status": "healthy", "sessions": len(state.registry), **counts},
        "router": {
            "status": "unhealthy" if state.router.closing else "healthy",
            "in_flight": state.router.in_flight,
            "dropped_frames": state.router.dropped_frames,
        },
        "agents": {
            "status": "healthy" if counts["connected"] else "degraded",
            "connected": counts["connected"],
            "reason": None if counts["connected"] else "no agent is connected",
        },
    }
    worst = "healthy"
    for component in components.values():
        if component["status"] == "unhealthy":
            worst = "unhealthy"
        elif component["status"] == "degraded" and worst == "healthy":
            worst = "degraded"
    return web.json_response(
        {"status": worst, "version": __version__, "components": components},
        status=503 if worst == "unhealthy" else 200,
    )
