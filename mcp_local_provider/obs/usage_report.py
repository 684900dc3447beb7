"""Usage read back for a report (``mcp-local-provider usage``, ``GET /control/usage``): the
period asked for, the database read without a daemon, rows summed by day, session or model."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mcp_local_provider.obs.usage import UsageRow, query_rows


def read_rows(
    path: Path, since_days: int, clock: Callable[[], float] = time.time
) -> list[UsageRow]:
    """The rows of the database at ``path`` without a daemon (``mcp-local-provider usage``):
    opened read-only, so a running daemon is never disturbed; [] if there is none. Raises
    sqlite3.Error if it cannot be read."""
    if not path.exists():
        return []
    first = time.strftime("%Y-%m-%d", time.gmtime(clock() - max(0, since_days - 1) * 86400))
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        return query_rows(db, first)
    finally:
        db.close()


#: What ``by`` may group rows by (besides none: one row per day, session and model).
GROUPINGS = ("day", "session", "model")
#: The longest period that may be asked for, in days.
MAX_DAYS = 3650


def parse_since(text: str | None, default: int = 7) -> int:
    """``7d``, ``24h`` or ``30`` (days) as whole days counted back from today (at least 1)."""
    if not text:
        return default
    value = text.strip().lower()
    try:
        hours = value.endswith("h")
        days = -(-int(value[:-1]) // 24) if hours else int(value.removesuffix("d"))
    except ValueError:
        raise ValueError(
            f"since must be a number of days (7d) or hours (24h), not {text!r}"
        ) from None
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"since must be 1 to {MAX_DAYS} days")
    return days


def summed(rows: Iterable[UsageRow], by: str | None) -> list[dict[str, Any]]:
    """``rows`` as JSON objects, summed by ``by`` (``day``, ``session`` or ``model``)."""
    if by is None:
        return [row.as_dict() for row in rows]
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    sums: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = getattr(row, by)
        total = sums.setdefault(
            key,
            {by: key, "requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0,
             "estimated": False, "failovers": 0, "cooling_seconds": 0.0, "errors_by_outcome": {}},
        )  # fmt: skip
        for name in ("requests", "errors", "input_tokens", "output_tokens", "failovers"):
            total[name] += getattr(row, name)
        total["cooling_seconds"] = round(total["cooling_seconds"] + row.cooling_seconds, 1)
        total["estimated"] = total["estimated"] or row.estimated
        for outcome, count in row.errors_by_outcome:
            total["errors_by_outcome"][outcome] = total["errors_by_outcome"].get(outcome, 0) + count
    return [sums[key] for key in sorted(sums)]
