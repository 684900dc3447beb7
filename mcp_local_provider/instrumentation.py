"""Logs and metrics around every request: the request middleware, and the observers the app
attaches to the router (one call at a time, when it settles) and to the hub (session events).

The middleware runs outermost, so it sees every request, including those another middleware
refused, with its final status. It opens a ``RequestContext``, binds ``request_id`` for every
log line about the request (the router adds ``session_id`` once a session is chosen), counts
the request and writes one access line.
"""

from __future__ import annotations

import asyncio
import logging
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from . import context
from .app import STATE, State
from .context import RequestContext, new_request_id
from .errors import AgentTimeout
from .metrics import METHODS, OTHER, OUTCOMES, Figures, Metrics
from .middlewares import MAPPED_ERROR
from .registry import SessionState
from .router import Pending

access_log = structlog.get_logger("mcp_local_provider.access")
log = structlog.get_logger("mcp_local_provider.instrumentation")
#: Its level decides whether per-call debug lines are built at all (see ``logs.configure``).
_debug = logging.getLogger("mcp_local_provider.instrumentation")

REQUEST_CONTEXT = web.RequestKey("request_context", RequestContext)
UNMATCHED = "unmatched"
#: Families whose requests come from editors; only these count towards ``status`` traffic.
EDITOR_FAMILIES = frozenset({"openai", "ollama"})
#: Status for a request whose client went away first (nginx's convention).
CLIENT_CLOSED = 499
SWITCHING_PROTOCOLS = 101
#: Statuses (or error codes) the middleware counts as rejections when no guard said why.
_REJECTED_BY_STATUS = {400: "validation", 401: "auth", 413: "size", 415: "validation"}
_REJECTED_BY_CODE = {"rate_limited": "rate_limited"}


_FAMILIES = {
    "v1": "openai",
    "api": "ollama",
    "agent": "agent",
    "control": "control",
    "health": "ops",
    "metrics": "ops",
}


def route_family(path: str) -> str:
    """The family a path (or route template) belongs to: a small, fixed set of names."""
    head = path.split("/", 2)[1] if path.startswith("/") else ""
    return _FAMILIES.get(head, OTHER)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/control/sessions/{session_id}/approve``), never the
    raw path, so the label's values are the app's routes and ``unmatched``."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED
    return resource.canonical


def install(app: web.Application) -> None:
    """Attach the observers and the live gauges to ``app``'s router, hub and metrics."""
    state = app[STATE]
    metrics = state.metrics
    metrics.start_time.set(state.started)
    metrics.track(lambda: figures(state))
    state.router.observers.append(lambda pending: observe_call(metrics, pending))
    state.hub.observers.append(lambda event, _session, _details: metrics.session_event(event))
    app.on_response_prepare.append(_tag_response)


def figures(state: State) -> Figures:
    registry = state.registry
    active = registry.in_state(SessionState.ACTIVE)
    return Figures(
        pending_sessions=registry.count(SessionState.PENDING),
        active_sessions=len(active),
        connected_agents=sum(1 for s in active if s.connected),
        calls_in_flight=state.router.in_flight,
        dropped_frames=state.router.dropped_frames,
    )


async def _tag_response(request: web.Request, response: web.StreamResponse) -> None:
    ctx = request.get(REQUEST_CONTEXT)
    if ctx is not None:
        response.headers["X-Request-Id"] = ctx.request_id


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    route = route_template(request)
    family = route_family(request.path if route == UNMATCHED else route)
    ctx = RequestContext(new_request_id(), time.monotonic(), family)
    if state.config.access_log:
        ctx.client = _client(request)
    request[REQUEST_CONTEXT] = ctx
    token = context.enter(ctx)
    # Cleared again when the request ends, so nothing carries over to the next one.
    structlog.contextvars.bind_contextvars(request_id=ctx.request_id)
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if not websocket:
        state.metrics.request_started(family)
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
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
        status = SWITCHING_PROTOCOLS if websocket else CLIENT_CLOSED
        raise
    except web.HTTPException as exc:  # below 400: error_middleware turns the rest into JSON
        status = exc.status
        raise
    finally:
        if not websocket:
            state.metrics.request_ended_in_flight(family)
        try:
            _finish(request, state, ctx, route, status, response)
        except Exception:  # metrics and logs must never break a request
            log.exception("request_observer_failed")
        finally:
            structlog.contextvars.clear_contextvars()
            context.leave(token)


