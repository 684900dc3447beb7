"""The echo backend: answers with the last user message, word by word. For tests and demos."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from ...protocol import ModelSpec
from ..backend import Backend
from ..events import Event, Finish, InvokeRequest, TextDelta, text_of

_PIECES = re.compile(r"\s*\S+\s*|\s+")


def pieces(text: str) -> list[str]:
    """Words with their whitespace kept, so that joining the pieces gives back ``text``."""
    return _PIECES.findall(text)


def count_words(text: str) -> int:
    return len(text.split())


class EchoBackend(Backend):
    name = "echo"

    def __init__(self, models: list[str] | None = None, delay: float = 0.0) -> None:
        self._models = models or ["echo"]
        self.delay = delay

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(name=name, capabilities=("chat", "completion")) for name in self._models]

    def _source(self, request: InvokeRequest) -> tuple[str, str]:
        """(text to echo, all prompt text)."""
        if request.kind == "completion":
            prompt = request.prompt or ""
            return prompt, prompt + (request.suffix or "")
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

    async def run(self, request: InvokeRequest) -> AsyncIterator[Event]:
        text, prompt = self._source(request)
        for piece in pieces(text):
            # Yield to the loop between pieces, as a backend waiting on real I/O would.
            await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        prompt_tokens, completion_tokens = count_words(prompt), count_words(text)
        yield Finish(
            "stop",
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )
