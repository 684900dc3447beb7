"""The router pairs each HTTP call with an agent session and settles it exactly once.

It picks a session, sends ``model_invoke``, hands the caller the agent's frames as they arrive
(no buffering), and on every way out (answer, agent error, timeout, agent gone, session ended,
client gone) frees the slot and, unless the agent already finished, sends ``model_cancel``.
No aiohttp here: the agent side is reached through ``AgentLink``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from . import errors
from .context import call_id
from .models import NO_SESSION, session_can
from .protocol import ModelResult, ModelStreamChunk, model_cancel_frame
from .registry import Registry, Session, SessionState


@dataclass(frozen=True)
class Timeouts:
    first_chunk: float
    idle: float
    total: float
    reconnect_grace: float


@dataclass
class Call:
    """One HTTP request, in the agent protocol's terms."""

    kind: str  # "chat" | "completion" | "embedding"
    model: str
    payload: dict[str, Any]
    stream: bool = False
    scope: str = "inference"
    #: Capabilities the serving session must declare for ``model`` (see models.py).
    needs: tuple[str, ...] = ()
    session_hint: str | None = None
    request_id: str = field(default_factory=call_id)


Event = ModelStreamChunk | ModelResult


class Throttle(Protocol):
    """Rate limits the router consults when it gives a session a request."""

    def delay(self, session: Session) -> float:
        """0 if ``session`` may take a request now, else the seconds until it may."""
        ...

    def take(self, session: Session) -> None:
        """``session`` was given a request."""
        ...

    def headers(self, session: Session) -> dict[str, str]:
        """Response headers describing ``session``'s limits (``X-RateLimit-*``)."""
        ...


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: errors.ProviderError) -> None:
        self.error = error


class Pending:
    """A call in flight: the queue the agent's frames land in, and how it ended.

    Observers (metrics, audit) receive it once, when the call is settled.
    """

    __slots__ = (
        "call",
        "cancel_reason",
        "done",
        "ended",
        "first_event_at",
        "frames",
        "last_frame_at",
        "outcome",
        "queue",
        "queued",
        "session",
        "started",
        "timeout_phase",
        "usage",
    )

    def __init__(self, call: Call, session: Session) -> None:
        self.call = call
        self.session = session
        self.queue: asyncio.Queue[Event | _Failure] = asyncio.Queue()
        self.done = False  # the agent sent its last frame, or the call was failed
        self.cancel_reason = "client_disconnected"
        self.started = time.monotonic()  # when the session was chosen, just before the invoke
        self.queued = self.started  # when the call began looking for a session (set by open)
        self.first_event_at: float | None = None
        #: When the agent's final frame reached the daemon (None if it never did).
        self.last_frame_at: float | None = None
        self.ended: float | None = None
        self.frames = 0
        self.usage: dict[str, Any] | None = None
        #: "ok", an error code ("timeout", "agent_error", "agent_disconnected",
        #: "session_ended", "shutting_down"), or "client_disconnected".
        self.outcome: str | None = None
        #: For a "timeout" outcome: "first_chunk", "idle" or "total".
        self.timeout_phase: str | None = None


def is_terminal(event: Event) -> bool:
    return isinstance(event, ModelResult) or event.finish_reason is not None


