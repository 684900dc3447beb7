"""``/health`` stays cheap, ``/health/deep`` says what is wrong and why, ``/health/ready``
turns 200 only once an agent can serve."""

from __future__ import annotations

from typing import Any

import aiohttp

from mcp_local_provider.obs import health
from mcp_local_provider.obs.figures import Figures
from tests.fakes import Daemon, until


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_liveness_answers_without_any_agent(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    status, body = await get(http, daemon.url + "/health")
    assert status == 200 and body["status"] == "ok"
    assert body["sessions"] == {"active": 0, "pending": 0, "connected": 0}


async def test_deep_health_is_degraded_with_a_reason_until_an_agent_connects(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    status, body = await get(http, daemon.url + "/health/deep")
    assert status == 200 and body["status"] == "degraded"
    agents = body["components"]["agents"]
    assert agents["status"] == "degraded" and agents["reason"] == "no agent is connected"
    assert body["components"]["router"]["status"] == "healthy"
    await daemon.start_agent()
    status, body = await get(http, daemon.url + "/health/deep")
    assert body["status"] == "healthy"
    components = body["components"]
    assert components["agents"] == {
        "status": "healthy",
        "reason": None,
        "connected": 1,
        "active_sessions": 1,
        "pending_sessions": 0,
    }
    assert components["router"]["capacity"] == 4
    assert components["event_loop"]["lag_ms"] >= 0
    assert {"registry", "requests"} <= components.keys()


async def test_deep_health_is_unhealthy_503_while_shutting_down(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    echo_daemon.state.router.closing = True
    status, body = await get(http, echo_daemon.url + "/health/deep")
    assert status == 503 and body["status"] == "unhealthy"
    assert body["components"]["router"]["reason"] == "the daemon is shutting down"


async def test_deep_health_includes_components_other_parts_register(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    echo_daemon.state.health_checks["audit"] = lambda: health.component(
        health.DEGRADED, "disk almost full", free_bytes=1024
    )
    _, body = await get(http, echo_daemon.url + "/health/deep")
    assert body["status"] == "degraded"
    assert body["components"]["audit"] == {
        "status": "degraded",
        "reason": "disk almost full",
        "free_bytes": 1024,
    }


async def test_ready_is_503_until_an_active_agent_session_is_connected(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual")
    status, body = await get(http, daemon.url + "/health/ready")
    assert status == 503 and body["reason"] == "no active agent session is connected"
    client, _ = await daemon.start_agent(wait=False)
    await until(lambda: len(daemon.state.registry) == 1)
    assert (await get(http, daemon.url + "/health/ready"))[0] == 503  # pending is not enough
    (pending,) = daemon.state.registry
    daemon.state.hub.approve(pending.id)
    await client.wait_ready()
    status, body = await get(http, daemon.url + "/health/ready")
    assert status == 200 and body == {
        "status": "ready",
        "reason": None,
        "agents_connected": 1,
        "active_sessions": 1,
    }


def test_busy_router_and_slow_loop_are_degraded() -> None:
    busy = Figures(
        pending_sessions=0,
        active_sessions=1,
        connected_agents=1,
        calls_in_flight=4,
        dropped_frames=0,
    )
    assert health.router(busy, closing=False, capacity=4)["status"] == "degraded"
    assert health.router(busy, closing=False, capacity=8)["status"] == "healthy"
    assert health.event_loop(0.2, 10)["status"] == "degraded"
    assert health.event_loop(2.0, 10)["status"] == "unhealthy"
    assert health.event_loop(0.001, 10)["status"] == "healthy"


def test_mostly_failing_recent_requests_are_degraded() -> None:
    def traffic(requests: int, server_errors: int) -> dict[str, Any]:
        recent = {"requests": requests, "server_errors": server_errors, "per_second": 1.0}
        return {"window_seconds": 60, "recent": recent}

    assert health.requests(traffic(10, 6))["status"] == "degraded"
    assert health.requests(traffic(10, 4))["status"] == "healthy"
    assert health.requests(traffic(2, 2))["status"] == "healthy"  # too few to judge
