"""Health endpoints and how a person is told about pending agents."""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any

import aiohttp
import structlog

from mcp_local_provider.cli.consent import TerminalPrompt, announce, printable
from tests.conftest import StartDaemon
from tests.fakes import Daemon, until


async def test_health_counts_sessions_and_is_cheap(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(echo_daemon.url + "/health") as r:
        assert r.status == 200
        health = await r.json()
    assert health["status"] == "ok"
    assert health["sessions"] == {"active": 1, "pending": 0, "connected": 1}
    assert health["in_flight"] == 0 and health["uptime_seconds"] >= 0


async def test_deep_health_is_degraded_without_agents(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(daemon.url + "/health/deep") as r:
        assert r.status == 200
        deep = await r.json()
    assert deep["status"] == "degraded"
    assert deep["components"]["agents"]["reason"] == "no agent is connected"
    await daemon.start_agent()
    async with http.get(daemon.url + "/health/deep") as r:
        assert (await r.json())["status"] == "healthy"


def test_untrusted_text_loses_its_control_characters() -> None:
    assert printable("ok\x1b[31mred\nnext\r") == "ok\\x1b[31mred\\nnext\\r"


async def test_pending_agent_is_announced_with_the_approve_command(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    daemon.state.hub.subscribe_pending(announce)
    agent = await raw_agent(daemon)
    with structlog.testing.capture_logs() as logs:
        pending = await agent.hello(label="Evil\x1b[2J label\nfake line", reason="why")
    [line] = [e for e in logs if e["event"] == "agent_requests_access"]
    assert line["approve_with"] == f"mcp-local-provider sessions approve {pending['session_id']}"
    assert line["label_untrusted"] == "Evil\\x1b[2J label\\nfake line"
    assert line["scopes"] == ["inference"]


async def test_terminal_prompt_approves_on_yes_and_denies_otherwise(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="prompt")
    read_end, write_end = os.pipe()
    out = io.StringIO()
    prompt = TerminalPrompt(daemon.state.hub, out=out, fd=read_end)
    daemon.state.hub.subscribe_pending(prompt)
    try:
        first, second = await raw_agent(daemon), await raw_agent(daemon)
        await first.hello(label="First")
        await second.hello(label="Second")
        await until(lambda: "Approve" in out.getvalue())
        os.write(write_end, b"y\n")
        assert (await first.recv())["type"] == "session_granted"
        await until(lambda: out.getvalue().count("[y/N]") == 2)
        os.write(write_end, b"\n")  # anything but yes is no
        assert (await second.recv())["type"] == "session_denied"
        assert "Approved" in out.getvalue() and "Denied" in out.getvalue()
    finally:
        prompt.close()
        os.close(read_end)
        os.close(write_end)


async def test_terminal_prompt_skips_sessions_decided_elsewhere(
    start_daemon: StartDaemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="prompt")
    read_end, write_end = os.pipe()
    out = io.StringIO()
    prompt = TerminalPrompt(daemon.state.hub, out=out, fd=read_end)
    daemon.state.hub.subscribe_pending(prompt)
    try:
        agent = await raw_agent(daemon)
        pending = await agent.hello()
        await until(lambda: "Approve" in out.getvalue())
        url = f"{daemon.url}/control/sessions/{pending['session_id']}/approve"
        async with http.post(url, headers=daemon.auth):
            pass
        assert (await agent.recv())["type"] == "session_granted"
        os.write(write_end, b"n\n")  # a late answer changes nothing
        await until(lambda: "already active" in out.getvalue())
        await asyncio.sleep(0)
        assert next(iter(daemon.state.registry)).state.value == "active"
    finally:
        prompt.close()
        os.close(read_end)
        os.close(write_end)
