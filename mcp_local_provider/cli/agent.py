"""``mcp-local-provider agent``: run an agent with a backend, or ``--check`` the backend."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from mcp_local_provider.agent import AgentClient, AgentRefused, BackendError
from mcp_local_provider.agent.backend import Backend
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.check import check
from mcp_local_provider.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    CliError,
    bridge_token,
    http_url,
)
from mcp_local_provider.core.config import Config, ConfigError
from mcp_local_provider.obs.logs import configure


def _scopes_for(backend: Backend) -> tuple[str, ...]:
    """Ask for the embeddings scope only when the backend serves an embedding model."""
    serves_embeddings = any("embedding" in m.capabilities for m in backend.models())
    return ("inference", "embeddings") if serves_embeddings else ("inference",)


def main(args: argparse.Namespace, config: Config) -> int:
    configure(config)
    return asyncio.run(run(args, config))


async def run(args: argparse.Namespace, config: Config) -> int:
    name = args.backend or config.agent.backend
    settings = config.agent.settings_for(name)
    flags = {"binary": args.binary, "base_url": args.base_url}
    settings = settings.model_copy(update={k: v for k, v in flags.items() if v is not None})
    try:
        backend = create(name, models=args.models, settings=settings)
    except ValueError as exc:  # an unknown backend name: a configuration error (exit 2)
        raise ConfigError(str(exc)) from None
    if args.check:
        try:
            works = await check(backend, lambda line: print(line, flush=True))
        finally:
            await backend.close()
        return 0 if works else EXIT_ERROR
    token = bridge_token(config)
    url = args.url or http_url(config, None).replace("http://", "ws://", 1) + "/agent"
    _refuse_loop(settings.base_url, url)
    try:
        await backend.start()
    except BackendError as exc:
        await backend.close()
        raise CliError(f"the {name} backend cannot start: {exc.message}") from None
    agent_id = args.agent_id or f"{name}-{socket.gethostname().split('.')[0]}"[:128]

    def pending(frame: dict[str, Any]) -> None:
        print(
            f"Waiting for approval of {frame['session_id']}. Approve it with:\n"
            f"  {frame['approve_with']}",
            file=sys.stderr,
            flush=True,
        )

    def granted(frame: dict[str, Any]) -> None:
        print(
            f"Approved: serving {', '.join(frame.get('models') or [])} as {frame['session_id']} "
            f"until {frame.get('expires_at')}",
            file=sys.stderr,
            flush=True,
        )

    client = AgentClient(
        url,
        token,
        backend,
        agent_id=agent_id,
        label=args.label or f"{name} agent on {socket.gethostname()}",
        scopes=_scopes_for(backend),
        ttl_seconds=args.ttl,
        max_concurrency=args.max_concurrency or config.agent.max_concurrency,
        on_pending=pending,
        on_granted=granted,
    )
    # Ctrl-C and SIGTERM stop the agent the same way: it says goodbye, so its session ends at
    # once, and the backend ends every process it started. Both are handled as event loop
    # callbacks: cancelling the running task from inside a signal handler could be lost in a
    # narrow window. A second Ctrl-C stops at once.
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    signals: list[signal.Signals] = []
    stopping: list[asyncio.Task[None]] = []

    def on_signal(sig: signal.Signals) -> None:
        signals.append(sig)
        if len(signals) == 1:
            stopping.append(asyncio.create_task(client.stop()))
        elif main_task is not None:
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    started = time.monotonic()
    try:
        reason = await client.run()
    except AgentRefused as exc:
        raise CliError(str(exc)) from None
    except BackendError as exc:
        raise CliError(f"the {name} backend cannot start: {exc.message}") from None
    except asyncio.CancelledError:
        if len(signals) < 2:
            raise
        return EXIT_INTERRUPTED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await backend.close()
    print(
        f"Session ended ({reason}) after {time.monotonic() - started:.0f} s.",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED if signal.SIGINT in signals else 0


def _refuse_loop(base_url: str | None, agent_url: str) -> None:
    """An openai upstream that is this very daemon would send each request back to itself."""
    if not base_url:
        return

    def where(url: str) -> tuple[str, int | None]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        return ("127.0.0.1" if host == "localhost" else host), parts.port

    if where(base_url) == where(agent_url):
        raise CliError(
            f"--base-url {base_url} is the daemon this agent connects to: requests would loop; "
            "point it at another server"
        )
