"""The Anthropic Messages routes end to end: the official ``anthropic`` SDK against a real
daemon and real agents, plus raw HTTP shaped like Claude Code's requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import pytest

from mcp_local_provider.agent.backends.echo import EchoBackend
from tests.backends import failing_midway, thinking, tool_calling
from tests.fakes import Daemon, until

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
ASK = [{"role": "user", "content": "weather in Tokyo?"}]
CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
    "context-management-2025-06-27,some-future-feature-2027-01-01",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "x-api-key": "anything",
}


@pytest.fixture
async def anthropic_client() -> AsyncIterator[Callable[[Daemon], anthropic.AsyncAnthropic]]:
    clients: list[anthropic.AsyncAnthropic] = []

    def make(daemon: Daemon) -> anthropic.AsyncAnthropic:
        made = anthropic.AsyncAnthropic(base_url=daemon.url, api_key="noop", max_retries=0)
        clients.append(made)
        return made

    yield make
    for made in clients:
        await made.close()


Client = Callable[[Daemon], anthropic.AsyncAnthropic]


def claude_code_body(**overrides: Any) -> dict[str, Any]:
    """A request with the fields Claude Code sends."""
    return {
        "model": "echo",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<context/>"},
                                         {"type": "text", "text": "hello there"}]},
            {"role": "system", "content": "a mid-conversation note"},
        ],
        "metadata": {"user_id": json.dumps({"device": "x"})},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "tools": [
            {"name": "Bash", "description": "Run a command",
             "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
            {"name": "DeferredToolPlaceholder", "description": "", "defer_loading": True,
             "input_schema": {"type": "object"}},
        ],
        **overrides,
    }  # fmt: skip


def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an SSE body, checking each has both lines."""
    out = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        out.append((name_line[7:], json.loads(data_line[6:])))
    return out


# -- the SDK ----------------------------------------------------------------------------------


