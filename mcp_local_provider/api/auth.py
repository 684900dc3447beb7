"""The bridge token check shared by the agent socket and the control API."""

from __future__ import annotations

import hmac

from aiohttp import web

from .. import errors
from ..app import STATE


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def require_bridge_token(request: web.Request) -> None:
    """Raise Unauthorized unless the request carries the bridge token."""
    given = bearer(request)
    expected = request.app[STATE].bridge_token
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise errors.Unauthorized("a valid bridge token is required (Authorization: Bearer ...)")
