"""Login codes, page sessions, CSRF tokens and the same-origin check: pure, with a clock."""

from __future__ import annotations

import pytest

from mcp_local_provider.policy.page_access import (
    MAX_CODES,
    MAX_SESSIONS,
    PageAccess,
    same_origin_post,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def access(clock: Clock) -> PageAccess:
    return PageAccess(session_ttl=600, code_ttl=60, clock=clock)


def test_a_code_buys_one_session_and_works_once() -> None:
    pages = access(Clock())
    code = pages.new_code()
    new = pages.redeem(code)
    assert new is not None
    assert pages.session(new.cookie) == new.session
    assert pages.redeem(code) is None


def test_an_expired_code_is_refused() -> None:
    clock = Clock()
    pages = access(clock)
    code = pages.new_code()
    clock.now += 60
    assert pages.redeem(code) is None


@pytest.mark.parametrize("code", [None, "", "not-a-code"])
def test_missing_or_unknown_codes_are_refused(code: str | None) -> None:
    pages = access(Clock())
    pages.new_code()
    assert pages.redeem(code) is None


def test_sessions_expire_after_their_ttl_and_end_on_logout() -> None:
    clock = Clock()
    pages = access(clock)
    first, second = pages.redeem(pages.new_code()), pages.redeem(pages.new_code())
    assert first is not None and second is not None
    pages.end(first.session)
    assert pages.session(first.cookie) is None
    clock.now += 599
    assert pages.session(second.cookie) is not None
    clock.now += 1
    assert pages.session(second.cookie) is None


def test_secrets_are_held_only_as_digests() -> None:
    pages = access(Clock())
    code = pages.new_code()
    new = pages.redeem(code)
    assert new is not None
    held = repr(vars(pages)) + repr(new.session)
    assert code not in held and new.cookie not in held


def test_the_csrf_token_is_bound_to_its_own_session() -> None:
    pages = access(Clock())
    mine, theirs = pages.redeem(pages.new_code()), pages.redeem(pages.new_code())
    assert mine is not None and theirs is not None
    assert pages.csrf_token(mine.session) == mine.csrf
    assert mine.session.csrf_matches(mine.csrf)
    assert not mine.session.csrf_matches(theirs.csrf)
    assert not mine.session.csrf_matches(None)
    assert not mine.session.csrf_matches("")


def test_floods_of_codes_and_sessions_are_capped() -> None:
    pages = access(Clock())
    codes = [pages.new_code() for _ in range(MAX_CODES + 5)]
    assert pages.redeem(codes[0]) is None  # the oldest gave way
    for _ in range(MAX_SESSIONS + 5):
        pages.redeem(pages.new_code())
    assert len(pages) == MAX_SESSIONS


@pytest.mark.parametrize(
    ("fetch_site", "origin", "allowed"),
    [
        ("same-origin", "http://127.0.0.1:11434", True),
        ("same-origin", None, True),
        # What Chromium sends on a form post under Referrer-Policy: no-referrer.
        ("same-origin", "null", True),
        ("same-site", "http://127.0.0.1:8000", False),  # another port: same site, other origin
        ("same-site", "http://127.0.0.1:11434", False),
        ("cross-site", "https://attacker.example", False),
        ("none", None, False),
        ("same-origin", "http://127.0.0.1:8000", False),  # the headers disagree: refuse
        (None, "http://127.0.0.1:11434", True),  # a browser without Sec-Fetch-*
        (None, "http://LOCALHOST:11434", False),  # another host name is another origin
        (None, "null", False),
        (None, None, False),
    ],
)
def test_only_the_pages_own_origin_may_post(
    fetch_site: str | None, origin: str | None, allowed: bool
) -> None:
    assert same_origin_post(fetch_site, origin, "127.0.0.1:11434") is allowed
