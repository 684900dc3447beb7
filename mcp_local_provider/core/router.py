"""The router pairs each HTTP call with an agent session and settles it exactly once.

It picks a session, sends ``model_invoke``, hands the caller the agent's frames as they arrive
(no buffering), and on every way out (answer, agent error, timeout, agent gone, session ended,
client gone) frees the slot and, unless the agent already finished, sends ``model_cancel``.
No aiohttp here: the agent side is reached through ``AgentLink``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import (
    Call,
    CallRecord,
    Failure,
    Timeouts,
    is_terminal,
)
from mcp_local_provider.core.held import ToolCallOwners
from mcp_local_provider.core.protocol import (
    AnswerFrame,
    Frame,
    ModelResult,
    invoke_frame,
    model_cancel_frame,
)
from mcp_local_provider.core.refusal import Refusal, cooldown, refusal_of
from mcp_local_provider.core.registry import Registry, Session
from mcp_local_provider.core.selection import Choice, Throttle, unthrottled
from mcp_local_provider.core.selection import candidates as select

log = structlog.get_logger("mcp_local_provider.router")


class Waiting(Protocol):
    """Where a call's next frame waits: its queue (or the route that knows its queue)."""

    def empty(self) -> bool: ...


class Frames:
    """A call's frames, as ``router.open`` hands them out: an async iterator, and ``ready()``
    says whether the next one has already arrived, so a writer can take every frame that is
    waiting at once, never waiting for more."""

    __slots__ = ("_frames", "_queue")

    def __init__(self, frames: AsyncIterator[AnswerFrame], queue: Waiting) -> None:
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
    - ``max_buffered`` bounds the bytes of answer held for a caller that is not reading;
    - ``failover`` says how a call that fails before its first frame is given to another
      session or a fallback model, how refused sessions cool down, and how a session is picked.
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
        failover: Failover | None = None,
        on_failover: Iterable[Callable[[CallRecord, str], None]] = (),
    ) -> None:
        self.registry = registry
        self.timeouts = timeouts
        #: Bytes of answer a call may hold for a caller that is not taking them; past it the
        #: caller counts as gone (it stopped reading) and the agent is told to stop.
        self.max_buffered = max_buffered
        self._checks = tuple(checks)
        self._observers = tuple(observers)
        self.failover = failover or Failover()
        #: Called with each attempt given up before its first frame, and why ("disconnected",
        #: "quota", "retryable"): metrics, the audit log, usage. Must not raise or block.
        self._on_failover = tuple(on_failover)
        self.choice = Choice(self.failover.routing)
        #: Which session made each tool call relayed: its result goes back there.
        self.tool_calls = ToolCallOwners()
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
        """Wake calls waiting for a session to connect or a slot to free (none may be: then
        there is nothing to do, as after most calls)."""
        if self.waiting:
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
        if isinstance(frame, ModelResult) or frame.delta.get("tool_calls"):
            self.tool_calls.relayed(session.id, frame)
        pending.buffered += size
        pending.received += size
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
        """Send ``call`` to a session and yield its frames; always settles the call.

        Until the agent's first frame the call may move: to another session when its own
        disconnects, reports a refusal from its vendor or a retryable error (at most
        ``failover.attempts`` times), and to the model's fallbacks when no session of the
        model can take it. This happens before the frames' iterator hands out the first frame
        (for a model with fallbacks, before ``open`` yields, so the caller knows which model
        answers); once the first frame is out, nothing is retried."""
        for check in self._checks:
            check(call)
        if self.closing:
            raise errors.ShuttingDown("the daemon is shutting down")
        queued = time.monotonic()
        deadline = queued + self.timeouts.total
        route = _Route(
            call, queued, self.failover.chain(call.model) if not call.session_hint else ()
        )
        await self._attempt(route, deadline)
        first: AnswerFrame | Failure | None = None
        try:
            if route.chain:
                # The call may end up with a fallback model: settle that before the caller
                # builds its answer, which names the model.
                first = await self._first_worth_sending(route, deadline)
            try:
                yield Frames(self._frames(route, deadline, first), route)
            except errors.ProviderError as exc:
                # Also a failure after the agent's last frame (its answer did not translate).
                route.pending.outcome = exc.code
                raise
        finally:
            self._settle(route.pending)

    async def _attempt(self, route: _Route, deadline: float) -> CallRecord:
        """Choose a session for the route's call (moving to a fallback model when none of
        the model can take it) and send it the invoke; the attempt becomes ``route.pending``."""
        call = route.call
        while True:
            try:
                session = await self._acquire(call, deadline, route.tried, route.last)
            except errors.ProviderError as exc:
                if not isinstance(exc, FALLBACK_ON) or not route.chain:
                    final = _preferred(route, exc)
                    self._observe_last(route, final)
                    raise final from None
                route.asked_error = route.asked_error or exc
                model, route.chain = route.chain[0], route.chain[1:]
                log.info("fallback_model", call_id=call.request_id, model=call.model, to=model)
                call.asked_model = call.asked_model or call.model
                call.model = call.served_model = model
                call.payload = {**call.payload, "model": model}
                route.tried.clear()
                route.last = None
                continue
            pending = route.pending = self._start(call, session, route.queued)
            try:
                frame = invoke_frame(
                    call.request_id, session.id, session.label, call.permission, call.payload
                )
                await self._send(session, frame)
            except errors.ProviderError as exc:
                pending.outcome = exc.code
                pending.done = True
                if isinstance(exc, errors.AgentDisconnected) and self._may_retry(call):
                    route.last = exc
                    self._give_up(pending, route, "disconnected")
                    continue
                self._settle(pending)
                raise
            return pending

    def _start(self, call: Call, session: Session, queued: float) -> CallRecord:
        structlog.contextvars.bind_contextvars(session_id=session.id)
        pending = CallRecord(call, session)
        pending.queued_at = queued
        self._pending[call.request_id] = pending
        self._idle.clear()
        request = call.request_scope
        if request is not None and (request.pending is None or request.pending.call is call):
            request.pending = pending
        return pending

    def _may_retry(self, call: Call) -> bool:
        return call.failovers < self.failover.attempts and not self.closing

    def _refused(
        self, pending: CallRecord, first: AnswerFrame | Failure
    ) -> tuple[str | None, errors.ProviderError | None]:
        """Whether ``first`` ends the attempt in a way another session may not share, and
        why: ``disconnected``, ``quota`` (the session cools down) or ``retryable``."""
        if isinstance(first, Failure):
            error = first.error
            if isinstance(error, errors.AgentDisconnected | errors.SessionEnded):
                return "disconnected", error
            return None, None
        if not isinstance(first, ModelResult) or first.status != "error":
            return None, None
        refusal = refusal_of(first.error)
        if refusal is None:
            return None, None
        if refusal.reason == "quota":
            self._cool(pending, refusal)
        message = str((first.error or {}).get("message") or "the agent's vendor refused")
        return refusal.reason, errors.AgentFailed(message[:2000])

    def _cool(self, pending: CallRecord, refusal: Refusal) -> None:
        session = pending.session
        failover = self.failover
        seconds = cooldown(
            refusal.retry_after, session.strikes + 1, failover.cooldown_initial,
            failover.cooldown_max,
        )  # fmt: skip
        pending.cooled = session.cool(self.registry.clock(), seconds, refusal.code)
        log.info(
            "session_cooling",
            session_id=session.id,
            code=refusal.code,
            seconds=round(seconds, 1),
            told=refusal.retry_after is not None,
        )

    def _observe_last(self, route: _Route, error: errors.ProviderError) -> None:
        """The call found no further session: the observers see its last attempt, if it had
        one, with the error the call ends with."""
        last = route.given_up
        if last is None:
            return
        last.outcome = error.code
        for observe in self._observers:
            observe(last)

    def _give_up(self, pending: CallRecord, route: _Route, why: str) -> None:
        """End an attempt that failed before its first frame; the call moves on."""
        call, session = pending.call, pending.session
        call.failovers += 1
        route.tried.add(session)
        route.given_up = pending
        pending.moved_on = True
        pending.outcome = pending.outcome or why
        log.info("failover", call_id=call.request_id, session_id=session.id, reason=why)
        self._settle(pending, attempt=True)
        for observe in self._on_failover:
            observe(pending, why)

    async def _send(self, session: Session, frame: Frame) -> None:
        link = session.link
        if link is None:
            raise errors.AgentDisconnected("the agent disconnected before the request was sent")
        try:
            await link.send(frame)
        except (ConnectionError, RuntimeError) as exc:
            raise errors.AgentDisconnected(f"could not reach the agent: {exc}") from None

    async def _first(self, pending: CallRecord, deadline: float) -> AnswerFrame | Failure:
        """The attempt's first frame (or the error that ends it), within the first-chunk
        timeout."""
        queue = pending.queue
        if pending.failure is not None:
            return Failure(pending.failure)
        if queue.empty():
            wait = self.timeouts.first_chunk
            now = time.monotonic()
            left = deadline - now
            item = await queue.get(min(deadline, now + wait))
            if item is None:
                raise _timed_out(pending, "total" if left <= wait else "first_chunk")
        else:
            item = queue.get_nowait()
        if not isinstance(item, Failure) and pending.sizes:
            pending.buffered -= pending.sizes.popleft()
        return item

    async def _first_worth_sending(self, route: _Route, deadline: float) -> AnswerFrame | Failure:
        """The first frame of the attempt that gets one worth handing out: before it, the
        call moves to another session (or fallback model) as often as it may."""
        pending = route.pending
        first = await self._first(pending, deadline)
        while True:
            why, refused = self._refused(pending, first)
            if why is None or not self._may_retry(route.call):
                return first
            route.last = refused
            self._give_up(pending, route, why)
            pending = await self._attempt(route, deadline)
            first = await self._first(pending, deadline)

    async def _frames(
        self, route: _Route, deadline: float, first: AnswerFrame | Failure | None
    ) -> AsyncIterator[AnswerFrame]:
        if first is None:
            first = await self._first_worth_sending(route, deadline)
        pending = route.pending
        timeouts = self.timeouts
        wait, phase = timeouts.idle, "idle"
        queue = pending.queue
        item: AnswerFrame | Failure | None = first
        while True:
            if item is not None:
                pass
            elif pending.failure is not None:
                # Cut by the daemon: the error goes out now, not after a backlog of frames a
                # slow reader has yet to take (a shutdown would otherwise cut it unsaid).
                pending.outcome = pending.failure.code
                raise pending.failure
            elif queue.empty():
                now = time.monotonic()
                left = deadline - now
                item = await queue.get(min(deadline, now + wait))
                if item is None:
                    raise _timed_out(pending, "total" if left <= wait else phase)
                if not isinstance(item, Failure) and pending.sizes:
                    pending.buffered -= pending.sizes.popleft()
            else:
                item = queue.get_nowait()
                if not isinstance(item, Failure) and pending.sizes:
                    pending.buffered -= pending.sizes.popleft()
            if isinstance(item, Failure):
                pending.outcome = item.error.code
                raise item.error
            if pending.first_frame_at is None:
                pending.first_frame_at = time.monotonic()
            pending.frames += 1
            if isinstance(item, ModelResult):
                if item.status == "error":
                    pending.outcome = "agent_error"
                    error = item.error or {}
                    refusal = refusal_of(error)
                    if refusal is not None and refusal.reason == "quota":
                        if pending.cooled is None:
                            self._cool(pending, refusal)
                        pending.outcome = "quota_exhausted"
                        raise errors.QuotaExhausted(
                            str(error.get("message") or "the agent's vendor refused")[:2000],
                            retry_after=pending.session.cooling_left(self.registry.clock()),
                        )
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
            item = None

    def _settle(self, pending: CallRecord, attempt: bool = False) -> None:
        """Free the call's slot, tell the agent to stop if it has not finished, and hand the
        record to the observers (not for an ``attempt`` the call moved on from)."""
        if pending.ended is not None:
            return  # an attempt the call already moved on from
        rid = pending.call.request_id
        if self._pending.get(rid) is pending:
            del self._pending[rid]
        pending.ended = time.monotonic()
        pending.queue.close()
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
        if attempt:
            return
        if pending.outcome == "ok":
            session.strikes = 0
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

    async def _acquire(
        self,
        call: Call,
        deadline: float,
        tried: Collection[Session] = (),
        last: errors.ProviderError | None = None,
    ) -> Session:
        """Pick a connected session with a free slot, waiting within the limits if needed.
        Sessions in ``tried`` already failed this call; when only they are left, ``last`` (the
        error the latest of them ended with) is raised."""
        first_chunk_end = min(deadline, time.monotonic() + self.timeouts.first_chunk)
        while True:
            candidates = select(self.registry, call)
            if tried:
                candidates = [s for s in candidates if s not in tried]
                if not candidates:
                    raise _Exhausted(last)
            connected = [s for s in candidates if s.connected]
            if self.throttle is not None and connected:
                connected = unthrottled(connected, self.throttle)
            free = [s for s in connected if s.has_free_slot()]
            if free:
                # With one session connected there is nothing to choose (nor to remember).
                session = self._owner(call, free) or (
                    free[0] if len(connected) == 1 else self.choice.pick(call, free)
                )
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

    def _owner(self, call: Call, free: list[Session]) -> Session | None:
        """The free session that made the tool calls whose results ``call`` carries, which
        may hold their turn open for them; None if none of ``free`` did."""
        owner = self.tool_calls.owner(call.payload)
        return None if owner is None else next((s for s in free if s.id == owner), None)

    def _grace_left(self, away: list[Session]) -> float:
        """Seconds until the last of ``away`` has been gone for ``reconnect_grace``: how long
        a call may still wait for one of them to come back."""
        grace = self.timeouts.reconnect_grace
        wall = self.registry.clock()
        return max(0.0 if s.away_since is None else s.away_since + grace - wall for s in away)


