"""``GET /control/status``: what ``mcp-local-provider status`` shows, in one call."""

from __future__ import annotations

import time

from aiohttp import web

from mcp_local_provider import __version__
from mcp_local_provider.http.auth import require_bridge_token
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import json_reply
from mcp_local_provider.http.state import STATE
from mcp_local_provider.http.usage import described
from mcp_local_provider.obs.figures import live_figures

routes = web.RouteTableDef()
operations = [
    Operation("get", "/control/status", "What `mcp-local-provider status` shows", bridge_token=True)
]


@routes.get("/control/status")
async def status(request: web.Request) -> web.Response:
    """Version, uptime, live figures, recent editor traffic and every session.

    Needs the bridge token, like the rest of ``/control``: session labels are the user's.
    """
    require_bridge_token(request)
    state = request.app[STATE]
    now = live_figures(state.registry, state.router)
    clock = state.registry.clock()
    return json_reply(
        {
            "version": __version__,
            "started_at": state.started_at,
            "uptime_seconds": round(time.time() - state.started_at, 3),
            "closing": state.router.closing,
            "agents_connected": now.connected_agents,
            "sessions_active": now.active_sessions,
            "sessions_pending": now.pending_sessions,
            "in_flight": now.calls_in_flight,
            "traffic": state.traffic.snapshot(),
            "sessions": await described(state.registry, clock, state.usage),
        }
    )
