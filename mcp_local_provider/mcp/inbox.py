"""The inbox: a Backend that hands each request to the MCP host's agent and relays its answer.

The AgentClient runs ``Inbox.run`` once per request. ``run`` files a ticket and waits; the
agent's tool calls (next_request, respond_partial, respond, decline) take the ticket and feed
its answer back, which ``run`` yields as events. If the editor cancels, the client cancels
``run``, the ticket is marked cancelled, and the agent hears so when it next answers it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, TextDelta
from mcp_local_provider.mcp.common import ServingBackend, Signal
from mcp_local_provider.mcp.output_limit import CHARS_PER_TOKEN, OutputLimiter, estimate_tokens
from mcp_local_provider.mcp.render import message_text

#: Finished tickets remembered, so a late answer is told "cancelled" rather than "unknown".
_REMEMBERED = 256


@dataclass(frozen=True)
class Deadlines:
    """The daemon's request timeouts, so the agent can be told how long it has."""

    first_chunk: float
    idle: float
    total: float


class TicketState(Enum):
    QUEUED = "queued"
    TAKEN = "taken"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass
class Ticket:
    request: InvokeRequest
    limiter: OutputLimiter
    received: float = field(default_factory=time.monotonic)
    last_sent: float | None = None
    state: TicketState = TicketState.QUEUED
    cancel_reason: str = ""
    events: asyncio.Queue[BackendEvent | BackendError] = field(default_factory=asyncio.Queue)

    def answer_within(self, deadlines: Deadlines, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        total_left = self.received + deadlines.total - now
        if self.last_sent is None:
            return min(self.received + deadlines.first_chunk - now, total_left)
        return min(self.last_sent + deadlines.idle - now, total_left)


@dataclass(frozen=True)
class Reply:
    """What became of an answer the agent sent: ``sent`` (a piece went out), ``completed``,
    ``declined``, ``cancelled``, ``finished`` (already answered) or ``unknown``."""

    status: str
    message: str
    finish_reason: str | None = None

    @property
    def is_error(self) -> bool:
        return self.status in ("unknown", "finished")


def _prompt_tokens(request: InvokeRequest) -> int:
    if request.kind == "completion":
        return estimate_tokens((request.prompt or "") + (request.suffix or ""))
    return sum(estimate_tokens(message_text(m)) for m in request.messages)


class Inbox(ServingBackend):
    name = "mcp"

    def __init__(
        self, models: list[str], deadlines: Deadlines, signal: Signal | None = None
    ) -> None:
        super().__init__(models)
        self.deadlines = deadlines
        self.signal = signal or Signal()
        self._tickets: OrderedDict[str, Ticket] = OrderedDict()

    # -- the AgentClient's side ----------------------------------------------------------------

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        if request.kind not in ("chat", "completion"):
            raise BackendError(
                f"an MCP agent cannot serve {request.kind} requests", code="unsupported"
            )
        ticket = Ticket(request, OutputLimiter(request.stop, request.max_tokens))
        self._remember(ticket)
        self.signal.notify()
        try:
            while True:
                item = await ticket.events.get()
                if isinstance(item, BackendError):
                    raise item
                yield item
                if isinstance(item, Finish):
                    return
        finally:
            if ticket.state in (TicketState.QUEUED, TicketState.TAKEN):
                ticket.state = TicketState.CANCELLED
                ticket.cancel_reason = self._why_cancelled(ticket)
                self.signal.notify()

    def _why_cancelled(self, ticket: Ticket) -> str:
        ending = self.why_ending()
        if ending:
            return ending
        if ticket.answer_within(self.deadlines) <= 0:
            return "it timed out waiting for an answer"
        return "the editor cancelled it (it went away or no longer needs the answer)"

    def _remember(self, ticket: Ticket) -> None:
        self._tickets[ticket.request.id] = ticket
        finished = [
            rid
            for rid, t in self._tickets.items()
            if t.state in (TicketState.DONE, TicketState.CANCELLED)
        ]
        for rid in finished[: max(0, len(finished) - _REMEMBERED)]:
            del self._tickets[rid]

    # -- the agent's side (the tools) ----------------------------------------------------------

    async def take(self, wait: float, give_up: Callable[[], bool] = lambda: False) -> Ticket | None:
        """The oldest request nobody holds yet, waiting up to ``wait`` seconds for one."""
        end = time.monotonic() + wait
        while True:
            for ticket in self._tickets.values():
                if ticket.state is TicketState.QUEUED:
                    ticket.state = TicketState.TAKEN
                    return ticket
            left = end - time.monotonic()
            if left <= 0 or give_up():
                return None
            await self.signal.wait(left)

    def held(self) -> list[str]:
        return [rid for rid, t in self._tickets.items() if t.state is TicketState.TAKEN]

    def waiting(self) -> int:
        return sum(1 for t in self._tickets.values() if t.state is TicketState.QUEUED)

    def partial(self, request_id: str, content: str) -> Reply:
        ticket, refused = self._open(request_id)
        if ticket is None:
            return refused
        self._send(ticket, ticket.limiter.feed(content))
        if ticket.limiter.done:
            return self._finish(ticket, "stop")
        return Reply("sent", f"Sent {len(content)} characters of {request_id} to the editor.")

    def respond(self, request_id: str, content: str, finish_reason: str = "stop") -> Reply:
        ticket, refused = self._open(request_id)
        if ticket is None:
            return refused
        self._send(ticket, ticket.limiter.feed(content) + ticket.limiter.flush())
        return self._finish(ticket, finish_reason)

    def decline(self, request_id: str, reason: str) -> Reply:
        ticket, refused = self._open(request_id)
        if ticket is None:
            return refused
        ticket.state = TicketState.DONE
        message = f"the agent declined the request: {reason}" if reason else "the agent declined"
        ticket.events.put_nowait(BackendError(message, code="declined"))
        return Reply("declined", f"Declined {request_id}; the editor gets an error saying so.")

    def _open(self, request_id: str) -> tuple[Ticket | None, Reply]:
        ticket = self._tickets.get(request_id)
        if ticket is None:
            return None, Reply(
                "unknown", f"No request {request_id!r}: use the request_id from next_request."
            )
        if ticket.state is TicketState.CANCELLED:
            return None, Reply(
                "cancelled",
                f"Request {request_id} was cancelled: {ticket.cancel_reason}. Your answer was "
                "discarded; move on to the next request.",
            )
        if ticket.state is TicketState.DONE:
            return None, Reply(
                "finished", f"Request {request_id} is already answered; nothing more was sent."
            )
        ticket.state = TicketState.TAKEN
        return ticket, Reply("sent", "")

    def _send(self, ticket: Ticket, text: str) -> None:
        if text:  # only what reaches the daemon restarts its idle timer
            ticket.last_sent = time.monotonic()
            ticket.events.put_nowait(TextDelta(text))

    def _finish(self, ticket: Ticket, requested: str) -> Reply:
        reason = ticket.limiter.finish_reason or requested
        prompt = _prompt_tokens(ticket.request)
        completion = -(-ticket.limiter.emitted // CHARS_PER_TOKEN)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        ticket.events.put_nowait(Finish(reason, usage))
        ticket.state = TicketState.DONE
        rid = ticket.request.id
        if ticket.limiter.finish_reason == "stop":
            note = "it reached one of the editor's stop sequences, so the rest was cut"
        elif ticket.limiter.finish_reason == "length":
            note = "it reached the editor's max_tokens, so the rest was cut"
        else:
            note = "the editor has the whole answer"
        return Reply("completed", f"Request {rid} is complete ({note}).", reason)
