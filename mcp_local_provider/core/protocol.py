"""Agent protocol v1: every frame on the /agent WebSocket, both directions, its codec and its
close codes. No I/O.

This module owns the wire: the daemon and the agent library build every frame with the
``*_frame`` functions below and parse what they receive with ``parse_agent_frame`` (daemon
side) and ``parse_daemon_frame`` (agent side), each frame once, straight from the text, into
the models below. One module on purpose (it passes 300 lines): each frame's builder sits
beside the model that parses it, so the two cannot drift apart.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.names import (
    AGENT_ID_PATTERN,
    MODEL_NAME_PATTERN,
    SCOPE_PATTERN,
    printable,
)

PROTOCOL_VERSION = 1


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    PROTOCOL_ERROR = 4400
    UNAUTHORIZED = 4401
    DENIED = 4403
    REVOKED = 4408
    EXPIRED = 4409


class ProtocolError(Exception):
    """A frame from an agent broke the protocol; the connection is closed with 4400."""


class ModelSpec(BaseModel):
    """A model an agent serves. In ``hello`` a bare string is accepted as the name."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    capabilities: tuple[str, ...] = ("chat", "completion")
    context_length: int | None = Field(None, gt=0)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not MODEL_NAME_PATTERN.match(value):
            raise ValueError("model names are 1-200 letters, digits and . _ : @ / + -")
        return value


