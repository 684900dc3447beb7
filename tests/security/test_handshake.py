"""Handshake abuse: bridge-token guessing is rate-limited per peer and logged once by
fingerprint; credentials in URLs are refused; agents awaiting approval are capped; what an
agent claims about itself is validated and shown escaped."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from mcp_local_provider.http.state import STATE
from mcp_local_provider.policy.tokens import fingerprint
from tests.fakes import BRIDGE_TOKEN, Daemon, until
from tests.security.helpers import granted_raw_agent


async def connect_status(http: aiohttp.ClientSession, daemon: Daemon, token: str) -> int:
    try:
        ws = await http.ws_connect(daemon.ws_url, headers={"Authorization": f"Bearer {token}"})
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def test_bridge_token_failures_are_rate_limited_per_peer(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(auth_failures_per_minute=3)
    with capture_logs() as logs:
        statuses = [await connect_status(http, daemon, f"guess-{i % 2}") for i in range(5)]
        # Blocked now: even the right token waits, so guessing cannot continue.
        right = await connect_status(http, daemon, BRIDGE_TOKEN)
        async with http.get(
            daemon.url + "/control/sessions", headers={"Authorization": "Bearer guess-0"}
        ) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert (await response.json())["error"]["code"] == "rate_limited"
    assert statuses == [401, 401, 401, 429, 429]
    assert right == 429
    rejected = [e for e in logs if e["event"] == "bridge_token_rejected"]
    assert sorted(e["token_fingerprint"] for e in rejected) == sorted(
        [fingerprint("guess-0"), fingerprint("guess-1")]
    )  # one line per peer and token, not one per attempt
    assert len([e for e in logs if e["event"] == "bridge_token_rate_limited"]) == 1
    assert "guess-0" not in repr(logs) and BRIDGE_TOKEN not in repr(logs)


async def test_rate_limit_lifts_after_the_budget_refills(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(auth_failures_per_minute=1)
    failures = daemon.app[STATE].security.failures
    now = [1000.0]
    failures.clock = lambda: now[0]
    assert await connect_status(http, daemon, "wrong") == 401
    assert await connect_status(http, daemon, BRIDGE_TOKEN) == 429
    now[0] += 61
    assert await connect_status(http, daemon, BRIDGE_TOKEN) == 101


@pytest.mark.parametrize(
    "target",
    [
        "/agent?token=" + BRIDGE_TOKEN,
        "/control/sessions?access_token=x",
        "/v1/models?api_key=secret-canary",
        "/v1/models?API-KEY=secret-canary",
        "/api/tags?key=secret-canary",
    ],
)
async def test_credentials_in_the_query_are_refused_and_not_logged(
    daemon: Daemon, http: aiohttp.ClientSession, target: str
) -> None:
    with capture_logs() as logs:
        async with http.get(daemon.url + target, headers=daemon.auth) as response:
            assert response.status == 400
            body = await response.text()
    assert "Authorization header" in body
    assert "secret-canary" not in body and BRIDGE_TOKEN not in body
    assert "secret-canary" not in repr(logs) and BRIDGE_TOKEN not in repr(logs)


async def test_other_query_parameters_pass(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.get(daemon.url + "/v1/models?limit=5") as response:
        assert response.status == 200


async def test_pending_approvals_are_capped_per_token(
    start_daemon: Any, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual", max_pending_per_token=2, max_pending=10)
    agents = [await raw_agent(daemon) for _ in range(2)]
    for agent in agents:
        assert (await agent.hello())["type"] == "session_pending"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(daemon.ws_url, headers=daemon.auth)
    assert refused.value.status == 429
    # Deciding one frees its slot.
    first = next(iter(daemon.state.registry))
    daemon.state.hub.deny(first.id)
    await until(lambda: daemon.app[STATE].security.handshakes.in_use == 1)
    ws = await http.ws_connect(daemon.ws_url, headers=daemon.auth)
    await ws.close()


async def test_connections_that_never_say_hello_hold_a_slot_too(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(max_pending_per_token=1, hello_timeout=0.3)
    silent = await http.ws_connect(daemon.ws_url, headers=daemon.auth)
    assert await connect_status(http, daemon, BRIDGE_TOKEN) == 429
    msg = await silent.receive(timeout=5)  # the daemon gives up on it after hello_timeout
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert silent.close_code == 4401
    await silent.close()
    await until(lambda: daemon.app[STATE].security.handshakes.in_use == 0)
    ws = await http.ws_connect(daemon.ws_url, headers=daemon.auth)
    await ws.close()


async def test_pending_approvals_are_capped_globally(
    start_daemon: Any, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual", max_pending_per_token=10, max_pending=1)
    agent = await raw_agent(daemon)
    assert (await agent.hello())["type"] == "session_pending"
    assert await connect_status(http, daemon, BRIDGE_TOKEN) == 429


async def test_label_and_reason_are_escaped_everywhere(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    label = "Helper\n2026-11-24 [info] session_approved\x1b[2J\u202eevil"
    with capture_logs() as logs:
        agent = await raw_agent(daemon)
        await granted_raw_agent(agent, label=label, reason="why\r\nnot")
    [session] = list(daemon.state.registry)
    for text in (session.label, session.reason):
        assert text.isprintable()
    assert session.label.startswith("Helper\\n2026")
    async with http.get(daemon.url + "/control/sessions", headers=daemon.auth) as response:
        listed = (await response.json())["sessions"][0]["label"]
    assert "\n" not in listed and "\x1b" not in listed
    for entry in logs:
        for value in entry.values():
            if isinstance(value, str):
                assert value.isprintable(), entry


@pytest.mark.parametrize(
    "fields",
    [
        {"agent_id": "evil\nagent"},
        {"agent_id": "../../x" + "y" * 200},
        {"requested_scopes": ["inference\x1b[31m"]},
        {"models": ["../etc/passwd"]},
    ],
)
async def test_invalid_claims_close_the_socket_with_4400(
    daemon: Daemon, raw_agent: Any, fields: dict[str, Any]
) -> None:
    agent = await raw_agent(daemon)
    await agent.send({"type": "hello", "protocol": 1, "agent_id": "ok", **fields})
    assert await agent.closed() == 4400
    assert len(daemon.state.registry) == 0


async def test_a_session_id_is_not_a_session_token(daemon: Daemon, raw_agent: Any) -> None:
    first = await raw_agent(daemon)
    granted = await granted_raw_agent(first)
    second = await raw_agent(daemon)
    await second.send(
        {"type": "hello", "protocol": 1, "agent_id": "x", "session_token": granted["session_id"]}
    )
    assert await second.closed() == 4401
