"""``mcp-local-provider status``: a running daemon at a glance, for a person (or ``--json``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

import aiohttp

from mcp_local_provider.cli.common import CliError, bridge_token, http_url, session_table
from mcp_local_provider.core.addresses import unreachable
from mcp_local_provider.core.config import Config
from mcp_local_provider.obs.durations import duration

CLEAR = "\x1b[H\x1b[2J"


async def run(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    """Print the daemon's status once, or every ``--watch`` seconds until Ctrl-C."""
    out = out or sys.stdout
    token = bridge_token(config)
    base = http_url(config, args.url)
    if args.watch is None:
        _show(await fetch(base, token), base, args.json, out)
        return 0
    clear = out.isatty() and not args.json
    while True:
        try:
            body: dict[str, Any] | None = await fetch(base, token)
        except CliError as exc:
            body, problem = None, str(exc)
        if clear:
            out.write(CLEAR)
        if body is not None:
            _show(body, base, args.json, out)
        elif args.json:
            print(json.dumps({"error": problem}), file=out)
        else:
            print(f"{problem} (retrying)", file=out)
        if not args.json:
            print(f"\nrefreshing every {args.watch:g} s; Ctrl-C to stop", file=out)
        out.flush()
        await asyncio.sleep(args.watch)


async def fetch(base: str, token: str) -> dict[str, Any]:
    """``GET /control/status`` from the daemon at ``base``."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(base + "/control/status", headers={"Authorization": f"Bearer {token}"}) as r,
        ):
            body = await r.json(content_type=None)
            status = r.status
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        raise CliError(unreachable(base, exc)) from None
    if status >= 400 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise CliError(f"status failed ({status}): {message or body}")
    return body


def _show(body: dict[str, Any], base: str, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(body, separators=(",", ":")), file=out)
    else:
        print(render(body, base), file=out)


def render(body: dict[str, Any], base: str) -> str:
    """The plain-text view: a header of figures, then live (pending and active) sessions."""
    traffic = body.get("traffic") or {}
    recent, total = traffic.get("recent") or {}, traffic.get("total") or {}
    state = " (shutting down)" if body.get("closing") else ""
    lines = [
        f"mcp-local-provider {body.get('version', '?')} at {base}, "
        f"up {duration(body.get('uptime_seconds', 0))}{state}",
        f"agents connected {body.get('agents_connected', 0)}, "
        f"sessions {body.get('sessions_active', 0)} active and "
        f"{body.get('sessions_pending', 0)} pending, in flight {body.get('in_flight', 0)}",
        f"last {traffic.get('window_seconds', 60)} s: {_traffic(recent)}, "
        f"{recent.get('per_second', 0):.2f} requests/s",
        f"since start: {_traffic(total)}",
        "",
    ]
    sessions = body.get("sessions") or []
    live = [s for s in sessions if s.get("state") in ("pending", "active")]
    lines.append(session_table(live) if live else "no pending or active sessions")
    hidden = len(sessions) - len(live)
    if hidden:
        lines.append(
            f"({hidden} ended session(s) not shown; see: mcp-local-provider sessions list)"
        )
    return "\n".join(lines)


def _traffic(counts: dict[str, Any]) -> str:
    errors = counts.get("client_errors", 0) + counts.get("server_errors", 0)
    return (
        f"{_plural(counts.get('requests', 0), 'request')}, {_plural(errors, 'error')} "
        f"({counts.get('client_errors', 0)} client, {counts.get('server_errors', 0)} server), "
        f"{counts.get('cancelled', 0)} cancelled"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
