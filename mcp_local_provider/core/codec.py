"""The one JSON codec for what the daemon writes: agent frames and HTTP bodies alike."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticSerializationError, to_json


def dumps(value: Any) -> str:
    """Compact JSON, as sent on the wire: every frame, SSE event and NDJSON line. pydantic-core's
    encoder writes the same text as the standard library's, three to four times faster."""
    return dumps_bytes(value).decode()


def dumps_bytes(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes, for a body sent as it is. Text UTF-8 cannot hold (a lone
    surrogate, as a header or URL with undecodable bytes can carry into an error message) is
    written as the standard library writes it, escaped, rather than failing the answer."""
    try:
        return to_json(value)
    except PydanticSerializationError:
        return json.dumps(value, separators=(",", ":")).encode()
