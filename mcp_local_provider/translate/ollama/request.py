"""Ollama API requests (``/api/chat``, ``/api/generate``, ``/api/embed``, ...) -> agent
protocol payloads. Pure: no I/O.

Ollama's request fields are mapped onto the agent protocol's OpenAI-shaped payloads: ``options``
become ``parameters`` (``num_predict`` is ``max_tokens``), ``format`` becomes
``response_format``, tool-call ``arguments`` objects become JSON strings, ``images`` become image
parts. Unknown fields are ignored, as Ollama does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_local_provider.core import errors
from mcp_local_provider.core.catalog import Entry
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.protocol import InvokePayload
from mcp_local_provider.translate.common import as_parameters

MODEL_FIELD = Field(max_length=200)


def _required_model(value: str) -> str:
    if not value.strip():
        raise ValueError("model is required")
    return value


class Options(BaseModel):
    """The ``options`` object; keys this daemon does not use are ignored."""

    model_config = ConfigDict(extra="ignore")

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def parameters(self) -> dict[str, Any]:
        # num_predict -1 means "no limit" and -2 "fill the context": no max_tokens for either.
        limit = self.num_predict if self.num_predict and self.num_predict > 0 else None
        values = {
            "max_tokens": limit,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "stop": self.stop or None,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }
        return {k: v for k, v in values.items() if v is not None}


def response_format(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Ollama's ``format`` ("json" or a JSON schema) as an OpenAI ``response_format``."""
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": value}}
    raise errors.BadRequest(
        f'invalid format: {dumps(value)}; use "json" or a JSON schema object', param="format"
    )


_IMAGE_TYPES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)


def image_part(data: str) -> dict[str, Any]:
    """One base64 image (Ollama's ``images`` entry) as an OpenAI ``image_url`` part."""
    if data.startswith("data:"):
        return {"type": "image_url", "image_url": {"url": data}}
    try:
        head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise errors.BadRequest("images must be base64-encoded", param="images") from None
    mime = next((m for magic, m in _IMAGE_TYPES if head.startswith(magic)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | None = ""
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    def to_agent(self) -> dict[str, Any]:
        role = self.role.lower()
        message: dict[str, Any] = {"role": role, "content": self.content or ""}
        if self.images:
            parts: list[dict[str, Any]] = []
            if self.content:
                parts.append({"type": "text", "text": self.content})
            parts.extend(image_part(image) for image in self.images)
            message["content"] = parts
        if self.thinking and role == "assistant":
            message["reasoning_content"] = self.thinking
        if self.tool_calls:
            message["tool_calls"] = [_tool_call(i, c) for i, c in enumerate(self.tool_calls)]
        if role == "tool":
            if self.tool_call_id:
                message["tool_call_id"] = self.tool_call_id
            if self.tool_name:
                message["name"] = self.tool_name
        return message


def _tool_call(position: int, call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", {})
    return {
        "id": call.get("id") or f"call_{position}",
        "type": "function",
        "function": {
            "name": str(function.get("name") or ""),
            "arguments": arguments if isinstance(arguments, str) else dumps(arguments),
        },
    }


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = MODEL_FIELD

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _required_model(value)


class _Inference(Request):
    #: The request's structured output field, as errors name it.
    format_param: ClassVar[str] = "format"
    stream: bool | None = True
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    think: bool | str | None = None
    keep_alive: Any = None

    @property
    def load_reason(self) -> str:
        """What an empty request reports: ``keep_alive`` 0 asks Ollama to unload the model."""
        return "unload" if self.keep_alive in (0, "0", "0s", "0m") else "load"

    @property
    def streaming(self) -> bool:
        return self.stream is not False  # a missing or null stream means stream on /api/*

    def parameters(self) -> dict[str, Any]:
        parameters: dict[str, Any] = {"stream": self.streaming}
        if self.options is not None:
            parameters.update(self.options.parameters())
        fmt = response_format(self.format)
        if fmt is not None:
            parameters["response_format"] = fmt
        if self.think is not None:
            parameters["think"] = self.think
        return parameters


class ChatRequest(_Inference):
    """``POST /api/chat``."""

    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None

    @property
    def offers_tools(self) -> bool:
        return bool(self.tools)

    @property
    def forces_tools(self) -> bool:
        return False  # Ollama has no tool_choice

    def needs(self, tools_optional: bool = False) -> list[str]:
        needs = ["chat"]
        if self.tools and not tools_optional:
            needs.append("tools")
        if any(m.images for m in self.messages):
            needs.append("vision")
        return needs

    def payload(self, target: str | None = None, with_tools: bool = True) -> InvokePayload:
        parameters = self.parameters()
        if self.tools and with_tools:
            parameters["tools"] = self.tools
        return {
            "kind": "chat",
            "model": target or self.model,
            "messages": [m.to_agent() for m in self.messages],
            "parameters": as_parameters(parameters),
        }


class GenerateRequest(_Inference):
    """``POST /api/generate``: FIM when ``suffix`` is set, raw completion when ``raw``,
    otherwise a one-turn chat (Ollama applies the chat template in that case)."""

    prompt: str | None = ""
    suffix: str | None = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = False
    images: list[str] | None = None

    @model_validator(mode="after")
    def _raw_alone(self) -> GenerateRequest:
        if self.raw and (self.template or self.system or self.context):
            raise ValueError("raw mode does not support template, system, or context")
        return self

    @property
    def loads_only(self) -> bool:
        """An empty prompt only loads the model in Ollama: answered without the agent."""
        return not self.prompt and not self.suffix

    def kind(self, entry: Entry) -> str:
        if self.suffix or self.raw or not entry.supports("chat"):
            return "completion"
        return "chat"

    def needs(self, entry: Entry) -> list[str]:
        needs = ["fim"] if self.suffix else [self.kind(entry)]
        if self.images:
            needs.append("vision")
        return needs

    def payload(self, entry: Entry) -> InvokePayload:
        parameters = self.parameters()
        if self.kind(entry) == "chat":
            messages: list[dict[str, Any]] = []
            if self.system:
                messages.append({"role": "system", "content": self.system})
            user = Message(role="user", content=self.prompt, images=self.images)
            messages.append(user.to_agent())
            return {
                "kind": "chat",
                "model": entry.target,
                "messages": messages,
                "parameters": as_parameters(parameters),
            }
        if self.system:
            parameters["system"] = self.system
        payload: InvokePayload = {
            "kind": "completion",
            "model": entry.target,
            "prompt": self.prompt or "",
            "parameters": as_parameters(parameters),
        }
        if self.suffix:
            payload["suffix"] = self.suffix
        return payload


class ShowRequest(BaseModel):
    """``POST /api/show``: ``model``, or the older ``name``."""

    model_config = ConfigDict(extra="ignore")

    model: str = MODEL_FIELD
    name: str = MODEL_FIELD
    verbose: bool | None = False

    @model_validator(mode="before")
    @classmethod
    def _either(cls, value: Any) -> Any:
        if isinstance(value, dict):
            model = value.get("model") or value.get("name") or ""
            if not isinstance(model, str) or not model.strip():
                raise ValueError("model is required")
            return {**value, "model": model, "name": model}
        return value


class EmbedRequest(Request):
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


class EmbeddingsRequest(Request):
    """``POST /api/embeddings`` (the older, single-prompt route)."""

    prompt: str = ""
    options: Options | None = None
    keep_alive: Any = None
