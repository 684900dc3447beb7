"""OpenAI legacy completions (``POST /v1/completions``) <-> agent ``completion`` payloads.
Pure: no I/O. A ``suffix`` makes it fill-in-the-middle, which the model must support."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field, field_validator

from mcp_local_provider.core.ids import unique_hex
from mcp_local_provider.core.protocol import ModelResult, ModelStreamChunk
from mcp_local_provider.translate.common import frame_delta, frame_usage
from mcp_local_provider.translate.openai.chat import SSE_DONE, SamplingRequest, no_usage, sse


class CompletionRequest(SamplingRequest):
    """``POST /v1/completions``."""

    model: str = Field(max_length=200)
    prompt: str | list[str]
    suffix: str | None = None
    echo: bool | None = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) != 1 or not isinstance(value[0], str):
                raise ValueError("send one prompt as a string (lists and tokens are not supported)")
            return value[0]
        return value

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def needs(self) -> list[str]:
        return ["fim"] if self.suffix else ["completion"]

    def payload(self, target: str) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "stream": bool(self.stream),
        }
        for key, value in (self.model_extra or {}).items():
            parameters.setdefault(key, value)
        payload: dict[str, Any] = {
            "kind": "completion",
            "model": target,
            "prompt": self.text,
            "parameters": parameters,
        }
        if self.suffix:
            payload["suffix"] = self.suffix
        return payload


def completion_id() -> str:
    return "cmpl-" + unique_hex(24)


class CompletionReply:
    """``text_completion`` objects: SSE chunks as frames arrive, or one body at the end."""

    def __init__(self, model: str, *, echo_prompt: str = "", want_usage: bool = False) -> None:
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.pending_echo = echo_prompt  # OpenAI's echo=true: the prompt comes first
        self.want_usage = want_usage
        self.text: list[str] = [echo_prompt] if echo_prompt else []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def _object(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _take(self, event: ModelStreamChunk | ModelResult) -> tuple[str, str | None]:
        delta, finish_reason = frame_delta(event)
        usage = frame_usage(event)
        if usage is not None:
            self.usage = usage
        if finish_reason is not None:
            self.finish_reason = finish_reason
        return str(delta.get("content") or ""), finish_reason

    def encode(self, event: ModelStreamChunk | ModelResult) -> bytes:
        text, finish_reason = self._take(event)
        if self.pending_echo:
            text, self.pending_echo = self.pending_echo + text, ""
        if not text and finish_reason is None:
            return b""
        return sse(self._object(text, finish_reason))

    def finish(self) -> bytes:
        if self.want_usage:
            body = {**self._object("", None), "choices": [], "usage": self.usage or no_usage()}
            return sse(body) + SSE_DONE
        return SSE_DONE

    def add(self, event: ModelStreamChunk | ModelResult) -> None:
        text, _ = self._take(event)
        if text:
            self.text.append(text)

    def body(self) -> dict[str, Any]:
        return {
            **self._object("".join(self.text), self.finish_reason or "stop"),
            "usage": self.usage or no_usage(),
        }
