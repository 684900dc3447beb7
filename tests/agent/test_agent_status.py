"""An agent reports its processes started ahead (``agent_status``) to a daemon that accepts it,
and the daemon shows them in its status view; an older daemon is never sent the frame."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from mcp_local_provider.agent import AgentClient
from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.cli.main import main
from mcp_local_provider.core.protocol import WarmStatus, encode, session_granted_frame
from mcp_local_provider.http.ui import render
from tests.conftest import StartDaemon
from tests.fakes import BRIDGE_TOKEN, Daemon, until


class PooledBackend(EchoBackend):
    """Echo, with a pool of processes started ahead whose counts the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = WarmStatus(ready=1, starting=1, busy=0)

    def pool_status(self) -> WarmStatus | None:
        return WarmStatus(**self.pool)


def panels(daemon: Daemon) -> render.Panels:
    return render.Panels(list(daemon.state.registry), daemon.state.registry.clock(), "c", None, [])


async def sessions(daemon: Daemon, http: aiohttp.ClientSession) -> list[dict[str, object]]:
    async with http.get(daemon.url + "/control/sessions", headers=daemon.auth) as response:
        body = await response.json()
    listed: list[dict[str, object]] = body["sessions"]
    return listed


async def test_the_status_view_shows_the_pool_an_agent_reports_and_follows_its_changes(
    daemon: Daemon, http: aiohttp.ClientSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = PooledBackend()
    await daemon.start_agent(backend, status_interval=0.01)
    [session] = list(daemon.state.registry)
    await until(lambda: session.warm == {"ready": 1, "starting": 1, "busy": 0})
    [listed] = await sessions(daemon, http)
    assert listed["warm"] == {"ready": 1, "starting": 1, "busy": 0}

    backend.pool = WarmStatus(ready=2, starting=0, busy=1)
    await until(lambda: session.warm == {"ready": 2, "starting": 0, "busy": 1})
    token_file = tmp_path / "token"
    token_file.write_text(BRIDGE_TOKEN)
    token_file.chmod(0o600)
    code = await asyncio.to_thread(
        main, ["status", "--url", daemon.url, "--token-file", str(token_file)]
    )
    assert code == 0
    header, row = capsys.readouterr().out.strip().splitlines()[-2:]
    assert header.split()[-2:] == ["WARM", "R/S/B"] and row.split()[-1] == "2/0/1"
    page = render.sessions_section(panels(daemon))
    assert "warm: 2 ready, 0 starting, 1 busy" in page


async def test_an_agent_without_processes_started_ahead_shows_none(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    [listed] = await sessions(echo_daemon, http)
    assert listed["warm"] is None
    page = render.sessions_section(panels(echo_daemon))
    assert "warm:" not in page


async def test_a_gone_agents_last_report_is_not_shown(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(reconnect_grace=30)
    client, _ = await daemon.start_agent(PooledBackend(), status_interval=0.01)
    [session] = list(daemon.state.registry)
    await until(lambda: session.warm is not None)
    await client.stop()
    await until(lambda: not session.connected)
    [listed] = await sessions(daemon, http)
    assert listed["warm"] is None
    assert "warm:" not in render.sessions_section(panels(daemon))


class OlderDaemon:
    """A daemon of before ``agent_status``: it grants without ``accepts``, serves one request
    and would close on any frame type it does not know."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.answered = asyncio.Event()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        granted = json.loads(
            encode(
                session_granted_frame(
                    session_id="sess-1", session_token="tok", allowed_scopes=["inference"],
                    models=["echo"], expires_at=None, max_requests=10, max_concurrency=1,
                    accepts=[],
                )
            )
        )  # fmt: skip
        del granted["accepts"]
        async for msg in ws:
            frame = json.loads(msg.data)
            self.types.append(frame["type"])
            if frame["type"] == "hello":
                await ws.send_json(granted)
                await ws.send_json(
                    {"type": "model_invoke", "id": "req-1", "payload": {"kind": "chat",
                     "messages": [{"role": "user", "content": "hi"}]}}
                )  # fmt: skip
            elif frame["type"] == "model_result" or frame.get("finish_reason"):
                self.answered.set()
        return ws


async def test_an_older_daemon_is_never_sent_agent_status(aiohttp_server: object) -> None:
    older = OlderDaemon()
    app = web.Application()
    app.router.add_get("/agent", older.handle)
    server = await aiohttp_server(app)  # type: ignore[operator]
    client = AgentClient(
        f"ws://127.0.0.1:{server.port}/agent", BRIDGE_TOKEN, PooledBackend(),
        status_interval=0.005, reconnect=False,
    )  # fmt: skip
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(5):
            await older.answered.wait()
        await asyncio.sleep(0.05)  # ten looks at the pool: a reporting agent would have sent
    finally:
        await client.stop()
        task.cancel()
    assert "agent_status" not in older.types
    assert older.types[0] == "hello" and len(older.types) >= 2
