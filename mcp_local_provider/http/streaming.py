"""Relaying an agent's frames to an HTTP client as a stream: each frame written as soon as it is
here, frames that arrived together in one write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

import structlog
from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import is_terminal
from mcp_local_provider.core.protocol import AnswerFrame
from mcp_local_provider.core.router import Frames
from mcp_local_provider.http.state import STATE
from mcp_local_provider.translate.common import Reply

log = structlog.get_logger("mcp_local_provider.relay")
#: Frames already waiting are joined into writes of about this many bytes at most.
BATCH_BYTES = 64 * 1024


async def ticking(
    frames: AsyncIterator[AnswerFrame], interval: float
) -> AsyncIterator[AnswerFrame | None]:
    """``frames``, with a None each time ``interval`` seconds pass without one. The wait for
    the next frame is never cancelled by a tick, only when the stream is abandoned."""
    iterator = aiter(frames)
    waiting: asyncio.Future[AnswerFrame] | None = None
    try:
        while True:
            if waiting is None:
                waiting = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({waiting}, timeout=interval)
            if not done:
                yield None
                continue
            arrived, waiting = waiting, None
            try:
                frame = arrived.result()
            except StopAsyncIteration:
                return
            yield frame
    finally:
        if waiting is not None:
            waiting.cancel()
            with suppress(BaseException):
                await waiting


async def relay(
    request: web.Request, frames: AsyncIterator[AnswerFrame], reply: Reply
) -> web.StreamResponse:
    """Stream ``frames`` to the client as ``reply`` encodes them.

    The status line is sent with the first frame, so a failure before it (no agent, timeout,
    agent error) still gets a proper HTTP error. A failure after it is written in-band with
    ``reply.fail`` and the stream is closed without its normal ending. With a
    ``reply.keepalive``, those bytes are written whenever the agent is silent for
    ``stream_ping_interval``.

    Each frame is written as soon as the relay has it. When ``frames`` are the router's
    ``Frames`` and more frames are already waiting (an agent sent a burst), they go out in
    the same write, with the stream's ending if it came too: one write instead of one each,
    and never a wait for frames that have not arrived.
    """
    encode, keepalive = reply.encode, reply.keepalive
    response: web.StreamResponse | None = None
    incoming: AsyncIterator[AnswerFrame | None] = frames
    ready = frames.ready if isinstance(frames, Frames) else None
    if keepalive:
        incoming = ticking(frames, request.app[STATE].config.stream_ping_interval)
    out: list[bytes] = []  # encoded, not yet written
    try:
        async for frame in incoming:
            if frame is None:
                if response is not None:
                    await _write(request, response, keepalive)
                continue
            if response is None:
                response = web.StreamResponse(
                    headers={
                        "Content-Type": reply.media_type,
                        "Cache-Control": "no-cache",
                        "X-Accel-Buffering": "no",
                    }
                )
                await response.prepare(request)
            out.append(encode(frame))
            if ready is not None:
                # The router's frames: those already here go out with this one (up to
                # BATCH_BYTES a write), and the last one waits for the stream's ending, which
                # follows it at once.
                size = len(out[-1])
                while not is_terminal(frame) and size < BATCH_BYTES and ready():
                    frame = await anext(frames)
                    out.append(encode(frame))
                    size += len(out[-1])
                if is_terminal(frame):
                    continue
            data = _take(out)
            if data:  # a frame may have nothing to show yet (a tool-call fragment, say)
                await _write(request, response, data)
        if response is None:  # pragma: no cover - the router always ends with a frame or error
            raise errors.AgentFailed("the agent ended the request without an answer")
        out.append(reply.finish())
        await _write(request, response, _take(out))
    except errors.ProviderError as exc:
        if response is None:
            raise
        out.append(reply.fail(exc))
        await response.write(_take(out))
        if isinstance(exc, errors.ShuttingDown):
            await response.write_eof()
            # The process is about to exit: wait (while the server lets this handler run)
            # until the error has left for the client, so a slow reader gets it too.
            await _flushed(request)
            return response
    except (ConnectionError, asyncio.CancelledError):
        raise  # the client went away: nothing more can be written
    except Exception:
        if response is None:
            raise
        # The status line is out: a second response cannot follow, so say it in-band.
        log.exception("relay_failed", path=request.path)
        out.append(reply.fail(errors.AgentFailed("the agent's answer was malformed")))
        await response.write(_take(out))
    await response.write_eof()
    return response


async def _write(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    """Write ``data``; a client that takes none of it for ``idle_timeout`` seconds is gone
    (it stopped reading): its connection is dropped rather than held open for ever."""
    try:
        async with asyncio.timeout(request.app[STATE].config.idle_timeout):
            await response.write(data)
    except TimeoutError:
        log.info("client_not_reading", path=request.path)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client stopped reading") from None


async def _flushed(request: web.Request, poll: float = 0.01) -> None:
    """Wait until everything written to ``request``'s connection was handed to the OS."""
    transport = request.transport
    while transport is not None and not transport.is_closing():
        if transport.get_write_buffer_size() == 0:
            return
        await asyncio.sleep(poll)


def _take(parts: list[bytes]) -> bytes:
    """The bytes in ``parts``, joined, leaving it empty."""
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    parts.clear()
    return data
