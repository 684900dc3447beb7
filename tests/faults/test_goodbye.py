"""An agent that is not ours (a plain aiohttp client written from docs/agent-protocol.md) and
says goodbye with close code 1001 leaves at once: its session ends, its models leave the lists
and a request for them fails at once, whatever the reason text and however it closes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.core.registry import SessionState
from tests.conftest import StartDaemon
from tests.fakes import until
from tests.faults.live import CHAT, chat, next_of, raw_agent_at

#: Ways a client says goodbye: from the task that reads, after cancelling its reading task
#: (aiohttp then drops the connection right after the close frame), while a request it was
#: sent is still unanswered, or both, the request unread (its socket then ends with a reset).
HOW = ["plain", "reader_cancelled", "request_unanswered", "request_unread"]


async def goodbye(ws: aiohttp.ClientWebSocketResponse, how: str, reason: bytes) -> None:
    if how in ("reader_cancelled", "request_unread"):

        async def read() -> None:
            async for _ in ws:
                pass

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.01)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    await ws.close(code=1001, message=reason)


async def models(http: aiohttp.ClientSession, base: str) -> list[str]:
    async with http.get(base + "/api/tags") as response:
        return [m["name"] for m in (await response.json())["models"]]


@pytest.mark.parametrize("reason", [b"", b"closing down"])
@pytest.mark.parametrize("how", HOW)
async def test_a_third_party_agent_that_says_goodbye_leaves_at_once(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, how: str, reason: bytes
) -> None:
    daemon = await start_daemon(reconnect_grace=5)
    agent, _ = await raw_agent_at(http, daemon.url)
    [session] = list(daemon.state.registry)
    waiting: asyncio.Task[Any] | None = None
    if how == "request_unanswered":
        waiting = asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw")))
        await next_of(agent, "model_invoke")
    if how == "request_unread":
        waiting = asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw")))
        await until(lambda: daemon.state.router.in_flight == 1)
    await goodbye(agent.ws, how, reason)
    await until(lambda: session.state is SessionState.LEFT, timeout=1)
    if waiting is not None:
        assert (await waiting).status == 502  # failed at once, not after the grace
    assert await models(http, daemon.url) == []
    started = time.monotonic()
    async with http.post(daemon.url + CHAT, json=chat("raw", stream=False)) as response:
        assert response.status == 503
    assert time.monotonic() - started < 1  # no wait for an agent that left


@pytest.mark.parametrize("how", ["plain", "reader_cancelled"])
async def test_a_goodbye_that_reaches_a_busy_serve_process_is_honoured(
    daemon_process: Any, http: aiohttp.ClientSession, how: str
) -> None:
    """The close frame (and, for a cancelled reader, the end of the connection) reach the
    daemon while it is stopped, so it reads them together when it resumes."""
    daemon = await daemon_process(reconnect_grace=5)
    agent, _ = await raw_agent_at(http, daemon.url)
    assert await models(http, daemon.url) == ["raw:latest"]
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        closing = asyncio.create_task(goodbye(agent.ws, how, b"bye"))
        await asyncio.sleep(0.1)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    await closing
    listed = ["raw:latest"]
    for _ in range(100):  # the daemon takes a moment to run again
        listed = await models(http, daemon.url)
        if not listed:
            break
        await asyncio.sleep(0.02)
    assert listed == []
