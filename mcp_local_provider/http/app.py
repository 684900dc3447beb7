"""The application factory: one aiohttp app hosting the editor APIs, the agent socket, the
control API and health, around one registry, router and hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import structlog
from aiohttp import web

from mcp_local_provider.core.config import Config
from mcp_local_provider.http.middleware import observe
from mcp_local_provider.http.middleware.audit import audit_lifecycle
from mcp_local_provider.http.middleware.errors import error_middleware
from mcp_local_provider.http.middleware.guard import guard_middleware, on_response_prepare
from mcp_local_provider.http.openapi import document
from mcp_local_provider.http.routes import (
    agent,
    anthropic,
    control,
    ollama,
    openai,
    ops,
    responses,
    status,
)
from mcp_local_provider.http.state import OPENAPI, PAGE, STATE, USAGE, build_state
from mcp_local_provider.http.ui import routes as page
from mcp_local_provider.http.ui.state import page_state
from mcp_local_provider.http.ui.usage import UsageSource

log = structlog.get_logger("mcp_local_provider.app")


def create_app(
    config: Config,
    *,
    bridge_token: str,
    approval: str | None = None,
    usage: UsageSource | None = None,
) -> web.Application:
    """Build the application. ``approval`` defaults to the config's (manual if unset);
    ``usage`` is what the web page's usage panel reads instead of the usage store."""
    state = build_state(config, bridge_token, approval or config.approval or "manual")
    # observe_middleware stays first: it opens the request's scope, and counts and logs every
    # request with its final status.
    app = web.Application(
        middlewares=[
            observe.observe_middleware,
            error_middleware,
            guard_middleware,
        ],
        client_max_size=config.max_body_bytes,
    )
    app[STATE] = state
    assert state.usage is not None
    app[USAGE] = state.usage
    app.on_response_prepare.append(on_response_prepare)
    for routes in (openai, anthropic, responses, ollama, agent, control, ops, status):
        app.add_routes(routes.routes)
    operations = [
        *openai.operations, *anthropic.operations, *responses.operations, *ollama.operations,
        *control.operations, *status.operations, *ops.operations,
    ]  # fmt: skip
    if config.ui:
        app[PAGE] = page_state(config, usage if usage is not None else state.usage)
        app.add_routes(page.routes)
        app.on_shutdown.append(page.close_streams)
        operations += page.operations
    app[OPENAPI] = document(operations)
    app.cleanup_ctx.append(audit_lifecycle)
    app.cleanup_ctx.append(_usage)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_shutdown)
    return app


async def _usage(app: web.Application) -> AsyncIterator[None]:
    """Open the usage store for the app's lifetime; what is counted is written at the end."""
    usage = app[USAGE]
    await usage.start()
    yield
    await usage.close()


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


async def stop_serving(
    app: web.Application, grace: float, hurry: asyncio.Event | None = None
) -> None:
    """Refuse new calls, give in-flight ones up to ``grace`` seconds (less if ``hurry`` is
    set meanwhile), then close agents (1001).

    Run it before the runner's cleanup: once aiohttp starts its own shutdown it stops reading
    from open connections, so agents could no longer deliver the answers being waited for.
    """
    state = app[STATE]
    state.router.closing = True
    if state.router.in_flight and grace > 0:
        log.info("draining", in_flight=state.router.in_flight, grace=grace)
        draining = asyncio.ensure_future(state.router.drain(grace))
        waits: set[asyncio.Future[Any]] = {draining}
        if hurry is not None:
            waits.add(asyncio.ensure_future(hurry.wait()))
        _, left = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in left:
            waiting.cancel()
    await state.hub.shutdown()
    for ws in list(state.sockets):
        with suppress(ConnectionError, RuntimeError):
            await ws.close(code=1001, message=b"shutdown")


async def _shutdown(app: web.Application) -> None:
    await stop_serving(app, grace=0)