class _Route:
    """One call's way through the sessions: its current attempt, the sessions that failed it
    before their first frame, the fallback models left, and the errors met on the way."""

    __slots__ = ("asked_error", "call", "chain", "given_up", "last", "pending", "queued", "tried")

    def __init__(self, call: Call, queued: float, chain: tuple[str, ...]) -> None:
        self.call = call
        self.queued = queued
        self.chain = chain
        self.tried: set[Session] = set()
        self.last: errors.ProviderError | None = None
        self.asked_error: errors.ProviderError | None = None
        self.given_up: CallRecord | None = None
        self.pending: CallRecord  # set by the first attempt

    def empty(self) -> bool:
        """No frame of the current attempt is waiting (see ``Frames.ready``)."""
        return self.pending.queue.empty()


class _Exhausted(errors.ProviderError):
    """Every session that could take the call already failed it before its first frame."""

    def __init__(self, last: errors.ProviderError | None) -> None:
        super().__init__(last.message if last is not None else "every agent session failed")
        self.last = last


#: Errors from choosing a session after which a fallback model is tried: no session of the
#: model can take the call (none active, all cooling, all failed before their first frame).
FALLBACK_ON = (
    errors.NoActiveSession,
    errors.ModelNotFound,
    errors.QuotaExhausted,
    errors.LimitReached,
    errors.ScopeNotGranted,
    errors.Unsupported,
    _Exhausted,
)


