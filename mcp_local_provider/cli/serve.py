"""``mcp-local-provider serve``: run the daemon, asking the user about agents on the terminal."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from mcp_local_provider.cli.consent import TerminalPrompt, announce
from mcp_local_provider.core.config import Config, stdin_is_tty
from mcp_local_provider.core.sessions import Hub
from mcp_local_provider.http.server import serve
from mcp_local_provider.obs.logs import configure


def run(config: Config) -> int:
    configure(config)
    interactive = stdin_is_tty()
    approval = config.resolved_approval(interactive)

    def consent(hub: Hub, mode: str) -> Callable[[], None] | None:
        """Every pending agent gets a log line; on a terminal in ``prompt`` mode, a question."""
        hub.subscribe_pending(announce)
        if mode != "prompt" or not interactive:
            return None
        prompt = TerminalPrompt(hub)
        hub.subscribe_pending(prompt)
        return prompt.close

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(
            serve(config, approval=approval, consent=consent, show_page_link=interactive)
        )


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the ``speed`` extra), else asyncio's own
    (None). The ``listening`` log line says which one runs."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