def _model_spec(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Hello(_Frame):
    type: Literal["hello"]
    protocol: int = PROTOCOL_VERSION
    agent_id: str
    label: str = ""
    models: list[ModelSpec] = Field(default_factory=list, max_length=64)
    requested_scopes: list[str] = Field(default_factory=lambda: ["inference"], max_length=16)
    ttl_seconds: float | None = Field(None, gt=0)
    max_concurrency: int | None = Field(None, ge=1)
    reason: str = ""
    session_token: str | None = Field(None, max_length=512)

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        return [_model_spec(v) for v in value] if isinstance(value, list) else value

    @field_validator("agent_id")
    @classmethod
    def _agent_id(cls, value: str) -> str:
        if not AGENT_ID_PATTERN.match(value):
            raise ValueError("agent_id is 1-128 letters, digits and . _ : @ / -")
        return value

    @field_validator("label", "reason")
    @classmethod
    def _short_text(cls, value: str) -> str:
        return printable(value[:200])[:400]

    @field_validator("requested_scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not SCOPE_PATTERN.match(scope):
                raise ValueError("scopes are 1-64 lower-case letters, digits and _ . : -")
        return value

    @field_validator("protocol")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value != PROTOCOL_VERSION:
            raise ValueError(f"protocol {value} is not supported; this daemon speaks 1")
        return value


#: The most tool calls one answer may carry (indexes 0 to MAX_TOOL_CALLS - 1).
MAX_TOOL_CALLS = 128
_TEXT_FIELDS = ("role", "content", "reasoning_content", "text", "finish_reason")


def _text_fields(where: str, value: dict[str, Any]) -> None:
    for key in _TEXT_FIELDS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ValueError(f"{where}.{key} must be a string")


def check_message(where: str, message: Any) -> None:
    """An agent's delta or message: the fields the daemon reads must have their types, so a
    malformed frame is refused here rather than breaking a translation later."""
    if not isinstance(message, dict):
        raise ValueError(f"{where} must be an object")
    _text_fields(where, message)
    calls = message.get("tool_calls")
    if calls is None:
        return
    if not isinstance(calls, list) or len(calls) > MAX_TOOL_CALLS:
        raise ValueError(f"{where}.tool_calls must be a list of at most {MAX_TOOL_CALLS}")
    for call in calls:
        if not isinstance(call, dict):
            raise ValueError(f"{where}.tool_calls items must be objects")
        index = call.get("index", 0)
        if type(index) is not int or not 0 <= index < MAX_TOOL_CALLS:
            raise ValueError(f"{where}.tool_calls index must be 0 to {MAX_TOOL_CALLS - 1}")
        if call.get("id") is not None and not isinstance(call["id"], str):
            raise ValueError(f"{where}.tool_calls id must be a string")
        function = call.get("function")
        if function is None:
            continue
        if not isinstance(function, dict):
            raise ValueError(f"{where}.tool_calls function must be an object")
        if function.get("name") is not None and not isinstance(function["name"], str):
            raise ValueError(f"{where}.tool_calls function.name must be a string")


class ModelResult(_Frame):
    type: Literal["model_result"]
    id: str
    status: Literal["ok", "error"] = "ok"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @field_validator("result")
    @classmethod
    def _result(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        choices = value.get("choices")
        if choices is not None:
            if not isinstance(choices, list):
                raise ValueError("result.choices must be a list")
            for choice in choices:
                if not isinstance(choice, dict):
                    raise ValueError("result.choices items must be objects")
                _text_fields("result.choices", choice)
                if choice.get("message") is not None:
                    check_message("result.choices.message", choice["message"])
        if value.get("usage") is not None and not isinstance(value["usage"], dict):
            raise ValueError("result.usage must be an object")
        data = value.get("data")
        if data is not None and (
            not isinstance(data, list) or not all(isinstance(item, dict) for item in data)
        ):
            raise ValueError("result.data must be a list of objects")
        return value


class ModelStreamChunk(_Frame):
    type: Literal["model_stream_chunk"]
    id: str
    chunk_index: int | None = None
    delta: dict[str, Any] = Field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    @field_validator("delta")
    @classmethod
    def _delta(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            check_message("delta", value)
        return value


#: A frame that answers a ``model_invoke``: one piece of a stream, or the whole result.
AnswerFrame = ModelStreamChunk | ModelResult
#: Every frame an agent may send.
AgentFrame = Hello | ModelResult | ModelStreamChunk
_agent_frame: TypeAdapter[AgentFrame] = TypeAdapter(
    Annotated[AgentFrame, Field(discriminator="type")]
)


def parse_agent_frame(text: str | bytes) -> AgentFrame:
    """Parse and validate one frame from an agent, or raise ProtocolError saying why."""
    result: AgentFrame = _parse(_agent_frame, text)
    return result


def _parse(adapter: TypeAdapter[Any], text: str | bytes) -> Any:
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "json_invalid":
            raise ProtocolError("frame is not valid JSON") from None
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            raise ProtocolError("frame has no known string 'type'") from None
        if first["type"] == "model_attributes_type":
            raise ProtocolError("frame is not a JSON object") from None
        raise ProtocolError(f"invalid frame: {where}: {first['msg']}") from None


def encode(frame: dict[str, Any]) -> str:
    """A frame as the text of one WebSocket message."""
    return dumps(frame)


# Frames an agent sends ---------------------------------------------------------------------


def hello_frame(
    *,
    agent_id: str,
    label: str,
    models: list[dict[str, Any]],
    requested_scopes: list[str],
    ttl_seconds: float | None,
    max_concurrency: int,
    reason: str,
    session_token: str | None,
) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "agent_id": agent_id,
        "label": label,
        "models": models,
        "requested_scopes": requested_scopes,
        "ttl_seconds": ttl_seconds,
        "max_concurrency": max_concurrency,
        "reason": reason,
        "session_token": session_token,
    }


def stream_chunk_frame(
    request_id: str,
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "model_stream_chunk",
        "id": request_id,
        "chunk_index": index,
        "delta": delta,
        "finish_reason": finish_reason,
    }
    if usage is not None:
        frame["usage"] = usage
    return frame


def result_frame(request_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "model_result", "id": request_id, "status": "ok", "result": result}


def error_result_frame(
    request_id: str, code: str, message: str, retry_after: float | None = None
) -> dict[str, Any]:
    """An agent's error; ``retry_after`` (seconds) tells when a refusing vendor takes requests
    again (an optional field older daemons ignore: see docs/agent-protocol.md)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if retry_after is not None:
        error["retry_after"] = round(retry_after, 3)
    return {"type": "model_result", "id": request_id, "status": "error", "error": error}


# Frames the daemon sends -------------------------------------------------------------------


def invoke_frame(
    request_id: str, session_id: str, label: str, scope: str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "model_invoke",
        "id": request_id,
        "session_id": session_id,
        "model_meta": {
            "provider": "mcp-local-provider",
            "label": label,
            "requested_scopes": [scope],
        },
        "payload": payload,
    }


def session_granted_frame(
    *,
    session_id: str,
    session_token: str,
    allowed_scopes: list[str],
    models: list[str],
    expires_at: str | None,
    max_requests: int,
    max_concurrency: int,
) -> dict[str, Any]:
    return {
        "type": "session_granted",
        "session_id": session_id,
        "session_token": session_token,
        "allowed_scopes": allowed_scopes,
        "models": models,
        "expires_at": expires_at,
        "max_requests": max_requests,
        "max_concurrency": max_concurrency,
    }


def session_pending_frame(session_id: str) -> dict[str, Any]:
    return {
        "type": "session_pending",
        "session_id": session_id,
        "approve_with": f"mcp-local-provider sessions approve {session_id}",
    }


def session_denied_frame(reason: str) -> dict[str, Any]:
    return {"type": "session_denied", "reason": reason}


def session_ended_frame(session_id: str, reason: str) -> dict[str, Any]:
    return {"type": "session_ended", "session_id": session_id, "reason": reason}


def model_cancel_frame(request_id: str, reason: str) -> dict[str, Any]:
    return {"type": "model_cancel", "id": request_id, "reason": reason}


def error_frame(message: str) -> dict[str, Any]:
    return {"type": "error", "message": message}


# What the agent library reads: frames from the daemon ---------------------------------------


class SessionPending(_Frame):
    type: Literal["session_pending"]
    session_id: str
    approve_with: str = ""


class SessionGranted(_Frame):
    type: Literal["session_granted"]
    session_id: str
    session_token: str | None = None
    allowed_scopes: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    expires_at: str | None = None
    max_requests: int | None = None
    max_concurrency: int | None = None


class SessionDenied(_Frame):
    type: Literal["session_denied"]
    reason: str = "denied"


class SessionEnded(_Frame):
    type: Literal["session_ended"]
    session_id: str | None = None
    reason: str = "ended"


class ModelInvoke(_Frame):
    type: Literal["model_invoke"]
    id: str
    session_id: str | None = None
    model_meta: dict[str, Any] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)


class ModelCancel(_Frame):
    type: Literal["model_cancel"]
    id: str
    reason: str = ""


class DaemonError(_Frame):
    type: Literal["error"]
    message: str = ""


#: Every frame the daemon may send.
DaemonFrame = (
    SessionPending | SessionGranted | SessionDenied | SessionEnded | ModelInvoke | ModelCancel
    | DaemonError
)  # fmt: skip
_daemon_frame: TypeAdapter[DaemonFrame] = TypeAdapter(
    Annotated[DaemonFrame, Field(discriminator="type")]
)


def parse_daemon_frame(text: str | bytes) -> DaemonFrame:
    """Parse and validate one frame from the daemon, or raise ProtocolError saying why."""
    result: DaemonFrame = _parse(_daemon_frame, text)
    return result


ENDED_CLOSE_CODES = {
    "revoked": CloseCode.REVOKED,
    "expired": CloseCode.EXPIRED,
    "shutdown": CloseCode.GOING_AWAY,
    "released": CloseCode.NORMAL,
}
