"""The bridge token check shared by the agent socket and the control API.

Failures are rate-limited per peer (``auth_failures_per_minute``): past the limit every attempt
is refused with 429 before the token is even looked at, and each (peer, token) pair is logged
once, by fingerprint only.
"""

from __future__ import annotations

import hmac

import structlog
from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.http.state import STATE
from mcp_local_provider.policy.tokens import fingerprint

log = structlog.get_logger("mcp_local_provider.auth")


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def require_bridge_token(request: web.Request) -> None:
    """Raise Unauthorized unless the request carries the bridge token (RateLimited if this
    peer failed too often lately)."""
    failures = request.app[STATE].security.failures
    peer = request.remote or "unknown"
    wait = failures.retry_after(peer)
    if wait:
        if failures.newly_blocked(peer):
            log.warning("bridge_token_rate_limited", peer=peer, retry_after=round(wait, 1))
        raise errors.RateLimited(
            "too many failed bridge-token attempts from this address; try again later",
            retry_after=wait,
        )
    given = bearer(request)
    expected = request.app[STATE].bridge_token
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        # Only a wrong token counts as a failure: a missing one guesses nothing.
        if given is not None and failures.failed(peer, fingerprint(given)):
            log.warning(
                "bridge_token_rejected",
                peer=peer,
                token_fingerprint=fingerprint(given),
                path=request.path,
            )
        raise errors.Unauthorized("a valid bridge token is required (Authorization: Bearer ...)")
