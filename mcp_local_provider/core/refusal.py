"""What an agent's error says about trying elsewhere: a vendor's refusal (rate limit, quota),
an error another session may not have, or neither. No I/O.

The agent protocol's error object (``model_result`` with ``status: "error"``) carries ``code``
and ``message``; agents may add ``retry_after`` (seconds until the vendor takes requests
again) and ``retryable`` (another session may well succeed). Older agents send neither, and
their errors stay what they were: final.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Codes saying the agent's vendor refused for a rate limit or an exhausted quota: the session
#: cools down, and the request goes elsewhere.
QUOTA_CODES = frozenset({"rate_limited", "quota_exceeded", "usage_limit", "upstream_rate_limited"})
#: Codes another session may not share (the agent's own process or upstream is unwell).
RETRYABLE_CODES = frozenset({"overloaded", "unavailable", "backend_unavailable"})
#: The longest reset an agent may announce (a week); longer values are clamped.
MAX_RETRY_AFTER = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Refusal:
    """Why a session's attempt may be retried on another: ``quota`` (cool the session down)
    or ``retryable``; ``retry_after`` is the agent's reset time in seconds, if it gave one."""

    reason: str  # "quota" | "retryable"
    code: str
    retry_after: float | None = None


def refusal_of(error: Mapping[str, Any] | None) -> Refusal | None:
    """The refusal an agent's error object reports, or None for an ordinary (final) error."""
    if not error:
        return None
    code = str(error.get("code") or "")
    retry_after = _seconds(error.get("retry_after"))
    if code in QUOTA_CODES:
        return Refusal("quota", code, retry_after)
    if code in RETRYABLE_CODES or error.get("retryable") is True:
        return Refusal("retryable", code or "retryable", retry_after)
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return min(float(value), MAX_RETRY_AFTER)


def cooldown(retry_after: float | None, strikes: int, initial: float, longest: float) -> float:
    """Seconds a refused session cools down: the agent's reset time when it gave one, else a
    backoff that doubles with each refusal in a row (``strikes``, from 1)."""
    if retry_after is not None:
        return max(1.0, retry_after)
    return float(min(longest, initial * 2.0 ** max(0, strikes - 1)))
