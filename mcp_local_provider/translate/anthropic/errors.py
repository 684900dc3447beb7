"""Anthropic's error body, ``{"type": "error", "error": {"type", "message"}}``, which the
Messages routes answer with, and its in-band form (an ``error`` event) once a stream has
begun."""

from __future__ import annotations

from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps

#: HTTP status -> Anthropic error type.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def error_type(error: errors.ProviderError) -> str:
    if error.status in ERROR_TYPES:
        return ERROR_TYPES[error.status]
    return "invalid_request_error" if error.status < 500 else "api_error"


def error_body(error: errors.ProviderError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(error), "message": error.message}}


def event(name: str, body: dict[str, Any]) -> bytes:
    """One SSE event as Anthropic sends it: an ``event:`` line and a ``data:`` line."""
    return b"event: " + name.encode() + b"\ndata: " + dumps(body).encode() + b"\n\n"


PING = event("ping", {"type": "ping"})


def stream_error(error: errors.ProviderError) -> bytes:
    """A failure after the stream began: an ``error`` event; nothing follows it."""
    return event("error", error_body(error))
