"""The router pairs each HTTP call with an agent session and settles it exactly once.

It picks a session, sends ``model_invoke``, hands the caller the agent's frames as they arrive
(no buffering), and on every way out (answer, agent error, timeout, agent gone, session ended,
client gone) frees the slot and, unless the agent already finished, sends ``model_cancel``.
No aiohttp here: the agent side is reached through ``AgentLink``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any

import structlog

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import (
    Call,
    CallRecord,
    Failure,
    Timeouts,
    is_terminal,
)
from mcp_local_provider.core.protocol import (
    AnswerFrame,
    Frame,
    ModelResult,
    invoke_frame,
    model_cancel_frame,
)
from mcp_local_provider.core.registry import Registry, Session
from mcp_local_provider.core.selection import Throttle, unthrottled
from mcp_local_provider.core.selection import candidates as select

log = structlog.get_logger("mcp_local_provider.router")


class Frames:
    """A call's frames, as ``router.open`` hands them out: an async iterator, and ``ready()``
    says whether the next one has already arrived, so a writer can take every frame that is
    waiting at once, never waiting for more."""

    __slots__ = ("_frames", "_queue")

    def __init__(
        self, frames: AsyncIterator[AnswerFrame], queue: asyncio.Queue[AnswerFrame | Failure]
    ) -> None:
        self._frames = frames
        self._queue = queue

    def __aiter__(self) -> Frames:
        return self

    def __anext__(self) -> Awaitable[AnswerFrame]:
        return self._frames.__anext__()

    def ready(self) -> bool:
        """The next frame (or the error that ends the call) is here: taking it does not wait."""
        return not self._queue.empty()


class Router:
    """Pairs calls with sessions. Its collaborators come in through the constructor:

    - ``checks`` see each call before anything else (input limits, audit health) and may
      raise a ProviderError to refuse it; they must not block;
    - ``observers`` receive each settled call (metrics, rate limits); they must not raise or
      block;
    - ``throttle`` holds the per-session rate limits (None: none), and ``queue_limit`` the
      calls that may wait for a busy session, per connected candidate session (None: any);
    - ``max_buffered`` bounds the bytes of answer held for a caller that is not reading.
    """

    def __init__(
        self,
        registry: Registry,
        timeouts: Timeouts,
        *,
        checks: Iterable[Callable[[Call], None]] = (),
        observers: Iterable[Callable[[CallRecord], None]] = (),
        throttle: Throttle | None = None,
        queue_limit: int | None = None,
        max_buffered: int = 16 * 1024 * 1024,
    ) -> None:
        self.registry = registry
        self.timeouts = timeouts
        #: Bytes of answer a call may hold for a caller that is not taking them; past it the
        #: caller counts as gone (it stopped reading) and the agent is told to stop.
        self.max_buffered = max_buffered
        self._checks = tuple(checks)
        self._observers = tuple(observers)
        self.throttle = throttle
        self.queue_limit = queue_limit
        self._pending: dict[str, CallRecord] = {}
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False
        self.dropped_frames = 0
        self.waiting = 0

    # -- what the rest of the daemon tells the router ------------------------------------

    def sessions_changed(self) -> None:
        """Wake calls waiting for a session to connect or a slot to free."""
        self._changed.set()
        self._changed = asyncio.Event()

    def deliver(self, session: Session, frame: AnswerFrame, size: int = 0) -> bool:
        """Route one frame (``size`` bytes on the wire) from ``session``'s agent to its call.
        False if it was dropped."""
        pending = self._pending.get(frame.id)
        if pending is None or pending.session is not session or pending.done:
            self.dropped_frames += 1
            return False
        if pending.buffered + size > self.max_buffered:
            self._overflow(pending)
            return False
        if is_terminal(frame):
            pending.done = True
            pending.last_frame_at = time.monotonic()
        pending.buffered += size
        pending.sizes.append(size)
        pending.queue.put_nowait(frame)
        return True

    def _overflow(self, pending: CallRecord) -> None:
        """The caller stopped taking the answer: drop what is queued and stop the agent."""
        log.info(
            "caller_not_reading",
            call_id=pending.call.request_id,
            buffered=pending.buffered,
            limit=self.max_buffered,
        )
        while not pending.queue.empty():
            pending.queue.get_nowait()
        pending.sizes.clear()
        pending.buffered = 0
        pending.done = True
        pending.failure = errors.ClientGone("the client stopped reading the answer")
        pending.queue.put_nowait(Failure(pending.failure))
        self._spawn(self._cancel(pending.session, pending.call.request_id, "client_disconnected"))

    def fail_session(self, session: Session, error: errors.ProviderError) -> None:
        """End every call in flight on ``session`` at once with ``error``."""
        for pending in list(self._pending.values()):
            if pending.session is session and not pending.done:
                pending.done = True
                pending.failure = error
                pending.queue.put_nowait(Failure(error))  # wakes a caller waiting for a frame

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def in_flight_for(self, session: Session) -> list[str]:
        return [rid for rid, p in self._pending.items() if p.session is session]

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the calls in flight to finish."""
        with suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()

    # -- the caller's side -----------------------------------------------------------------

    @asynccontextmanager
    async def open(self, call: Call) -> AsyncIterator[Frames]:
        """Send ``call`` to a session and yield its frames; always settles the call."""
        for check in self._checks:
            check(call)
        if self.closing:
            raise errors.ShuttingDown("the daemon is shutting down")
        queued = time.monotonic()
        deadline = queued + self.timeouts.total
        session = await self._acquire(call, deadline)
        structlog.contextvars.bind_contextvars(session_id=session.id)
        pending = CallRecord(call, session)
        pending.queued_at = queued
        self._pending[call.request_id] = pending
        self._idle.clear()
        request = call.request
        if request is not None and request.pending is None:
            request.pending = pending
        try:
            try:
                frame = invoke_frame(
                    call.request_id, session.id, session.label, call.scope, call.payload
                )
                await self._send(session, frame)
            except errors.ProviderError as exc:
                pending.outcome = exc.code
                pending.done = True
                raise
            try:
                yield Frames(self._events(pending, deadline), pending.queue)
            except errors.ProviderError as exc:
                # Also a failure after the agent's last frame (its answer did not translate).
                pending.outcome = exc.code
                raise
        finally:
            self._settle(pending)

    async def _send(self, session: Session, frame: Frame) -> None:
        link = session.link
        if link is None:
            raise errors.AgentDisconnected("the agent disconnected before the request was sent")
        try:
            await link.send(frame)
        except (ConnectionError, RuntimeError) as exc:
            raise errors.AgentDisconnected(f"could not reach the agent: {exc}") from None

    async def _events(self, pending: CallRecord, deadline: float) -> AsyncIterator[AnswerFrame]:
        timeouts = self.timeouts
        wait, phase = timeouts.first_chunk, "first_chunk"
        queue = pending.queue
        while True:
            if pending.failure is not None:
                # Cut by the daemon: the error goes out now, not after a backlog of frames a
                # slow reader has yet to take (a shutdown would otherwise cut it unsaid).
                pending.outcome = pending.failure.code
                raise pending.failure
            if queue.empty():
                left = deadline - time.monotonic()
                budget = min(wait, left)
                try:
                    async with asyncio.timeout(budget):
                        item = await queue.get()
                except TimeoutError:
                    if left <= wait:
                        phase = "total"
                    pending.cancel_reason = "timeout"
                    pending.outcome = "timeout"
                    pending.timeout_phase = phase
                    raise errors.AgentTimeout(
                        f"the agent did not answer in time ({phase} timeout)", phase=phase
                    ) from None
            else:
                item = queue.get_nowait()
            if not isinstance(item, Failure) and pending.sizes:
                pending.buffered -= pending.sizes.popleft()
            if isinstance(item, Failure):
                pending.outcome = item.error.code
                raise item.error
            if pending.first_event_at is None:
                pending.first_event_at = time.monotonic()
            pending.frames += 1
            if isinstance(item, ModelResult):
                if item.status == "error":
                    pending.outcome = "agent_error"
                    error = item.error or {}
                    raise errors.AgentFailed(
                        str(error.get("message") or "the agent reported an error")[:2000]
                    )
                usage = (item.result or {}).get("usage")
                pending.usage = usage if isinstance(usage, dict) else None
            elif item.usage is not None:
                pending.usage = item.usage
            yield item
            if is_terminal(item):
                pending.outcome = "ok"
                return
            wait, phase = timeouts.idle, "idle"

    def _settle(self, pending: CallRecord) -> None:
        rid = pending.call.request_id
        self._pending.pop(rid, None)
        pending.ended = time.monotonic()
        if pending.outcome is None:
            # A failure the caller never read (it was cancelled first) is still the outcome.
            failure = pending.failure
            pending.outcome = "client_disconnected" if failure is None else failure.code
        session = pending.session
        session.in_flight -= 1
        if not pending.done:
            pending.done = True
            if session.link is not None:
                self._spawn(self._cancel(session, rid, pending.cancel_reason))
        if not self._pending:
            self._idle.set()
        self.sessions_changed()
        for observe in self._observers:
            observe(pending)

    async def _cancel(self, session: Session, request_id: str, reason: str) -> None:
        link = session.link
        if link is not None:
            with suppress(ConnectionError, RuntimeError):
                await link.send(model_cancel_frame(request_id, reason))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- choosing a session ----------------------------------------------------------------

    async def _acquire(self, call: Call, deadline: float) -> Session:
        """Pick a connected session with a free slot, waiting within the limits if needed."""
        first_chunk_end = min(deadline, time.monotonic() + self.timeouts.first_chunk)
        while True:
            candidates = select(self.registry, call)
            connected = [s for s in candidates if s.connected]
            if self.throttle is not None and connected:
                connected = unthrottled(connected, self.throttle)
            free = [s for s in connected if s.has_free_slot()]
            if free:
                session = min(free, key=lambda s: (s.in_flight / s.max_concurrency, s.requests))
                session.in_flight += 1
                session.requests += 1
                if self.throttle is not None:
                    self.throttle.take(session)
                return session
            now = time.monotonic()
            limit = self.queue_limit
            if connected and limit is not None and self.waiting >= limit * len(connected):
                raise errors.RateLimited(
                    "every matching agent session is busy and its wait queue is full",
                    retry_after=1.0,
                )
            error: errors.ProviderError
            if connected:
                until = first_chunk_end
                error = errors.AgentTimeout("every matching agent session is busy", phase="queue")
            else:
                until = now + self._grace_left(candidates)
                error = errors.NoActiveSession(
                    "no agent is connected right now; its session is active, so it may reconnect"
                )
            if now >= until:
                raise error
            changed = self._changed
            self.waiting += 1
            try:
                with suppress(TimeoutError):
                    async with asyncio.timeout(until - now):
                        await changed.wait()
            finally:
                self.waiting -= 1

    def _grace_left(self, away: list[Session]) -> float:
        """Seconds until the last of ``away`` has been gone for ``reconnect_grace``: how long
        a call may still wait for one of them to come back."""
        grace = self.timeouts.reconnect_grace
        wall = self.registry.clock()
        return max(0.0 if s.away_since is None else s.away_since + grace - wall for s in away)
