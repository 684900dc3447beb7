"""Streaming to the client: keep-alive ticks while the agent is silent (without losing or
cancelling the frame being waited for), every frame written as soon as it is here, and frames
that arrived together written together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Failure
from mcp_local_provider.core.protocol import AnswerFrame, ModelStreamChunk
from mcp_local_provider.core.router import Frames
from mcp_local_provider.http.state import STATE
from mcp_local_provider.http.streaming import relay, ticking
from tests.fakes import Daemon, RawAgent, until


def chunk(text: str, finish: str | None = None) -> ModelStreamChunk:
    return ModelStreamChunk(
        type="model_stream_chunk", id="r", delta={"content": text}, finish_reason=finish
    )


async def test_silence_yields_ticks_and_the_frame_still_arrives() -> None:
    release = asyncio.Event()

    async def frames() -> AsyncIterator[AnswerFrame]:
        yield chunk("a")
        await release.wait()
        yield chunk("b")

    seen: list[str | None] = []
    async for item in ticking(frames(), interval=0.01):
        seen.append(None if item is None else item.delta["content"])
        if seen.count(None) == 2:
            release.set()
    assert seen[0] == "a" and seen[-1] == "b"
    assert seen.count(None) >= 2


async def test_abandoning_the_stream_cancels_the_wait() -> None:
    cancelled = asyncio.Event()

    async def frames() -> AsyncIterator[AnswerFrame]:
        try:
            await asyncio.Event().wait()
            yield chunk("never")
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ticks = ticking(frames(), interval=0.01)
    assert await anext(ticks) is None
    await ticks.aclose()
    assert cancelled.is_set()


def chunk_frame(request_id: str, text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "type": "model_stream_chunk",
        "id": request_id,
        "delta": {"content": text},
        "finish_reason": finish,
    }


async def test_each_chunk_reaches_the_client_before_the_agent_sends_the_next(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    agent: RawAgent = await raw_agent(daemon)
    assert (await agent.hello())["type"] == "session_pending"
    assert (await agent.recv())["type"] == "session_granted"
    body = {"model": "raw", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    request = asyncio.create_task(http.post(daemon.url + "/v1/chat/completions", json=body))
    invoke = await agent.recv()
    await agent.send(chunk_frame(invoke["id"], "first"))
    response = await asyncio.wait_for(request, 5)
    seen = b""
    for word in ("first", "second", "third"):
        if word != "first":
            await agent.send(chunk_frame(invoke["id"], word))
        # The relay never waits for a further frame before writing the one it has.
        while word.encode() not in seen:
            seen += await asyncio.wait_for(response.content.readany(), 5)
    await agent.send(chunk_frame(invoke["id"], "", finish="stop"))
    seen += await asyncio.wait_for(response.content.read(), 5)
    assert seen.endswith(b"data: [DONE]\n\n")


class CommaReply:
    """Each frame's text and a comma; ``end`` at the end."""

    media_type = "text/plain"
    keepalive = b""

    def encode(self, frame: AnswerFrame) -> bytes:
        assert isinstance(frame, ModelStreamChunk)
        return str(frame.delta["content"]).encode() + b","

    def finish(self) -> bytes:
        return b"end"

    def fail(self, error: errors.ProviderError) -> bytes:
        return b"error"

    def add(self, frame: AnswerFrame) -> None:
        raise AssertionError("streamed only")

    def body(self) -> Any:
        raise AssertionError("streamed only")


async def test_frames_already_waiting_go_out_in_one_write(
    monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any
) -> None:
    queue: asyncio.Queue[AnswerFrame | Failure] = asyncio.Queue()
    burst = [chunk(str(i)) for i in range(20)]

    async def frames() -> AsyncIterator[AnswerFrame]:
        while True:
            item = await queue.get()
            assert isinstance(item, ModelStreamChunk)
            yield item
            if item.finish_reason is not None:
                return

    async def handler(request: web.Request) -> web.StreamResponse:
        for frame in burst:  # the agent's burst arrived before the relay ran
            queue.put_nowait(frame)
        return await relay(request, Frames(frames(), queue), CommaReply())

    writes: list[bytes] = []
    original = web.StreamResponse.write

    async def counted(self: web.StreamResponse, data: bytes) -> None:
        writes.append(bytes(data))
        await original(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", counted)
    app = web.Application()
    # The relay reads only the write timeout from the daemon's state.
    app[STATE] = cast(Any, SimpleNamespace(config=SimpleNamespace(idle_timeout=5.0)))
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    reader = asyncio.create_task(client.get("/"))
    await until(lambda: len(writes) == 1)
    assert writes == [b"".join(f"{i},".encode() for i in range(20))]
    queue.put_nowait(chunk("last", finish="stop"))
    response = await asyncio.wait_for(reader, 5)
    assert await response.text() == "".join(f"{i}," for i in range(20)) + "last,end"
    assert writes[1:] == [b"last,end"]  # the ending went out with the frame that ended it
