"""Serving the requests of one agent connection: one task per ``model_invoke``, at most the
granted number at once, each answer sent frame by frame as the backend yields events."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import aiohttp
import structlog

from mcp_local_provider.agent.answer import AnswerFrames, finished
from mcp_local_provider.agent.backend import Backend, BackendError
from mcp_local_provider.agent.emulation import closing
from mcp_local_provider.agent.events import Embeddings, Finish, InvokeRequest
from mcp_local_provider.agent.quota import retry_after_of
from mcp_local_provider.core.protocol import AnswerFrame, Frame, ModelInvoke, encode

log = structlog.get_logger("mcp_local_provider.agent")


class _Gone(Exception):
    """A frame could not be sent: the connection is closed."""


class RequestRunner:
    """The requests in flight on an agent's connection; ``cancel`` closes the backend's stream."""

    def __init__(self, backend: Backend, max_concurrency: int) -> None:
        self.backend = backend
        #: Requests answered (a finish or an error sent) and requests cancelled.
        self.served = 0
        self.cancelled = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_concurrency)
        backend.limit(max_concurrency)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def limit(self, concurrency: int) -> None:
        """Serve at most ``concurrency`` requests at once from now on (the granted limit)."""
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.backend.limit(max(1, concurrency))

    def start(self, ws: aiohttp.ClientWebSocketResponse, frame: ModelInvoke) -> None:
        try:
            request = InvokeRequest.from_invoke(frame)
        except (TypeError, ValueError) as exc:
            log.warning("agent_bad_invoke", error=str(exc))
            return
        if request.id in self._tasks:
            log.warning("agent_duplicate_invoke", request_id=request.id)
            return
        task = asyncio.create_task(self._handle(ws, request))
        self._tasks[request.id] = task

        def forget(_: asyncio.Task[None]) -> None:
            self._tasks.pop(request.id, None)

        task.add_done_callback(forget)

    def cancel(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()

    async def cancel_all(self) -> None:
        """Cancel the requests in flight and wait until each has cleaned up (even if this
        wait is itself cancelled: a backend's clean-up stops processes)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, request: InvokeRequest) -> None:
        frames = AnswerFrames(request.id)
        try:
            async with self._slots:
                await self._answer(ws, request, frames)
        except asyncio.CancelledError:
            self.cancelled += 1
            log.info("agent_request_cancelled", request_id=request.id)
            raise
        except _Gone:
            return
        except BackendError as exc:
            await _send_quietly(ws, frames.error(exc.code, exc.message, retry_after_of(exc)))
        except Exception as exc:
            log.exception("backend_failed", request_id=request.id)
            await _send_quietly(ws, frames.error("backend_error", f"{type(exc).__name__}: {exc}"))
        self.served += 1

    async def _answer(
        self, ws: aiohttp.ClientWebSocketResponse, request: InvokeRequest, frames: AnswerFrames
    ) -> None:
        """Send each event as it comes; the answer ends at a Finish or Embeddings event.

        When the editor asked for one answer (not a stream), the daemon waits for the whole
        of it anyway: each chunk then waits for the next event, so that the last one carries
        the finish with it and a one-piece answer crosses the socket as one frame, not two.
        """
        held: AnswerFrame | None = None
        hold = not request.stream
        async with closing(self.backend.serve(request)) as events:
            async for event in events:
                if held is not None and isinstance(event, Finish):
                    await _send(ws, finished(held, event.reason, event.usage))
                    return
                frame = frames.frame(event)
                if held is not None and frame is not None:
                    await _send(ws, held)
                    held = None
                if frame is not None:
                    if hold and not isinstance(event, Finish | Embeddings):
                        held = frame
                    else:
                        await _send(ws, frame)
                if isinstance(event, Finish | Embeddings):
                    return
        if held is not None:
            await _send(ws, finished(held, "stop", None))
            return
        await _send(ws, frames.chunk({}, "stop"))


async def _send(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    try:
        await ws.send_str(encode(frame))
    except (ConnectionError, RuntimeError) as exc:
        raise _Gone(str(exc)) from None


async def _send_quietly(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    with suppress(_Gone):
        await _send(ws, frame)
