"""Logs, metrics and the audit line around every request: the outermost middleware.

It sees every request, including those another middleware refused, with its final status. It
opens the request's ``RequestScope`` (``core/call.py``), binds ``request_id`` for every log
line about the request (the router adds ``session_id`` once a session is chosen), counts the
request, and when it ends takes one timing and one outcome for all three records: the
metrics, one access line and, for a request that reached the router, one audit line
(``middleware/audit.py``). What each call did is recorded by ``obs/calls.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from mcp_local_provider.core.call import UNMATCHED, RequestScope, new_request_id
from mcp_local_provider.core.errors import AgentTimeout, ProviderError
from mcp_local_provider.http.families import (
    EDITOR_FAMILIES,
    HEALTH,
    METRICS,
    metric_label,
    route_family,
    route_template,
)
from mcp_local_provider.http.middleware.audit import request_line
from mcp_local_provider.http.state import SCOPE, STATE, State
from mcp_local_provider.obs.labels import METHODS, OTHER
from mcp_local_provider.obs.logs import BoundOnce
from mcp_local_provider.obs.traffic import passed

access_log = BoundOnce("mcp_local_provider.access")
log = structlog.get_logger("mcp_local_provider.instrumentation")

#: Status for a request whose client went away first (nginx's convention).
CLIENT_CLOSED = 499
SWITCHING_PROTOCOLS = 101
#: Statuses (or error codes) the middleware counts as rejections when no guard said why.
_REJECTED_BY_STATUS = {400: "validation", 401: "auth", 413: "size", 415: "validation"}
_REJECTED_BY_CODE = {"rate_limited": "rate_limited"}


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    route = route_template(request)
    ctx = RequestScope(
        new_request_id(),
        time.monotonic(),
        family=route_family(request.path if route == UNMATCHED else route),
        route=route,
        method=request.method,
        peer=request.remote,
    )
    family = metric_label(ctx.family)
    if state.config.access_log:
        ctx.client = _client(request)
    request[SCOPE] = ctx
    # Cleared again when the request ends, so nothing carries over to the next one.
    structlog.contextvars.bind_contextvars(request_id=ctx.request_id)
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if not websocket:
        state.metrics.request_started(family)
    status = 500
    cancelled = False
    response: web.StreamResponse | None = None
    bytes_out: int | None = None
    try:
        response = await handler(request)
        # What the audit line counts: a streamed response's bytes as written, a whole body's
        # length (taken before it is sent: once sent, ``body_length`` counts the headers too).
        bytes_out = response.body_length if response.prepared else response.content_length
        if not response.prepared:
            # Send it here rather than after the middleware returns, so the duration and
            # the access line cover the whole response.
            await response.prepare(request)
            await response.write_eof()
        status = response.status
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        # An agent socket is upgraded before its handler first waits, so when its peer hangs
        # up the connection had been a WebSocket: that is its normal end, not a cancellation.
        cancelled = True
        if websocket:
            status = SWITCHING_PROTOCOLS
        elif ctx.outcome == "shutting_down":
            status = 503  # the daemon cut the call, then stopped waiting for the client
        else:
            status = CLIENT_CLOSED
        raise
    except web.HTTPException as exc:  # below 400: error_middleware turns the rest into JSON
        status = exc.status
        raise
    finally:
        if not websocket:
            state.metrics.request_ended_in_flight(family)
        try:
            _finish(request, state, ctx, status, response, cancelled, bytes_out)
        except Exception:  # metrics and logs must never break a request
            log.exception("request_observer_failed")
        finally:
            structlog.contextvars.clear_contextvars()


def _finish(
    request: web.Request,
    state: State,
    ctx: RequestScope,
    status: int,
    response: web.StreamResponse | None,
    cancelled: bool,
    bytes_out: int | None,
) -> None:
    metrics = state.metrics
    family = metric_label(ctx.family)
    duration = time.monotonic() - ctx.started
    error = ctx.error
    if ctx.call is not None:
        _audit(state, ctx, status, bytes_out, duration, error, cancelled, request)
    method = request.method if request.method in METHODS else OTHER
    metrics.request_finished(
        family=family,
        route=ctx.route,
        method=method,
        model=ctx.model,
        status=status,
        duration=None if status == SWITCHING_PROTOCOLS else duration,
    )
    if status == CLIENT_CLOSED:
        metrics.cancelled.labels(family).inc()
    reason = _REJECTED_BY_STATUS.get(status) or _REJECTED_BY_CODE.get(getattr(error, "code", ""))
    if reason is not None and ctx.rejected is None:
        metrics.rejected(reason)
    if isinstance(error, AgentTimeout) and error.phase == "queue":
        metrics.timeouts.labels("queue").inc()  # other phases are counted when calls settle
    if ctx.answered and ctx.agent_from is not None and ctx.agent_to is not None:
        waited = ctx.agent_to - ctx.agent_from
        metrics.relay_overhead_seen(family, max(0.0, duration - waited))
    if ctx.family in EDITOR_FAMILIES:
        state.traffic.record(status)
        state.traffic.passed(passed(ctx, status, duration))
    if state.config.access_log:
        _access_line(request, ctx, status, duration, response, error)


def _audit(
    state: State,
    ctx: RequestScope,
    status: int,
    bytes_out: int | None,
    duration: float,
    error: ProviderError | None,
    cancelled: bool,
    request: web.Request,
) -> None:
    """Queue the audit line of a request that reached the router (the response is on its
    way by now, so waking the writer thread costs the next request, not this one)."""
    code: str | None
    if cancelled:
        if ctx.pending is not None and ctx.pending.outcome == "shutting_down":
            status, code = 503, "shutting_down"  # the daemon cut it, then stopped waiting
        else:
            status, code = CLIENT_CLOSED, "client_disconnected"
    elif error is None:
        code = None
    else:  # the handler raised it: the error body is not what it answered
        code = "http_error" if ctx.error_from_http else error.code
        bytes_out = None
    assert ctx.call is not None
    line = request_line(ctx, status, code, bytes_out, duration)
    state.security.audit.request(line, ctx.call.payload)


def _client(request: web.Request) -> str:
    """``host:port`` of the peer, taken when the request starts (the socket may be gone later)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"


def _access_line(
    request: web.Request,
    ctx: RequestScope,
    status: int,
    duration: float,
    response: web.StreamResponse | None,
    error: object,
) -> None:
    """One uvicorn-style line per request: client, method, path (never the query), status.
    Nothing is formatted when the line is below the log level."""
    # Probes and scrapes answer 200 or 503 every few seconds: debug only, unless refused.
    quiet = ctx.family in (HEALTH, METRICS) and not 400 <= status < 500
    logger = access_log.get()
    if not logger.is_enabled_for(logging.DEBUG if quiet else logging.INFO):
        return
    version = f"{request.version.major}.{request.version.minor}"
    line = f'{ctx.client} - "{request.method} {request.path} HTTP/{version}" {status}'
    fields: dict[str, object] = {
        "method": request.method,
        "path": request.path,
        "status": status,
        "duration_ms": round(duration * 1000, 3),
    }
    if ctx.route != request.path:
        fields["route"] = ctx.route
    if ctx.model != OTHER:
        fields["model"] = ctx.model
    if ctx.outcome is not None:
        fields["outcome"] = ctx.outcome
    code = getattr(error, "code", None)
    if code is not None:
        fields["error"] = code
    if response is not None and response.body_length:
        fields["bytes"] = response.body_length
    access_log.emit("debug" if quiet else "info", line, fields)
