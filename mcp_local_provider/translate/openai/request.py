"""OpenAI requests: chat completions, legacy completions and embeddings, validated, and each
as the payload it asks the agent for. Pure: no I/O.

Fields not modelled here pass through to the agent under ``parameters``. A ``suffix`` on a
legacy completion makes it fill-in-the-middle, which the model must support."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_local_provider.core.names import MODEL_NAME_PATTERN
from mcp_local_provider.core.protocol import InvokePayload
from mcp_local_provider.translate.common import as_parameters, check_tool_choice


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

    def payload(self, target: str | None = None, with_tools: bool = True) -> InvokePayload:
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
            "parameters": as_parameters(parameters),
        }


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
        for part in content
    )


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

    def payload(self, target: str) -> InvokePayload:
        parameters: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "stream": bool(self.stream),
        }
        for key, value in (self.model_extra or {}).items():
            parameters.setdefault(key, value)
        payload: InvokePayload = {
            "kind": "completion",
            "model": target,
            "prompt": self.text,
            "parameters": as_parameters(parameters),
        }
        if self.suffix:
            payload["suffix"] = self.suffix
        return payload


class EmbeddingRequest(BaseModel):
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
