"""OpenAI chat completions <-> agent protocol payloads and frames."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import errors
from ..protocol import MODEL_NAME_PATTERN, ModelResult, ModelStreamChunk
from .common import dumps, merge_tool_call

SSE_DONE = b"data: [DONE]\n\n"


def _model_name(value: str) -> str:
    if not MODEL_NAME_PATTERN.match(value):
        raise ValueError("must be 1-200 letters, digits and . _ : @ / + -")
    return value


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``. Fields not modelled here pass through to the agent."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, le=1)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _model_name(value)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return stops

    @property
    def wants_usage(self) -> bool:
        return bool(self.stream and (self.stream_options or {}).get("include_usage"))

    def payload(self) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "max_tokens": self.max_tokens or self.max_completion_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "stream": bool(self.stream),
        }
        for key, value in (self.model_extra or {}).items():
            parameters.setdefault(key, value)
        return {
            "kind": "chat",
            "model": self.model,
            "messages": [m.model_dump(exclude_none=True) for m in self.messages],
            "parameters": parameters,
        }


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def error_body(error: errors.ProviderError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


class ChatStream:
    """Turns agent frames into ``chat.completion.chunk`` SSE events, one event per frame."""

    __slots__ = ("created", "id", "model", "sent_role", "usage", "want_usage")

    def __init__(self, model: str, want_usage: bool) -> None:
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.sent_role = False
        self.want_usage = want_usage
        self.usage: dict[str, Any] | None = None

    def _event(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return b"data: " + dumps(body).encode() + b"\n\n"

    def _choice(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            self.sent_role = True
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def encode(self, event: ModelStreamChunk | ModelResult) -> bytes:
        """The SSE bytes for one agent frame; the last one carries the finish (and usage)."""
        if isinstance(event, ModelStreamChunk):
            if event.usage is not None:
                self.usage = event.usage
            out = self._event([self._choice(event.delta, event.finish_reason)])
        else:
            result = event.result or {}
            self.usage = result.get("usage")
            choice = (result.get("choices") or [{}])[0]
            message = dict(choice.get("message") or {})
            message.pop("role", None)
            out = self._event([self._choice(message, choice.get("finish_reason") or "stop")])
        return out

    def finish(self) -> bytes:
        """What follows the last frame: the usage chunk if asked for, then ``[DONE]``."""
        if self.want_usage:
            return self._event([], self.usage or _no_usage()) + SSE_DONE
        return SSE_DONE


def stream_error(error: errors.ProviderError) -> bytes:
    """A mid-stream failure: an event with an ``error`` object; no ``[DONE]`` follows."""
    return b"data: " + dumps(error_body(error)).encode() + b"\n\n"


def _no_usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class ChatAggregate:
    """Folds agent frames into one ``chat.completion`` for a non-streaming client."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None

    def add(self, event: ModelStreamChunk | ModelResult) -> None:
        if isinstance(event, ModelResult):
            self.result = event.result or {}
            return
        delta = event.delta
        if delta.get("content"):
            self.content.append(delta["content"])
        if delta.get("reasoning_content"):
            self.reasoning.append(delta["reasoning_content"])
        for call in delta.get("tool_calls") or ():
            merge_tool_call(self.tool_calls, call)
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason
        if event.usage is not None:
            self.usage = event.usage

    def body(self) -> dict[str, Any]:
        if self.result is not None:
            choices = self.result.get("choices") or [
                {"message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
            ]
            usage = self.result.get("usage")
        else:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(self.content) if self.content or not self.tool_calls else None,
            }
            if self.reasoning:
                message["reasoning_content"] = "".join(self.reasoning)
            if self.tool_calls:
                message["tool_calls"] = self.tool_calls
            choices = [{"message": message, "finish_reason": self.finish_reason or "stop"}]
            usage = self.usage
        normal = []
        for index, choice in enumerate(choices[:1]):
            message = {"role": "assistant", "content": None, "refusal": None}
            message.update(choice.get("message") or {})
            normal.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": choice.get("finish_reason") or "stop",
                }
            )
        return {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": normal,
            "usage": usage or _no_usage(),
        }


def models_list(names: list[str], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [model_entry(name, created) for name in names],
    }


def model_entry(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "mcp-local-provider"}
