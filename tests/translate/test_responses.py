"""The OpenAI Responses translation, pure: request in -> agent payload, frames in -> exact
events. No sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_local_provider.core import errors
from mcp_local_provider.core.protocol import ModelStreamChunk
from mcp_local_provider.translate.common import parse_body
from mcp_local_provider.translate.responses.reply import ResponseReply
from mcp_local_provider.translate.responses.request import ResponsesRequest


def request(**fields: Any) -> ResponsesRequest:
    return parse_body(
        ResponsesRequest, json.dumps({"model": "m", "input": "hi", **fields}).encode()
    )


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> ModelStreamChunk:
    return ModelStreamChunk(
        type="model_stream_chunk", id="r", delta=delta, finish_reason=finish, **extra
    )


def counter() -> Any:
    """Predictable ids: ``msg_1``, ``fc_2``, ..."""
    numbers: Iterator[int] = iter(range(1, 1000))
    return lambda prefix: f"{prefix}_{next(numbers)}"


def events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            name, body = block.split("\n")
            parsed = json.loads(body.removeprefix("data: "))
            assert name == "event: " + parsed["type"]
            out.append(parsed)
    return out


# -- requests ---------------------------------------------------------------------------------


def test_a_string_input_with_instructions() -> None:
    assert request(instructions="be brief", max_output_tokens=50).payload("t") == {
        "kind": "chat",
        "model": "t",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "parameters": {
            "max_tokens": 50,
            "temperature": None,
            "top_p": None,
            "stop": None,
            "stream": False,
        },
    }


def test_codex_items_become_chat_messages() -> None:
    asked = request(
        input=[
            {"type": "message", "role": "developer", "id": "m0",
             "content": [{"type": "input_text", "text": "rules"}]},
            {"type": "message", "role": "user", "id": "m1",
             "content": [{"type": "input_text", "text": "a"},
                         {"type": "input_text", "text": "b"}]},
            {"type": "message", "role": "assistant", "id": "m2",
             "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "sh",
             "arguments": "{}", "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "sh",
             "arguments": "{}", "status": "completed"},
            {"type": "function_call_output", "id": "fco_1", "call_id": "c1", "output": "r1"},
            {"type": "function_call_output", "id": "fco_2", "call_id": "c2", "output": "r2"},
            {"type": "item_reference", "id": "x"},
        ]
    )  # fmt: skip
    call = {"type": "function", "function": {"name": "sh", "arguments": "{}"}}
    assert asked.payload()["messages"] == [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "ok", "tool_calls": [
            {"id": "c1", **call}, {"id": "c2", **call}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        {"role": "tool", "tool_call_id": "c2", "content": "r2"},
    ]  # fmt: skip


def test_only_function_tools_reach_the_agent_and_others_are_named() -> None:
    asked = request(
        tools=[
            {"type": "function", "name": "sh", "parameters": {"type": "object"}, "strict": False},
            {"type": "namespace", "name": "mcp", "tools": []},
            {"type": "web_search", "external_web_access": False},
        ],
        tool_choice={"type": "function", "name": "sh"},
        parallel_tool_calls=True,
        store=False,
        include=["reasoning.encrypted_content"],
    )
    parameters = asked.payload()["parameters"]
    assert parameters["tools"] == [
        {
            "type": "function",
            "function": {"name": "sh", "parameters": {"type": "object"}, "strict": False},
        }
    ]
    assert parameters["tool_choice"] == {"type": "function", "function": {"name": "sh"}}
    assert parameters["parallel_tool_calls"] is True
    assert asked.ignored == ["include", "store", "tools.namespace", "tools.web_search"]
    assert asked.needs() == ["chat", "tools"]


def test_input_images_need_vision_and_file_ids_are_refused() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    asked = request(input=[{"role": "user", "content": [image]}])
    assert asked.needs() == ["chat", "vision"]
    assert asked.payload()["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    ]
    with pytest.raises(errors.BadRequest, match="file_id"):
        request(
            input=[{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]
        ).payload()


def test_previous_response_id_is_refused_as_stateless() -> None:
    with pytest.raises(errors.BadRequest, match="stateless"):
        request(previous_response_id="resp_1")


def test_an_unknown_role_is_refused_naming_the_item() -> None:
    with pytest.raises(errors.BadRequest, match=r"input\.0\.role"):
        request(input=[{"role": "tool", "content": "x"}]).payload()


# -- answers ----------------------------------------------------------------------------------


def test_a_text_stream_is_the_responses_event_sequence() -> None:
    stream = ResponseReply("m", {}, input_estimate=9, ids=counter())
    stream.answer.created_at = 1
    data = stream.encode(chunk({"content": "Hel"})) + stream.encode(chunk({"content": "lo"}))
    data += stream.encode(chunk({}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 2}))
    got = events(data)
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert got[0]["response"]["status"] == "in_progress"
    assert got[2] == {
        "type": "response.output_item.added",
        "sequence_number": 2,
        "output_index": 0,
        "item": {
            "id": "msg_2",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        },
    }
    assert got[4] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "item_id": "msg_2",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hel",
        "logprobs": [],
    }
    done = got[-1]["response"]
    assert done["id"] == "resp_1"
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == "Hello"
    assert done["usage"] == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
    }


def test_reasoning_then_a_function_call_are_two_items() -> None:
    stream = ResponseReply("m", {}, input_estimate=1, ids=counter())
    data = stream.encode(chunk({"reasoning_content": "hmm"}))
    data += stream.encode(
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "sh"}}]})
    )
    data += stream.encode(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    data += stream.encode(chunk({}, "tool_calls"))
    got = events(data)
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert got[7]["item"] == {
        "id": "rs_2",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "hmm"}],
    }
    assert got[11]["item"] == {
        "id": "fc_3",
        "type": "function_call",
        "status": "completed",
        "call_id": "c1",
        "name": "sh",
        "arguments": "{}",
    }


def test_length_is_response_incomplete_with_the_reason() -> None:
    stream = ResponseReply("m", {}, input_estimate=1, ids=counter())
    last = events(stream.encode(chunk({"content": "x"}, "length")))[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_failure_mid_stream_is_response_failed_with_the_error() -> None:
    stream = ResponseReply("m", {}, input_estimate=1, ids=counter())
    data = stream.encode(chunk({"content": "x"}))
    failed = events(data + stream.fail(errors.AgentFailed("gone")))[-1]
    assert failed["type"] == "response.failed"
    assert failed["sequence_number"] == 5
    assert failed["response"]["error"] == {"code": "agent_error", "message": "gone"}
    assert failed["response"]["status"] == "failed"


def test_the_aggregate_echoes_request_fields_and_estimates_usage() -> None:
    aggregate = ResponseReply(
        "m", {"instructions": "be brief", "tool_choice": "auto"}, input_estimate=20, ids=counter()
    )
    aggregate.add(chunk({"content": "hello"}, "stop"))
    body = aggregate.body()
    assert body["instructions"] == "be brief"
    assert body["output"] == [
        {
            "id": "msg_2",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert body["usage"]["input_tokens"] == 20
    assert body["usage"]["output_tokens"] >= 1
    assert aggregate.answer.estimated


def test_tools_are_optional_unless_tool_choice_forces_a_call() -> None:
    tools = [{"type": "function", "name": "sh", "parameters": {}}]
    assert request(tools=tools).needs(tools_optional=True) == ["chat"]
    assert "tools" not in request(tools=tools).payload(with_tools=False)["parameters"]
    forced = request(tools=tools, tool_choice="required")
    assert forced.needs(tools_optional=True) == ["chat", "tools"]
