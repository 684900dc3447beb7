"""What the daemon knows about the HTTP request being handled, for logs and metrics. No I/O.

The request middleware opens a ``RequestContext`` for each request; code below it (the router,
its observers, ``Metrics.rejected``) reaches it through a context variable instead of having it
passed down every call.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar, Token
from dataclasses import dataclass


def new_request_id() -> str:
    return "req-" + secrets.token_hex(8)


@dataclass(slots=True)
class RequestContext:
    """One HTTP request, as logs and metrics see it."""

    request_id: str
    #: ``time.monotonic()`` when the daemon started handling the request.
    started: float
    family: str = "other"
    #: ``host:port`` of the peer, for the access line.
    client: str = "-"
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
    id_taken: bool = False


_current: ContextVar[RequestContext | None] = ContextVar("mcp_local_provider_request", default=None)


def current() -> RequestContext | None:
    """The request being handled in this task, if any."""
    return _current.get()


def enter(context: RequestContext) -> Token[RequestContext | None]:
    """Make ``context`` current; pass the returned token to ``leave``."""
    return _current.set(context)


def leave(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def call_id() -> str:
    """The id for a new router call: the HTTP request's own id for its first call, so logs, the
    agent and the audit log share one id; a fresh id for any further call."""
    context = _current.get()
    if context is not None and not context.id_taken:
        context.id_taken = True
        return context.request_id
    return new_request_id()
