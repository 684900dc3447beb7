"""``ticking``: keep-alive ticks while the agent is silent, without losing or cancelling the
frame being waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from mcp_local_provider.core.protocol import AnswerFrame, ModelStreamChunk
from mcp_local_provider.http.streaming import ticking


def chunk(text: str) -> ModelStreamChunk:
    return ModelStreamChunk(type="model_stream_chunk", id="r", delta={"content": text})


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
