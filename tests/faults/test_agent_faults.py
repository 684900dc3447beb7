"""Agents that fail every way a connection or a peer can: each time the editor gets a clear
error within the configured timeout, other sessions keep serving, the in-flight counters go
back to zero and nothing is left running (``checks.quiet``).

Malformed fields in answers are covered by tests/test_agent_misbehaviour.py, and the plain
timeouts' status codes by tests/test_failures.py; here the faults are about the connection and
the order of frames, on a daemon that also serves a healthy agent."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.core.registry import SessionState
from tests.conftest import StartDaemon
from tests.fakes import Daemon, until
from tests.faults.checks import others_served, quiet
from tests.faults.live import (
    CHAT,
    chat,
    chunk,
    next_of,
    raw_agent_at,
    reset,
    rest_of,
    start_stream,
)


async def with_echo(start_daemon: StartDaemon, **config: Any) -> Daemon:
    daemon = await start_daemon(**config)
    await daemon.start_agent()
    return daemon


def code_of(event: str) -> str:
    return str(json.loads(event.removeprefix("data: "))["error"]["code"])


@pytest.mark.parametrize("how", ["tcp_reset", "clean_close", "goodbye"])
async def test_an_agent_gone_mid_stream_ends_the_stream_with_an_error_at_once(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, how: str
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url)
    _, response = await start_stream(http, daemon.url, agent)
    started = time.monotonic()
    if how == "tcp_reset":
        reset(agent.ws)
    else:
        await agent.ws.close(code=1001 if how == "goodbye" else 1000)
    events = await rest_of(response, timeout=2)
    assert [code_of(e) for e in events] == ["agent_disconnected"]
    assert time.monotonic() - started < 1
    await quiet(daemon)
    await others_served(daemon, http)
    raw = [s for s in daemon.state.registry if s.agent_id == "raw-agent"]
    assert raw[0].state is (SessionState.LEFT if how == "goodbye" else SessionState.ACTIVE)


async def test_an_agent_reset_before_its_first_chunk_is_502_at_once(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url)
    request = asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw")))
    await next_of(agent, "model_invoke")
    reset(agent.ws)
    async with asyncio.timeout(2):
        response = await request
    assert response.status == 502
    assert (await response.json())["error"]["code"] == "agent_disconnected"
    response.release()
    await quiet(daemon)
    await others_served(daemon, http)


@pytest.mark.parametrize("when", ["before_first_chunk", "mid_stream"])
async def test_a_silent_agent_times_out_within_the_configured_timeout(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, when: str
) -> None:
    daemon = await with_echo(start_daemon, first_chunk_timeout=0.4, idle_timeout=0.4)
    agent, _ = await raw_agent_at(http, daemon.url)
    started = time.monotonic()
    if when == "before_first_chunk":
        request = asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw")))
        invoke = await next_of(agent, "model_invoke")
        async with asyncio.timeout(2):
            response = await request
        assert response.status == 504
        assert (await response.json())["error"]["code"] == "timeout"
        response.release()
    else:
        invoke, response = await start_stream(http, daemon.url, agent)
        assert [code_of(e) for e in await rest_of(response, timeout=2)] == ["timeout"]
    assert 0.4 <= time.monotonic() - started < 1.5
    cancel = await next_of(agent, "model_cancel")
    assert cancel == {"type": "model_cancel", "id": invoke["id"], "reason": "timeout"}
    await quiet(daemon)
    await others_served(daemon, http)


BAD_FRAMES = {
    "not_json": ("text", "{oops", 4400),
    "binary": ("binary", b"\x00\x01", 4400),
    "unknown_type": ("text", json.dumps({"type": "model_teleport", "id": "x"}), 4400),
    "not_an_object": ("text", "[1, 2]", 4400),
    "hello_again": ("text", json.dumps({"type": "hello", "protocol": 1, "agent_id": "a"}), 4400),
    "oversized": ("text", json.dumps({"type": "error", "pad": "x" * 40_000}), 1009),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_a_bad_frame_mid_stream_closes_only_that_agent(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, name: str
) -> None:
    daemon = await with_echo(start_daemon, max_frame_bytes=32 * 1024)
    agent, _ = await raw_agent_at(http, daemon.url)
    _, response = await start_stream(http, daemon.url, agent)
    kind, data, code = BAD_FRAMES[name]
    if kind == "binary":
        await agent.ws.send_bytes(data)  # type: ignore[arg-type]
    else:
        await agent.ws.send_str(data)  # type: ignore[arg-type]
    assert await agent.closed() == code
    assert [code_of(e) for e in await rest_of(response, timeout=2)] == ["agent_disconnected"]
    await quiet(daemon)
    await others_served(daemon, http)


async def test_frames_for_unknown_or_finished_requests_are_dropped_and_counted(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url)
    invoke, response = await start_stream(http, daemon.url, agent, "one")
    rid = invoke["id"]
    await agent.send(chunk("req-0123456789abcdef", "for nobody", 1))
    await agent.send(chunk(rid, " two", 2, finish="stop"))
    await agent.send(chunk(rid, " late", 3))  # after the finish
    await agent.send({"type": "model_result", "id": rid, "status": "ok", "result": {"choices": []}})
    events = await rest_of(response)
    assert events[-1] == "data: [DONE]" and "late" not in "".join(events)
    await until(lambda: daemon.state.router.dropped_frames == 3)
    await quiet(daemon)
    await others_served(daemon, http)


async def test_answers_are_relayed_in_arrival_order_whatever_their_chunk_index(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url)
    invoke, response = await start_stream(http, daemon.url, agent, "a")
    await agent.send(chunk(invoke["id"], "c", 5))
    await agent.send(chunk(invoke["id"], "b", 1, finish="stop"))
    events = await rest_of(response)
    texts = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert texts[:2] == ["c", "b"] and events[-1] == "data: [DONE]"
    await quiet(daemon)


async def test_a_request_id_answered_twice_reaches_its_client_once(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, _ = await raw_agent_at(http, daemon.url)
    requests = [
        asyncio.create_task(http.post(daemon.url + CHAT, json=chat("raw", stream=False)))
        for _ in range(2)
    ]
    first = await next_of(agent, "model_invoke")
    second = await next_of(agent, "model_invoke")
    assert first["id"] != second["id"]  # the daemon never reuses an id

    def result(rid: str, text: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"type": "model_result", "id": rid, "status": "ok", "result": {"choices": [choice]}}

    await agent.send(result(first["id"], "first"))
    await agent.send(result(first["id"], "first again"))
    await agent.send(result(second["id"], "second"))
    replies = []
    for request in requests:
        async with await request as response:
            replies.append((await response.json())["choices"][0]["message"]["content"])
    assert sorted(replies) == ["first", "second"]
    await until(lambda: daemon.state.router.dropped_frames == 1)
    await quiet(daemon)


async def test_resuming_on_a_new_connection_mid_stream_fails_the_old_stream_and_serves_on(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon)
    agent, granted = await raw_agent_at(http, daemon.url)
    _, response = await start_stream(http, daemon.url, agent)
    again, resumed = await raw_agent_at(http, daemon.url, session_token=granted["session_token"])
    assert resumed["session_id"] == granted["session_id"]
    assert await agent.closed() == 1000
    assert [code_of(e) for e in await rest_of(response, timeout=2)] == ["agent_disconnected"]
    invoke, response = await start_stream(http, daemon.url, again, "back")
    await again.send(chunk(invoke["id"], "", 1, finish="stop"))
    assert (await rest_of(response))[-1] == "data: [DONE]"
    await quiet(daemon)
    await again.ws.close()


async def test_an_agent_slower_than_its_client_is_relayed_chunk_by_chunk(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await with_echo(start_daemon, idle_timeout=1.0)
    agent, _ = await raw_agent_at(http, daemon.url)
    invoke, response = await start_stream(http, daemon.url, agent, "w0")
    for i in range(1, 5):
        await asyncio.sleep(0.1)  # the agent's pace, well inside idle_timeout
        await agent.send(chunk(invoke["id"], f" w{i}", i))
        event = await response.content.readuntil(b"\n\n")  # each arrives before the next
        assert f" w{i}" in event.decode()
    await agent.send(chunk(invoke["id"], "", 5, finish="stop"))
    assert (await rest_of(response))[-1] == "data: [DONE]"
    await quiet(daemon)
