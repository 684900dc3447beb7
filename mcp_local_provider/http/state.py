"""What the handlers share: the app's ``State`` and every key the HTTP layer stores under.

``build_state`` wires the daemon together once per app, each collaborator handed to the next
through its constructor: the defences and metrics first, then the registry, the router (with
the defences' checks and rate limits and the observers of settled calls), the hub (with the
observers of session events) and the model catalog.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from mcp_local_provider.core.call import RequestScope, Timeouts
from mcp_local_provider.core.catalog import Catalog
from mcp_local_provider.core.config import Config
from mcp_local_provider.core.hub import Hub
from mcp_local_provider.core.registry import Registry, Session, SessionLimits
from mcp_local_provider.core.router import Failover, Router
from mcp_local_provider.http.ui.state import PageState
from mcp_local_provider.obs import usage as usage_db
from mcp_local_provider.obs.calls import observe_call, observe_failover
from mcp_local_provider.obs.figures import live_figures
from mcp_local_provider.obs.metrics import Metrics
from mcp_local_provider.obs.traffic import Traffic
from mcp_local_provider.obs.usage import UsageStore, usage_health
from mcp_local_provider.policy import defences
from mcp_local_provider.policy.defences import Security


@dataclass
class State:
    """Everything the handlers share, built once per app."""

    config: Config
    bridge_token: str
    approval: str
    registry: Registry
    router: Router
    hub: Hub
    catalog: Catalog
    security: Security
    #: This app's collectors; ``metrics.registry`` is what ``GET /metrics`` exposes.
    metrics: Metrics
    #: ``time.time()`` when the app was built (uptime, ``start_time_seconds``).
    started_at: float = field(default_factory=time.time)
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    traffic: Traffic = field(default_factory=Traffic)
    #: Usage per day, session and model, kept across restarts (also at ``app[USAGE]``).
    usage: UsageStore | None = None
    #: ``/health/deep`` components by name; each returns ``health.component(...)``.
    health_checks: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)


STATE = web.AppKey("state", State)
#: The usage store (``obs/usage.py``): ``await app[USAGE].rows(since_days)``.
USAGE = web.AppKey("usage", UsageStore)
#: The request's scope, opened by the outermost middleware (see ``core/call.py``).
SCOPE = web.RequestKey("request_scope", RequestScope)
#: The web page's logins and usage source (``http/ui``); set only when ``ui`` is on.
PAGE = web.AppKey("page", PageState)
#: The app's OpenAPI document (``http/openapi.py``), built once.
OPENAPI = web.AppKey("openapi", dict[str, Any])
#: Says the request's tools were not offered to its agent (``RequestScope.tools_not_offered``),
#: added when the response is prepared, streamed or not.
TOOLS_HEADER = "X-MCP-Tools"
#: Names the model that served the request when a fallback model did (see ``core/router.py``).
SERVED_MODEL_HEADER = "X-MCP-Served-Model"
#: Says the request's structured output format was not applied by its agent
#: (``RequestScope.format_not_applied``).
FORMAT_HEADER = "X-MCP-Format"


def build_state(config: Config, bridge_token: str, approval: str) -> State:
    """The daemon's parts for one app; reads the API keys file and the audit key."""
    security = defences.build(config)
    metrics = Metrics(CollectorRegistry())
    security.audit.on_failed_line = metrics.audit_write_failed
    usage = UsageStore(config.state_dir / usage_db.DATABASE, config.usage_retention_days)
    registry = Registry(
        SessionLimits(
            allowed_scopes=tuple(config.allowed_scopes),
            default_ttl_seconds=config.default_ttl_seconds,
            max_ttl_seconds=config.max_ttl_seconds,
            max_requests=config.max_requests,
            max_concurrency=config.max_concurrency,
            reconnect_grace=config.reconnect_grace,
        )
    )
    router = Router(
        registry,
        Timeouts(
            first_chunk=config.first_chunk_timeout,
            idle=config.idle_timeout,
            total=config.total_timeout,
            reconnect_grace=config.reconnect_grace,
        ),
        checks=[security.check_call],
        observers=[
            functools.partial(observe_call, metrics),
            security.throttle.settled,
            usage.observe_call,
        ],
        throttle=security.throttle,
        queue_limit=config.max_queued_requests,
        max_buffered=config.max_buffered_bytes,
        failover=Failover(
            attempts=config.models.failover_attempts,
            fallbacks=config.models.fallbacks,
            cooldown_initial=config.models.cooldown_initial,
            cooldown_max=config.models.cooldown_max,
            routing=config.models.routing,
        ),
        on_failover=[
            functools.partial(observe_failover, metrics),
            security.failover_event,
            usage.observe_failover,
        ],
    )

    def count_event(action: str, _session: Session, _details: dict[str, Any]) -> None:
        metrics.session_event(action)

    hub = Hub(
        registry,
        router,
        approval=approval,
        approval_timeout=config.approval_timeout,
        away_timeout=config.away_timeout,
        observers=[count_event, security.session_event],
    )
    catalog = Catalog(
        registry,
        config.models.aliases,
        config.models.default_context_length,
        config.models.tools,
        config.models.tools_per_model,
        config.models.fallbacks,
    )
    state = State(config, bridge_token, approval, registry, router, hub, catalog, security, metrics)
    state.usage = usage
    state.health_checks["audit"] = security.audit_health
    state.health_checks["usage"] = functools.partial(usage_health, usage)
    metrics.start_time.set(state.started_at)
    metrics.track(functools.partial(live_figures, registry, router))
    return state
