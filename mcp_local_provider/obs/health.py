"""How healthy each part of the daemon is, from figures gathered by ``http/routes/ops.py``. No I/O.

Each component is ``{"status": "healthy" | "degraded" | "unhealthy", "reason": str | None,
...figures}``; the daemon as a whole is as bad as its worst component.
"""

from __future__ import annotations

from typing import Any

from mcp_local_provider.obs.figures import Figures

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

#: Event-loop lag beyond which every request feels it.
LOOP_LAG_DEGRADED = 0.1
LOOP_LAG_UNHEALTHY = 1.0
#: Share of recent editor requests failing with 5xx that makes the relay degraded.
ERROR_RATIO_DEGRADED = 0.5
ERROR_RATIO_MIN_REQUESTS = 5


def component(status: str, reason: str | None = None, /, **figures: Any) -> dict[str, Any]:
    return {"status": status, "reason": reason, **figures}


def worst(components: dict[str, dict[str, Any]]) -> str:
    statuses = [c.get("status", UNHEALTHY) for c in components.values()]
    return max(statuses, key=lambda s: _RANK.get(s, 2), default=HEALTHY)


def agents(figures: Figures) -> dict[str, Any]:
    counts = {
        "connected": figures.connected_agents,
        "active_sessions": figures.active_sessions,
        "pending_sessions": figures.pending_sessions,
    }
    if figures.connected_agents:
        return component(HEALTHY, **counts)
    if figures.active_sessions:
        reason = "active sessions exist but no agent is connected (it may reconnect)"
    elif figures.pending_sessions:
        reason = "no agent is connected; an agent is waiting for approval"
    else:
        reason = "no agent is connected"
    return component(DEGRADED, reason, **counts)


def router(figures: Figures, *, closing: bool, capacity: int) -> dict[str, Any]:
    counts = {
        "in_flight": figures.calls_in_flight,
        "capacity": capacity,
        "dropped_frames": figures.dropped_frames,
    }
    if closing:
        return component(UNHEALTHY, "the daemon is shutting down", **counts)
    if capacity and figures.calls_in_flight >= capacity:
        return component(DEGRADED, "every connected session is busy; requests queue", **counts)
    return component(HEALTHY, **counts)


def event_loop(lag: float, tasks: int) -> dict[str, Any]:
    """``tasks``: asyncio tasks alive now (a count that keeps growing is a leak)."""
    figures: dict[str, Any] = {"lag_ms": round(lag * 1000, 3), "tasks": tasks}
    if lag >= LOOP_LAG_UNHEALTHY:
        return component(UNHEALTHY, "the event loop is blocked", **figures)
    if lag >= LOOP_LAG_DEGRADED:
        return component(DEGRADED, "the event loop is slow", **figures)
    return component(HEALTHY, **figures)


def requests(traffic: dict[str, Any]) -> dict[str, Any]:
    """From ``Traffic.snapshot()``: degraded when most recent editor requests failed."""
    recent = traffic["recent"]
    figures = {
        "window_seconds": traffic["window_seconds"],
        "recent_requests": recent["requests"],
        "recent_server_errors": recent["server_errors"],
        "per_second": recent["per_second"],
    }
    total = recent["requests"]
    if (
        total >= ERROR_RATIO_MIN_REQUESTS
        and recent["server_errors"] / total >= ERROR_RATIO_DEGRADED
    ):
        return component(DEGRADED, "most recent requests failed with a server error", **figures)
    return component(HEALTHY, **figures)
