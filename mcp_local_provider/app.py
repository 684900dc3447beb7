"""The application factory: one aiohttp app hosting the editor APIs, the agent socket, the
control API and health, around one registry, router and hub."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from .config import Config
from .hub import Hub
from .metrics import Metrics
from .models import Catalog
from .registry import Registry, SessionLimits
from .router import Router, Timeouts
from .traffic import Traffic

log = structlog.get_logger("mcp_local_provider.app")


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
    started: float = field(default_factory=time.time)
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    #: This app's collectors; ``metrics.registry`` is what ``GET /metrics`` exposes.
    metrics: Metrics = field(default_factory=lambda: Metrics(CollectorRegistry()))
    traffic: Traffic = field(default_factory=Traffic)
    #: Extra ``/health/deep`` components by name; each returns ``health.component(...)``.
    health_checks: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)


STATE = web.AppKey("state", State)


def build_state(config: Config, bridge_token: str, approval: str) -> State:
    registry = Registry(
        SessionLimits(
            allowed_scopes=tuple(config.allowed_scopes),
            default_ttl_seconds=config.default_ttl_seconds,
            max_ttl_seconds=config.max_ttl_seconds,
            max_requests=config.max_requests,
            max_concurrency=config.max_concurrency,
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
    )
    hub = Hub(registry, router, approval=approval, approval_timeout=config.approval_timeout)
    catalog = Catalog(registry, config.models.aliases, config.models.default_context_length)
    return State(config, bridge_token, approval, registry, router, hub, catalog)


def create_app(
    config: Config, *, bridge_token: str, approval: str | None = None
) -> web.Application:
    """Build the application. ``approval`` defaults to the config's (manual if unset)."""
    from . import instrumentation, security
    from .api import agent, control, ollama, openai, ops, status
    from .guards import guard_middleware, on_response_prepare
    from .middlewares import error_middleware

    state = build_state(config, bridge_token, approval or config.approval or "manual")
    # observe_middleware stays first: it counts and logs every request with its final status.
    app = web.Application(
        middlewares=[
            instrumentation.observe_middleware,
            error_middleware,
            guard_middleware,
            security.audit_middleware,
        ],
        client_max_size=config.max_body_bytes,
    )
    app[STATE] = state
    instrumentation.install(app)
    security.install(app, security.build(config))
    app.on_response_prepare.append(on_response_prepare)
    app.add_routes(openai.routes)
    app.add_routes(ollama.routes)
    app.add_routes(agent.routes)
    app.add_routes(control.routes)
    app.add_routes(ops.routes)
    app.add_routes(status.routes)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_shutdown)
    return app


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """End expired sessions every ``sweep_interval`` seconds."""
    state = app[STATE]

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(state.config.sweep_interval)
            try:
                await state.hub.sweep()
            except Exception:  # keep sweeping whatever one round hit
                log.exception("sweep_failed")

    task = asyncio.create_task(sweep_forever())
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def stop_serving(app: web.Application, grace: float) -> None:
    """Refuse new calls, give in-flight ones up to ``grace`` seconds, then close agents (1001).

    Run it before the runner's cleanup: once aiohttp starts its own shutdown it stops reading
    from open connections, so agents could no longer deliver the answers being waited for.
    """
    state = app[STATE]
    state.router.closing = True
    if state.router.in_flight and grace > 0:
        log.info("draining", in_flight=state.router.in_flight, grace=grace)
        await state.router.drain(grace)
    await state.hub.shutdown()
    for ws in list(state.sockets):
        with suppress(ConnectionError, RuntimeError):
            await ws.close(code=1001, message=b"shutdown")


async def _shutdown(app: web.Application) -> None:
    await stop_serving(app, grace=0)
