"""Which sessions may take a call: active, serving the model, granted the scope, declaring the
capabilities, under their limits. No I/O."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Call
from mcp_local_provider.core.catalog import NO_SESSION, session_can
from mcp_local_provider.core.registry import Registry, Session, SessionState


class Throttle(Protocol):
    """Rate limits the router consults when it gives a session a request."""

    def delay(self, session: Session) -> float:
        """0 if ``session`` may take a request now, else the seconds until it may."""
        ...

    def take(self, session: Session) -> None:
        """``session`` was given a request."""
        ...

    def headers(self, session: Session) -> dict[str, str]:
        """Response headers describing ``session``'s limits (``X-RateLimit-*``)."""
        ...


def unthrottled(sessions: list[Session], throttle: Throttle) -> list[Session]:
    """The sessions under their rate limits; RateLimited if none is."""
    delays = [(throttle.delay(s), s) for s in sessions]
    ready = [s for wait, s in delays if wait <= 0]
    if not ready:
        wait, soonest = min(delays, key=lambda pair: pair[0])
        raise errors.RateLimited(
            f"the agent session's rate limit is reached; retry after {max(1, int(wait + 0.999))} s",
            retry_after=wait,
            headers=throttle.headers(soonest),
        )
    return ready


def candidates(registry: Registry, call: Call) -> list[Session]:
    """The active sessions that may serve ``call``, or the error that says why none may.

    Only the sessions serving the model are looked at (the registry indexes them), so the
    cost does not grow with sessions serving other models."""
    now = registry.clock()

    def live(s: Session) -> bool:  # the sweeper may not have ended an expired one yet
        return s.expires_at is None or s.expires_at > now

    if call.session_hint is not None:
        hinted = registry.find(call.session_hint)
        if hinted is None or hinted.state is not SessionState.ACTIVE or not live(hinted):
            raise errors.NotFound(
                f"session {call.session_hint!r} is not an active session",
                param="X-MCP-Session",
            )
        serving = [hinted] if hinted.serves(call.model) else []
    else:
        serving = [s for s in registry.active_serving(call.model) if live(s)]
        if not serving and not any(live(s) for s in registry.in_state(SessionState.ACTIVE)):
            raise errors.NoActiveSession(NO_SESSION)
    if not serving:
        raise errors.ModelNotFound(f"model {call.model!r} is not served by an active session")
    scoped = [s for s in serving if call.permission in s.scopes]
    if not scoped:
        raise errors.ScopeNotGranted(
            f"no active agent session serving {call.model!r} was granted the "
            f"{call.permission!r} scope"
        )
    for needed in call.needs:
        scoped = [s for s in scoped if session_can(s, call.model, needed)]
        if not scoped:
            raise errors.Unsupported(
                f"no active agent session declares the {needed!r} capability for {call.model!r}",
                param="model",
            )
    usable = [s for s in scoped if not s.exhausted]
    if not usable:
        raise errors.LimitReached("every matching agent session has used up its max_requests")
    ready = [s for s in usable if s.cooling_until is None or s.cooling_until <= now]
    if not ready:
        wait = min(s.cooling_left(now) for s in usable)
        raise errors.QuotaExhausted(
            f"every agent session serving {call.model!r} is cooling down after its vendor "
            f"refused (rate limit or quota); retry after {max(1, int(wait + 0.999))} s",
            retry_after=wait,
        )
    return ready


#: Conversations whose session is remembered (the oldest is forgotten past it).
AFFINITY_SIZE = 4096


class Choice:
    """Which of the sessions free to take a call gets it.

    A conversation (same system prompt and first user message) stays on the session that
    served it while that session is free to take it, so its warm process and its vendor's
    prompt cache are reused; otherwise ``routing`` decides: ``least-busy`` (fewest calls in
    flight for its size, then fewest served), ``round-robin`` or ``fill-first`` (the oldest
    session with a free slot)."""

    def __init__(self, routing: str = "least-busy") -> None:
        self.routing = routing
        self._turn = 0
        self._affinity: OrderedDict[bytes, str] = OrderedDict()

    def pick(self, call: Call, free: list[Session]) -> Session:
        key = conversation_key(call.payload)
        if key is not None:
            known = self._affinity.get(key)
            if known is not None:
                for session in free:
                    if session.id == known:
                        self._affinity.move_to_end(key)
                        return session
        session = self._by_policy(free)
        if key is not None:
            self._affinity[key] = session.id
            if len(self._affinity) > AFFINITY_SIZE:
                self._affinity.popitem(last=False)
        return session

    def _by_policy(self, free: list[Session]) -> Session:
        if self.routing == "fill-first":
            return min(free, key=lambda s: s.created_at)
        if self.routing == "round-robin":
            self._turn += 1
            ordered = sorted(free, key=lambda s: s.created_at)
            return ordered[self._turn % len(ordered)]
        return min(free, key=lambda s: (s.in_flight / s.max_concurrency, s.requests))


def conversation_key(payload: Mapping[str, Any]) -> bytes | None:
    """A digest of a chat's system prompt and first user message (None: not a chat)."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return None
    system, first = "", None
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer") and not system:
            system = repr(message.get("content"))
        elif role == "user":
            first = repr(message.get("content"))
            break
    if first is None:
        return None
    return hashlib.blake2b(f"{system}\0{first}".encode(), digest_size=16).digest()