async def test_messages_create_answers_with_the_agents_text(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    reply = await anthropic_client(echo_daemon).messages.create(
        model="echo", max_tokens=100, messages=[{"role": "user", "content": "hello world"}]
    )
    assert reply.content[0].type == "text"
    assert reply.content[0].text == "hello world"
    assert reply.stop_reason == "end_turn"
    assert reply.model == "echo"
    assert reply.id.startswith("msg_")
    assert reply.usage.input_tokens > 0


async def test_messages_stream_yields_the_agents_text(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    async with anthropic_client(echo_daemon).messages.stream(
        model="echo", max_tokens=100, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "one two three"
    assert len(texts) == 3  # one delta per word, as the echo agent sends them
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "one two three"


async def test_count_tokens_counts_at_least_the_usage_the_answer_reports(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    client = anthropic_client(echo_daemon)
    messages = [{"role": "user", "content": "count these words please " * 20}]
    counted = await client.messages.count_tokens(model="echo", messages=messages)
    reply = await client.messages.create(model="echo", max_tokens=10, messages=messages)
    assert counted.input_tokens >= 100  # 100 words, each at least one token
    assert reply.usage.input_tokens == 80  # the echo agent's own count (words)
    assert counted.input_tokens >= reply.usage.input_tokens


async def test_count_tokens_includes_system_and_tools(
    daemon: Daemon, anthropic_client: Client
) -> None:
    await daemon.start_agent(tool_calling())
    client = anthropic_client(daemon)
    bare = await client.messages.count_tokens(model="tooly", messages=ASK)
    full = await client.messages.count_tokens(
        model="tooly", messages=ASK, system="You are a weather bot. " * 10, tools=TOOLS
    )
    assert full.input_tokens > bare.input_tokens + 50


async def test_tool_call_not_streaming_is_a_tool_use_block(
    daemon: Daemon, anthropic_client: Client
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    reply = await anthropic_client(daemon).messages.create(
        model="tooly", max_tokens=100, messages=ASK, tools=TOOLS, tool_choice={"type": "any"}
    )
    assert reply.stop_reason == "tool_use"
    block = reply.content[-1]
    assert (block.type, block.id, block.name, block.input) == (
        "tool_use",
        "call_w1",
        "get_weather",
        {"city": "Tokyo"},
    )
    asked = backend.requests[0].parameters
    assert asked["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": TOOLS[0]["input_schema"],
            },
        }
    ]
    assert asked["tool_choice"] == "required"
    assert reply.usage.input_tokens == 7  # the agent's own count wins over the estimate


async def test_streamed_tool_call_arrives_as_input_json_deltas(
    daemon: Daemon, anthropic_client: Client
) -> None:
    await daemon.start_agent(tool_calling())
    async with anthropic_client(daemon).messages.stream(
        model="tooly", max_tokens=100, messages=ASK, tools=TOOLS
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert "input_json" in kinds
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Tokyo"}
    assert final.usage.output_tokens == 5


async def test_tool_results_reach_the_agent_as_tool_messages(
    daemon: Daemon, anthropic_client: Client
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    await anthropic_client(daemon).messages.create(
        model="tooly",
        max_tokens=100,
        tools=TOOLS,
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I need the weather", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Tokyo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                     "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
    )  # fmt: skip
    assert backend.requests[0].messages[1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "reasoning_content": "I need the weather",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]


async def test_thinking_is_relayed_as_a_thinking_block(
    daemon: Daemon, anthropic_client: Client
) -> None:
    await daemon.start_agent(thinking())
    client = anthropic_client(daemon)
    reply = await client.messages.create(model="thinker", max_tokens=100, messages=ASK)
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking == "let me see"
    async with client.messages.stream(model="thinker", max_tokens=100, messages=ASK) as stream:
        final = await stream.get_final_message()
    assert final.content[0].thinking == "let me see"
    assert final.content[1].text == "The answer is 4."


async def test_mid_stream_agent_failure_raises_in_the_sdk(
    daemon: Daemon, anthropic_client: Client
) -> None:
    await daemon.start_agent(failing_midway())
    with pytest.raises(anthropic.APIStatusError) as raised:
        async with anthropic_client(daemon).messages.stream(
            model="flaky", max_tokens=100, messages=ASK
        ) as stream:
            async for _ in stream:
                pass
    assert "upstream fell over" in str(raised.value)


async def test_unknown_model_is_not_found_error(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        await anthropic_client(echo_daemon).messages.create(
            model="claude-9", max_tokens=10, messages=ASK
        )
    assert raised.value.body["error"]["type"] == "not_found_error"
    assert "echo" in raised.value.body["error"]["message"]


async def test_an_image_for_a_model_without_vision_is_a_clear_400(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
    }
    with pytest.raises(anthropic.BadRequestError) as raised:
        await anthropic_client(echo_daemon).messages.create(
            model="echo",
            max_tokens=10,
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "what?"}]}],
        )
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert "images" in raised.value.body["error"]["message"]


# -- raw HTTP ---------------------------------------------------------------------------------


async def test_missing_max_tokens_is_invalid_request_error(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/messages", json={"model": "echo", "messages": ASK}
    ) as response:
        assert response.status == 400
        assert await response.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: is required"},
        }


async def test_claude_code_request_streams_exact_anthropic_events(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/messages?beta=true",
        json=claude_code_body(),
        headers=CLAUDE_CODE_HEADERS,
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        events = events_of(await response.text())
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[2][1]["content_block"] == {"type": "text", "text": ""}
    assert [data["delta"] for _, data in events[3:6]] == [
        {"type": "text_delta", "text": "<context/>\n\n"},  # the user's two blocks, joined
        {"type": "text_delta", "text": "hello "},
        {"type": "text_delta", "text": "there"},
    ]
    assert events[7][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


async def test_claude_code_non_stream_retry_gets_a_message(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/messages?beta=true",
        json=claude_code_body(stream=False),
        headers=CLAUDE_CODE_HEADERS,
    ) as response:
        assert response.status == 200
        body = await response.json()
    assert body["type"] == "message"
    assert body["content"] == [{"type": "text", "text": "<context/>\n\nhello there"}]


async def test_tools_are_dropped_for_a_model_without_tools_which_answers_in_text(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    reply = await anthropic_client(echo_daemon).messages.create(
        model="echo", max_tokens=100, messages=[{"role": "user", "content": "hi"}], tools=TOOLS
    )
    assert reply.content[0].text == "hi"
    assert reply.stop_reason == "end_turn"


async def test_a_forced_tool_call_on_a_model_without_tools_is_invalid_request(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        await anthropic_client(echo_daemon).messages.create(
            model="echo", max_tokens=100, messages=ASK, tools=TOOLS, tool_choice={"type": "any"}
        )
    assert "tool calls" in raised.value.body["error"]["message"]


async def test_api_keys_are_checked_through_x_api_key_or_bearer(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(api_keys=["sk-local-1234567890abcdef"])
    await daemon.start_agent()
    url = daemon.url + "/v1/messages"
    body = {"model": "echo", "max_tokens": 10, "messages": ASK}
    async with http.post(url, json=body, headers={"x-api-key": "wrong"}) as response:
        assert response.status == 401
        assert (await response.json())["error"]["type"] == "authentication_error"
    for headers in (
        {"x-api-key": "sk-local-1234567890abcdef"},
        {"Authorization": "Bearer sk-local-1234567890abcdef"},
    ):
        async with http.post(url, json=body, headers=headers) as response:
            assert response.status == 200


async def test_a_foreign_origin_is_refused_in_anthropic_shape(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/messages",
        json={"model": "echo", "max_tokens": 10, "messages": ASK},
        headers={"Origin": "https://evil.example"},
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"]["type"] == "permission_error"


async def test_client_disconnect_cancels_the_agent(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    client, _ = await daemon.start_agent(EchoBackend(delay=0.05))
    body = {
        "model": "echo",
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(["word"] * 200)}],
    }
    async with http.post(daemon.url + "/v1/messages", json=body) as response:
        await response.content.readuntil(b"event: content_block_delta")
        await until(lambda: client.in_flight == 1)
    await until(lambda: not client.in_flight)
    await until(lambda: daemon.state.router.in_flight == 0)


async def test_pings_keep_a_silent_stream_alive(
    start_daemon: Any, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(stream_ping_interval=0.02)
    agent = await raw_agent(daemon)
    await agent.hello()
    await agent.recv()  # session_granted
    request = asyncio.ensure_future(
        http.post(daemon.url + "/v1/messages", json={**claude_code_body(), "model": "raw"})
    )
    invoke = await agent.recv()
    chunk = {"type": "model_stream_chunk", "id": invoke["id"]}
    await agent.send({**chunk, "delta": {"content": "hi"}})
    response = await request
    await response.content.readuntil(b'event: ping\ndata: {"type":"ping"}\n\n')
    await response.content.readuntil(b"event: ping")  # a second one: the agent is silent
    await agent.send({**chunk, "delta": {}, "finish_reason": "stop"})
    assert (await response.text()).endswith(
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


async def test_requests_are_counted_under_the_anthropic_family(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    await anthropic_client(echo_daemon).messages.create(model="echo", max_tokens=10, messages=ASK)
    labels = {
        "family": "anthropic",
        "route": "/v1/messages",
        "method": "POST",
        "model": "echo",
        "status": "200",
    }
    registry = echo_daemon.state.metrics.registry
    assert registry.get_sample_value("mcp_local_provider_requests_total", labels) == 1


async def test_models_are_listed_in_anthropics_shape_for_anthropic_clients(
    echo_daemon: Daemon, anthropic_client: Client
) -> None:
    client = anthropic_client(echo_daemon)
    page = await client.models.list()
    assert [(m.id, m.type, m.display_name) for m in page.data] == [("echo", "model", "echo")]
    assert page.data[0].model_extra["context_length"] == 32768
    one = await client.models.retrieve("echo:latest")
    assert one.id == "echo:latest"
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("nope")
