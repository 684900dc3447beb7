"""One HTTP request as logs, metrics and the audit log see it. No I/O.

The outermost request middleware opens a ``RequestScope`` for each request and hands it down
explicitly: the guard notes the API key and body size, ``call_for`` attaches each router call
(``Call.scope``), the router's hooks and observers fill in how the calls went, and the
middlewares read it back when the request ends (the access line, metrics, the audit line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcp_local_provider.core.ids import unique_hex

if TYPE_CHECKING:  # annotations only: call.py imports this module
    from mcp_local_provider.core.call import Call, CallRecord

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
    _id_taken: bool = field(default=False, repr=False)

    def call_id(self) -> str:
        """The id for a new router call: the request's own id for its first call, so logs,
        the agent and the audit log share one id; a fresh id for any further call."""
        if not self._id_taken:
            self._id_taken = True
            return self.request_id
        return new_request_id()
