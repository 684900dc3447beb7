"""OpenAI's model list (``GET /v1/models``) and one model (``GET /v1/models/{model}``)."""

from __future__ import annotations

from typing import Any


def models_list(models: list[tuple[str, int, int]]) -> dict[str, Any]:
    """``/v1/models`` for (name, created, context length) triples."""
    return {"object": "list", "data": [model_entry(*model) for model in models]}


def model_entry(name: str, created: int, context_length: int) -> dict[str, Any]:
    """A model; ``context_length`` is not OpenAI's but LM Studio's and vLLM's (``max_model_len``
    is vLLM's older name), which OpenAI-compatible clients read to size their prompts."""
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "mcp-local-provider",
        "context_length": context_length,
    }
