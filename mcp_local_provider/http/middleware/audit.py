"""The audit line of each routed request, and the audit writer's life with the app.

Exactly one line is written per request that reached the router (whose scope holds a call),
with the route and HTTP status only the HTTP layer knows, by the observe middleware when the
request ends (one timing and one outcome for the metrics, the access line and the audit
line); the prompt itself is never written, only its keyed digest (see ``policy/audit.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from mcp_local_provider.core.call import RequestScope
from mcp_local_provider.http.state import STATE

log = structlog.get_logger("mcp_local_provider.security")


async def audit_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Run the audit writer for the app's lifetime (a ``cleanup_ctx``)."""
    audit = app[STATE].security.audit
    audit.start()
    yield
    await audit.stop()
    if audit.lost:
        log.warning("audit_lines_lost", lost=audit.lost)


_OUTCOMES = {
    "session_limit_reached": "rate_limited",
    "rate_limited": "rate_limited",
    "invalid_request": "rejected",
    "scope_not_granted": "rejected",
    "not_found": "rejected",
    "no_active_session": "rejected",
    "audit_unavailable": "rejected",
    "overloaded": "rejected",
}


def request_line(
    record: RequestScope,
    status: int,
    error: str | None,
    bytes_out: int | None,
    duration: float,
) -> dict[str, Any]:
    """The audit line of a request that reached the router: ``status`` and ``error`` as the
    handler ended (``error`` is None when it answered), ``duration`` in seconds."""
    call, pending = record.call, record.pending
    assert call is not None
    outcome = pending.outcome if pending is not None and pending.outcome else error or "ok"
    if outcome != "ok" and error is None and pending is not None:
        error = pending.outcome
    usage = (pending.usage if pending is not None else None) or {}
    line: dict[str, Any] = {
        "request_id": call.request_id,
        "session_id": pending.session.id if pending is not None else None,
        "agent_id": pending.session.agent_id if pending is not None else None,
        "route": f"{record.method} {record.route}",
        "model": call.asked_model or call.model,
        "served_model": call.served_model,
        "failovers": call.failovers,
        "kind": call.kind,
        "stream": call.stream,
        "status": status,
        "outcome": _OUTCOMES.get(outcome, outcome),
        "error": error,
        "duration_ms": round(duration * 1000, 1),
        "first_chunk_ms": None,
        "bytes_in": record.bytes_in,
        "bytes_out": bytes_out,
        "frames": pending.frames if pending is not None else 0,
        "prompt_tokens": _int(usage.get("prompt_tokens")),
        "completion_tokens": _int(usage.get("completion_tokens")),
        "total_tokens": _int(usage.get("total_tokens")),
        "client_key": record.client_key,
        "peer": record.peer,
    }
    if pending is not None and pending.first_frame_at is not None:
        line["first_chunk_ms"] = round((pending.first_frame_at - pending.assigned_at) * 1000, 1)
    return line


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
