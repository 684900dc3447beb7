"""The one JSON codec for what the daemon writes: agent frames and HTTP bodies alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticSerializationError, to_json


def dumps(value: Any) -> str:
    """Compact JSON, as sent on the wire: every frame, SSE event and NDJSON line. pydantic-core's
    encoder writes the same text as the standard library's, three to four times faster."""
    return dumps_bytes(value).decode()


def dumps_bytes(value: Any, fallback: Callable[[Any], Any] | None = None) -> bytes:
    """``dumps`` as UTF-8 bytes, for a body sent as it is; ``fallback`` turns a value neither
    encoder knows into one they do. What pydantic-core refuses (a lone surrogate, as a header
    or URL with undecodable bytes can carry into an error message; bytes that are not UTF-8)
    is written by the standard library's encoder instead, escaped, rather than failing."""
    try:
        return to_json(value, fallback=fallback)
    except PydanticSerializationError:
        return json.dumps(value, separators=(",", ":"), default=fallback or repr).encode()
