"""The OpenAI Responses route end to end: the official ``openai`` SDK against a real daemon and
real agents, plus raw HTTP shaped like Codex CLI's requests."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from mcp_local_provider.agent.backends.echo import EchoBackend
from tests.backends import failing_midway, thinking, tool_calling
from tests.fakes import Daemon, until

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def codex_body(**overrides: Any) -> dict[str, Any]:
    """A request with the fields Codex CLI sends."""
    return {
        "model": "echo",
        "stream": True,
        "input": [
            {"type": "message", "role": "developer", "id": "msg_d1",
             "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "id": "msg_u1",
             "content": [{"type": "input_text", "text": "list the files"}]},
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "description": "Run a command",
             "strict": False, "parameters": {"type": "object",
                                             "properties": {"cmd": {"type": "string"}}}},
            {"type": "namespace", "name": "mcp", "tools": [{"type": "function", "name": "x"}]},
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199-abc",
        "client_metadata": {"originator": "codex_exec"},
        **overrides,
    }  # fmt: skip


CODEX_HEADERS = {
    "Accept": "text/event-stream",
    "Accept-Encoding": "zstd,gzip",
    "Authorization": "Bearer anything",
    "originator": "codex_exec",
    "session-id": "0199-abc",
}


def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        if block:
            name_line, data_line = block.split("\n")
            assert name_line.startswith("event: ") and data_line.startswith("data: "), block
            out.append((name_line[7:], json.loads(data_line[6:])))
    return out


async def test_responses_create_answers_with_output_text(
    echo_daemon: Daemon, openai_client: Any
) -> None:
    reply = await openai_client(echo_daemon).responses.create(model="echo", input="hello world")
    assert reply.status == "completed"
    assert reply.output_text == "hello world"
    assert reply.id.startswith("resp_")
    assert reply.usage.input_tokens > 0


async def test_responses_stream_yields_the_agents_text(
    echo_daemon: Daemon, openai_client: Any
) -> None:
    async with openai_client(echo_daemon).responses.stream(
        model="echo", input="one two three", instructions="be kind"
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert deltas == ["one ", "two ", "three"]
    assert final.output_text == "one two three"
    assert final.status == "completed"


async def test_function_call_not_streaming(daemon: Daemon, openai_client: Any) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    reply = await openai_client(daemon).responses.create(
        model="tooly", input="weather in Tokyo?", tools=TOOLS, tool_choice="required"
    )
    call = reply.output[-1]
    assert (call.type, call.call_id, call.name) == ("function_call", "call_w1", "get_weather")
    assert json.loads(call.arguments) == {"city": "Tokyo"}
    asked = backend.requests[0].parameters
    assert asked["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": TOOLS[0]["parameters"],
            },
        }
    ]
    assert asked["tool_choice"] == "required"
    assert reply.usage.input_tokens == 7


async def test_function_call_streams_argument_deltas(daemon: Daemon, openai_client: Any) -> None:
    await daemon.start_agent(tool_calling())
    async with openai_client(daemon).responses.stream(
        model="tooly", input="weather in Tokyo?", tools=TOOLS
    ) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"city": "Tokyo"}'
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(numbers)))
    assert final.output[0].arguments == '{"city": "Tokyo"}'


async def test_a_tool_round_trip_reaches_the_agent_as_chat_messages(
    daemon: Daemon, openai_client: Any
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    await openai_client(daemon).responses.create(
        model="tooly",
        tools=TOOLS,
        input=[
            {"role": "user", "content": "weather in Tokyo?"},
            {"type": "reasoning", "id": "rs_1", "summary": [
                {"type": "summary_text", "text": "need weather"}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city":"Tokyo"}', "status": "completed"},
            {"type": "function_call_output", "id": "fco_1", "call_id": "call_1",
             "output": "sunny"},
        ],
    )  # fmt: skip
    assert backend.requests[0].messages == [
        {"role": "user", "content": "weather in Tokyo?"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "need weather",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]


async def test_reasoning_becomes_a_reasoning_item(daemon: Daemon, openai_client: Any) -> None:
    await daemon.start_agent(thinking())
    client = openai_client(daemon)
    reply = await client.responses.create(model="thinker", input="2+2?")
    assert [item.type for item in reply.output] == ["reasoning", "message"]
    assert reply.output[0].summary[0].text == "let me see"
    async with client.responses.stream(model="thinker", input="2+2?") as stream:
        final = await stream.get_final_response()
    assert final.output[0].summary[0].text == "let me see"
    assert final.output_text == "The answer is 4."


async def test_mid_stream_failure_is_response_failed(daemon: Daemon, openai_client: Any) -> None:
    await daemon.start_agent(failing_midway())
    async with openai_client(daemon).responses.stream(model="flaky", input="hi") as stream:
        events = [e async for e in stream]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.message == "upstream fell over"


async def test_previous_response_id_is_a_clear_400(echo_daemon: Daemon, openai_client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client(echo_daemon).responses.create(
            model="echo", input="hi", previous_response_id="resp_1"
        )
    assert "stateless" in raised.value.message


async def test_unknown_model_is_404_in_openai_shape(
    echo_daemon: Daemon, openai_client: Any
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await openai_client(echo_daemon).responses.create(model="gpt-9", input="hi")
    assert raised.value.code == "model_not_found"


async def test_codex_request_streams_exact_events_uncompressed(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/responses", json=codex_body(), headers=CODEX_HEADERS
    ) as response:
        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        events = events_of(await response.text())
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(11))
    assert events[7][1]["text"] == "list the files"
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "list the files"


async def test_a_required_tool_call_on_a_model_without_tools_is_400(
    echo_daemon: Daemon, openai_client: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client(echo_daemon).responses.create(
            model="echo", input="hi", tools=TOOLS, tool_choice="required"
        )
    assert raised.value.code == "unsupported_capability"


async def test_client_disconnect_cancels_the_agent(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    client, _ = await daemon.start_agent(EchoBackend(delay=0.05))
    body = {"model": "echo", "stream": True, "input": " ".join(["word"] * 200)}
    async with http.post(daemon.url + "/v1/responses", json=body) as response:
        await response.content.readuntil(b"event: response.output_text.delta")
        await until(lambda: client.in_flight == 1)
    await until(lambda: not client.in_flight)
    await until(lambda: daemon.state.router.in_flight == 0)


async def test_models_carry_their_context_length(echo_daemon: Daemon, openai_client: Any) -> None:
    listed = await openai_client(echo_daemon).models.list()
    assert [(m.id, m.model_extra["context_length"]) for m in listed.data] == [("echo", 32768)]
