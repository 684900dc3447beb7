"""The session registry, without sockets."""

from __future__ import annotations

import pytest

from mcp_local_provider.core.protocol import ModelSpec
from mcp_local_provider.core.registry import (
    InvalidToken,
    Registry,
    SessionError,
    SessionLimits,
    SessionState,
    UnknownSession,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def registry(clock: Clock | None = None) -> Registry:
    limits = SessionLimits(
        allowed_scopes=("inference",),
        default_ttl_seconds=60,
        max_ttl_seconds=120,
        max_requests=10,
        max_concurrency=2,
    )
    return Registry(limits, clock or Clock())


def pending(reg: Registry, **overrides: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "agent_id": "a",
        "label": "A",
        "models": [ModelSpec(name="m")],
        "scopes": ["inference", "embeddings", "inference"],
        "ttl_seconds": None,
        "max_concurrency": None,
    }
    fields.update(overrides)
    return reg.create_pending(**fields)


def test_pending_session_grants_only_allowed_scopes_and_clamps_limits() -> None:
    reg = registry()
    session = pending(reg, ttl_seconds=10_000, max_concurrency=50)
    assert session.state is SessionState.PENDING
    assert session.requested_scopes == ("inference", "embeddings")
    assert session.scopes == ("inference",)
    assert session.ttl_seconds == 120 and session.max_concurrency == 2
    assert session.token_hash is None


def test_approval_activates_with_a_token_stored_only_as_hash() -> None:
    clock = Clock()
    reg = registry(clock)
    session = pending(reg)
    _, token = reg.approve(session.id)
    assert session.state is SessionState.ACTIVE
    assert session.expires_at == clock.now + 60
    assert token not in repr(session.__dict__)
    assert reg.claim(token) is session


def test_claim_with_a_wrong_token_fails() -> None:
    reg = registry()
    reg.approve(pending(reg).id)
    with pytest.raises(InvalidToken):
        reg.claim("not-the-token")


def test_expired_session_cannot_be_claimed_and_is_due() -> None:
    clock = Clock()
    reg = registry(clock)
    session, token = reg.approve(pending(reg).id)
    clock.now += 61
    assert reg.due_to_expire() == [session]
    with pytest.raises(InvalidToken):
        reg.claim(token)


def test_revoked_session_token_stops_working() -> None:
    reg = registry()
    session, token = reg.approve(pending(reg).id)
    reg.end(session.id, SessionState.REVOKED)
    assert session.end_reason == "revoked"
    with pytest.raises(InvalidToken):
        reg.claim(token)


def test_only_pending_sessions_can_be_approved_or_denied() -> None:
    reg = registry()
    session, _ = reg.approve(pending(reg).id)
    with pytest.raises(SessionError):
        reg.approve(session.id)
    with pytest.raises(SessionError):
        reg.end(session.id, SessionState.DENIED)


def test_ending_twice_is_an_error() -> None:
    reg = registry()
    session = pending(reg)
    reg.end(session.id, SessionState.DENIED)
    with pytest.raises(SessionError):
        reg.end(session.id, SessionState.REVOKED)


def test_unknown_session_is_named() -> None:
    with pytest.raises(UnknownSession, match="sess-nope"):
        registry().get("sess-nope")


def test_registered_session_is_active_at_once() -> None:
    reg = registry()
    session, token = reg.register(
        agent_id="b",
        label="",
        models=[],
        scopes=["inference"],
        ttl_seconds=5,
        max_concurrency=1,
        max_requests=3,
    )
    assert session.state is SessionState.ACTIVE and session.max_requests == 3
    assert reg.claim(token) is session


def test_describe_never_shows_the_token() -> None:
    reg = registry()
    session, token = reg.approve(pending(reg).id)
    view = session.describe(reg.clock())
    assert token not in str(view) and session.token_hash not in str(view)
    assert view["state"] == "active" and view["models"] == ["m"]


def test_only_an_active_session_counts_down_to_its_expiry() -> None:
    reg = registry()
    session, _ = reg.approve(pending(reg).id)
    assert session.describe(reg.clock())["expires_in"] > 0
    reg.end(session.id, SessionState.REVOKED)
    view = session.describe(reg.clock())
    assert view["expires_in"] is None and view["expires_at"] is not None


def test_sessions_serving_a_model_follow_approval_and_revocation() -> None:
    reg = registry()
    first = pending(reg, models=[ModelSpec(name="m")])
    other = pending(reg, models=[ModelSpec(name="n")])
    assert reg.active_serving("m") == ()
    reg.approve(first.id)
    reg.approve(other.id)
    assert reg.active_serving("m") == (first,)
    second = pending(reg, models=[ModelSpec(name="m")])
    reg.approve(second.id)
    assert reg.active_serving("m") == (first, second)  # oldest first
    reg.end(first.id, SessionState.REVOKED)
    assert reg.active_serving("m") == (second,)
    assert reg.active_serving("n") == (other,)


def test_the_version_moves_only_when_the_active_sessions_change() -> None:
    reg = registry()
    start = reg.version
    session = pending(reg)
    assert reg.version == start  # a pending session serves nothing
    reg.approve(session.id)
    approved = reg.version
    assert approved != start
    denied = pending(reg)
    reg.end(denied.id, SessionState.DENIED)
    assert reg.version == approved
    reg.end(session.id, SessionState.EXPIRED)
    assert reg.version != approved
