"""Recent editor traffic for ``mcp-local-provider status``: requests and errors over the last
minute, in one-second buckets. No I/O; one small update per request."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WINDOW_SECONDS = 60


@dataclass
class _Bucket:
    second: int = -1
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    cancelled: int = 0


@dataclass
class Traffic:
    """Counts of finished requests, kept for ``WINDOW_SECONDS`` plus totals since start."""

    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    totals: _Bucket = field(default_factory=_Bucket)
    _buckets: list[_Bucket] = field(
        default_factory=lambda: [_Bucket() for _ in range(WINDOW_SECONDS)]
    )

    def __post_init__(self) -> None:
        self.started = self.clock()

    def record(self, status: int) -> None:
        """One finished request. ``status`` 499 means the client went away."""
        second = int(self.clock())
        bucket = self._buckets[second % WINDOW_SECONDS]
        if bucket.second != second:
            bucket.second, bucket.requests = second, 0
            bucket.client_errors = bucket.server_errors = bucket.cancelled = 0
        for counts in (bucket, self.totals):
            counts.requests += 1
            if status == 499:
                counts.cancelled += 1
            elif status >= 500:
                counts.server_errors += 1
            elif status >= 400:
                counts.client_errors += 1

    def snapshot(self) -> dict[str, Any]:
        """The last minute (``recent``) and everything since start (``total``), JSON-ready."""
        now = self.clock()
        oldest = int(now) - WINDOW_SECONDS + 1
        recent = _Bucket()
        for bucket in self._buckets:
            if bucket.second >= oldest:
                recent.requests += bucket.requests
                recent.client_errors += bucket.client_errors
                recent.server_errors += bucket.server_errors
                recent.cancelled += bucket.cancelled
        window = max(1.0, min(float(WINDOW_SECONDS), now - self.started))
        return {
            "window_seconds": WINDOW_SECONDS,
            "recent": {**_view(recent), "per_second": round(recent.requests / window, 3)},
            "total": _view(self.totals),
        }


def _view(counts: _Bucket) -> dict[str, int]:
    return {
        "requests": counts.requests,
        "client_errors": counts.client_errors,
        "server_errors": counts.server_errors,
        "cancelled": counts.cancelled,
    }
