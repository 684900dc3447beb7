"""Sessions: who may serve requests, for how long, and how much. No I/O.

A session is born pending (an agent said hello) or active (pre-registered by the user), becomes
active when approved, and ends as denied, revoked, expired, or left (its agent said goodbye).
An active session whose agent vanished stays active, so the agent can resume it with its token,
but it stops being offered to editors once the agent has been away for ``reconnect_grace``.
Tokens are random and kept only as SHA-256 digests; a session id alone never authenticates
anything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from mcp_local_provider.core.protocol import Frame, ModelSpec, WarmStatus


class SessionState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"
    LEFT = "left"

    @property
    def ended(self) -> bool:
        return self is not SessionState.PENDING and self is not SessionState.ACTIVE


class SessionError(Exception):
    """An operation does not fit the session's state."""


class UnknownSession(SessionError):
    pass


class InvalidToken(SessionError):
    pass


class AgentLink(Protocol):
    """The daemon's side of one agent connection, as the core sees it."""

    async def send(self, frame: Frame) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_id() -> str:
    return "sess-" + secrets.token_hex(8)


@dataclass(eq=False)
class Session:
    id: str
    agent_id: str
    label: str
    models: tuple[ModelSpec, ...]
    requested_scopes: tuple[str, ...]
    scopes: tuple[str, ...]
    ttl_seconds: float
    max_requests: int
    max_concurrency: int
    reason: str = ""
    state: SessionState = SessionState.PENDING
    created_at: float = 0.0  # wall clock, seconds
    expires_at: float | None = None  # wall clock, set when it becomes active
    token_hash: str | None = None
    requests: int = 0
    in_flight: int = 0
    link: AgentLink | None = None
    #: Wall clock when the session last had no agent connected (None: it always had one).
    away_since: float | None = None
    end_reason: str | None = None
    #: Wall clock until which the session is cooling down (its vendor refused for a rate limit
    #: or quota); routing skips it until then. ``cooling_code`` is the agent's error code.
    cooling_until: float | None = None
    cooling_code: str | None = None
    #: Refusals in a row (the backoff grows with them); reset by an answer.
    strikes: int = 0
    #: The agent's processes started ahead, as it last reported them (None: never reported).
    warm: WarmStatus | None = None
    _model_names: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self._model_names = frozenset(m.name for m in self.models)

    @property
    def connected(self) -> bool:
        return self.link is not None

    @property
    def exhausted(self) -> bool:
        return self.requests >= self.max_requests

    def reachable(self, now: float, grace: float) -> bool:
        """Connected, or away for less than ``grace`` seconds (its agent may be reconnecting)."""
        return self.link is not None or self.away_since is None or now - self.away_since < grace

    @property
    def model_names(self) -> frozenset[str]:
        return self._model_names

    def serves(self, model: str) -> bool:
        return model in self._model_names

    def cooling_left(self, now: float) -> float:
        """Seconds of cool-down left at ``now`` (0: not cooling)."""
        until = self.cooling_until
        return 0.0 if until is None or until <= now else until - now

    def cool(self, now: float, seconds: float, code: str) -> float:
        """Cool the session down for ``seconds`` from ``now``; the seconds added to what was
        already planned (the cooling time to count)."""
        before = self.cooling_left(now)
        self.cooling_until = max(self.cooling_until or 0.0, now + seconds)
        self.cooling_code = code
        self.strikes += 1
        return max(0.0, self.cooling_left(now) - before)

    def has_free_slot(self) -> bool:
        return self.in_flight < self.max_concurrency

    def expires_at_iso(self) -> str | None:
        return _iso(self.expires_at)

    def token_matches(self, token: str) -> bool:
        return self.token_hash is not None and hmac.compare_digest(
            self.token_hash, hash_token(token)
        )

    def describe(self, now: float) -> dict[str, Any]:
        """A JSON-ready view for the control API; never includes the token."""
        return {
            "session_id": self.id,
            "agent_id": self.agent_id,
            "label": self.label,
            "state": self.state.value,
            "connected": self.connected,
            "models": [m.name for m in self.models],
            "requested_scopes": list(self.requested_scopes),
            "scopes": list(self.scopes),
            "reason": self.reason,
            "ttl_seconds": self.ttl_seconds,
            "expires_at": self.expires_at_iso(),
            "expires_in": (
                max(0.0, self.expires_at - now)
                if self.expires_at is not None and self.state is SessionState.ACTIVE
                else None
            ),
            "requests": self.requests,
            "max_requests": self.max_requests,
            "in_flight": self.in_flight,
            "max_concurrency": self.max_concurrency,
            "end_reason": self.end_reason,
            "cooling": self.cooling_left(now) > 0,
            "cooling_left": round(self.cooling_left(now), 1),
            "cooling_until": _iso(self.cooling_until) if self.cooling_left(now) > 0 else None,
            "cooling_reason": self.cooling_code if self.cooling_left(now) > 0 else None,
            "warm": dict(self.warm) if self.warm is not None and self.connected else None,
        }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    when = datetime.fromtimestamp(moment, UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SessionLimits:
    """What the config allows; requests from agents are clamped to it."""

    allowed_scopes: tuple[str, ...]
    default_ttl_seconds: float
    max_ttl_seconds: float
    max_requests: int
    max_concurrency: int
    #: How long an active session whose agent went away is still offered to editors.
    reconnect_grace: float = 5.0


class Registry:
    """All sessions, in memory. Ended sessions are kept for a while so the CLI can show them."""

    def __init__(self, limits: SessionLimits, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._by_token: dict[str, Session] = {}
        self._version = 0
        self._serving: dict[str, tuple[Session, ...]] = {}
        self._indexed_version = -1

    @property
    def version(self) -> int:
        """A number that changes whenever a session becomes active or stops being active, so
        what is derived from the active sessions can be kept until it does."""
        return self._version

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSession(f"no session {session_id!r}") from None

    def find(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def in_state(self, state: SessionState) -> list[Session]:
        return [s for s in self._sessions.values() if s.state is state]

    def serving(self) -> list[Session]:
        """Active, unexpired sessions whose agent is connected or away for less than the
        reconnect grace: the sessions whose models are offered to editors."""
        now = self.clock()
        return [s for s in self._sessions.values() if self.offers(s, now)]

    def offers(self, session: Session, now: float) -> bool:
        """Whether ``session`` is one of ``serving()`` at ``now``."""
        return (
            session.state is SessionState.ACTIVE
            and (session.expires_at is None or session.expires_at > now)
            and session.reachable(now, self.limits.reconnect_grace)
        )

    def active_serving(self, model: str) -> tuple[Session, ...]:
        """The active sessions that advertised ``model`` (its exact name), oldest first.

        Looked up in an index rebuilt only after the set of active sessions changed, so a
        request costs the same with one session connected or a thousand."""
        if self._indexed_version != self._version:
            serving: dict[str, list[Session]] = {}
            for session in self.in_state(SessionState.ACTIVE):
                for name in session.model_names:
                    serving.setdefault(name, []).append(session)
            self._serving = {name: tuple(sessions) for name, sessions in serving.items()}
            self._indexed_version = self._version
        return self._serving.get(model, ())

    def count(self, state: SessionState) -> int:
        return sum(1 for s in self._sessions.values() if s.state is state)

    def _new(
        self,
        *,
        agent_id: str,
        label: str,
        models: Iterable[ModelSpec],
        scopes: Iterable[str],
        ttl_seconds: float | None,
        max_concurrency: int | None,
        max_requests: int | None = None,
        reason: str = "",
    ) -> Session:
        limits = self.limits
        requested = tuple(dict.fromkeys(scopes))
        ttl = min(ttl_seconds or limits.default_ttl_seconds, limits.max_ttl_seconds)
        session = Session(
            id=new_session_id(),
            agent_id=agent_id,
            label=label,
            models=tuple(models),
            requested_scopes=requested,
            scopes=tuple(s for s in requested if s in limits.allowed_scopes),
            ttl_seconds=ttl,
            max_requests=min(max_requests or limits.max_requests, limits.max_requests),
            max_concurrency=min(max_concurrency or limits.max_concurrency, limits.max_concurrency),
            reason=reason,
            created_at=self.clock(),
        )
        self._sessions[session.id] = session
        return session

    def create_pending(self, **kwargs: Any) -> Session:
        """A session an agent asked for; it serves nothing until approved."""
        return self._new(**kwargs)

    def register(self, **kwargs: Any) -> tuple[Session, str]:
        """A session the user creates up front; an agent claims it with the returned token."""
        session = self._new(**kwargs)
        return session, self._activate(session)

    def approve(self, session_id: str) -> tuple[Session, str]:
        session = self.get(session_id)
        if session.state is not SessionState.PENDING:
            raise SessionError(f"session {session_id} is {session.state.value}, not pending")
        return session, self._activate(session)

    def _activate(self, session: Session) -> str:
        token = secrets.token_urlsafe(32)
        session.token_hash = hash_token(token)
        session.state = SessionState.ACTIVE
        session.expires_at = self.clock() + session.ttl_seconds
        if session.link is None:  # pre-registered: no agent has claimed it yet
            session.away_since = self.clock()
        self._by_token[session.token_hash] = session
        self._version += 1
        return token

    def end(self, session_id: str, state: SessionState, reason: str | None = None) -> Session:
        """Move a session to an ended state (denied, revoked, expired or left)."""
        if not state.ended:
            raise ValueError(f"{state} is not an ending state")
        session = self.get(session_id)
        if session.state.ended:
            raise SessionError(f"session {session_id} is already {session.state.value}")
        if state is SessionState.DENIED and session.state is not SessionState.PENDING:
            raise SessionError(f"session {session_id} is {session.state.value}, not pending")
        if session.state is SessionState.ACTIVE:
            self._version += 1
        session.state = state
        session.end_reason = reason or state.value
        if session.token_hash is not None:
            self._by_token.pop(session.token_hash, None)
        return session

    def claim(self, token: str) -> Session:
        """The live session a token belongs to, for an agent (re)connecting with it."""
        session = self._by_token.get(hash_token(token))
        if session is None or session.state is not SessionState.ACTIVE:
            raise InvalidToken("session token is not valid")
        if session.expires_at is not None and session.expires_at <= self.clock():
            raise InvalidToken("session has expired")
        return session

    def due_to_expire(self) -> list[Session]:
        now = self.clock()
        return [
            s
            for s in self._sessions.values()
            if s.state is SessionState.ACTIVE and s.expires_at is not None and s.expires_at <= now
        ]

    def forget_ended(self, older_than: float, keep: int = 100) -> None:
        """Drop ended sessions beyond the newest ``keep`` that ended long enough ago."""
        ended = [s for s in self._sessions.values() if s.state.ended]
        if len(ended) <= keep:
            return
        cutoff = self.clock() - older_than
        for session in sorted(ended, key=lambda s: s.created_at)[: len(ended) - keep]:
            if session.created_at < cutoff:
                del self._sessions[session.id]
