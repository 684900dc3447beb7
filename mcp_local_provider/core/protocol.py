"""Agent protocol v1: every frame on the /agent WebSocket, both directions, its codec and its
close codes. No I/O.

This module owns the wire: one model per frame, used both ways. The daemon and the agent
library build every frame with the ``*_frame`` functions below (each constructs its model),
write it with ``encode``, and parse what they receive with ``parse_agent_frame`` (daemon side)
and ``parse_daemon_frame`` (agent side), each frame once, straight from the text, into the same
models. What frames carry is typed too: the invoke payload (``InvokePayload``), the answer's
deltas and messages (``Delta``, ``ToolCallDelta``) and results (``Result``). Fields a peer does
not know are kept, as the protocol asks. One module on purpose (it passes 300 lines): each
frame's builder sits beside its model, so the two cannot drift apart.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    with_config,
)
from typing_extensions import TypedDict

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


# What frames carry ------------------------------------------------------------------------
#
# The invoke payload and the answer's deltas are typed dicts: validated once when a frame is
# parsed, then read as plain dicts by every dialect (no copy, no attribute layer on the hot
# path). Every one keeps fields it does not know, as frames do.

#: The most tool calls one answer may carry (indexes 0 to MAX_TOOL_CALLS - 1).
MAX_TOOL_CALLS = 128
_KEEP = ConfigDict(extra="allow")
_Text = Annotated[str | None, Field(strict=True)]


@with_config(_KEEP)
class FunctionDelta(TypedDict, total=False):
    """A tool call's function, whole or a fragment: ``arguments`` a JSON text (or piece of one),
    or an object an agent sent whole."""

    name: _Text
    arguments: str | dict[str, Any] | None


@with_config(_KEEP)
class ToolCallDelta(TypedDict, total=False):
    """One tool call, or a fragment of one: fragments with the same ``index`` make one call."""

    index: Annotated[int, Field(strict=True, ge=0, lt=MAX_TOOL_CALLS)]
    id: _Text
    type: _Text
    function: FunctionDelta | None


@with_config(_KEEP)
class Delta(TypedDict, total=False):
    """A piece of an answer (``model_stream_chunk.delta``) or a whole message
    (``model_result``'s ``choices[].message``), in the OpenAI chunk format."""

    role: _Text
    content: _Text
    reasoning_content: _Text
    tool_calls: Annotated[list[ToolCallDelta], Field(max_length=MAX_TOOL_CALLS)] | None


@with_config(_KEEP)
class Choice(TypedDict, total=False):
    index: int
    message: Delta | None
    text: _Text
    finish_reason: _Text


@with_config(_KEEP)
class Result(TypedDict, total=False):
    """A whole answer: ``choices`` (chat and completion) or ``data`` (embeddings), and
    ``usage``."""

    choices: list[Choice] | None
    usage: dict[str, Any] | None
    data: list[dict[str, Any]] | None


@with_config(_KEEP)
class Parameters(TypedDict, total=False):
    """How to answer: the fields every agent reads, and any other OpenAI field the editor sent
    (``tools``, ``tool_choice``, ``response_format``, ...), passed through as it is."""

    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: str | list[str] | None
    stream: bool


@with_config(_KEEP)
class InvokePayload(TypedDict, total=False):
    """What ``model_invoke`` asks for: a ``chat`` (``messages``), a ``completion``
    (``prompt``, ``suffix``) or an ``embedding`` (``input``)."""

    kind: str
    model: str
    messages: list[dict[str, Any]]
    prompt: str
    suffix: str
    input: list[str]
    parameters: Parameters


@with_config(_KEEP)
class ModelMeta(TypedDict, total=False):
    provider: str
    label: str
    requested_scopes: list[str]


# Frames -------------------------------------------------------------------------------------


class Frame(BaseModel):
    """A frame of either direction: one JSON object with a string ``type``. Fields a peer does
    not know are kept (and sent on again), so a newer peer's optional additions survive.

    Each frame is one model, used both ways: the ``*_frame`` builders construct it without
    validating (what the daemon and the library build is right by construction), ``encode``
    writes the fields that were set, and the parsers validate what arrives."""

    model_config = ConfigDict(extra="allow")

    type: str


class Hello(Frame):
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


@with_config(_KEEP)
class ErrorDetail(TypedDict, total=False):
    code: str
    message: str
    #: Seconds until a vendor that refused for a rate limit or quota takes requests again.
    retry_after: float


class ModelResult(Frame):
    type: Literal["model_result"]
    id: str
    status: Literal["ok", "error"] = "ok"
    result: Result | None = None
    error: ErrorDetail | None = None


class ModelStreamChunk(Frame):
    type: Literal["model_stream_chunk"]
    id: str
    chunk_index: int | None = None
    delta: Delta = Field(default_factory=lambda: Delta())
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


#: At most this many processes in any one count of ``agent_status``.
MAX_PROCESSES = 10_000
_Count = Annotated[int, Field(strict=True, ge=0, le=MAX_PROCESSES)]


@with_config(_KEEP)
class WarmStatus(TypedDict):
    """An agent's processes started ahead: ready for a request, still starting, serving one."""

    ready: _Count
    starting: _Count
    busy: _Count


class AgentStatus(Frame):
    """What an agent reports about itself between requests (an addition to v1, sent only to a
    daemon whose ``session_granted`` lists ``agent_status`` in ``accepts``)."""

    type: Literal["agent_status"]
    warm: WarmStatus | None = None


#: A frame that answers a ``model_invoke``: one piece of a stream, or the whole result.
AnswerFrame = ModelStreamChunk | ModelResult
#: Every frame an agent may send.
AgentFrame = Hello | ModelResult | ModelStreamChunk | AgentStatus
#: The optional agent frames this daemon takes, announced in ``session_granted.accepts``.
ACCEPTED_AGENT_FRAMES = ("agent_status",)
_agent_frame: TypeAdapter[AgentFrame] = TypeAdapter(
    Annotated[AgentFrame, Field(discriminator="type")]
)


class SessionPending(Frame):
    type: Literal["session_pending"]
    session_id: str
    approve_with: str = ""


class SessionGranted(Frame):
    type: Literal["session_granted"]
    session_id: str
    session_token: str | None = None
    allowed_scopes: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    expires_at: str | None = None
    max_requests: int | None = None
    max_concurrency: int | None = None
    #: Optional agent frames the daemon takes (an older daemon sends none: send it none).
    accepts: list[str] = Field(default_factory=list)


class SessionDenied(Frame):
    type: Literal["session_denied"]
    reason: str = "denied"


class SessionEnded(Frame):
    type: Literal["session_ended"]
    session_id: str | None = None
    reason: str = "ended"


class ModelInvoke(Frame):
    type: Literal["model_invoke"]
    id: str
    session_id: str | None = None
    model_meta: ModelMeta = Field(default_factory=lambda: ModelMeta())
    payload: InvokePayload = Field(default_factory=lambda: InvokePayload())


class ModelCancel(Frame):
    type: Literal["model_cancel"]
    id: str
    reason: str = ""


class DaemonError(Frame):
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


# The codec --------------------------------------------------------------------------------


def parse_agent_frame(text: str | bytes) -> AgentFrame:
    """Parse and validate one frame from an agent, or raise ProtocolError saying why."""
    result: AgentFrame = _parse(_agent_frame, text)
    return result


def parse_daemon_frame(text: str | bytes) -> DaemonFrame:
    """Parse and validate one frame from the daemon, or raise ProtocolError saying why."""
    result: DaemonFrame = _parse(_daemon_frame, text)
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
        if first["type"] in ("model_attributes_type", "dict_type") and not first["loc"]:
            raise ProtocolError("frame is not a JSON object") from None
        raise ProtocolError(f"invalid frame: {where}: {first['msg']}") from None


def encode(frame: Frame | dict[str, Any]) -> str:
    """A frame as the text of one WebSocket message: the fields that were set (by its builder,
    or present when it was parsed), those it does not know included."""
    if isinstance(frame, dict):
        return dumps(frame)
    data = frame.__dict__
    given = frame.__pydantic_fields_set__
    if len(given) != len(data):
        data = {key: value for key, value in data.items() if key in given}
    extra = frame.__pydantic_extra__
    return dumps({**data, **extra} if extra else data)


F = TypeVar("F", bound=Frame)
# The four slots of every pydantic model, set the way ``model_construct`` sets them.
_NEW = object.__new__
_SET_DICT = BaseModel.__dict__["__dict__"].__set__
_SET_GIVEN = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def _built(cls: type[F], fields: dict[str, Any], given: set[str] | None = None) -> F:
    """What ``cls.model_construct(**fields)`` makes, without its loop over every field: the
    builders below pass every field (``given`` names those to write, all by default), so
    nothing is filled in, and nothing is validated (they build what the protocol says). The
    frames an agent sends most are built this way; ``tests/core/test_protocol.py`` checks the
    result against ``model_construct``'s."""
    frame = _NEW(cls)
    _SET_DICT(frame, fields)
    _SET_GIVEN(frame, set(fields) if given is None else given)
    _SET_EXTRA(frame, {})
    _SET_PRIVATE(frame, None)
    return frame


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
) -> Hello:
    """The first frame. Models go as given (names or ``ModelSpec`` objects as dicts): the daemon
    validates them."""
    return Hello.model_construct(
        type="hello",
        protocol=PROTOCOL_VERSION,
        agent_id=agent_id,
        label=label,
        models=cast(list[ModelSpec], models),  # the daemon validates them
        requested_scopes=requested_scopes,
        ttl_seconds=ttl_seconds,
        max_concurrency=max_concurrency,
        reason=reason,
        session_token=session_token,
    )


