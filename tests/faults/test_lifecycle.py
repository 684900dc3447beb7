"""The daemon's and the agents' life: agents that leave or vanish, a daemon that dies or is
stopped while streams run. Each against a live daemon on loopback (in-process or ``serve``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from mcp_local_provider.core.registry import SessionState
from tests.conftest import StartDaemon
from tests.fakes import BRIDGE_TOKEN, Daemon, until
from tests.faults.live import (
    CHAT,
    LOAD,
    Tally,
    audit_requests,
    chat,
    chunk,
    echo_agents,
    next_of,
    raw_agent_at,
    reset,
    stop_agents,
    stream_once,
)
from tests.security.helpers import DaemonProcess


async def listed(http: aiohttp.ClientSession, base: str) -> list[str]:
    async with http.get(base + "/api/tags") as response:
        return [m["name"] for m in (await response.json())["models"]]


async def timed_post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, str, float]:
    started = time.monotonic()
    async with http.post(url, json=body) as response:
        text = await response.text()
        return response.status, text, time.monotonic() - started


# -- an agent that leaves on purpose ---------------------------------------------------------


async def test_an_agent_that_stops_ends_its_session_and_its_models_leave_at_once(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    client, task = await daemon.start_agent()
    [session] = list(daemon.state.registry)
    assert await listed(http, daemon.url) == ["echo:latest"]
    await client.stop()
    assert await task == "stopped"
    await until(lambda: session.state is SessionState.LEFT)
    assert await listed(http, daemon.url) == []
    status, text, took = await timed_post(http, daemon.url + CHAT, chat(stream=False))
    assert status == 503 and "no_active_session" in text
    assert took < 0.25  # no wait for an agent that said goodbye (reconnect_grace is 0.3 s)


async def test_ctrl_c_on_the_agent_command_ends_its_session_at_once(
    daemon: Daemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MCP_LOCAL_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN,
        "MCP_LOCAL_PROVIDER_STATE_DIR": str(tmp_path / "agent-state"),
    }
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcp_local_provider", "agent", "--backend", "echo",
        "--url", daemon.url.replace("http://", "ws://") + "/agent",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        registry = daemon.state.registry
        await until(lambda: any(s.connected for s in registry), timeout=20)
        [session] = list(registry)
        agent.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(10):
                code = await agent.wait()
        except TimeoutError:
            code = None
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    assert agent.stderr is not None
    said = (await agent.stderr.read()).decode(errors="replace")
    assert code == 130, f"the agent did not stop on SIGINT (exit {agent.returncode}):\n{said}"
    assert session.state is SessionState.LEFT
    assert await listed(http, daemon.url) == []


# -- an agent that vanishes ------------------------------------------------------------------


async def test_a_vanished_agent_leaves_the_lists_after_the_grace_and_can_resume(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(reconnect_grace=0.5)
    agent, granted = await raw_agent_at(http, daemon.url)
    reset(agent.ws)  # gone without a word: a crash, a network drop, a laptop asleep
    [session] = list(daemon.state.registry)
    await until(lambda: not session.connected)
    assert await listed(http, daemon.url) == ["raw:latest"]  # it may be reconnecting
    await until(lambda: time.time() - (session.away_since or 0) > 0.5)
    assert await listed(http, daemon.url) == []
    status, text, took = await timed_post(http, daemon.url + CHAT, chat("raw", stream=False))
    assert status == 503 and "disconnected" in text and took < 0.25
    # The same agent comes back with its token: no new approval, its model is listed again.
    back, again = await raw_agent_at(http, daemon.url, session_token=granted["session_token"])
    assert again["session_id"] == granted["session_id"]
    assert await listed(http, daemon.url) == ["raw:latest"]
    await back.ws.close()


async def test_a_killed_agent_s_session_ends_after_the_away_timeout_and_is_not_active(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(reconnect_grace=0.05, away_timeout=0.3, sweep_interval=0.05)
    agent, granted = await raw_agent_at(http, daemon.url)
    reset(agent.ws)  # killed: no goodbye
    [session] = list(daemon.state.registry)
    await until(lambda: not session.connected)
    headers = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    async with http.get(daemon.url + "/control/status", headers=headers) as response:
        assert (await response.json())["sessions_active"] == 1  # it may still come back
    await until(lambda: session.state is SessionState.LEFT, timeout=5)
    async with http.get(daemon.url + "/control/status", headers=headers) as response:
        status = await response.json()
    assert status["sessions_active"] == 0
    assert status["sessions"][0]["state"] == "left"
    # The session is kept (ended) for the record, with why it ended.
    assert daemon.state.registry.find(granted["session_id"]) is session
    assert session.end_reason == "away too long"


async def test_a_request_waits_only_for_what_is_left_of_the_grace(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(reconnect_grace=1.5)
    agent, _ = await raw_agent_at(http, daemon.url)
    reset(agent.ws)
    [session] = list(daemon.state.registry)
    await until(lambda: not session.connected)
    await asyncio.sleep(0.5)
    status, _, took = await timed_post(http, daemon.url + CHAT, chat("raw", stream=False))
    assert status == 503 and took < 1.2  # what was left of the grace, not a grace of its own


# -- a daemon that dies ----------------------------------------------------------------------


async def test_agents_back_off_while_the_daemon_is_dead(daemon_process: Any) -> None:
    daemon = await daemon_process()
    agents = await echo_agents(daemon.url, 1, backoff_initial=0.05, backoff_max=0.4)
    loop = asyncio.get_running_loop()
    dials: list[float] = []

    def dialled(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dials.append(loop.time())
        writer.close()  # what the agent meets: something on the port, but no daemon

    daemon.proc.kill()
    await daemon.proc.wait()
    listener = await asyncio.start_server(dialled, "127.0.0.1", daemon.port)
    try:
        await asyncio.sleep(2.0)
    finally:
        listener.close()
        await stop_agents(agents)
    # The HTTP client dials twice per attempt when the peer hangs up at once: count attempts.
    attempts = [t for i, t in enumerate(dials) if i == 0 or t - dials[i - 1] > 0.02]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # 0.05 s doubling to 0.4 s, each cut by up to half: at most about 12 attempts in 2 s (a
    # backoff that never grows makes 40 to 80), and the gaps reach the maximum.
    assert 3 <= len(attempts) <= 12, gaps
    assert max(gaps) >= 0.2, gaps
    assert len({round(g, 3) for g in gaps[-3:]}) > 1, gaps  # jitter: agents do not dial in step


async def test_after_a_kill_and_a_restart_editors_see_the_models_within_seconds(
    daemon_process: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    daemon = await daemon_process()
    agents = await echo_agents(
        daemon.url, 3, models=("echo", "echo-2"), backoff_initial=0.05, backoff_max=1.0
    )
    daemon.proc.kill()
    await daemon.proc.wait()
    (tmp_path / "again").mkdir()
    restarted = DaemonProcess(tmp_path / "again", daemon.port, {}, [])
    try:
        await restarted.start()  # approves every agent as soon as it asks
        started = time.monotonic()

        async with asyncio.timeout(5):
            while set(await listed(http, restarted.url)) != {"echo:latest", "echo-2:latest"}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert time.monotonic() - started < 3
        status, text, _ = await timed_post(http, restarted.url + CHAT, chat(stream=False))
        assert status == 200 and "hi" in text
        async with asyncio.timeout(5):
            await asyncio.gather(*(client.wait_ready() for client, _ in agents))
    finally:
        await stop_agents(agents)
        await restarted.stop()


# -- a daemon that is stopped ----------------------------------------------------------------


async def test_a_slow_reader_cut_by_shutdown_gets_the_error_and_is_not_counted_as_leaving(
    daemon_process: Any, http: aiohttp.ClientSession
) -> None:
    # Behind by less than max_buffered_bytes: a slow reader, not one that stopped reading.
    daemon = await daemon_process(shutdown_grace=0.3, max_buffered_bytes=64 * 2**20)
    agent, _ = await raw_agent_at(http, daemon.url)
    async with aiohttp.ClientSession(read_bufsize=2**16) as editor:
        request = asyncio.create_task(editor.post(daemon.url + CHAT, json=chat("raw")))
        invoke = await next_of(agent, "model_invoke")
        # A long, fast answer that the editor does not read yet: megabytes queue up in the
        # daemon, far more than the socket buffers between them hold.
        words = "word " * 400
        for i in range(20_000):
            await agent.send(chunk(invoke["id"], words, i))
        response = await request
        await asyncio.sleep(0.5)
        daemon.proc.send_signal(signal.SIGINT)
        body = b""
        async with asyncio.timeout(15):
            while piece := await response.content.read(2**16):
                body += piece
        response.release()
    assert await daemon.exit_code() == 0
    events = [e for e in body.decode().split("\n\n") if e]
    assert '"code":"shutting_down"' in events[-1], events[-1][:300]
    [line] = audit_requests(daemon.state_dir)
    assert line["outcome"] == "shutting_down" and line["status"] == 200
    log_lines = [json.loads(x) for x in daemon.log_text().splitlines() if x.startswith("{")]
    assert log_lines and all(e.get("status") != 499 for e in log_lines)
    assert " 499" not in daemon.log_text()


async def test_a_second_ctrl_c_cuts_the_drain_short_without_a_500(
    daemon_process: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await daemon_process(shutdown_grace=30)
    agent, _ = await raw_agent_at(http, daemon.url)
    request = asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw")))
    invoke = await next_of(agent, "model_invoke")
    await agent.send(chunk(invoke["id"], "partial"))
    response = await request
    await response.content.readuntil(b"\n\n")
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGINT)
    await until(lambda: "draining" in daemon.log_text())
    daemon.proc.send_signal(signal.SIGINT)
    assert await daemon.exit_code() == 0
    assert time.monotonic() - started < 10  # not the 30 s grace
    rest = (await response.read()).decode()
    assert '"code":"shutting_down"' in rest
    log = [json.loads(line) for line in daemon.log_text().splitlines() if line.startswith("{")]
    assert not [e for e in log if e.get("status") == 500 or e.get("level") == "error"]
    assert any(e.get("event") == "shutdown_hurried" for e in log)


async def test_sigterm_during_load_drains_every_stream_and_exits_0(
    daemon_process: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await daemon_process(shutdown_grace=10, max_concurrency=16, **LOAD)
    agents = await echo_agents(daemon.url, 5, max_concurrency=16)
    for client, _ in agents:
        client.backend.delay = 0.01  # type: ignore[attr-defined]
    tally = Tally()
    text = " ".join(f"w{i}" for i in range(40))  # 40 chunks, about half a second
    streams = [
        asyncio.create_task(stream_once(http, daemon.url, chat(text=text), tally))
        for _ in range(60)
    ]

    async def in_flight() -> int:
        async with http.get(daemon.url + "/health") as r:
            return int((await r.json())["in_flight"])

    async with asyncio.timeout(10):
        while await in_flight() < 40:  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.01)
    daemon.proc.send_signal(signal.SIGTERM)
    await asyncio.gather(*streams)
    assert await daemon.exit_code() == 0
    await stop_agents(agents)
    assert tally.statuses == {"ok": 60}
    lines = audit_requests(daemon.state_dir)
    assert len(lines) == 60 and {line["outcome"] for line in lines} == {"ok"}
