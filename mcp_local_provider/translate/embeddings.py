"""Embeddings: the agent's answer checked once, then shaped for ``/v1/embeddings``,
``/api/embed`` and ``/api/embeddings``. Pure: no I/O."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcp_local_provider.core import errors
from mcp_local_provider.core.catalog import Entry
from mcp_local_provider.core.protocol import ModelResult, ModelStreamChunk
from mcp_local_provider.translate.ollama.chat import Options, Request


def vectors(event: ModelStreamChunk | ModelResult, count: int) -> list[list[float]]:
    """The ``count`` vectors of an agent's ``model_result``, in input order."""
    if not isinstance(event, ModelResult):
        raise errors.AgentFailed("the agent streamed an answer to an embedding request")
    data = (event.result or {}).get("data")
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


def usage_of(event: ModelStreamChunk | ModelResult) -> dict[str, Any]:
    usage = (event.result or {}).get("usage") if isinstance(event, ModelResult) else None
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


def as_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what the OpenAI SDKs decode."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


class OpenAIEmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(max_length=200)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        if isinstance(value, list) and value and not isinstance(value[0], str):
            raise ValueError("token arrays are not supported; send text")
        if isinstance(value, list) and not value:
            raise ValueError("must not be empty")
        return value

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def openai_body(
    model: str, found: list[list[float]], fmt: str, usage: dict[str, Any]
) -> dict[str, Any]:
    encode = as_base64 if fmt == "base64" else (lambda v: v)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(found)
        ],
        "model": model,
        "usage": usage,
    }


class OllamaEmbedRequest(Request):
    """``POST /api/embed``."""

    input: str | list[str] | None = None
    truncate: bool | None = True
    dimensions: int | None = Field(None, ge=1)
    options: Options | None = None
    keep_alive: Any = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("invalid input type: use a string or a list of strings")

    def inputs(self) -> list[str]:
        if self.input is None or self.input == "":
            return []
        return [self.input] if isinstance(self.input, str) else list(self.input)


class OllamaEmbeddingsRequest(Request):
    """``POST /api/embeddings`` (the older, single-prompt route)."""

    prompt: str = ""
    options: Options | None = None
    keep_alive: Any = None


def embedding_payload(entry: Entry, texts: list[str], dimensions: int | None) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    if dimensions is not None:
        parameters["dimensions"] = dimensions
    return {"kind": "embedding", "model": entry.target, "input": texts, "parameters": parameters}
