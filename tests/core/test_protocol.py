"""The agent protocol's codec without sockets: every frame, both directions. What a builder
makes is the expected frame on the wire and parses into the right model; what arrives parses
back into the same frame once encoded again, and fields neither side knows, at any level, are
sent on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcp_local_provider.core.protocol import (
    AgentStatus,
    DaemonError,
    Frame,
    Hello,
    ModelCancel,
    ModelInvoke,
    ModelResult,
    ModelStreamChunk,
    ProtocolError,
    SessionDenied,
    SessionEnded,
    SessionGranted,
    SessionPending,
    WarmStatus,
    agent_status_frame,
    encode,
    error_frame,
    error_result_frame,
    hello_frame,
    invoke_frame,
    model_cancel_frame,
    parse_agent_frame,
    parse_daemon_frame,
    result_frame,
    session_denied_frame,
    session_ended_frame,
    session_granted_frame,
    session_pending_frame,
    stream_chunk_frame,
)

PAYLOAD: dict[str, Any] = {
    "kind": "chat",
    "model": "cursor-agent",
    "messages": [{"role": "user", "content": "Hello"}],
    "parameters": {"max_tokens": 512, "temperature": 0.7, "stream": True, "seed": 7},
}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
TOOL_CALL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}

# (builder's output, the exact text it must write, the class it parses back into)
AGENT_FRAMES: list[tuple[Frame, str, type[Frame]]] = [
    (
        hello_frame(
            agent_id="cursor-1",
            label="Cursor",
            models=[{"name": "cursor-agent", "capabilities": ["chat"]}],
            requested_scopes=["inference"],
            ttl_seconds=3600.0,
            max_concurrency=4,
            reason="help",
            session_token=None,
        ),
        '{"type":"hello","protocol":1,"agent_id":"cursor-1","label":"Cursor",'
        '"models":[{"name":"cursor-agent","capabilities":["chat"]}],'
        '"requested_scopes":["inference"],"ttl_seconds":3600.0,"max_concurrency":4,'
        '"reason":"help","session_token":null}',
        Hello,
    ),
    (
        stream_chunk_frame("req-1", 0, {"role": "assistant", "content": "Hi"}),
        '{"type":"model_stream_chunk","id":"req-1","chunk_index":0,'
        '"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,"usage":null}',
        ModelStreamChunk,
    ),
    (
        stream_chunk_frame("req-1", 3, {"tool_calls": [TOOL_CALL]}, "tool_calls", USAGE),
        '{"type":"model_stream_chunk","id":"req-1","chunk_index":3,'
        '"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
        '"function":{"name":"f"}}]},"finish_reason":"tool_calls",'
        '"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}',
        ModelStreamChunk,
    ),
    (
        result_frame(
            "req-1",
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hi!"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": USAGE,
            },
        ),
        '{"type":"model_result","id":"req-1","status":"ok","result":{"choices":[{"index":0,'
        '"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}',
        ModelResult,
    ),
    (
        result_frame("req-2", {"data": [{"index": 0, "embedding": [0.5, 1.0]}], "usage": None}),
        '{"type":"model_result","id":"req-2","status":"ok",'
        '"result":{"usage":null,"data":[{"index":0,"embedding":[0.5,1.0]}]}}',
        ModelResult,
    ),
    (
        error_result_frame("req-1", "upstream_error", "it fell over"),
        '{"type":"model_result","id":"req-1","status":"error",'
        '"error":{"code":"upstream_error","message":"it fell over"}}',
        ModelResult,
    ),
    (
        agent_status_frame(WarmStatus(ready=1, starting=0, busy=2)),
        '{"type":"agent_status","warm":{"ready":1,"starting":0,"busy":2}}',
        AgentStatus,
    ),
]

DAEMON_FRAMES: list[tuple[Frame, str, type[Frame]]] = [
    (
        session_pending_frame("sess-1"),
        '{"type":"session_pending","session_id":"sess-1",'
        '"approve_with":"mcp-local-provider sessions approve sess-1"}',
        SessionPending,
    ),
    (
        session_granted_frame(
            session_id="sess-1",
            session_token="tok",
            allowed_scopes=["inference"],
            models=["cursor-agent"],
            expires_at="2026-11-24T12:05:00Z",
            max_requests=1000,
            max_concurrency=4,
            accepts=["agent_status"],
        ),
        '{"type":"session_granted","session_id":"sess-1","session_token":"tok",'
        '"allowed_scopes":["inference"],"models":["cursor-agent"],'
        '"expires_at":"2026-11-24T12:05:00Z","max_requests":1000,"max_concurrency":4,'
        '"accepts":["agent_status"]}',
        SessionGranted,
    ),
    (
        session_denied_frame("denied by the user"),
        '{"type":"session_denied","reason":"denied by the user"}',
        SessionDenied,
    ),
    (
        session_ended_frame("sess-1", "revoked"),
        '{"type":"session_ended","session_id":"sess-1","reason":"revoked"}',
        SessionEnded,
    ),
    (
        invoke_frame("req-1", "sess-1", "Cursor", "inference", PAYLOAD),
        '{"type":"model_invoke","id":"req-1","session_id":"sess-1",'
        '"model_meta":{"provider":"mcp-local-provider","label":"Cursor",'
        '"requested_scopes":["inference"]},'
        '"payload":{"kind":"chat","model":"cursor-agent",'
        '"messages":[{"role":"user","content":"Hello"}],'
        '"parameters":{"max_tokens":512,"temperature":0.7,"stream":true,"seed":7}}}',
        ModelInvoke,
    ),
    (
        model_cancel_frame("req-1", "client_disconnected"),
        '{"type":"model_cancel","id":"req-1","reason":"client_disconnected"}',
        ModelCancel,
    ),
    (
        error_frame("the session is pending: frames are not processed"),
        '{"type":"error","message":"the session is pending: frames are not processed"}',
        DaemonError,
    ),
]


def ids(cases: list[tuple[Frame, str, type[Frame]]]) -> list[str]:
    return [f"{kind.__name__}-{i}" for i, (_, _, kind) in enumerate(cases)]


@pytest.mark.parametrize(("built", "text", "kind"), AGENT_FRAMES, ids=ids(AGENT_FRAMES))
def test_agent_frames_are_written_as_built_and_the_daemon_parses_them_back(
    built: Frame, text: str, kind: type[Frame]
) -> None:
    assert json.loads(encode(built)) == json.loads(text)
    parsed = parse_agent_frame(text)
    assert type(parsed) is kind
    assert parse_agent_frame(encode(parsed)) == parsed


@pytest.mark.parametrize(("built", "text", "kind"), DAEMON_FRAMES, ids=ids(DAEMON_FRAMES))
def test_daemon_frames_are_written_as_built_and_the_agent_parses_them_back(
    built: Frame, text: str, kind: type[Frame]
) -> None:
    assert json.loads(encode(built)) == json.loads(text)
    parsed = parse_daemon_frame(text)
    assert type(parsed) is kind
    assert parse_daemon_frame(encode(parsed)) == parsed


@pytest.mark.parametrize(("built", "text", "kind"), AGENT_FRAMES, ids=ids(AGENT_FRAMES))
def test_the_agent_side_does_not_take_an_agent_frame(
    built: Frame, text: str, kind: type[Frame]
) -> None:
    with pytest.raises(ProtocolError, match="no known string 'type'"):
        parse_daemon_frame(text)


@pytest.mark.parametrize(("built", "text", "kind"), DAEMON_FRAMES, ids=ids(DAEMON_FRAMES))
def test_the_daemon_side_does_not_take_a_daemon_frame(
    built: Frame, text: str, kind: type[Frame]
) -> None:
    with pytest.raises(ProtocolError, match="no known string 'type'"):
        parse_agent_frame(text)


def test_a_streamed_chunk_is_written_exactly_as_built() -> None:
    # The frame an agent sends most: its text, byte for byte.
    assert encode(AGENT_FRAMES[1][0]) == AGENT_FRAMES[1][1]


def test_parsed_frames_read_as_typed_values() -> None:
    chunk = parse_agent_frame(AGENT_FRAMES[2][1])
    assert isinstance(chunk, ModelStreamChunk)
    assert chunk.delta["tool_calls"] == [TOOL_CALL]
    assert chunk.finish_reason == "tool_calls" and chunk.usage == USAGE
    invoke = parse_daemon_frame(DAEMON_FRAMES[4][1])
    assert isinstance(invoke, ModelInvoke)
    assert invoke.payload["kind"] == "chat"
    assert invoke.payload["parameters"]["max_tokens"] == 512
    assert invoke.model_meta["requested_scopes"] == ["inference"]


FUTURE = {"added": [1, "two"]}


def at(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value[0] if key == "0" else value[key]
    return value


def with_unknown(text: str, path: tuple[str, ...]) -> str:
    """``text`` with an unknown field added to the object at ``path`` (keys, or list 0)."""
    value = json.loads(text)
    at(value, path)["x_future"] = FUTURE
    return json.dumps(value, separators=(",", ":"))


UNKNOWN_AGENT_FIELDS = [
    (AGENT_FRAMES[0][1], ()),
    (AGENT_FRAMES[1][1], ()),
    (AGENT_FRAMES[1][1], ("delta",)),
    (AGENT_FRAMES[2][1], ("delta", "tool_calls", "0")),
    (AGENT_FRAMES[2][1], ("delta", "tool_calls", "0", "function")),
    (AGENT_FRAMES[3][1], ("result",)),
    (AGENT_FRAMES[3][1], ("result", "choices", "0")),
    (AGENT_FRAMES[3][1], ("result", "choices", "0", "message")),
    (AGENT_FRAMES[5][1], ("error",)),
    (AGENT_FRAMES[6][1], ()),
    (AGENT_FRAMES[6][1], ("warm",)),
]
UNKNOWN_DAEMON_FIELDS = [
    *((text, ()) for _, text, _ in DAEMON_FRAMES),
    (DAEMON_FRAMES[4][1], ("payload",)),
    (DAEMON_FRAMES[4][1], ("payload", "parameters")),
    (DAEMON_FRAMES[4][1], ("model_meta",)),
]


@pytest.mark.parametrize(("text", "path"), UNKNOWN_AGENT_FIELDS)
def test_the_daemon_keeps_fields_it_does_not_know(text: str, path: tuple[str, ...]) -> None:
    frame = parse_agent_frame(with_unknown(text, path))
    assert at(json.loads(encode(frame)), path)["x_future"] == FUTURE


@pytest.mark.parametrize(("text", "path"), UNKNOWN_DAEMON_FIELDS)
def test_the_agent_keeps_fields_it_does_not_know(text: str, path: tuple[str, ...]) -> None:
    frame = parse_daemon_frame(with_unknown(text, path))
    assert at(json.loads(encode(frame)), path)["x_future"] == FUTURE


def test_an_unknown_top_level_field_reads_as_an_extra() -> None:
    frame = parse_daemon_frame('{"type":"model_cancel","id":"r","retry_after":3}')
    assert frame.model_extra == {"retry_after": 3}


def test_a_frame_with_only_its_required_fields_gets_the_defaults() -> None:
    chunk = parse_agent_frame('{"type":"model_stream_chunk","id":"r"}')
    assert isinstance(chunk, ModelStreamChunk)
    assert (chunk.delta, chunk.finish_reason, chunk.usage) == ({}, None, None)
    assert encode(chunk) == '{"type":"model_stream_chunk","id":"r"}'  # nothing invented


def test_a_built_frame_is_what_model_construct_would_make() -> None:
    built = stream_chunk_frame("r", 2, {"content": "a"}, "stop", USAGE)
    constructed = ModelStreamChunk.model_construct(
        type="model_stream_chunk",
        id="r",
        chunk_index=2,
        delta={"content": "a"},
        finish_reason="stop",
        usage=USAGE,
    )
    assert built == constructed
    assert built.model_fields_set == constructed.model_fields_set
    assert built.model_extra == constructed.model_extra == {}
    assert built.model_copy(update={"finish_reason": "length"}).finish_reason == "length"


def test_a_chunk_made_last_carries_its_finish_on_the_wire() -> None:
    chunk = stream_chunk_frame("r", 0, {"content": "a"})
    chunk.finish_reason = "stop"
    assert json.loads(encode(chunk))["finish_reason"] == "stop"


def test_text_utf8_cannot_hold_is_written_escaped() -> None:
    text = encode(stream_chunk_frame("r", 0, {"content": "a\udc80b"}))
    assert json.loads(text)["delta"]["content"] == "a\udc80b"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"type":"model_stream_chunk"}', "id: Field required"),
        ('{"type":"model_stream_chunk","id":"r","delta":{"content":7}}', "delta.content"),
        ('{"type":"model_stream_chunk","id":"r","delta":{"tool_calls":[{"index":true}]}}', "index"),
        ('{"type":"model_result","id":"r","result":{"choices":"x"}}', "result.choices"),
        ('{"type":"hello","agent_id":"a b"}', "agent_id"),
        ('{"type":"agent_status","warm":{"ready":-1,"starting":0,"busy":0}}', "warm.ready"),
        ('{"type":"agent_status","warm":{"ready":1,"starting":0}}', "warm.busy"),
        ('{"type":"agent_status","warm":{"ready":1e9,"starting":0,"busy":0}}', "warm.ready"),
        ('{"type":"agent_status","warm":{"ready":"1","starting":0,"busy":0}}', "warm.ready"),
    ],
)
def test_a_malformed_agent_frame_is_a_protocol_error_saying_where(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_agent_frame(text)
