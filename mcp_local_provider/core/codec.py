"""The one JSON codec for what the daemon writes: agent frames and HTTP bodies alike."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json


def dumps(value: Any) -> str:
    """Compact JSON, as sent on the wire: every frame, SSE event and NDJSON line. pydantic-core's
    encoder writes the same text as the standard library's, three to four times faster."""
    return to_json(value).decode()


def dumps_bytes(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes, for a body sent as it is."""
    return to_json(value)
