"""Ollama's error body, ``{"error": "..."}``, and the same as one NDJSON line once a stream has
begun (no done line follows it)."""

from __future__ import annotations

from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps


def line(body: dict[str, Any]) -> bytes:
    """One NDJSON line."""
    return dumps(body).encode() + b"\n"


def error_body(error: errors.ProviderError) -> dict[str, Any]:
    return {"error": error.message}


def error_line(error: errors.ProviderError) -> bytes:
    return line(error_body(error))