def _finish(
    request: web.Request,
    state: State,
    ctx: RequestContext,
    route: str,
    status: int,
    response: web.StreamResponse | None,
) -> None:
    metrics = state.metrics
    family = ctx.family
    duration = time.monotonic() - ctx.started
    method = request.method if request.method in METHODS else OTHER
    metrics.request_finished(
        family=family,
        route=route,
        method=method,
        model=ctx.model,
        status=status,
        duration=None if status == SWITCHING_PROTOCOLS else duration,
    )
    if status == CLIENT_CLOSED:
        metrics.cancelled.labels(family).inc()
    error = request.get(MAPPED_ERROR)
    reason = _REJECTED_BY_STATUS.get(status) or _REJECTED_BY_CODE.get(getattr(error, "code", ""))
    if reason is not None and ctx.rejected is None:
        metrics.rejected(reason)
    if isinstance(error, AgentTimeout) and error.phase == "queue":
        metrics.timeouts.labels("queue").inc()  # other phases are counted when calls settle
    if ctx.answered and ctx.agent_from is not None and ctx.agent_to is not None:
        waited = ctx.agent_to - ctx.agent_from
        metrics.relay_overhead.labels(family).observe(max(0.0, duration - waited))
    if family in EDITOR_FAMILIES:
        state.traffic.record(status)
    if state.config.access_log:
        _access_line(request, ctx, route, status, duration, response, error)


def _client(request: web.Request) -> str:
    """``host:port`` of the peer, taken when the request starts (the socket may be gone later)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"


def _access_line(
    request: web.Request,
    ctx: RequestContext,
    route: str,
    status: int,
    duration: float,
    response: web.StreamResponse | None,
    error: object,
) -> None:
    """One uvicorn-style line per request: client, method, path (never the query), status."""
    version = f"{request.version.major}.{request.version.minor}"
    line = f'{ctx.client} - "{request.method} {request.path} HTTP/{version}" {status}'
    fields: dict[str, object] = {
        "method": request.method,
        "path": request.path,
        "status": status,
        "duration_ms": round(duration * 1000, 3),
    }
    if route != request.path:
        fields["route"] = route
    if ctx.model != OTHER:
        fields["model"] = ctx.model
    if ctx.outcome is not None:
        fields["outcome"] = ctx.outcome
    code = getattr(error, "code", None)
    if code is not None:
        fields["error"] = code
    if response is not None and response.body_length:
        fields["bytes"] = response.body_length
    # Probes and scrapes answer 200 or 503 every few seconds: debug only, unless refused.
    quiet = ctx.family == "ops" and not 400 <= status < 500
    (access_log.debug if quiet else access_log.info)(line, **fields)


def observe_call(metrics: Metrics, pending: Pending) -> None:
    """Record one settled call: the router calls this once per call, in the handler's task."""
    try:
        _record_call(metrics, pending)
    except Exception:  # metrics must never break a request
        log.exception("metrics_observer_failed")


def _record_call(metrics: Metrics, pending: Pending) -> None:
    call = pending.call
    model = call.model if pending.session.serves(call.model) else OTHER
    outcome = pending.outcome if pending.outcome in OUTCOMES else OTHER
    ctx = context.current()
    arrived = ctx.started if ctx is not None else pending.queued
    first, last = pending.first_event_at, pending.last_frame_at
    prompt, completion = _tokens(pending.usage)
    metrics.call_settled(
        model=model,
        outcome=outcome,
        frames=pending.frames,
        prompt_tokens=prompt,
        completion_tokens=completion,
        ttft=None if first is None else max(0.0, first - arrived),
        queue_wait=max(0.0, pending.started - pending.queued),
        agent_time=None if last is None else last - pending.started,
    )
    if outcome == "timeout" and pending.timeout_phase is not None:
        metrics.timeouts.labels(pending.timeout_phase).inc()
    if _debug.isEnabledFor(logging.DEBUG):
        _log_call(pending, model)
    if ctx is None:
        return
    if model != OTHER:
        ctx.model = model
    answered = outcome == "ok" and pending.last_frame_at is not None
    ctx.calls += 1
    if ctx.outcome in (None, "ok"):
        ctx.outcome = pending.outcome
    ctx.answered = answered if ctx.calls == 1 else ctx.answered and answered
    ctx.agent_from = min(ctx.agent_from or pending.queued, pending.queued)
    if pending.last_frame_at is not None:
        ctx.agent_to = max(ctx.agent_to or pending.last_frame_at, pending.last_frame_at)


def _tokens(usage: object) -> tuple[int, int]:
    """(prompt, completion) tokens from an agent's usage report; 0 for anything unusable."""
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return _count(prompt), _count(completion)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _log_call(pending: Pending, model: str) -> None:
    details: dict[str, object] = {}
    if pending.timeout_phase is not None:
        details["timeout_phase"] = pending.timeout_phase
    if pending.last_frame_at is not None:
        details["agent_ms"] = _ms(pending.last_frame_at - pending.started)
    log.debug(
        "call_settled",
        call_id=pending.call.request_id,
        session_id=pending.session.id,
        model=model,
        outcome=pending.outcome,
        frames=pending.frames,
        queue_ms=_ms(pending.started - pending.queued),
        **details,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
