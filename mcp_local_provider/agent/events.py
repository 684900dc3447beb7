"""What a backend receives (InvokeRequest) and yields (``BackendEvent``s)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp_local_provider.core.protocol import ModelInvoke


@dataclass(frozen=True)
class InvokeRequest:
    """One request routed to this agent, as the backend sees it."""

    id: str
    kind: str  # "chat" | "completion" | "embedding"
    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | None = None
    suffix: str | None = None
    input: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_invoke(cls, frame: ModelInvoke) -> InvokeRequest:
        payload = frame.payload
        return cls(
            id=frame.id,
            kind=str(payload.get("kind", "chat")),
            model=str(payload.get("model", "")),
            messages=list(payload.get("messages") or []),
            prompt=payload.get("prompt"),
            suffix=payload.get("suffix"),
            input=list(payload.get("input") or []),
            parameters=dict(payload.get("parameters") or {}),
        )

    @property
    def stream(self) -> bool:
        return bool(self.parameters.get("stream"))

    @property
    def max_tokens(self) -> int | None:
        value = self.parameters.get("max_tokens")
        return int(value) if value else None

    @property
    def stop(self) -> list[str]:
        value = self.parameters.get("stop")
        if not value:
            return []
        return [value] if isinstance(value, str) else [str(v) for v in value]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call; send ``id`` and ``name`` once, ``arguments`` in fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Finish:
    reason: str = "stop"
    usage: dict[str, Any] | None = None


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    usage: dict[str, Any] | None = None


BackendEvent = TextDelta | ReasoningDelta | ToolCallDelta | Finish | Embeddings


def text_of(content: Any) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)
