"""A call to an agent: what an HTTP request asks (``Call``), its timeouts, and its record while
in flight (``CallRecord``), which observers receive once it is settled; and the HTTP request
as logs, metrics and the audit log see it (``RequestScope``), which collects how its calls
went. One module: a call and its request refer to each other. No I/O.

The outermost request middleware opens a ``RequestScope`` for each request and hands it down
explicitly: the guard notes the API key and body size, ``call_for`` attaches each router call
(``Call.request_scope``), the router's hooks and observers fill in how the calls went, and the
middlewares read it back when the request ends (the access line, metrics, the audit line)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.ids import unique_hex
from mcp_local_provider.core.protocol import AnswerFrame, InvokePayload, ModelResult
from mcp_local_provider.core.registry import Session

#: The route template of a request that matched no route.
UNMATCHED = "unmatched"


def new_request_id() -> str:
    return "req-" + unique_hex(16)


@dataclass(slots=True)
class RequestScope:
    """One HTTP request, filled in as it goes."""

    request_id: str
    #: ``time.monotonic()`` when the daemon started handling the request.
    started: float
    #: The route family (see ``http.families``) and the matched route's template.
    family: str = "other"
    route: str = UNMATCHED
    method: str = "GET"
    #: ``host:port`` of the peer, for the access line; the peer's address, for the audit line.
    client: str = "-"
    peer: str | None = None
    #: The id of the API key the request was made with (when keys are on).
    client_key: str | None = None
    bytes_in: int = 0
    #: The metrics label for the model: set when a session that serves it answered the call.
    model: str = "other"
    #: Why a guard refused the request, once one has said so (see ``Metrics.rejected``).
    rejected: str | None = None
    #: The span, in ``time.monotonic()`` seconds, the request spent waiting on agents: from the
    #: first call starting to look for a session to the last call's final frame arriving.
    agent_from: float | None = None
    agent_to: float | None = None
    #: Calls the request made, and whether every one ended with the agent's answer.
    calls: int = 0
    answered: bool = False
    #: How the request's calls ended: ``ok``, or the first other outcome.
    outcome: str | None = None
    #: The first call the request made and, once it has a session, its record (the audit
    #: line describes these).
    call: Call | None = None
    pending: CallRecord | None = None
    #: The request offered tools its agent will not see, or asked for a structured output
    #: format its agent will not apply: the response says so in a header.
    tools_not_offered: bool = False
    format_not_applied: bool = False
    #: The error the request was answered with, and whether it was one the HTTP server
    #: raised (a 404 or 405) rather than the daemon's own (the audit line tells them apart).
    error: errors.ProviderError | None = None
    error_from_http: bool = False
    _id_taken: bool = field(default=False, repr=False)

    def call_id(self) -> str:
        """The id for a new router call: the request's own id for its first call, so logs,
        the agent and the audit log share one id; a fresh id for any further call."""
        if not self._id_taken:
            self._id_taken = True
            return self.request_id
        return new_request_id()


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
    payload: InvokePayload
    stream: bool = False
    #: The session scope the call needs (``inference``, ``embeddings``).
    permission: str = "inference"
    #: Capabilities the serving session must declare for ``model`` (see ``catalog.py``).
    needs: tuple[str, ...] = ()
    session_hint: str | None = None
    request_id: str = field(default_factory=new_request_id)
    #: The HTTP request this call serves, if any (its scope collects how the call went).
    request_scope: RequestScope | None = None
    #: Set by the router when a fallback model served the call (``model`` is then that one):
    #: the answer names it; ``asked_model`` keeps the model the call was for.
    served_model: str | None = None
    asked_model: str | None = None
    #: How many times the call was given to another session before its first frame.
    failovers: int = 0


class Failure:
    """An error that ends a call, queued behind the frames that arrived before it."""

    __slots__ = ("error",)

    def __init__(self, error: errors.ProviderError) -> None:
        self.error = error


class Inbox:
    """A call's frames from its agent (and the failure that may end it), waiting for the
    caller; and the one timer that bounds the caller's waits for them.

    The timer is armed when a wait begins and kept while waits end sooner than it: a stream's
    frames each wait up to the idle timeout, and one timer serves them all, re-armed when it
    fires early (rather than one timer made and cancelled per frame)."""

    __slots__ = ("_items", "_timer", "_timer_due", "_waiter")

    def __init__(self) -> None:
        self._items: deque[AnswerFrame | Failure] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    def put_nowait(self, item: AnswerFrame | Failure) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> AnswerFrame | Failure:
        """The next item; only when one is waiting (``not empty()``)."""
        return self._items.popleft()

    def clear(self) -> None:
        self._items.clear()

    async def get(self, due: float) -> AnswerFrame | Failure | None:
        """The next item, waiting for it until ``due`` (``time.monotonic()``); None if none
        came by then."""
        items = self._items
        while not items:
            now = time.monotonic()
            if now >= due:
                return None
            loop = asyncio.get_running_loop()
            timer = self._timer
            if timer is None or self._timer_due > due:
                if timer is not None:
                    timer.cancel()
                self._timer_due = due
                self._timer = loop.call_later(due - now, self._fire)
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return items.popleft()

    def _fire(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # the waiter checks its own due time, and waits on if early

    def close(self) -> None:
        """Stop the timer (the call is settled)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class CallRecord:
    """A call in flight: the queue the agent's frames land in, and how it ended.

    Observers (metrics, audit) receive it once, when the call is settled.
    """

    __slots__ = (
        "assigned_at",
        "buffered",
        "call",
        "cancel_reason",
        "cooled",
        "done",
        "ended",
        "failure",
        "first_frame_at",
        "frames",
        "last_frame_at",
        "moved_on",
        "outcome",
        "queue",
        "queued_at",
        "received",
        "session",
        "sizes",
        "timeout_phase",
        "usage",
    )

    def __init__(self, call: Call, session: Session) -> None:
        self.call = call
        self.session = session
        self.queue = Inbox()
        self.done = False  # the agent sent its last frame, or the call was failed
        #: Why the daemon failed the call, if it did; it overtakes frames still queued.
        self.failure: errors.ProviderError | None = None
        #: Bytes of the agent's frames queued and not yet taken by the caller, and each
        #: queued frame's size (in queue order).
        self.buffered = 0
        self.sizes: deque[int] = deque()
        self.cancel_reason = "client_disconnected"
        #: Seconds of cool-down this call's refusal added to its session (None: no refusal).
        self.cooled: float | None = None
        #: The call moved on to another session before this attempt's first frame (the
        #: failover observers have seen it).
        self.moved_on = False
        self.assigned_at = time.monotonic()  # when the session was chosen, just before the invoke
        self.queued_at = self.assigned_at  # when the call began looking for a session (set by open)
        self.first_frame_at: float | None = None
        #: When the agent's final frame reached the daemon (None if it never did).
        self.last_frame_at: float | None = None
        self.ended: float | None = None
        self.frames = 0
        #: Bytes of the agent's frames received for this call (an estimate of its output when
        #: the agent reports no usage).
        self.received = 0
        self.usage: dict[str, Any] | None = None
        #: "ok", an error code ("timeout", "agent_error", "agent_disconnected",
        #: "session_ended", "shutting_down"), or "client_disconnected".
        self.outcome: str | None = None
        #: For a "timeout" outcome: "first_chunk", "idle" or "total".
        self.timeout_phase: str | None = None


def is_terminal(frame: AnswerFrame) -> bool:
    return isinstance(frame, ModelResult) or frame.finish_reason is not None
