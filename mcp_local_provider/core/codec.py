"""The one JSON codec for what the daemon writes: agent frames and HTTP bodies alike."""

from __future__ import annotations

import json
from typing import Any

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """Compact JSON, as sent on the wire."""
    return _compact(value)
