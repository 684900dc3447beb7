"""``mcp-local-provider usage``: what each session served, per day and model, from the usage
database (read-only, so a running daemon is not disturbed)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from typing import Any, TextIO

from mcp_local_provider.cli.common import CliError
from mcp_local_provider.core.config import Config
from mcp_local_provider.obs.usage import DATABASE
from mcp_local_provider.obs.usage_report import parse_since, read_rows, summed

COLUMNS = (
    ("requests", "REQUESTS"),
    ("errors", "ERRORS"),
    ("input_tokens", "INPUT TOKENS"),
    ("output_tokens", "OUTPUT TOKENS"),
    ("failovers", "FAILOVERS"),
    ("cooling_seconds", "COOLING"),
)


def run(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        days = parse_since(args.since)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    path = config.state_dir / DATABASE
    try:
        rows = summed(read_rows(path, days), args.by)
    except sqlite3.Error as exc:
        raise CliError(f"the usage database {path} cannot be read: {exc}") from None
    if args.json:
        print(json.dumps({"since_days": days, "by": args.by, "rows": rows}), file=out)
    else:
        print(render(rows, args.by, days), file=out)
    return 0


def render(rows: list[dict[str, Any]], by: str | None, days: int) -> str:
    """A table, one line per row, with a total line; ``*`` marks estimated tokens."""
    period = "today" if days == 1 else f"the last {days} days"
    if not rows:
        return f"no usage recorded in {period}"
    keys = [by] if by else ["day", "session", "model"]
    header = [k.upper() for k in keys] + [title for _, title in COLUMNS]
    lines = [header]
    totals = dict.fromkeys((name for name, _ in COLUMNS), 0.0)
    for row in rows:
        cells = [str(row[k]) for k in keys]
        for name, _ in COLUMNS:
            totals[name] += row[name]
            cells.append(_cell(name, row[name], bool(row.get("estimated"))))
        lines.append(cells)
    lines.append(["total"] + [""] * (len(keys) - 1) + [_cell(n, totals[n]) for n, _ in COLUMNS])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(
            cell.rjust(widths[i]) if i >= len(keys) else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ).rstrip()
        for line in lines
    )
    if any(row.get("estimated") for row in rows):
        text += "\n* tokens estimated by the daemon (the agent reported none)"
    return f"usage in {period}\n{text}"


def _cell(name: str, value: float, estimated: bool = False) -> str:
    if name == "cooling_seconds":
        return f"{value:.0f}s"
    mark = "*" if estimated and name.endswith("_tokens") else ""
    return f"{int(value)}{mark}"
