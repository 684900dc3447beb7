"""OpenAI chat completions <-> agent protocol payloads and frames."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.ids import unique_hex
from mcp_local_provider.core.names import MODEL_NAME_PATTERN
from mcp_local_provider.core.protocol import ModelResult, ModelStreamChunk
from mcp_local_provider.translate.common import (
    FoldedAnswer,
    check_tool_choice,
    frame_delta,
    frame_usage,
)

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


class SamplingRequest(BaseModel):
    """What chat and legacy completions requests share. Fields not modelled here pass
    through to the agent under ``parameters``."""

    #: The request's structured output field, as errors name it.
    format_param: ClassVar[str] = "response_format"

    model_config = ConfigDict(extra="allow")

    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    n: int | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported (one choice per request)")
        return value

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


class ChatRequest(SamplingRequest):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _model_name(value)

    @model_validator(mode="after")
    def _choice(self) -> ChatRequest:
        if self.tool_choice is not None:
            check_tool_choice(self.tool_choice, self.tool_names())
        return self

    def tool_names(self) -> list[str]:
        return [str((t.get("function") or {}).get("name") or "") for t in self.tools or []]

    @property
    def offers_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def forces_tools(self) -> bool:
        """``tool_choice`` required or a named function: a text answer would be wrong."""
        return self.tool_choice == "required" or isinstance(self.tool_choice, dict)

    def needs(self, tools_optional: bool = False) -> list[str]:
        """Capabilities the model must declare; with ``tools_optional`` tools are left out
        unless ``tool_choice`` forces a call."""
        needs = ["chat"]
        if self.offers_tools and (self.forces_tools or not tools_optional):
            needs.append("tools")
        if any(_has_image(m.content) for m in self.messages):
            needs.append("vision")
        return needs

    def payload(self, target: str | None = None, with_tools: bool = True) -> dict[str, Any]:
        """The agent's payload; ``target`` is the agent's name for the model; without
        ``with_tools`` (or with ``tool_choice`` none) the tools are left out."""
        parameters: dict[str, Any] = {
            "max_tokens": self.max_tokens or self.max_completion_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "stream": bool(self.stream),
        }
        if with_tools and self.offers_tools:
            parameters["tools"] = self.tools
            if self.tool_choice is not None:
                parameters["tool_choice"] = self.tool_choice
            if self.parallel_tool_calls is not None:
                parameters["parallel_tool_calls"] = self.parallel_tool_calls
        for key, value in (self.model_extra or {}).items():
            parameters.setdefault(key, value)
        return {
            "kind": "chat",
            "model": target or self.model,
            "messages": [m.model_dump(exclude_none=True) for m in self.messages],
            "parameters": parameters,
        }


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
        for part in content
    )


def sse(body: dict[str, Any]) -> bytes:
    """One SSE event: a ``data:`` line only (an ``event:`` field confuses the OpenAI SDKs)."""
    return b"data: " + dumps(body).encode() + b"\n\n"


def completion_id() -> str:
    return "chatcmpl-" + unique_hex(24)


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
    """Turns agent frames into ``chat.completion.chunk`` SSE events, one event per frame.

    Tool calls go out as OpenAI streams them: each call's ``id``, ``type`` and ``name`` once,
    on its first fragment, then ``arguments`` as string fragments (Void joins every fragment
    it sees, so a repeated name would garble it). The finish reason is ``tool_calls`` when
    the agent called a tool and said ``stop``.
    """

    __slots__ = ("created", "id", "model", "sent_role", "tools_started", "usage", "want_usage")

    def __init__(self, model: str, want_usage: bool) -> None:
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.sent_role = False
        self.want_usage = want_usage
        self.usage: dict[str, Any] | None = None
        self.tools_started: dict[int, bool] = {}  # index -> whether its name was sent

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
        return sse(body)

    def _choice(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            self.sent_role = True
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def _tool_delta(self, position: int, call: dict[str, Any]) -> dict[str, Any]:
        index = call.get("index")
        index = index if isinstance(index, int) else position
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):
            arguments = dumps(arguments)
        out: dict[str, Any] = {"index": index}
        out_function: dict[str, Any] = {}
        if index not in self.tools_started:
            self.tools_started[index] = False
            out["id"] = call.get("id") or tool_call_id()
            out["type"] = "function"
        if not self.tools_started[index] and function.get("name"):
            self.tools_started[index] = True
            out_function["name"] = function["name"]
        out_function["arguments"] = arguments
        out["function"] = out_function
        return out

    def encode(self, event: ModelStreamChunk | ModelResult) -> bytes:
        """The SSE bytes for one agent frame; the last one carries the finish reason."""
        delta, finish_reason = frame_delta(event)
        usage = frame_usage(event)
        if usage is not None:
            self.usage = usage
        out = dict(delta)
        calls = delta.get("tool_calls")
        if calls is not None:
            out["tool_calls"] = [
                self._tool_delta(i, c) for i, c in enumerate(calls) if isinstance(c, dict)
            ]
            if not out["tool_calls"]:
                del out["tool_calls"]
        if finish_reason == "stop" and self.tools_started:
            finish_reason = "tool_calls"
        if not out and finish_reason is None and self.sent_role:
            return b""
        return self._event([self._choice(out, finish_reason)])

    def finish(self) -> bytes:
        """What follows the last frame: the usage chunk if asked for, then ``[DONE]``."""
        if self.want_usage:
            return self._event([], self.usage or no_usage()) + SSE_DONE
        return SSE_DONE


def stream_error(error: errors.ProviderError) -> bytes:
    """A mid-stream failure: an event with an ``error`` object; no ``[DONE]`` follows."""
    return sse(error_body(error))


def tool_call_id() -> str:
    return "call_" + unique_hex(24)


def no_usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class ChatAggregate(FoldedAnswer):
    """Folds agent frames into one ``chat.completion`` for a non-streaming client."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self.usage: dict[str, Any] | None = None

    def add(self, event: ModelStreamChunk | ModelResult) -> None:
        self.fold(event)
        usage = frame_usage(event)
        if usage is not None:
            self.usage = usage

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) if self.text or not self.tool_calls else None,
            "refusal": None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        finish_reason = self.finish_reason or "stop"
        if self.tool_calls:
            for call in self.tool_calls:
                call["id"] = call["id"] or tool_call_id()
            message["tool_calls"] = self.tool_calls
            if finish_reason == "stop":
                finish_reason = "tool_calls"
        return {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": self.usage or no_usage(),
        }


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
