"""What every dialect shares: the ``Reply`` interface each dialect's reply implements, reading
a request body, and folding agent frames (deltas, tool-call fragments) into whole answers."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, cast

from pydantic import BaseModel, ValidationError

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.protocol import (
    MAX_TOOL_CALLS,
    AnswerFrame,
    Choice,
    Delta,
    FunctionDelta,
    ModelResult,
    ModelStreamChunk,
    Parameters,
    Result,
    ToolCallDelta,
)

M = TypeVar("M", bound=BaseModel)

#: Server-sent events, as the OpenAI, Responses and Anthropic dialects stream them.
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


class Reply(Protocol):
    """The answer to one request, in one dialect: streamed frame by frame (``encode`` each
    frame, ``finish`` after the last, ``fail`` for an error once the stream has begun) or
    folded into one body (``add`` each frame, then ``body``). The route picks one way per
    request (``http/replies.py``'s ``answer``); a reply is used one way only."""

    #: The stream's media type (a class attribute).
    media_type: str
    #: Bytes to send while the agent is silent (``b""``: none; a class attribute).
    keepalive: bytes
    #: The model the answer names: the one asked for, or the fallback model that served it.
    model: str

    def encode(self, frame: AnswerFrame) -> bytes:
        """The bytes of one frame (``b""`` when it has nothing to show yet)."""

    def finish(self) -> bytes:
        """What follows the last frame."""

    def fail(self, error: errors.ProviderError) -> bytes:
        """An error after the stream began, in the dialect's in-band shape; nothing follows."""

    def add(self, frame: AnswerFrame) -> None:
        """Fold one frame into the whole answer."""

    def body(self) -> Any:
        """The whole answer, once every frame was added."""


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a request body, or raise BadRequest naming the first bad field."""
    if not body.strip():
        raise errors.BadRequest("the request body is empty; send a JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> errors.BadRequest:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid":
        return errors.BadRequest("the request body is not valid JSON")
    message = first["msg"]
    if first["type"] == "value_error":
        message = str((first.get("ctx") or {}).get("error", message))
        if not loc:  # a check across fields: its message says it all
            return errors.BadRequest(message)
        if message.startswith(loc + " "):  # "model is required", not "model: model is required"
            return errors.BadRequest(message, param=loc)
    if first["type"] == "model_type" or not loc:
        return errors.BadRequest("the request body must be a JSON object")
    if first["type"] == "missing":
        message = "is required"
    return errors.BadRequest(f"{loc}: {message}", param=loc)


def as_parameters(values: dict[str, Any]) -> Parameters:
    """Built parameters as the protocol types them: the fields every agent reads, and any
    other field passed through as it is (``Parameters`` keeps fields it does not name)."""
    return cast(Parameters, values)


def merge_tool_call(calls: list[dict[str, Any]], delta: ToolCallDelta | dict[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the list of whole calls."""
    index: Any = delta.get("index", len(calls))
    if type(index) is not int or not 0 <= index < MAX_TOOL_CALLS:
        raise errors.AgentFailed(f"the agent sent a tool call with index {index!r}")
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if delta.get("id"):
        call["id"] = delta["id"]
    function: FunctionDelta = delta.get("function") or {}
    if function.get("name"):
        call["function"]["name"] = function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        call["function"]["arguments"] += arguments
    elif arguments is not None:
        call["function"]["arguments"] += dumps(arguments)


def frame_delta(frame: AnswerFrame) -> tuple[Delta, str | None]:
    """An agent frame as (delta, finish_reason): a whole ``model_result`` reads as one last
    delta carrying its message (or completion ``text``)."""
    if isinstance(frame, ModelStreamChunk):
        return frame.delta, frame.finish_reason
    result: Result = frame.result or {}
    choice: Choice = (result.get("choices") or [{}])[0]
    delta = Delta(**(choice.get("message") or {}))
    delta.pop("role", None)
    if "text" in choice and "content" not in delta:
        delta["content"] = choice["text"]
    return delta, choice.get("finish_reason") or "stop"


def frame_usage(frame: ModelStreamChunk | ModelResult) -> dict[str, Any] | None:
    if isinstance(frame, ModelStreamChunk):
        return frame.usage
    usage = (frame.result or {}).get("usage")
    return usage if isinstance(usage, dict) else None


TOOL_CHOICES = ("none", "auto", "required")


def check_tool_choice(choice: Any, tools: list[str], param: str = "tool_choice") -> Any:
    """An OpenAI-shaped ``tool_choice`` (``none``, ``auto``, ``required`` or
    ``{"type": "function", "function": {"name": ...}}``), checked: a named function must be
    one of ``tools``. Returns it unchanged, or raises BadRequest."""
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise errors.BadRequest(
                f"{param} must be none, auto, required or a named function, not {choice!r}",
                param=param,
            )
        return choice
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not name:
        raise errors.BadRequest(
            f'{param} must be a string or {{"type": "function", "function": {{"name": ...}}}}',
            param=param,
        )
    if name not in tools:
        raise errors.BadRequest(
            f"{param} names the function {name!r}, which is not among the request's tools",
            param=param,
        )
    return choice


class FoldedAnswer:
    """Agent frames folded into one whole answer: its text, its reasoning, its tool calls made
    whole, and how it finished. The non-streaming replies of each dialect build on it."""

    __slots__ = ("finish_reason", "reasoning", "text", "tool_calls")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.finish_reason: str | None = None

    def fold(self, frame: ModelStreamChunk | ModelResult) -> None:
        delta, finish_reason = frame_delta(frame)
        if delta.get("reasoning_content"):
            self.reasoning.append(str(delta["reasoning_content"]))
        if delta.get("content"):
            self.text.append(str(delta["content"]))
        for call in delta.get("tool_calls") or ():
            merge_tool_call(self.tool_calls, call)
        if finish_reason is not None:
            self.finish_reason = finish_reason
