"""Usage as the control API shows it: the rows of ``GET /control/usage``, summed the way the
caller asks, and each session's tokens of today beside its description."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.registry import Session
from mcp_local_provider.obs.usage import UsageRow, UsageStore
from mcp_local_provider.obs.usage_report import parse_since, summed


def since_days(text: str | None) -> int:
    """The ``since`` query parameter as days, or a 400 saying what it may be."""
    try:
        return parse_since(text)
    except ValueError as exc:
        raise errors.BadRequest(str(exc), param="since") from None


def grouped(rows: list[UsageRow], by: str | None) -> list[dict[str, Any]]:
    """The rows, summed by ``by``, or a 400 saying what it may be."""
    try:
        return summed(rows, by)
    except ValueError as exc:
        raise errors.BadRequest(str(exc), param="by") from None


async def described(
    sessions: Iterable[Session], now: float, usage: UsageStore | None
) -> list[dict[str, Any]]:
    """Each session's description with its tokens of today (by its label, as usage counts)."""
    today: dict[str, dict[str, Any]] = {}
    if usage is not None:
        for row in await usage.rows(1):
            tokens = today.setdefault(
                row.session, {"input_tokens": 0, "output_tokens": 0, "estimated": False}
            )
            tokens["input_tokens"] += row.input_tokens
            tokens["output_tokens"] += row.output_tokens
            tokens["estimated"] = tokens["estimated"] or row.estimated
    views = []
    for session in sessions:
        view = session.describe(now)
        view["tokens_today"] = today.get(
            session.label or session.agent_id,
            {"input_tokens": 0, "output_tokens": 0, "estimated": False},
        )
        views.append(view)
    return views
