"""``serve``: start-up, the main loop (wait for a signal), and graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog
from aiohttp import web

from . import __version__
from .access import is_loopback_host
from .app import STATE, create_app, stop_serving
from .config import Config, stdin_is_tty
from .consent import TerminalPrompt, announce
from .listen import ConnectionGate, ListenError, runner_options, start_sites
from .tokens import fingerprint, load_or_create

log = structlog.get_logger("mcp_local_provider.server")


def base_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def serve(config: Config) -> int:
    """Run the daemon until SIGINT or SIGTERM; returns the process exit code."""
    token, token_path = load_or_create(config)
    interactive = stdin_is_tty()
    approval = config.resolved_approval(interactive)
    app = create_app(config, bridge_token=token, approval=approval)
    hub = app[STATE].hub
    hub.on_pending.append(announce)
    prompt: TerminalPrompt | None = None
    if approval == "prompt" and interactive:
        prompt = TerminalPrompt(hub)
        hub.on_pending.append(prompt)

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

    log.info(
        "listening",
        url=sites[0].name,
        also=[site.name for site in sites[1:]],
        version=__version__,
        approval=approval,
        token_file=str(token_path) if token_path else "(from config)",
        token_fingerprint=fingerprint(token),
    )
    if approval == "auto":
        log.warning(
            "AUTO_APPROVAL_ON",
            message="every agent that knows the bridge token is approved without asking; "
            "use this only for development and tests",
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("shutting_down", in_flight=app[STATE].router.in_flight)
        if prompt is not None:
            prompt.close()
        for site in sites:
            await site.stop()  # no new connections
        await stop_serving(app, config.shutdown_grace)
        await runner.cleanup()
        log.info("stopped")
    return 0
