"""The Anthropic Messages translation, pure: request in -> agent payload, frames in -> exact
bytes. No sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcp_local_provider.core import errors
from mcp_local_provider.core.protocol import ModelResult, ModelStreamChunk
from mcp_local_provider.translate.anthropic.errors import error_body, stream_error
from mcp_local_provider.translate.anthropic.reply import MessageReply
from mcp_local_provider.translate.anthropic.request import CountRequest, MessagesRequest
from mcp_local_provider.translate.common import parse_body


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    return parse_body(MessagesRequest, json.dumps({**body, **fields}).encode())


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> ModelStreamChunk:
    return ModelStreamChunk(
        type="model_stream_chunk", id="r", delta=delta, finish_reason=finish, **extra
    )


def sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# -- requests ---------------------------------------------------------------------------------


def test_system_blocks_and_system_messages_become_system_messages() -> None:
    asked = request(
        system=[
            {"type": "text", "text": "one"},
            {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "text", "text": "b"}]},
            {"role": "system", "content": "note"},
        ],
    )  # fmt: skip
    assert asked.payload("target") == {
        "kind": "chat",
        "model": "target",
        "messages": [
            {"role": "system", "content": "one\n\ntwo"},
            {"role": "user", "content": "a\n\nb"},
            {"role": "system", "content": "note"},
        ],
        "parameters": {
            "max_tokens": 100,
            "temperature": None,
            "top_p": None,
            "stop": None,
            "stream": False,
        },
    }


def test_sampling_fields_thinking_and_effort_reach_the_parameters() -> None:
    asked = request(
        stream=True,
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END"],
        thinking={"type": "enabled", "budget_tokens": 2000},
        output_config={"effort": "high"},
    )
    assert asked.payload()["parameters"] == {
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "stream": True,
        "top_k": 40,
        "reasoning_effort": "high",
        "think": True,
    }


def test_unknown_fields_and_server_tools_are_ignored_and_named() -> None:
    asked = request(
        metadata={"user_id": "u"},
        context_management={"edits": []},
        tools=[
            {"name": "Read", "input_schema": {"type": "object"}},
            {"name": "Deferred", "input_schema": {"type": "object"}, "defer_loading": True},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
    )
    assert asked.ignored == ["context_management", "metadata", "tools.web_search"]
    assert [t["function"]["name"] for t in asked.payload()["parameters"]["tools"]] == [
        "Read",
        "Deferred",
    ]
    assert asked.needs() == ["chat", "tools"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        (
            {"type": "tool", "name": "Read", "disable_parallel_tool_use": True},
            {
                "tool_choice": {"type": "function", "function": {"name": "Read"}},
                "parallel_tool_calls": False,
            },
        ),
    ],
)
def test_tool_choice_maps_onto_openai_tool_choice(
    choice: dict[str, Any], expected: dict[str, Any]
) -> None:
    asked = request(tools=[{"name": "Read", "input_schema": {}}], tool_choice=choice)
    parameters = asked.payload()["parameters"]
    assert {k: parameters[k] for k in expected} == expected


def test_tool_choice_none_sends_no_tools_and_needs_none() -> None:
    asked = request(tools=[{"name": "Read", "input_schema": {}}], tool_choice={"type": "none"})
    assert "tools" not in asked.payload()["parameters"]
    assert asked.needs() == ["chat"]


def test_images_become_image_url_parts_and_need_vision() -> None:
    asked = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                 "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {"type": "text", "text": "what?"},
                ],
            }
        ]
    )  # fmt: skip
    assert asked.payload()["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        {"type": "text", "text": "what?"},
    ]
    assert asked.needs() == ["chat", "vision"]


def test_a_tool_result_with_is_error_is_marked() -> None:
    asked = request(
        messages=[
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}
            ]}
        ]
    )  # fmt: skip
    assert asked.payload()["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "boom", "is_error": True}
    ]


def test_max_tokens_is_required_but_not_for_count_tokens() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(errors.BadRequest, match="max_tokens: is required"):
        parse_body(MessagesRequest, json.dumps(body).encode())
    assert parse_body(CountRequest, json.dumps(body).encode()).payload()["parameters"] == {}


# -- answers ----------------------------------------------------------------------------------


def test_a_text_stream_is_exactly_anthropics_event_sequence() -> None:
    stream = MessageReply("m", input_estimate=12)
    stream.id = "msg_1"
    out = stream.encode(chunk({"content": "Hel"}))
    out += stream.encode(chunk({"content": "lo"}))
    out += stream.encode(chunk({}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 2}))
    usage0 = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
    }
    assert out + stream.finish() == b"".join(
        [
            sse("message_start", {"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage0}}),
            sse("ping", {"type": "ping"}),
            sse("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}}),
            sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": "Hel"}}),
            sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": "lo"}}),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"input_tokens": 3, "output_tokens": 2}}),
            sse("message_stop", {"type": "message_stop"}),
        ]
    )  # fmt: skip


def test_thinking_then_tool_call_are_numbered_blocks_with_tool_use_stop() -> None:
    stream = MessageReply("m", input_estimate=1)
    frames = [
        chunk({"reasoning_content": "hmm"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "Read",
                                                                         "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"a"}'}}]}),
        chunk({}, "stop"),
    ]  # fmt: skip
    body = b"".join(stream.encode(f) for f in frames).decode()
    events = [json.loads(block.split("\ndata: ")[1]) for block in body.split("\n\n") if block]
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[2]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert events[3]["delta"] == {"type": "thinking_delta", "thinking": "hmm"}
    assert events[5]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "Read",
        "input": {},
    }
    assert events[6]["delta"] == {"type": "input_json_delta", "partial_json": '{"path":'}
    assert events[9]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("length", "max_tokens"), ("content_filter", "refusal"), ("tool_calls", "tool_use")],
)
def test_finish_reasons_map_to_stop_reasons(finish: str, stop_reason: str) -> None:
    aggregate = MessageReply("m", input_estimate=1)
    aggregate.add(chunk({"content": "x"}, finish))
    assert aggregate.body()["stop_reason"] == stop_reason


def test_interleaved_tool_calls_fail_the_stream() -> None:
    stream = MessageReply("m", input_estimate=1)
    stream.encode(chunk({"tool_calls": [{"index": 0, "function": {"name": "a"}}]}))
    stream.encode(chunk({"tool_calls": [{"index": 1, "function": {"name": "b"}}]}))
    with pytest.raises(errors.AgentFailed, match="interleaved"):
        stream.encode(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))


def test_a_whole_result_becomes_one_message_with_estimated_usage() -> None:
    aggregate = MessageReply("m", input_estimate=42)
    aggregate.add(
        ModelResult(
            type="model_result",
            id="r",
            result={"choices": [{"message": {
                "role": "assistant", "content": "", "reasoning_content": "think",
                "tool_calls": [{"id": "c1", "type": "function",
                                "function": {"name": "Read", "arguments": '{"p": 1}'}}]},
                "finish_reason": "tool_calls"}]},
        )
    )  # fmt: skip
    body = aggregate.body()
    assert body["content"] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "tool_use", "id": "c1", "name": "Read", "input": {"p": 1}},
    ]
    assert body["stop_reason"] == "tool_use"
    assert body["usage"]["input_tokens"] == 42
    assert aggregate.usage.estimated


def test_tool_arguments_that_are_not_json_are_an_agent_failure() -> None:
    aggregate = MessageReply("m", input_estimate=1)
    aggregate.add(
        chunk({"tool_calls": [{"index": 0, "function": {"name": "a", "arguments": "{"}}]})
    )
    with pytest.raises(errors.AgentFailed, match="not valid JSON"):
        aggregate.body()


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (errors.BadRequest("x"), 400, "invalid_request_error"),
        (errors.Unauthorized("x"), 401, "authentication_error"),
        (errors.Forbidden("x"), 403, "permission_error"),
        (errors.ModelNotFound("x"), 404, "not_found_error"),
        (errors.PayloadTooLarge("x"), 413, "request_too_large"),
        (errors.RateLimited("x"), 429, "rate_limit_error"),
        (errors.AgentFailed("x"), 502, "api_error"),
        (errors.NoActiveSession("x"), 503, "overloaded_error"),
        (errors.AgentTimeout("x", phase="idle"), 504, "api_error"),
    ],
)
def test_errors_have_anthropics_types(error: errors.ProviderError, status: int, kind: str) -> None:
    assert error.status == status
    assert error_body(error) == {"type": "error", "error": {"type": kind, "message": "x"}}


def test_a_mid_stream_error_is_an_error_event() -> None:
    assert stream_error(errors.AgentFailed("gone")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"gone"}}\n\n'
    )


def test_tools_are_optional_unless_tool_choice_forces_a_call() -> None:
    tools = [{"name": "Read", "input_schema": {}}]
    offered = request(tools=tools)
    assert offered.needs(tools_optional=True) == ["chat"]
    assert "tools" not in offered.payload(with_tools=False)["parameters"]
    forced = request(tools=tools, tool_choice={"type": "tool", "name": "Read"})
    assert forced.needs(tools_optional=True) == ["chat", "tools"]
