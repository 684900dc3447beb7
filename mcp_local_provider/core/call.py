"""A call to an agent: what an HTTP request asks (``Call``), its timeouts, and its record while
in flight (``CallRecord``), which observers receive once it is settled. No I/O."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.protocol import AnswerFrame, InvokePayload, ModelResult
from mcp_local_provider.core.registry import Session
from mcp_local_provider.core.scope import RequestScope, new_request_id


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
    scope: str = "inference"
    #: Capabilities the serving session must declare for ``model`` (see ``catalog.py``).
    needs: tuple[str, ...] = ()
    session_hint: str | None = None
    request_id: str = field(default_factory=new_request_id)
    #: The HTTP request this call serves, if any (its scope collects how the call went).
    request: RequestScope | None = None
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
        "first_event_at",
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
        self.queue: asyncio.Queue[AnswerFrame | Failure] = asyncio.Queue()
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
        self.first_event_at: float | None = None
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
