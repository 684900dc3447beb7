"""Embeddings, the same for every dialect: the payload asked of the agent, and its answer checked
once into plain vectors (each dialect's ``reply.py`` shapes them). Pure: no I/O."""

from __future__ import annotations

import math
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.catalog import Entry
from mcp_local_provider.core.protocol import InvokePayload, ModelResult, ModelStreamChunk
from mcp_local_provider.translate.common import as_parameters


def vectors(frame: ModelStreamChunk | ModelResult, count: int) -> list[list[float]]:
    """The ``count`` vectors of an agent's ``model_result``, in input order."""
    if not isinstance(frame, ModelResult):
        raise errors.AgentFailed("the agent streamed an answer to an embedding request")
    data = (frame.result or {}).get("data")
    if not isinstance(data, list) or len(data) != count:
        raise errors.AgentFailed(
            f"the agent returned {len(data) if isinstance(data, list) else 'no'} embeddings "
            f"for {count} inputs"
        )
    ordered: list[list[float] | None] = [None] * count
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or not _is_vector(vector):
            raise errors.AgentFailed("the agent returned a malformed embedding")
        ordered[index] = [float(x) for x in vector]  # type: ignore[union-attr]
    if any(v is None for v in ordered):
        raise errors.AgentFailed("the agent returned the same embedding index twice")
    return [v for v in ordered if v is not None]


def _is_vector(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    )


def usage_of(frame: ModelStreamChunk | ModelResult) -> dict[str, Any]:
    usage = (frame.result or {}).get("usage") if isinstance(frame, ModelResult) else None
    if not isinstance(usage, dict):
        return {"prompt_tokens": 0, "total_tokens": 0}
    prompt = int(usage.get("prompt_tokens") or 0)
    return {"prompt_tokens": prompt, "total_tokens": int(usage.get("total_tokens") or prompt)}


def shorten(vector: list[float], dimensions: int | None) -> list[float]:
    """Keep the first ``dimensions`` values and scale back to unit length (as Ollama does)."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm else head


def embedding_payload(entry: Entry, texts: list[str], dimensions: int | None) -> InvokePayload:
    parameters: dict[str, Any] = {}
    if dimensions is not None:
        parameters["dimensions"] = dimensions
    return {
        "kind": "embedding",
        "model": entry.target,
        "input": texts,
        "parameters": as_parameters(parameters),
    }
