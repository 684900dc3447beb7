"""Editors that misbehave: they leave before the first byte, mid-stream or while queued, send
slowly, pipeline requests, or never read. Each time the agent hears of it (``model_cancel``),
the daemon holds a bounded amount for it, and every counter returns to zero.

The 408 for a slow body and the cut-off for slow headers on their own are in
tests/security/test_input_limits.py; here they run beside a stream that must not notice."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from tests.conftest import StartDaemon
from tests.fakes import Daemon, until
from tests.faults.checks import others_served, quiet
from tests.faults.live import CHAT, chat, chunk, next_of, raw_agent_at, rest_of, start_stream
from tests.security.helpers import port_of


async def with_echo(start_daemon: StartDaemon, **config: Any) -> Daemon:
    daemon = await start_daemon(**config)
    await daemon.start_agent()
    return daemon


def raw_post(body: dict[str, Any], path: str = CHAT, close: bool = False) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + data


async def test_a_client_gone_before_the_first_byte_cancels_the_agents_work(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port_of(daemon))
    writer.write(raw_post(chat("raw")))
    invoke = await next_of(agent, "model_invoke")
    writer.close()  # gone before a byte of the answer
    cancel = await next_of(agent, "model_cancel")
    assert cancel == {"type": "model_cancel", "id": invoke["id"], "reason": "client_disconnected"}
    await quiet(daemon)
    await others_served(daemon, http)


async def test_a_client_gone_mid_stream_cancels_the_agents_work(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url)
    invoke, response = await start_stream(http, daemon.url, agent)
    response.close()
    cancel = await next_of(agent, "model_cancel")
    assert cancel["id"] == invoke["id"] and cancel["reason"] == "client_disconnected"
    await agent.send(chunk(invoke["id"], "to nobody", 1))  # already on its way: dropped
    await until(lambda: daemon.state.router.dropped_frames == 1)
    await quiet(daemon)
    await others_served(daemon, http)


async def test_a_client_gone_while_queued_never_reaches_the_agent(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url, max_concurrency=1)
    invoke, response = await start_stream(http, daemon.url, agent)  # the only slot is busy
    queued = asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw")))
    await until(lambda: daemon.state.router.waiting == 1)
    queued.cancel()  # the editor gives up while waiting
    await until(lambda: daemon.state.router.waiting == 0)
    await agent.send(chunk(invoke["id"], "", 1, finish="stop"))
    assert (await rest_of(response))[-1] == "data: [DONE]"
    # The next request gets the slot: the cancelled one was never sent to the agent.
    follow = asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw", stream=False)))
    nxt = await next_of(agent, "model_invoke")
    await agent.send(chunk(nxt["id"], "next", 0, finish="stop"))
    async with await follow as reply:
        assert reply.status == 200
    assert daemon.state.registry.get(invoke["session_id"]).requests == 2
    await quiet(daemon)


async def test_pipelined_requests_are_answered_in_order(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(daemon))
    bodies = [chat(text=f"number {i}", stream=False) for i in range(3)]
    writer.write(b"".join(raw_post(b, close=i == 2) for i, b in enumerate(bodies)))
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    answers = [part for part in data.split(b"HTTP/1.1 ")[1:]]
    assert [a[:3] for a in answers] == [b"200"] * 3
    assert [f"number {i}".encode() in a for i, a in enumerate(answers)] == [True] * 3
    await quiet(daemon)


async def test_slow_headers_and_a_slow_body_do_not_hold_up_a_stream(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon, keepalive_timeout=0.4, body_timeout=0.4)
    port = port_of(daemon)
    _, slow_headers = await asyncio.open_connection("127.0.0.1", port)
    slow_headers.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    body_reader, slow_body = await asyncio.open_connection("127.0.0.1", port)
    slow_body.write(raw_post(chat())[:-10])  # all but the last bytes of its body
    started = time.monotonic()
    await others_served(daemon, http)  # served meanwhile, not after them
    assert time.monotonic() - started < 0.4
    async with asyncio.timeout(3):
        assert b" 408 " in await body_reader.read()
    for writer in (slow_headers, slow_body):
        writer.close()
    await quiet(daemon)


async def test_a_client_that_never_reads_is_dropped_with_bounded_memory(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    limit = 256 * 1024
    daemon = await with_echo(start_daemon, max_buffered_bytes=limit, idle_timeout=0.5)
    agent, _ = await raw_agent_at(http, daemon.url)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port_of(daemon))
    writer.transport.pause_reading()  # type: ignore[attr-defined]
    writer.write(raw_post(chat("raw")))
    invoke = await next_of(agent, "model_invoke")
    router = daemon.state.router
    held: list[int] = []
    text = "x" * 1000
    sent = 0
    cancelled: dict[str, Any] = {}

    async def watch() -> None:
        cancelled.update(await next_of(agent, "model_cancel", timeout=10))

    watching = asyncio.create_task(watch())
    while not watching.done() and sent < 20_000:  # 20 MB if nobody stopped it
        await agent.send(chunk(invoke["id"], text, sent))
        sent += 1
        pending = router._pending.get(invoke["id"])
        held.append(pending.buffered if pending is not None else 0)
        await asyncio.sleep(0)
    await watching
    assert cancelled == {
        "type": "model_cancel",
        "id": invoke["id"],
        "reason": "client_disconnected",
    }
    assert max(held) <= limit and sent < 20_000
    await quiet(daemon)  # the stalled write was given up after idle_timeout
    writer.close()
    await others_served(daemon, http)
