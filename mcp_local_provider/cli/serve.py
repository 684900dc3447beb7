"""``mcp-local-provider serve``: run the daemon, asking the user about agents on the terminal."""

from __future__ import annotations

import asyncio
import difflib
import importlib
import sys
from collections.abc import Callable

import structlog

from mcp_local_provider.agent.backends import CLI_BACKENDS
from mcp_local_provider.cli.consent import TerminalPrompt, announce
from mcp_local_provider.core.catalog import name_key
from mcp_local_provider.core.config import Config, stdin_is_tty
from mcp_local_provider.core.hub import Hub
from mcp_local_provider.http.server import serve
from mcp_local_provider.obs.logs import configure

log = structlog.get_logger("mcp_local_provider.serve")


def known_models(config: Config) -> list[str]:
    """The model names this machine's own agents would serve: the echo agent's, each CLI
    backend's default, those listed in ``[agent.backends.*]`` and the MCP server's."""
    names = ["echo"]
    for backend in CLI_BACKENDS.values():
        names.extend(backend.default_models)
    for settings in config.agent.backends.values():
        names.extend(settings.models)
    names.extend(config.mcp_models)
    return list(dict.fromkeys(names))


def unknown_alias_targets(config: Config) -> list[str]:
    """A warning for each alias whose target none of ``known_models`` is: most likely a typo
    (an agent of another kind may still serve it, so this does not stop start-up)."""
    known = known_models(config)
    keys = {name_key(n) for n in known}
    warnings = []
    for alias, target in config.models.aliases.items():
        if name_key(target) in keys:
            continue
        likely = difflib.get_close_matches(target, known, n=1, cutoff=0.6)
        hint = f"; did you mean {likely[0]!r}?" if likely else ""
        warnings.append(
            f"alias {alias!r} points at {target!r}, which no built-in or configured backend "
            f"serves{hint} (it answers only while an agent serving {target!r} is connected)"
        )
    return warnings


def run(config: Config) -> int:
    configure(config)
    for warning in unknown_alias_targets(config):
        print(f"mcp-local-provider: warning: {warning}", file=sys.stderr)
        log.warning("alias_target_unknown", message=warning)
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
