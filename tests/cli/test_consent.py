"""Consent over a real agent socket: pending, approve, deny, timeout, resume, register."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.agent import AgentRefused
from tests.conftest import StartDaemon
from tests.fakes import Daemon, until


async def test_manual_approval_through_the_control_api(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, openai_client: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    pending: list[dict[str, Any]] = []
    client, _ = await daemon.start_agent(wait=False, on_pending=pending.append)
    await until(lambda: bool(pending))
    assert pending[0]["approve_with"] == (
        f"mcp-local-provider sessions approve {pending[0]['session_id']}"
    )
    async with http.get(daemon.url + "/control/sessions", headers=daemon.auth) as r:
        sessions = (await r.json())["sessions"]
    assert [s["state"] for s in sessions] == ["pending"]
    # A pending agent serves nothing yet.
    async with http.get(daemon.url + "/v1/models") as r:
        assert (await r.json())["data"] == []
    url = f"{daemon.url}/control/sessions/{pending[0]['session_id']}/approve"
    async with http.post(url, headers=daemon.auth) as r:
        assert r.status == 200
        assert (await r.json())["session"]["state"] == "active"
    await asyncio.wait_for(client.wait_ready(), 5)
    reply = await openai_client(daemon).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "approved"}]
    )
    assert reply.choices[0].message.content == "approved"


async def test_denied_agent_gets_session_denied_and_4403(
    start_daemon: StartDaemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual")
    agent = await raw_agent(daemon)
    pending = await agent.hello()
    assert pending["type"] == "session_pending"
    url = f"{daemon.url}/control/sessions/{pending['session_id']}/deny"
    async with http.post(url, headers=daemon.auth) as r:
        assert r.status == 200
    assert await agent.recv() == {"type": "session_denied", "reason": "denied by the user"}
    assert await agent.closed() == 4403


async def test_agent_library_raises_when_denied(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual")
    pending: list[dict[str, Any]] = []
    _, task = await daemon.start_agent(wait=False, on_pending=pending.append)
    await until(lambda: bool(pending))
    url = f"{daemon.url}/control/sessions/{pending[0]['session_id']}/deny"
    async with http.post(url, headers=daemon.auth):
        pass
    with pytest.raises(AgentRefused, match="denied"):
        await asyncio.wait_for(task, 5)


async def test_approval_timeout_denies_with_4403(start_daemon: StartDaemon, raw_agent: Any) -> None:
    daemon = await start_daemon(approval="manual", approval_timeout=0.1)
    agent = await raw_agent(daemon)
    assert (await agent.hello())["type"] == "session_pending"
    denied = await agent.recv()
    assert denied == {"type": "session_denied", "reason": "approval timed out"}
    assert await agent.closed() == 4403
    assert [s.state.value for s in daemon.state.registry] == ["denied"]


async def test_control_routes_require_the_bridge_token(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    for method, path in (
        ("GET", "/control/sessions"),
        ("POST", "/control/sessions/sess-x/approve"),
        ("POST", "/control/sessions/sess-x/deny"),
        ("POST", "/control/sessions/sess-x/revoke"),
        ("POST", "/control/register"),
        ("POST", "/control/revoke"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.request(method, daemon.url + path, headers=headers) as r:
                assert r.status == 401, (method, path)
                assert (await r.json())["error"]["code"] == "unauthorized"


async def test_agent_socket_requires_the_bridge_token(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await http.ws_connect(daemon.ws_url, headers={"Authorization": "Bearer nope"})
    assert raised.value.status == 401


async def test_approving_an_unknown_session_is_404(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        daemon.url + "/control/sessions/sess-nope/approve", headers=daemon.auth
    ) as r:
        assert r.status == 404
        assert "sess-nope" in (await r.json())["error"]["message"]


async def test_resume_with_session_token_needs_no_second_approval(
    start_daemon: StartDaemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual")
    agent = await raw_agent(daemon)
    pending = await agent.hello()
    async with http.post(
        f"{daemon.url}/control/sessions/{pending['session_id']}/approve", headers=daemon.auth
    ):
        pass
    granted = await agent.recv()
    assert granted["type"] == "session_granted" and granted["session_token"]
    await agent.ws.close()
    again = await raw_agent(daemon)
    resumed = await again.hello(session_token=granted["session_token"])
    assert resumed["type"] == "session_granted"
    assert resumed["session_id"] == granted["session_id"]
    assert len(daemon.state.registry) == 1  # no new pending session


async def test_invalid_session_token_is_closed_4401(daemon: Daemon, raw_agent: Any) -> None:
    agent = await raw_agent(daemon)
    await agent.send({"type": "hello", "protocol": 1, "agent_id": "x", "session_token": "bad"})
    assert await agent.closed() == 4401


async def test_hello_must_arrive_in_time(start_daemon: StartDaemon, raw_agent: Any) -> None:
    daemon = await start_daemon(hello_timeout=0.05)
    agent = await raw_agent(daemon)
    assert await agent.closed() == 4401


async def test_first_frame_other_than_hello_is_4401(daemon: Daemon, raw_agent: Any) -> None:
    agent = await raw_agent(daemon)
    await agent.send({"type": "model_result", "id": "req-1", "status": "ok", "result": {}})
    assert await agent.closed() == 4401


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"no": "type"}',
        '{"type": "teleport"}',
        "[1, 2]",
        '{"type": "hello", "protocol": 1, "agent_id": "bad id with spaces"}',
        '{"type": "hello", "protocol": 2, "agent_id": "x"}',
    ],
)
async def test_bad_frames_close_4400_and_leave_other_sessions_serving(
    echo_daemon: Daemon, raw_agent: Any, openai_client: Any, frame: str
) -> None:
    agent = await raw_agent(echo_daemon)
    await agent.ws.send_str(frame)
    assert await agent.closed() == 4400
    reply = await openai_client(echo_daemon).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "still here"}]
    )
    assert reply.choices[0].message.content == "still here"


async def test_binary_frame_is_a_protocol_error(daemon: Daemon, raw_agent: Any) -> None:
    agent = await raw_agent(daemon)
    await agent.ws.send_bytes(b"\x00\x01")
    assert await agent.closed() == 4400


async def test_frame_sent_while_pending_is_a_protocol_error(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    agent = await raw_agent(daemon)
    await agent.hello()
    frame = {"type": "model_result", "id": "req-1", "status": "ok", "result": {}}
    await agent.send(frame)
    assert (await agent.recv())["type"] == "error"  # not processed; the second one ends it
    await agent.send(frame)
    assert await agent.closed() == 4400
    assert [s.state.value for s in daemon.state.registry] == ["denied"]


async def test_agent_leaving_while_pending_ends_its_session(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    agent = await raw_agent(daemon)
    await agent.hello()
    await agent.ws.close()
    await until(lambda: [s.state.value for s in daemon.state.registry] == ["denied"])


async def test_preregistered_session_is_claimed_with_its_token(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    body = {"agent_id": "pre", "label": "Pre", "models": ["pre-model"], "ttl_seconds": 30}
    async with http.post(daemon.url + "/control/register", json=body, headers=daemon.auth) as r:
        assert r.status == 201
        registered = await r.json()
    agent = await raw_agent(daemon)
    granted = await agent.hello(session_token=registered["session_token"])
    assert granted["type"] == "session_granted"
    assert granted["session_id"] == registered["session_id"]
    assert granted["models"] == ["pre-model"]


async def test_revoke_by_body_keeps_its_shape(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    session = next(iter(echo_daemon.state.registry))
    async with http.post(
        echo_daemon.url + "/control/revoke",
        json={"session_id": session.id},
        headers=echo_daemon.auth,
    ) as r:
        assert r.status == 200
        assert await r.json() == {"session_id": session.id, "state": "revoked"}


async def test_register_with_bad_body_is_400_naming_the_field(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        daemon.url + "/control/register", json={"label": "no id"}, headers=daemon.auth
    ) as r:
        assert r.status == 400
        assert "agent_id" in (await r.json())["error"]["message"]
