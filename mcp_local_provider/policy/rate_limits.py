"""Rate limits: token buckets per session, bridge-token failures per peer, and the cap on
agents awaiting approval. No I/O; time comes from an injectable clock."""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mcp_local_provider.core.call import CallRecord
from mcp_local_provider.core.registry import Session

Clock = Callable[[], float]


class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity`` per ``period`` seconds. Taking may drive
    the level below zero (a debit reported after the fact); the bucket then refills from there."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: float, period: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = self.capacity / period
        self.level = self.capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def delay(self, now: float, amount: float = 1.0) -> float:
        """Seconds until ``amount`` tokens are there (0: now)."""
        self._refill(now)
        if self.level >= amount:
            return 0.0
        return (amount - self.level) / self.rate

    def take(self, now: float, amount: float = 1.0) -> None:
        self._refill(now)
        self.level -= amount

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, math.floor(self.level))

    def full_in(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return (self.capacity - self.level) / self.rate


def usage_tokens(usage: dict[str, Any] | None) -> int:
    """Tokens an agent reported for one request (0 if it reported none)."""
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if not isinstance(total, int) or isinstance(total, bool):
        parts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
        total = sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool))
    return max(0, total)


class _Buckets:
    __slots__ = ("requests", "tokens")

    def __init__(self, requests: TokenBucket | None, tokens: TokenBucket | None) -> None:
        self.requests = requests
        self.tokens = tokens


class SessionThrottle:
    """Per-session requests per minute and tokens per minute (0: that limit is off).

    The router asks ``delay`` before giving a session a request and calls ``take`` when it
    does; ``settled`` debits the tokens the agent reported once the request is over.
    """

    def __init__(
        self, requests_per_minute: int, tokens_per_minute: int, clock: Clock = time.monotonic
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.clock = clock
        self._buckets: weakref.WeakKeyDictionary[Session, _Buckets] = weakref.WeakKeyDictionary()

    def _of(self, session: Session) -> _Buckets:
        buckets = self._buckets.get(session)
        if buckets is None:
            now = self.clock()
            rpm, tpm = self.requests_per_minute, self.tokens_per_minute
            buckets = _Buckets(
                TokenBucket(rpm, 60.0, now) if rpm else None,
                TokenBucket(tpm, 60.0, now) if tpm else None,
            )
            self._buckets[session] = buckets
        return buckets

    def delay(self, session: Session) -> float:
        buckets, now = self._of(session), self.clock()
        wait = 0.0
        if buckets.requests is not None:
            wait = buckets.requests.delay(now)
        if buckets.tokens is not None:
            wait = max(wait, buckets.tokens.delay(now))
        return wait

    def take(self, session: Session) -> None:
        buckets = self._of(session)
        if buckets.requests is not None:
            buckets.requests.take(self.clock())

    def settled(self, pending: CallRecord) -> None:
        buckets = self._of(pending.session)
        used = usage_tokens(pending.usage)
        if buckets.tokens is not None and used:
            buckets.tokens.take(self.clock(), used)

    def headers(self, session: Session) -> dict[str, str]:
        """``X-RateLimit-*`` for the session: its request bucket (and token bucket, if on).

        ``Reset`` is the number of seconds until the bucket is full again.
        """
        buckets, now = self._of(session), self.clock()
        out: dict[str, str] = {}
        for suffix, bucket in (("", buckets.requests), ("-Tokens", buckets.tokens)):
            if bucket is None:
                continue
            out[f"X-RateLimit-Limit{suffix}"] = str(int(bucket.capacity))
            out[f"X-RateLimit-Remaining{suffix}"] = str(bucket.remaining(now))
            out[f"X-RateLimit-Reset{suffix}"] = str(math.ceil(bucket.full_in(now)))
        return out


class FailureLimiter:
    """Bridge-token failures per peer: ``per_minute`` of them, then 429 until the budget
    refills. Each (peer, token fingerprint) is reported once, so a retry loop logs one line."""

    def __init__(
        self, per_minute: int, clock: Clock = time.monotonic, remember: int = 1024
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.remember = remember
        self._peers: OrderedDict[str, TokenBucket] = OrderedDict()
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._blocked: set[str] = set()

    def retry_after(self, peer: str) -> float:
        """0 if ``peer`` may try again now, else the seconds until it may."""
        bucket = self._peers.get(peer)
        wait = 0.0 if bucket is None else bucket.delay(self.clock())
        if not wait:
            self._blocked.discard(peer)
        return wait

    def newly_blocked(self, peer: str) -> bool:
        """True the first time ``peer`` is refused in a blocked spell (to log it once)."""
        if peer in self._blocked:
            return False
        self._blocked.add(peer)
        return True

    def failed(self, peer: str, fingerprint: str) -> bool:
        """Count one failure; True if this peer had not failed with this token before."""
        bucket = self._peers.get(peer)
        if bucket is None:
            bucket = self._peers[peer] = TokenBucket(self.per_minute, 60.0, self.clock())
            while len(self._peers) > self.remember:
                self._peers.popitem(last=False)
        self._peers.move_to_end(peer)
        bucket.take(self.clock())
        key = (peer, fingerprint)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return True


class HandshakeSlots:
    """Agents between connecting and being granted a session (waiting for hello or for the
    user's approval): at most ``per_token`` per bridge token and ``total`` in all."""

    def __init__(self, per_token: int, total: int) -> None:
        self.per_token = per_token
        self.total = total
        self._by_token: dict[str, int] = {}
        self.in_use = 0

    def acquire(self, token_key: str) -> bool:
        held = self._by_token.get(token_key, 0)
        if held >= self.per_token or self.in_use >= self.total:
            return False
        self._by_token[token_key] = held + 1
        self.in_use += 1
        return True

    def release(self, token_key: str) -> None:
        held = self._by_token.get(token_key, 0)
        if held <= 1:
            self._by_token.pop(token_key, None)
        else:
            self._by_token[token_key] = held - 1
        self.in_use = max(0, self.in_use - 1)
