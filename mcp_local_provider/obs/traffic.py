"""Recent editor traffic for ``mcp-local-provider status``: requests and errors over the last
minute, in one-second buckets; and, for the web page, the last requests one by one and a feed
of them as they finish. No I/O; one small update per request. What a request carried (prompt,
answer) is never part of it: only its route, model, session, status, duration and tokens."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mcp_local_provider.core.call import RequestScope
from mcp_local_provider.obs.calls import reported_tokens

WINDOW_SECONDS = 60
#: Finished requests kept for the web page's live list.
RECENT = 50
#: Sessions whose last request time is kept, at most.
MAX_SESSIONS_SEEN = 1024


@dataclass(slots=True)  # not frozen: a frozen dataclass is several times slower to build
class Passed:
    """One finished editor request, as the web page lists it. Read it, never change it."""

    at: float  # wall clock, seconds
    method: str
    route: str  # the route's template, never the URL
    status: int
    duration_ms: float
    model: str | None = None
    session_id: str | None = None
    session_label: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    def view(self) -> dict[str, Any]:
        return asdict(self)


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
    recent: deque[Passed] = field(default_factory=lambda: deque(maxlen=RECENT))
    #: When each session last finished a request (wall clock), for the web page.
    last_used: dict[str, float] = field(default_factory=dict)
    _watchers: dict[int, Callable[[Passed], None]] = field(default_factory=dict)
    _next_watcher: int = 0

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

    def passed(self, request: Passed) -> None:
        """Keep ``request`` among the recent ones and tell every watcher (who must not block)."""
        self.recent.append(request)
        if request.session_id is not None:
            self.last_used[request.session_id] = request.at
            if len(self.last_used) > MAX_SESSIONS_SEEN:  # keep the most recent half
                latest = sorted(self.last_used.items(), key=lambda item: item[1])
                self.last_used = dict(latest[len(latest) // 2 :])
        for notify in list(self._watchers.values()):
            notify(request)

    def watch(self, notify: Callable[[Passed], None]) -> Callable[[], None]:
        """Call ``notify`` with every request that finishes from now on; returns the
        function that stops it."""
        key = self._next_watcher
        self._next_watcher += 1
        self._watchers[key] = notify
        return lambda: self._watchers.pop(key, None) and None

    @property
    def watchers(self) -> int:
        return len(self._watchers)

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


def passed(scope: RequestScope, status: int, duration: float) -> Passed:
    """A finished request as the page lists it, from its scope (no prompt, no answer)."""
    call, pending = scope.call, scope.pending
    session = pending.session if pending is not None else None
    tokens = reported_tokens(pending.usage) if pending is not None else None
    return Passed(
        at=time.time(),
        method=scope.method,
        route=scope.route,
        status=status,
        duration_ms=round(duration * 1000, 1),
        model=call.model if call is not None else None,
        session_id=session.id if session is not None else None,
        session_label=session.label if session is not None else None,
        input_tokens=tokens[0] if tokens is not None else None,
        output_tokens=tokens[1] if tokens is not None else None,
    )
