"""What every command shares: the error type, exit codes, the config, the bridge token, the
daemon's URL and the session table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mcp_local_provider.core.config import Config, base_url, load_config
from mcp_local_provider.policy.tokens import TokenError, read_existing

EXIT_ERROR = 1
EXIT_USAGE = 2
#: Stopped by Ctrl-C (SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure to report as one line on stderr."""


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="PATH", help="TOML config file")
    parser.add_argument(
        "--token-file", type=Path, metavar="FILE", help="file holding the bridge token"
    )


def config_for(args: argparse.Namespace, **flags: Any) -> Config:
    """The config from the file and environment, with the command's flags on top."""
    overrides = {"token_file": getattr(args, "token_file", None), **flags}
    return load_config(args.config, overrides=overrides)


def bridge_token(config: Config) -> str:
    """The bridge token from the token file, or a CliError saying why it cannot be read."""
    try:
        return read_existing(config)
    except TokenError as exc:
        raise CliError(str(exc)) from None


def http_url(config: Config, url: str | None) -> str:
    """The daemon's base URL: ``url`` if given, else from the config's host and port."""
    return (url or base_url(config.host, config.port)).rstrip("/")


def _tokens(today: dict[str, Any] | None) -> str:
    """``in/out`` tokens of today (``*``: partly estimated), or ``-`` if unknown."""
    if not today:
        return "-"
    mark = "*" if today.get("estimated") else ""
    return f"{today.get('input_tokens', 0)}/{today.get('output_tokens', 0)}{mark}"


def _warm(warm: dict[str, int] | None) -> str:
    """Processes the agent keeps started ahead: ready/starting/busy, or - if it reports none."""
    if not warm:
        return "-"
    return f"{warm.get('ready', 0)}/{warm.get('starting', 0)}/{warm.get('busy', 0)}"


def session_table(sessions: list[dict[str, Any]]) -> str:
    if not sessions:
        return "no sessions"
    header = (
        "SESSION", "STATE", "AGENT", "LABEL", "MODELS", "EXPIRES IN", "REQUESTS", "IN FLIGHT",
        "TOKENS TODAY", "COOLING", "WARM R/S/B",
    )  # fmt: skip
    rows = [header]
    for s in sessions:
        expires = s.get("expires_in")
        rows.append(
            (
                s["session_id"],
                s["state"] + ("" if s.get("connected") or s["state"] != "active" else " (away)"),
                s["agent_id"],
                (s.get("label") or "")[:30],
                ",".join(s.get("models") or []),
                "-" if expires is None else f"{int(expires)}s",
                f"{s['requests']}/{s['max_requests']}",
                f"{s['in_flight']}/{s['max_concurrency']}",
                _tokens(s.get("tokens_today")),
                f"{int(s['cooling_left'])}s" if s.get("cooling") else "-",
                _warm(s.get("warm")),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )
