"""The daemon's defences, built once per app from the Config: Host, Origin and API-key
policies, input limits, rate limits and the audit log. No aiohttp.

The HTTP layer wires them in (``http/state.py``): the guard middleware applies the policies to
every request by route family; the router calls ``Security.check_call`` on every call that
would reach an agent, whatever route made it, and tells the throttle about each settled call;
the hub's session events feed ``Security.session_event``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Call, CallRecord
from mcp_local_provider.core.config import Config, ConfigError
from mcp_local_provider.core.registry import Session
from mcp_local_provider.obs import health
from mcp_local_provider.policy.audit import AuditLog, load_or_create_key
from mcp_local_provider.policy.digest import PromptDigester
from mcp_local_provider.policy.hosts import HostPolicy, OriginPolicy
from mcp_local_provider.policy.input_limits import InputLimits, check_session_id
from mcp_local_provider.policy.keys import ApiKeys, key_digest, keys_from_text
from mcp_local_provider.policy.rate_limits import FailureLimiter, HandshakeSlots, SessionThrottle

log = structlog.get_logger("mcp_local_provider.security")


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

    def check_call(self, call: Call) -> None:
        """Refuse a call the audit log could not record, or whose input is over the limits."""
        if not self.audit.healthy:
            raise errors.AuditUnavailable(
                "the audit log cannot be written right now; requests are refused until it can"
            )
        self.limits.check(call.kind, call.model, call.payload)
        if call.session_hint is not None:
            check_session_id(call.session_hint, param="X-MCP-Session")

    def session_event(self, action: str, session: Session, details: dict[str, Any]) -> None:
        """One audit line per session event (a hub observer)."""
        self.audit.event(
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

    def failover_event(self, pending: CallRecord, reason: str) -> None:
        """One audit line per attempt given up before its first frame (a router observer of
        failovers); the request's own line follows when it ends."""
        call, session = pending.call, pending.session
        self.audit.event(
            {
                "event": "failover",
                "request_id": call.request_id,
                "session_id": session.id,
                "agent_id": session.agent_id,
                "model": call.model,
                "reason": reason,
                "error": pending.outcome,
                "cooling_seconds": round(pending.cooled, 1) if pending.cooled else None,
            }
        )

    def audit_health(self) -> dict[str, Any]:
        """The audit log's ``/health/deep`` component."""
        audit = self.audit
        return health.component(
            health.HEALTHY if audit.healthy else health.UNHEALTHY,
            None if audit.healthy else "the audit log cannot be written; requests are refused",
            lines_written=audit.written,
            lines_lost=audit.lost,
            failures=audit.failures,
        )


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
