"""The daemon's defences, built once per app from the Config, and the audit of each routed
request.

``install`` wires them into the app without touching a handler: the guard middleware
(``guards.py``) checks every request by route family; the router's ``checks``, ``started``,
``throttle`` and ``observers`` hooks apply input limits, rate limits and the fail-closed audit
to every call that reaches an agent, whatever route made it; the hub's observers feed session
events to the audit log. The audit middleware writes exactly one line per request that reached
the router, with the route and HTTP status only the HTTP layer knows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from . import errors, health
from .access import ApiKeys, HostPolicy, OriginPolicy, key_digest, keys_from_text
from .audit import AuditLog, load_or_create_key
from .config import Config, ConfigError
from .digest import PromptDigester
from .limits import InputLimits, check_session_id
from .ratelimit import FailureLimiter, HandshakeSlots, SessionThrottle
from .registry import Session
from .router import Call, Pending

log = structlog.get_logger("mcp_local_provider.security")


@dataclass
class RequestRecord:
    """What the audit line of one HTTP request needs, filled in as the request goes."""

    route: str
    peer: str | None
    started: float = field(default_factory=time.monotonic)
    client_key: str | None = None
    bytes_in: int = 0
    call: Call | None = None
    pending: Pending | None = None


RECORD = web.RequestKey("audit_record", RequestRecord)
#: The id of the API key a request was made with (set by the guard when keys are on).
CLIENT_KEY = web.RequestKey("client_key", str)
#: The size of the request body, read by the guard.
BODY_SIZE = web.RequestKey("body_size", int)
_current: ContextVar[RequestRecord | None] = ContextVar("mcp_request_record", default=None)


@dataclass
class Security:
    config: Config
    hosts: HostPolicy
    origins: OriginPolicy
    keys: ApiKeys
    limits: InputLimits
    throttle: SessionThrottle
    failures: FailureLimiter
    handshakes: HandshakeSlots
    audit: AuditLog
    in_flight: int = 0


SECURITY = web.AppKey("security", Security)


def _api_keys(config: Config) -> ApiKeys:
    digests = [key_digest(key.get_secret_value()) for key in config.api_keys]
    if config.api_keys_file is not None:
        try:
            digests += keys_from_text(config.api_keys_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"api_keys_file {str(config.api_keys_file)!r} cannot be read: {exc.strerror}"
            ) from None
        if not digests:
            raise ConfigError(f"api_keys_file {str(config.api_keys_file)!r} holds no key")
    return ApiKeys(digests)


def build(config: Config) -> Security:
    """Everything the defences need; reads the keys file and the audit key (start-up only)."""
    try:
        key = load_or_create_key(config.resolved_audit_key_file())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the audit key cannot be loaded: {exc}") from None
    audit = AuditLog(
        config.resolved_audit_log(),
        PromptDigester(key),
        max_bytes=config.audit_max_bytes,
        backups=config.audit_backups,
        retry_interval=config.audit_retry_interval,
        on_health=_audit_health,
    )
    return Security(
        config=config,
        hosts=HostPolicy.build(config.allowed_hosts, config.host),
        origins=OriginPolicy(config.allowed_origins),
        keys=_api_keys(config),
        limits=InputLimits(config.max_messages, config.max_message_chars, config.max_request_chars),
        throttle=SessionThrottle(config.requests_per_minute, config.tokens_per_minute),
        failures=FailureLimiter(config.auth_failures_per_minute),
        handshakes=HandshakeSlots(config.max_pending_per_token, config.max_pending),
        audit=audit,
    )


def _audit_health(healthy: bool, reason: str) -> None:
    if healthy:
        log.warning("AUDIT_LOG_RECOVERED", message="requests are accepted again")
    else:
        log.error(
            "AUDIT_LOG_FAILED",
            error=reason,
            message="the audit log cannot be written: new requests are refused (503) until it can",
        )


def install(app: web.Application, security: Security) -> None:
    """Hook the defences into the router, the hub, health, metrics and the app's lifecycle."""
    from .app import STATE

    app[SECURITY] = security
    state = app[STATE]
    router, hub, audit = state.router, state.hub, security.audit
    audit.on_failed_line = state.metrics.audit_write_failed
    state.health_checks["audit"] = lambda: health.component(
        health.HEALTHY if audit.healthy else health.UNHEALTHY,
        None if audit.healthy else "the audit log cannot be written; requests are refused",
        lines_written=audit.written,
        lines_lost=audit.lost,
        failures=audit.failures,
    )

    def check(call: Call) -> None:
        record = _current.get()
        if record is not None:
            record.call = call
        if not security.audit.healthy:
            raise errors.AuditUnavailable(
                "the audit log cannot be written right now; requests are refused until it can"
            )
        security.limits.check(call.kind, call.model, call.payload)
        if call.session_hint is not None:
            check_session_id(call.session_hint, param="X-MCP-Session")

    def started(pending: Pending) -> None:
        record = _current.get()
        if record is not None:
            record.pending = pending

    router.checks.append(check)
    router.started.append(started)
    router.throttle = security.throttle
    router.queue_limit = security.config.max_queued_requests
    router.observers.append(security.throttle.settled)
    hub.observers.append(
        lambda action, session, details: _session_line(security, action, session, details)
    )
    app.cleanup_ctx.append(_audit_lifecycle)


def _session_line(
    security: Security, action: str, session: Session, details: dict[str, Any]
) -> None:
    security.audit.event(
        {
            "event": "session",
            "action": action,
            "session_id": session.id,
            "agent_id": session.agent_id,
            "label": session.label,
            "scopes": list(session.scopes or session.requested_scopes),
            "state": session.state.value,
            **details,
        }
    )


async def _audit_lifecycle(app: web.Application) -> AsyncIterator[None]:
    audit = app[SECURITY].audit
    audit.start()
    yield
    await audit.stop()
    if audit.lost:
        log.warning("audit_lines_lost", lost=audit.lost)


# -- the audit line of each routed request ---------------------------------------------------

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


def route_name(request: web.Request) -> str:
    """``METHOD /route/pattern``: the matched route, never the raw URL or its query."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else '(unmatched)'}"


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    security = request.app[SECURITY]
    record = RequestRecord(
        route_name(request),
        request.remote,
        client_key=request.get(CLIENT_KEY),
        bytes_in=request.get(BODY_SIZE, 0),
    )
    request[RECORD] = record
    token = _current.set(record)
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
    except asyncio.CancelledError:
        status, error = 499, "client_disconnected"
        raise
    finally:
        _current.reset(token)
        if record.call is not None:
            line = _request_line(record, status, error, response)
            # Queued once the response is on its way: waking the writer thread (and sharing
            # the GIL with it) then costs the next request, not this one's latency.
            asyncio.get_running_loop().call_soon(security.audit.request, line, record.call.payload)


def _request_line(
    record: RequestRecord,
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
        "route": record.route,
        "model": call.model,
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
    if pending is not None and pending.first_event_at is not None:
        line["first_chunk_ms"] = round((pending.first_event_at - pending.started) * 1000, 1)
    return line


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