class Router:
    def __init__(self, registry: Registry, timeouts: Timeouts) -> None:
        self.registry = registry
        self.timeouts = timeouts
        self._pending: dict[str, Pending] = {}
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False
        self.dropped_frames = 0
        #: Called with each settled call (see ``Pending``); must not raise or block.
        self.observers: list[Callable[[Pending], None]] = []
        #: Called with each call before anything else (input limits, audit health); may raise
        #: a ProviderError to refuse it. Must not block.
        self.checks: list[Callable[[Call], None]] = []
        #: Called with each call once it has a session, before the agent is asked.
        self.started: list[Callable[[Pending], None]] = []
        #: Per-session rate limits; None: none.
        self.throttle: Throttle | None = None
        #: Calls that may wait for a busy session, per connected candidate session; None: any.
        self.queue_limit: int | None = None
        self.waiting = 0

    # -- what the rest of the daemon tells the router ------------------------------------

    def sessions_changed(self) -> None:
        """Wake calls waiting for a session to connect or a slot to free."""
        self._changed.set()
        self._changed = asyncio.Event()

    def deliver(self, session: Session, frame: Event) -> bool:
        """Route one frame from ``session``'s agent to its call. False if it was dropped."""
        pending = self._pending.get(frame.id)
        if pending is None or pending.session is not session or pending.done:
            self.dropped_frames += 1
            return False
        if is_terminal(frame):
            pending.done = True
            pending.last_frame_at = time.monotonic()
        pending.queue.put_nowait(frame)
        return True

    def fail_session(self, session: Session, error: errors.ProviderError) -> None:
        """End every call in flight on ``session`` at once with ``error``."""
        for pending in list(self._pending.values()):
            if pending.session is session and not pending.done:
                pending.done = True
                pending.queue.put_nowait(_Failure(error))

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
    async def open(self, call: Call) -> AsyncIterator[AsyncIterator[Event]]:
        """Send ``call`` to a session and yield its frames; always settles the call."""
        for check in self.checks:
            check(call)
        if self.closing:
            raise errors.ShuttingDown("the daemon is shutting down")
        queued = time.monotonic()
        deadline = queued + self.timeouts.total
        session = await self._acquire(call, deadline)
        structlog.contextvars.bind_contextvars(session_id=session.id)
        pending = Pending(call, session)
        pending.queued = queued
        self._pending[call.request_id] = pending
        self._idle.clear()
        try:
            for start in self.started:
                start(pending)
            try:
                await self._send(session, self._invoke_frame(call, session))
            except errors.ProviderError as exc:
                pending.outcome = exc.code
                pending.done = True
                raise
            try:
                yield self._events(pending, deadline)
            except errors.ProviderError as exc:
                # Also a failure after the agent's last frame (its answer did not translate).
                pending.outcome = exc.code
                raise
        finally:
            self._settle(pending)

    def _invoke_frame(self, call: Call, session: Session) -> dict[str, Any]:
        return {
            "type": "model_invoke",
            "id": call.request_id,
            "session_id": session.id,
            "model_meta": {
                "provider": "mcp-local-provider",
                "label": session.label,
                "requested_scopes": [call.scope],
            },
            "payload": call.payload,
        }

    async def _send(self, session: Session, frame: dict[str, Any]) -> None:
        link = session.link
        if link is None:
            raise errors.AgentDisconnected("the agent disconnected before the request was sent")
        try:
            await link.send(frame)
        except (ConnectionError, RuntimeError) as exc:
            raise errors.AgentDisconnected(f"could not reach the agent: {exc}") from None

    async def _events(self, pending: Pending, deadline: float) -> AsyncIterator[Event]:
        timeouts = self.timeouts
        wait, phase = timeouts.first_chunk, "first_chunk"
        queue = pending.queue
        while True:
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
            if isinstance(item, _Failure):
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

    def _settle(self, pending: Pending) -> None:
        rid = pending.call.request_id
        self._pending.pop(rid, None)
        pending.ended = time.monotonic()
        if pending.outcome is None:
            pending.outcome = "client_disconnected"
        session = pending.session
        session.in_flight -= 1
        if not pending.done:
            pending.done = True
            if session.link is not None:
                self._spawn(self._cancel(session, rid, pending.cancel_reason))
        if not self._pending:
            self._idle.set()
        self.sessions_changed()
        for observe in self.observers:
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
        grace_end = time.monotonic() + self.timeouts.reconnect_grace
        first_chunk_end = min(deadline, time.monotonic() + self.timeouts.first_chunk)
        while True:
            candidates = self._candidates(call)
            connected = [s for s in candidates if s.connected]
            if self.throttle is not None and connected:
                connected = self._unthrottled(connected, self.throttle)
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
                until = grace_end
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

    @staticmethod
    def _unthrottled(sessions: list[Session], throttle: Throttle) -> list[Session]:
        """The sessions under their rate limits; RateLimited if none is."""
        delays = [(throttle.delay(s), s) for s in sessions]
        ready = [s for wait, s in delays if wait <= 0]
        if not ready:
            wait, soonest = min(delays, key=lambda pair: pair[0])
            raise errors.RateLimited(
                "the agent session's rate limit is reached; retry after "
                f"{max(1, int(wait + 0.999))} s",
                retry_after=wait,
                headers=throttle.headers(soonest),
            )
        return ready

    def _candidates(self, call: Call) -> list[Session]:
        now = self.registry.clock()
        active = [
            s
            for s in self.registry.in_state(SessionState.ACTIVE)
            if s.expires_at is None or s.expires_at > now  # the sweeper may not have run yet
        ]
        if call.session_hint is not None:
            hinted = [s for s in active if s.id == call.session_hint]
            if not hinted:
                raise errors.NotFound(
                    f"session {call.session_hint!r} is not an active session",
                    param="X-MCP-Session",
                )
            active = hinted
        if not active:
            raise errors.NoActiveSession(NO_SESSION)
        serving = [s for s in active if s.serves(call.model)]
        if not serving:
            raise errors.ModelNotFound(f"model {call.model!r} is not served by an active session")
        scoped = [s for s in serving if call.scope in s.scopes]
        if not scoped:
            raise errors.ScopeNotGranted(
                f"no active agent session serving {call.model!r} was granted the "
                f"{call.scope!r} scope"
            )
        for needed in call.needs:
            scoped = [s for s in scoped if session_can(s, call.model, needed)]
            if not scoped:
                raise errors.Unsupported(
                    f"no active agent session declares the {needed!r} capability for "
                    f"{call.model!r}",
                    param="model",
                )
        usable = [s for s in scoped if not s.exhausted]
        if not usable:
            raise errors.LimitReached("every matching agent session has used up its max_requests")
        return usable