def stream_chunk_frame(
    request_id: str,
    index: int,
    delta: Delta | dict[str, Any],
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> ModelStreamChunk:
    """The frame an agent sends most: every field is written (``usage`` null until the last
    chunk), so ``encode`` writes it without sorting out unset fields."""
    return _built(
        ModelStreamChunk,
        {
            "type": "model_stream_chunk",
            "id": request_id,
            "chunk_index": index,
            "delta": delta,
            "finish_reason": finish_reason,
            "usage": usage,
        },
    )


def result_frame(request_id: str, result: Result | dict[str, Any]) -> ModelResult:
    return _built(
        ModelResult,
        {"type": "model_result", "id": request_id, "status": "ok", "result": result, "error": None},
        {"type", "id", "status", "result"},
    )


def error_result_frame(
    request_id: str, code: str, message: str, retry_after: float | None = None
) -> ModelResult:
    """An agent's error; ``retry_after`` (seconds) tells when a refusing vendor takes requests
    again (an optional field older daemons ignore: see docs/agent-protocol.md)."""
    error: ErrorDetail = {"code": code, "message": message}
    if retry_after is not None:
        error["retry_after"] = round(retry_after, 3)
    return _built(
        ModelResult,
        {"type": "model_result", "id": request_id, "status": "error", "result": None,
         "error": error},
        {"type", "id", "status", "error"},
    )  # fmt: skip


# Frames the daemon sends -------------------------------------------------------------------


def invoke_frame(
    request_id: str,
    session_id: str,
    label: str,
    scope: str,
    payload: InvokePayload | dict[str, Any],
) -> ModelInvoke:
    return _built(
        ModelInvoke,
        {
            "type": "model_invoke",
            "id": request_id,
            "session_id": session_id,
            "model_meta": {
                "provider": "mcp-local-provider",
                "label": label,
                "requested_scopes": [scope],
            },
            "payload": payload,
        },
    )


def session_granted_frame(
    *,
    session_id: str,
    session_token: str,
    allowed_scopes: list[str],
    models: list[str],
    expires_at: str | None,
    max_requests: int,
    max_concurrency: int,
    accepts: list[str],
) -> SessionGranted:
    return SessionGranted.model_construct(
        type="session_granted",
        session_id=session_id,
        session_token=session_token,
        allowed_scopes=allowed_scopes,
        models=models,
        expires_at=expires_at,
        max_requests=max_requests,
        max_concurrency=max_concurrency,
        accepts=accepts,
    )


def agent_status_frame(warm: WarmStatus | None) -> AgentStatus:
    return AgentStatus.model_construct(type="agent_status", warm=warm)


def session_pending_frame(session_id: str) -> SessionPending:
    return SessionPending.model_construct(
        type="session_pending",
        session_id=session_id,
        approve_with=f"mcp-local-provider sessions approve {session_id}",
    )


def session_denied_frame(reason: str) -> SessionDenied:
    return SessionDenied.model_construct(type="session_denied", reason=reason)


def session_ended_frame(session_id: str, reason: str) -> SessionEnded:
    return SessionEnded.model_construct(type="session_ended", session_id=session_id, reason=reason)


def model_cancel_frame(request_id: str, reason: str) -> ModelCancel:
    return ModelCancel.model_construct(type="model_cancel", id=request_id, reason=reason)


def error_frame(message: str) -> DaemonError:
    return DaemonError.model_construct(type="error", message=message)


ENDED_CLOSE_CODES = {
    "revoked": CloseCode.REVOKED,
    "expired": CloseCode.EXPIRED,
    "shutdown": CloseCode.GOING_AWAY,
    "released": CloseCode.NORMAL,
}
