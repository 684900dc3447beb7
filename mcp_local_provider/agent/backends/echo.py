"""The echo backend: answers with the last user message, word by word. For tests and demos.

Completions echo the prompt (and, with a suffix, ``SUFFIX_MARKER`` then the suffix), honouring
``max_tokens`` (counted in words) and ``stop``; embeddings are unit vectors derived from a hash
of each text, so equal texts get equal vectors. Every route of the daemon can be tried with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import struct
from collections.abc import AsyncIterator

from mcp_local_provider.agent.backend import Backend
from mcp_local_provider.agent.events import (
    BackendEvent,
    Embeddings,
    Finish,
    InvokeRequest,
    TextDelta,
    text_of,
)
from mcp_local_provider.core.protocol import ModelSpec

_PIECES = re.compile(r"\s*\S+\s*|\s+")
SUFFIX_MARKER = "<|suffix|>"
EMBEDDING_DIMENSIONS = 16
CAPABILITIES = ("chat", "completion", "fim", "embedding")
CONTEXT_LENGTH = 32768


def pieces(text: str) -> list[str]:
    """Words with their whitespace kept, so that joining the pieces gives back ``text``."""
    return _PIECES.findall(text)


def count_words(text: str) -> int:
    return len(text.split())


def embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for ``text``."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend(x / 2**31 - 1.0 for x in struct.unpack(">8I", digest))
        counter += 1
    vector = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class EchoBackend(Backend):
    name = "echo"

    def __init__(self, models: list[str] | None = None, delay: float = 0.0) -> None:
        self._models = models or ["echo"]
        self.delay = delay

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(name=name, capabilities=CAPABILITIES, context_length=CONTEXT_LENGTH)
            for name in self._models
        ]

    def _source(self, request: InvokeRequest) -> tuple[str, str]:
        """(text to echo, all prompt text)."""
        if request.kind == "completion":
            prompt, suffix = request.prompt or "", request.suffix or ""
            text = prompt + SUFFIX_MARKER + suffix if suffix else prompt
            return text, prompt + suffix
        texts = [text_of(m.get("content")) for m in request.messages]
        last_user = next(
            (
                text_of(m.get("content"))
                for m in reversed(request.messages)
                if m.get("role") == "user"
            ),
            "",
        )
        return last_user, " ".join(texts)

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        if request.kind == "embedding":
            words = sum(count_words(t) for t in request.input)
            yield Embeddings(
                [embedding(t) for t in request.input],
                {"prompt_tokens": words, "total_tokens": words},
            )
            return
        text, prompt = self._source(request)
        reason = "stop"
        if request.kind == "completion":
            text, reason = _limit(text, request.stop, request.max_tokens)
        for piece in pieces(text):
            # Yield to the loop between pieces, as a backend waiting on real I/O would.
            await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        prompt_tokens, completion_tokens = count_words(prompt), count_words(text)
        yield Finish(
            reason,
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )


def _limit(text: str, stop: list[str], max_tokens: int | None) -> tuple[str, str]:
    """Cut ``text`` at the first stop sequence, then at ``max_tokens`` words."""
    for sequence in stop:
        if sequence and sequence in text:
            text = text[: text.index(sequence)]
    words = pieces(text)
    if max_tokens is not None and count_words(text) > max_tokens:
        return "".join(words[:max_tokens]), "length"
    return text, "stop"
