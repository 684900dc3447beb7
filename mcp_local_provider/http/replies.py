"""JSON answers, encoded once by the daemon's codec (``core/codec.py``) rather than by the
standard library's encoder that ``web.json_response`` uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from mcp_local_provider.core.codec import dumps_bytes


def json_reply(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``body`` as an ``application/json`` response."""
    return web.Response(
        body=dumps_bytes(body), status=status, headers=headers, content_type="application/json"
    )
