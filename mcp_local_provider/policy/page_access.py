"""Who may use the web page: one-time login codes, the page sessions they are exchanged for
(the cookie), the CSRF token bound to each, and the same-origin check on its actions. Pure:
no I/O, a clock passed in.

The bridge token never reaches the browser. A holder of it (the ``ui`` command, or ``serve``
itself on its terminal) asks for a login code; the code is good once, for ``code_ttl``
seconds, and buys one page session: a random cookie value and a random CSRF token, both kept
only as SHA-256 digests, good for ``session_ttl`` seconds. Every action the page posts must
carry that session's CSRF token and come from the page's own origin (``same_origin_post``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

#: The cookie holding a page session. Cookies ignore ports, so the name says whose it is.
COOKIE_NAME = "mcp_local_provider_page"
#: Caps on what a flood of logins can make the daemon hold.
MAX_CODES = 32
MAX_SESSIONS = 64


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class PageSession:
    """A logged-in browser. ``cookie`` and ``csrf`` are only known when it is created."""

    key: str  # the digest of the cookie value
    csrf_digest: str
    expires_at: float

    def csrf_matches(self, token: str | None) -> bool:
        """``token`` is this session's CSRF token (compared in constant time)."""
        return token is not None and hmac.compare_digest(self.csrf_digest, _digest(token))


@dataclass(frozen=True)
class NewPageSession:
    session: PageSession
    cookie: str
    csrf: str


class PageAccess:
    """Login codes and page sessions, in memory (a restart logs every browser out)."""

    def __init__(
        self,
        *,
        session_ttl: float,
        code_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session_ttl = session_ttl
        self.code_ttl = code_ttl
        self.clock = clock
        self._codes: dict[str, float] = {}  # digest -> expiry
        self._sessions: dict[str, PageSession] = {}  # cookie digest -> session
        self._csrf: dict[str, str] = {}  # cookie digest -> CSRF token, for the page to embed

    def new_code(self) -> str:
        """A one-time login code, good for ``code_ttl`` seconds."""
        self._prune()
        while len(self._codes) >= MAX_CODES:  # the oldest code gives way
            self._codes.pop(min(self._codes, key=self._codes.__getitem__))
        code = secrets.token_urlsafe(24)
        self._codes[_digest(code)] = self.clock() + self.code_ttl
        return code

    def redeem(self, code: str | None) -> NewPageSession | None:
        """Exchange a login code for a new page session; None if it is unknown, used or
        expired. A code works once, whatever the outcome."""
        if not code:
            return None
        expiry = self._codes.pop(_digest(code), None)
        if expiry is None or expiry <= self.clock():
            return None
        self._prune()
        while len(self._sessions) >= MAX_SESSIONS:  # the oldest session gives way
            oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
            self._forget(oldest.key)
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = PageSession(_digest(cookie), _digest(csrf), self.clock() + self.session_ttl)
        self._sessions[session.key] = session
        self._csrf[session.key] = csrf
        return NewPageSession(session, cookie, csrf)

    def session(self, cookie: str | None) -> PageSession | None:
        """The live page session a cookie value belongs to, if any."""
        if not cookie:
            return None
        session = self._sessions.get(_digest(cookie))
        if session is None:
            return None
        if session.expires_at <= self.clock():
            self._forget(session.key)
            return None
        return session

    def csrf_token(self, session: PageSession) -> str:
        """The CSRF token the page embeds in its forms for ``session``."""
        return self._csrf[session.key]

    def end(self, session: PageSession) -> None:
        """Log a browser out."""
        self._forget(session.key)

    def __len__(self) -> int:
        return len(self._sessions)

    def _forget(self, key: str) -> None:
        self._sessions.pop(key, None)
        self._csrf.pop(key, None)

    def _prune(self) -> None:
        now = self.clock()
        for digest in [d for d, expiry in self._codes.items() if expiry <= now]:
            del self._codes[digest]
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            self._forget(key)


def same_origin_post(sec_fetch_site: str | None, origin: str | None, host: str | None) -> bool:
    """Whether a state-changing request comes from the page's own origin.

    An ``Origin`` naming any other origin fails. Browsers that send ``Sec-Fetch-Site``
    (Chromium, Firefox, Safari 16.4+) say exactly what we ask: only ``same-origin`` passes.
    ``same-site`` does not: another port on 127.0.0.1 or localhost is the same site (and gets
    the cookie, since ``SameSite`` ignores ports) but another origin. Without that header,
    ``Origin`` must be present and name this very host; ``Origin: null`` (what Chromium sends
    under ``Referrer-Policy: no-referrer``), a missing Origin and any other origin fail. The
    page is served with ``Referrer-Policy: same-origin``, under which its own posts carry
    both headers.
    """
    own = "http://" + host.strip().lower() if host else None
    named = origin.strip().lower() if origin is not None else None
    if named is not None and named != "null" and named != own:
        return False  # whatever else it says, a request naming another origin is refused
    if sec_fetch_site is not None:
        return sec_fetch_site.strip().lower() == "same-origin"
    return named is not None and named == own
