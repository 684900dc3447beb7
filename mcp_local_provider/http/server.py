"""``serve``: start-up, the main loop (wait for a signal), and graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable

import structlog
from aiohttp import web

from mcp_local_provider import __version__
from mcp_local_provider.core.addresses import is_loopback_host
from mcp_local_provider.core.config import Config
from mcp_local_provider.core.hub import Hub
from mcp_local_provider.http.app import create_app, stop_serving
from mcp_local_provider.http.listeners import (
    ConnectionGate,
    ListenError,
    runner_options,
    start_sites,
)
from mcp_local_provider.http.state import PAGE, STATE
from mcp_local_provider.policy.tokens import fingerprint, load_or_create

log = structlog.get_logger("mcp_local_provider.server")

#: Container allocations between two passes of the collector over the young generation.
GC_YOUNG_THRESHOLD = 3_000


#: Sets up how the user is asked about pending agents, given the hub and the approval mode;
#: returns what to call on shutdown (or None).
Consent = Callable[[Hub, str], Callable[[], None] | None]


async def serve(
    config: Config,
    *,
    approval: str,
    consent: Consent | None = None,
    show_page_link: bool = False,
) -> int:
    """Run the daemon until SIGINT or SIGTERM; returns the process exit code.
    ``show_page_link``: print a login link for the web page once listening (on a terminal)."""
    token, token_path = load_or_create(config)
    app = create_app(config, bridge_token=token, approval=approval)
    close_consent = consent(app[STATE].hub, approval) if consent is not None else None

    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        shutdown_timeout=2.0,  # in-flight calls were drained already (stop_serving)
        **runner_options(config),
    )
    await runner.setup()
    if not is_loopback_host(config.host):
        print(
            f"mcp-local-provider: WARNING: listening on {config.host}, reachable from other "
            "machines; every editor request needs an API key",
            file=sys.stderr,
        )
        log.warning("REMOTE_ACCESS_ON", host=config.host, api_keys="required")
    try:
        sites = await start_sites(runner, config, ConnectionGate(config.max_connections))
    except ListenError as exc:
        await runner.cleanup()
        print(f"mcp-local-provider: {exc}", file=sys.stderr)
        return 1

    # What is loaded by now (modules, the app, its routes) lives as long as the process: keep
    # it out of the collector's full passes, each of which would otherwise walk it all with
    # the event loop stopped (~40 ms on a slow machine, every stream paused meanwhile).
    gc.collect()
    gc.freeze()
    # A request allocates a few hundred container objects, most freed by reference counting
    # at its end; at the default threshold (700) a young-generation pass ran every ~17
    # requests, each walking the objects of every request still in flight and promoting
    # them to older generations that are walked again later. A higher threshold makes passes
    # rarer and leaves less to promote (measured: a few per cent less CPU per request, the
    # p99 latency unchanged).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    log.info(
        "listening",
        url=sites[0].name,
        also=[site.name for site in sites[1:]],
        version=__version__,
        loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        approval=approval,
        token_file=str(token_path) if token_path else "(from config)",
        token_fingerprint=fingerprint(token),
    )
    page = app.get(PAGE)
    if page is not None:
        page.listening = [site.name for site in sites]
        if show_page_link:
            link = f"{sites[0].name}/ui/login?code={page.access.new_code()}"
            print(
                f"mcp-local-provider: web page: {link}\n  (this link works once, within "
                f"{config.ui_login_ttl:g} s; for a new one: mcp-local-provider ui --open)",
                file=sys.stderr,
            )
    if approval == "auto":
        log.warning(
            "AUTO_APPROVAL_ON",
            message="every agent that knows the bridge token is approved without asking; "
            "use this only for development and tests",
        )

    stop = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal() -> None:
        # The handlers stay until the end: a second Ctrl-C must not raise KeyboardInterrupt
        # in whatever task runs (an agent socket's handler would log a 500). It cuts the
        # drain short instead; streams still end with their in-band error.
        if stop.is_set():
            log.info("shutdown_hurried", in_flight=app[STATE].router.in_flight)
            hurry.set()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await stop.wait()
    finally:
        log.info("shutting_down", in_flight=app[STATE].router.in_flight)
        if close_consent is not None:
            close_consent()
        for site in sites:
            await site.stop()  # no new connections
        await stop_serving(app, config.shutdown_grace, hurry)
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("stopped")
    return 0
