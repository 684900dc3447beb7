"""Anthropic's model list (``GET /v1/models`` with an ``anthropic-version`` header) and one
model, each with the ``context_length`` the agent declares."""

from __future__ import annotations

import time
from typing import Any


def model_info(name: str, created: float, context_length: int) -> dict[str, Any]:
    """A model as Anthropic's ``GET /v1/models`` lists it, plus its ``context_length``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": stamp,
        "context_length": context_length,
    }


def models_page(models: list[tuple[str, float, int]]) -> dict[str, Any]:
    """Anthropic's model list: every model on one page."""
    data = [model_info(*model) for model in models]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
