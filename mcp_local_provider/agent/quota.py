"""Recognising a vendor's refusal for a rate limit or an exhausted quota in what each CLI (or
an OpenAI-compatible upstream) says, and when it ends. Pure functions, no I/O: each takes what
its backend already read (an event, an error object, stderr, a response's status and headers)
and returns a ``QuotaSignal``, or None when the failure is something else.

The signal travels to the daemon as the error's code (``rate_limited``) and ``retry_after``
(see docs/agent-protocol.md), so the daemon cools the session down and routes around it.
Every pattern here was taken from a recording of the real CLI refused by its model API with a
429 (``tests/fixtures/*/rate_limited.*``); unknown shapes are simply not recognised.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from mcp_local_provider.agent.backend import BackendError

#: The error code a refused request is reported with.
CODE = "rate_limited"


@dataclass(frozen=True)
class QuotaSignal:
    """The vendor refused for a rate limit or quota; ``retry_after``: seconds until it takes
    requests again, when the CLI said (None: unknown, the daemon backs off)."""

    retry_after: float | None = None


class QuotaError(BackendError):
    """A backend's request was refused by its vendor for a rate limit or quota."""

    def __init__(self, message: str, signal: QuotaSignal, code: str = CODE) -> None:
        super().__init__(message, code)
        self.retry_after = signal.retry_after


def refused(signal: QuotaSignal | None, message: str, code: str = "backend_error") -> BackendError:
    """The error a backend raises: a QuotaError when ``signal`` says the vendor refused (its
    code ``rate_limited`` unless the backend has a more precise one)."""
    if signal is not None:
        return QuotaError(message, signal, CODE if code == "backend_error" else code)
    return BackendError(message, code)


def retry_after_of(error: BackendError) -> float | None:
    """The reset time a backend's error carries (None for other errors)."""
    return error.retry_after if isinstance(error, QuotaError) else None


# -- Claude Code ----------------------------------------------------------------------------

#: Claude Code's older wording of a plan's usage limit: "Claude AI usage limit reached|<epoch>".
_CLAUDE_LIMIT = re.compile(r"usage limit reached\|(\d{9,11})", re.IGNORECASE)


def claude(event: Mapping[str, Any], now: Callable[[], float] = time.time) -> QuotaSignal | None:
    """Claude Code's ``result`` (or ``assistant``) event of a refused turn: ``api_error_status``
    429 / ``api_error_type`` ``rate_limit_error`` / ``error`` ``rate_limit``; a
    ``rate_limit_event`` whose status is ``rejected`` (its ``resetsAt`` is the reset)."""
    kind = event.get("type")
    if kind == "rate_limit_event":
        info = event.get("rate_limit_info") or {}
        if info.get("status") != "rejected":
            return None
        return QuotaSignal(_until(info.get("resetsAt"), now))
    text = str(event.get("result") or "")
    limit = _CLAUDE_LIMIT.search(text)
    if limit:
        return QuotaSignal(_until(int(limit.group(1)), now))
    if (
        event.get("api_error_status") == 429
        or event.get("api_error_type") == "rate_limit_error"
        or event.get("error") == "rate_limit"
    ):
        return QuotaSignal()
    return None


# -- Codex ----------------------------------------------------------------------------------

_CODEX_INFO = {"usageLimitExceeded", "usage_limit_exceeded", "rateLimitExceeded"}
_CODEX_AT = re.compile(
    r"try again at (\w{3})\w* (\d{1,2})(?:st|nd|rd|th)?,? (\d{4}),? (\d{1,2}):(\d{2}) ?([AP]M)?",
    re.IGNORECASE,
)
_CODEX_IN = re.compile(r"try again in ([\d\s\w,.]+)", re.IGNORECASE)
_UNITS = {"day": 86400, "hour": 3600, "minute": 60, "min": 60, "second": 1, "sec": 1}


def codex(
    error: Mapping[str, Any] | None, now: Callable[[], float] = time.time
) -> QuotaSignal | None:
    """Codex app-server's turn error (``turn/completed`` with ``turn.error``, or an ``error``
    notification's ``error``) whose ``codexErrorInfo`` is ``usageLimitExceeded``; its message
    says when to try again ("... try again at Mar 17th, 2030 5:46 PM", the machine's local
    time, or "try again in 2 hours 5 minutes")."""
    if not error:
        return None
    info = error.get("codexErrorInfo")
    if isinstance(info, dict):
        info = next(iter(info), None)
    message = str(error.get("message") or "")
    if info not in _CODEX_INFO and "usage limit" not in message.lower():
        return None
    return QuotaSignal(_codex_reset(message, now))


def _codex_reset(message: str, now: Callable[[], float]) -> float | None:
    at = _CODEX_AT.search(message)
    if at:
        month, day, year, hour, minute, half = at.groups()
        hours = int(hour)
        if half:
            hours = hours % 12 + (12 if half.upper() == "PM" else 0)
        try:
            date = datetime.strptime(f"{month.title()} {day} {year}", "%b %d %Y")
            moment = date.replace(hour=hours, minute=int(minute))
        except ValueError:
            return None
        return _until(moment.timestamp(), now)  # naive: the machine's local time, as Codex
    within = _CODEX_IN.search(message)
    if within:
        total = 0.0
        for amount, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", within.group(1).lower()):
            unit = unit.rstrip("s")
            if unit in _UNITS:
                total += float(amount) * _UNITS[unit]
        return total or None
    return None


# -- Gemini CLI -----------------------------------------------------------------------------

_GEMINI_RETRY = re.compile(r"retry after (\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
_GEMINI_DELAY_MS = re.compile(r"retryDelayMs:\s*(\d+)")


def gemini(message: str | None, stderr: str = "") -> QuotaSignal | None:
    """Gemini CLI's error (the ``result`` event's ``error.message``, else its stderr):
    ``RESOURCE_EXHAUSTED`` / "Resource has been exhausted" / a 429; "Suggested retry after
    1800s." (or ``retryDelayMs`` on stderr) is the reset."""
    text = f"{message or ''}\n{stderr}"
    lowered = text.lower()
    if not (
        "resource_exhausted" in lowered
        or "resource has been exhausted" in lowered
        or "status: 429" in lowered
        or ("quota" in lowered and "exceeded" in lowered)
    ):
        return None
    found = _GEMINI_RETRY.search(text)
    if found:
        return QuotaSignal(float(found.group(1)))
    delay = _GEMINI_DELAY_MS.search(text)
    return QuotaSignal(int(delay.group(1)) / 1000 if delay else None)


# -- An OpenAI-compatible upstream ----------------------------------------------------------


def upstream(
    status: int, headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> QuotaSignal | None:
    """An upstream's 429: ``Retry-After`` (seconds or an HTTP date) is the reset."""
    if status != 429:
        return None
    return QuotaSignal(_retry_after(headers.get("Retry-After") or headers.get("retry-after"), now))


def _retry_after(value: str | None, now: Callable[[], float]) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return _until(moment.timestamp(), now)


def _until(moment: Any, now: Callable[[], float]) -> float | None:
    """Seconds from ``now`` until ``moment`` (Unix seconds, or milliseconds), or None."""
    if isinstance(moment, bool) or not isinstance(moment, int | float):
        return None
    if moment > 1e11:  # milliseconds
        moment /= 1000
    return max(0.0, float(moment) - now())
