"""OpenAI's error body, which every ``/v1`` route but Anthropic's answers with, and its in-band
form once a stream has begun."""

from __future__ import annotations

from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps


def sse(body: dict[str, Any]) -> bytes:
    """One SSE event: a ``data:`` line only (an ``event:`` field confuses the OpenAI SDKs)."""
    return b"data: " + dumps(body).encode() + b"\n\n"


def error_body(error: errors.ProviderError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def stream_error(error: errors.ProviderError) -> bytes:
    """A mid-stream failure: an event with an ``error`` object; no ``[DONE]`` follows."""
    return sse(error_body(error))
