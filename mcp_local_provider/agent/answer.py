"""The frames an agent sends for a backend's events, built by the protocol module. Pure."""

from __future__ import annotations

from typing import Any

from mcp_local_provider.agent.events import (
    BackendEvent,
    Embeddings,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from mcp_local_provider.core.protocol import (
    AnswerFrame,
    ModelResult,
    ModelStreamChunk,
    error_result_frame,
    result_frame,
    stream_chunk_frame,
)


class AnswerFrames:
    """Numbers the chunks of one answer and builds each frame; ``frame`` gives None for an
    event that sends nothing (an empty text delta)."""

    __slots__ = ("index", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.index = 0

    def frame(self, event: BackendEvent) -> AnswerFrame | None:
        if isinstance(event, Embeddings):
            return self.embeddings(event)
        if isinstance(event, Finish):
            return self.chunk({}, event.reason, event.usage)
        delta = delta_of(event)
        return self.chunk(delta) if delta is not None else None

    def chunk(
        self, delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None
    ) -> ModelStreamChunk:
        frame = stream_chunk_frame(self.request_id, self.index, delta, finish, usage)
        self.index += 1
        return frame

    def embeddings(self, event: Embeddings) -> ModelResult:
        data = [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(event.vectors)
        ]
        return result_frame(self.request_id, {"data": data, "usage": event.usage})

    def error(self, code: str, message: str, retry_after: float | None = None) -> ModelResult:
        return error_result_frame(self.request_id, code, message, retry_after)


def finished(chunk: AnswerFrame, reason: str, usage: dict[str, Any] | None) -> AnswerFrame:
    """A chunk frame made the answer's last: the same frame, carrying the finish (and usage)
    too."""
    if not isinstance(chunk, ModelStreamChunk):
        return chunk
    if usage is None:
        return chunk.model_copy(update={"finish_reason": reason})
    return chunk.model_copy(update={"finish_reason": reason, "usage": usage})


def delta_of(event: BackendEvent) -> dict[str, Any] | None:
    """The OpenAI-style ``delta`` of a text, reasoning or tool-call event."""
    if isinstance(event, TextDelta):
        return {"content": event.text} if event.text else None
    if isinstance(event, ReasoningDelta):
        return {"reasoning_content": event.text}
    if isinstance(event, ToolCallDelta):
        call: dict[str, Any] = {"index": event.index}
        function: dict[str, Any] = {"arguments": event.arguments}
        if event.id is not None:
            call["id"] = event.id
            call["type"] = "function"
        if event.name is not None:
            function["name"] = event.name
        call["function"] = function
        return {"tool_calls": [call]}
    return None
