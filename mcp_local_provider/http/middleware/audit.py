"""The audit line of each routed request, and the audit writer's life with the app.

The middleware writes exactly one line per request that reached the router (whose scope holds
a call), with the route and HTTP status only the HTTP layer knows; the prompt itself is never
written, only its keyed digest (see ``policy/audit.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import RequestScope
from mcp_local_provider.http.state import SCOPE, STATE

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


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    record = request[SCOPE]
    status: int = 500
    error: str | None = "internal_error"
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status, error = response.status, None
        return response
    except errors.ProviderError as exc:
        status, error = exc.status, exc.code
        raise
    except web.HTTPException as exc:
        status, error = exc.status, None if exc.status < 400 else "http_error"
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        if record.pending is not None and record.pending.outcome == "shutting_down":
            status, error = 503, "shutting_down"  # the daemon cut it, then stopped waiting
        else:
            status, error = 499, "client_disconnected"
        raise
    finally:
        if record.call is not None:
            line = _request_line(record, status, error, response)
            # Queued once the response is on its way: waking the writer thread (and sharing
            # the GIL with it) then costs the next request, not this one's latency.
            audit = state.security.audit
            asyncio.get_running_loop().call_soon(audit.request, line, record.call.payload)


def _request_line(
    record: RequestScope,
    status: int,
    error: str | None,
    response: web.StreamResponse | None,
) -> dict[str, Any]:
    call, pending = record.call, record.pending
    assert call is not None
    outcome = pending.outcome if pending is not None and pending.outcome else error or "ok"
    if outcome != "ok" and error is None and pending is not None:
        error = pending.outcome
    usage = (pending.usage if pending is not None else None) or {}
    bytes_out = None
    if response is not None:
        bytes_out = response.body_length if response.prepared else response.content_length
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
        "duration_ms": round((time.monotonic() - record.started) * 1000, 1),
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