def _preferred(route: _Route, latest: errors.ProviderError) -> errors.ProviderError:
    """The error a call that found no (further) session ends with: a cool-down wins (its
    Retry-After tells the editor when to come back), then how its last attempt failed, then
    what the model asked for ran into."""
    if isinstance(latest, errors.QuotaExhausted):
        return latest
    chosen = route.last or route.asked_error or latest
    if isinstance(chosen, _Exhausted):
        return chosen.last or errors.AgentFailed(chosen.message)
    return chosen


@dataclass(frozen=True)
class Failover:
    """How calls move when a session cannot answer: ``attempts`` other sessions before the
    first frame, the ``fallbacks`` of each model (in order), the cool-down of a refused session
    whose agent gave no reset time (doubling from ``cooldown_initial`` to ``cooldown_max``),
    and the ``routing`` policy among the sessions that may take a call."""

    attempts: int = 2
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cooldown_initial: float = 30.0
    cooldown_max: float = 3600.0
    routing: str = "least-busy"

    def chain(self, model: str) -> tuple[str, ...]:
        """The models tried after ``model``, in order, each once (fallbacks of fallbacks too)."""
        if model not in self.fallbacks:
            return ()
        seen = {model}
        out: list[str] = []
        todo = list(self.fallbacks.get(model, ()))
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.add(name)
            out.append(name)
            todo.extend(self.fallbacks.get(name, ()))
        return tuple(out)


def _timed_out(pending: CallRecord, phase: str) -> errors.AgentTimeout:
    """Mark ``pending`` as cut by its ``phase`` timeout; the error that ends it."""
    pending.cancel_reason = "timeout"
    pending.outcome = "timeout"
    pending.timeout_phase = phase
    return errors.AgentTimeout(f"the agent did not answer in time ({phase} timeout)", phase=phase)
