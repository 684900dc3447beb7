"""OpenAI routes beyond plain chat (tools, completions, embeddings, model lookup) through the
official ``openai`` SDK, plus raw HTTP where the SDK would hide a wire-level mistake."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import aiohttp
import openai
import pytest

from mcp_local_provider.agent.backends.echo import SUFFIX_MARKER, embedding
from tests.backends import failing_midway, thinking, tool_calling
from tests.fakes import Daemon

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ASK = [{"role": "user", "content": "weather in Tokyo?"}]


@pytest.fixture
async def echo(daemon: Daemon) -> Daemon:
    await daemon.start_agent(scopes=("inference", "embeddings"))
    return daemon


async def sse_events(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[str, list[str]]:
    """The content type and the raw lines of an SSE answer."""
    async with http.post(url, json=body, headers={"Accept": "application/json"}) as response:
        assert response.status == 200, await response.text()
        return response.headers["Content-Type"], (await response.text()).split("\n")


# -- chat with tools --------------------------------------------------------------------------


async def test_chat_tool_call_not_streaming(daemon: Daemon, openai_client: Any) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    reply = await openai_client(daemon).chat.completions.create(
        model="tooly", messages=ASK, tools=TOOLS, tool_choice="auto"
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_w1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}
    assert backend.requests[0].parameters["tools"] == TOOLS
    assert backend.requests[0].parameters["tool_choice"] == "auto"


@pytest.mark.parametrize("repeat_name", [False, True])
async def test_streamed_tool_call_sends_id_and_name_once(
    daemon: Daemon, openai_client: Any, repeat_name: bool
) -> None:
    await daemon.start_agent(tool_calling(repeat_name=repeat_name))
    stream = await openai_client(daemon).chat.completions.create(
        model="tooly", messages=ASK, tools=TOOLS, stream=True
    )
    chunks = [c async for c in stream]
    fragments = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert all(f.index == 0 for f in fragments)
    assert [f.function.name for f in fragments if f.function.name] == ["get_weather"]
    assert [f.id for f in fragments if f.id] == ["call_w1"]
    assert "".join(f.function.arguments or "" for f in fragments) == '{"city": "Tokyo"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_tool_follow_up_with_empty_assistant_content_is_accepted(
    daemon: Daemon, openai_client: Any
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    await openai_client(daemon).chat.completions.create(
        model="tooly",
        tools=TOOLS,
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_w1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_w1", "content": "sunny"},
        ],
    )
    assert backend.requests[0].messages[2]["tool_call_id"] == "call_w1"


# -- chat details -----------------------------------------------------------------------------


async def test_reasoning_content_is_relayed(daemon: Daemon, openai_client: Any) -> None:
    await daemon.start_agent(thinking())
    client = openai_client(daemon)
    reply = await client.chat.completions.create(model="thinker", messages=ASK)
    assert reply.choices[0].message.model_extra["reasoning_content"] == "let me see"
    stream = await client.chat.completions.create(model="thinker", messages=ASK, stream=True)
    reasoning = [
        c.choices[0].delta.model_extra.get("reasoning_content") async for c in stream if c.choices
    ]
    assert "let me see" in reasoning


async def test_include_usage_adds_a_final_usage_chunk(daemon: Daemon, openai_client: Any) -> None:
    await daemon.start_agent(thinking())
    stream = await openai_client(daemon).chat.completions.create(
        model="thinker", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])


async def test_n_above_one_is_400_naming_n(echo: Daemon, openai_client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client(echo).chat.completions.create(model="echo", messages=ASK, n=2)
    assert raised.value.param == "n"
    assert "n=1" in raised.value.message


async def test_max_completion_tokens_reaches_the_agent_as_max_tokens(
    daemon: Daemon, openai_client: Any
) -> None:
    backend = thinking()
    await daemon.start_agent(backend)
    await openai_client(daemon).chat.completions.create(
        model="thinker", messages=ASK, max_completion_tokens=33, stop=["\n"]
    )
    assert backend.requests[0].max_tokens == 33
    assert backend.requests[0].stop == ["\n"]


async def test_chat_sse_has_data_lines_only_and_ends_with_done(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    content_type, lines = await sse_events(
        http,
        echo.url + "/v1/chat/completions",
        {"model": "echo:latest", "messages": ASK, "stream": True},
    )
    assert content_type.startswith("text/event-stream")
    assert all(line.startswith("data: ") or line == "" for line in lines)
    assert lines[-3:] == ["data: [DONE]", "", ""]
    assert json.loads(lines[0][6:])["model"] == "echo:latest"


async def test_mid_stream_failure_is_an_error_event_without_done(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await daemon.start_agent(failing_midway())
    _, lines = await sse_events(
        http,
        daemon.url + "/v1/chat/completions",
        {"model": "flaky", "messages": ASK, "stream": True},
    )
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert data[-1]["error"]["message"] == "upstream fell over"
    assert "data: [DONE]" not in lines


async def test_a_noop_bearer_token_is_fine(echo: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.post(
        echo.url + "/v1/chat/completions",
        json={"model": "echo", "messages": ASK},
        headers={"Authorization": "Bearer noop"},
    ) as response:
        assert response.status == 200


async def test_unknown_model_is_404_with_model_not_found(echo: Daemon, openai_client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await openai_client(echo).chat.completions.create(model="gpt-9", messages=ASK)
    assert raised.value.code == "model_not_found"
    assert "echo" in raised.value.message  # says what is served


# -- completions ------------------------------------------------------------------------------


async def test_completion_with_suffix(echo: Daemon, openai_client: Any) -> None:
    reply = await openai_client(echo).completions.create(
        model="echo", prompt="def f():", suffix="    return 1", max_tokens=50
    )
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "def f():" + SUFFIX_MARKER + "    return 1"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 4


async def test_completion_streams_with_usage(echo: Daemon, openai_client: Any) -> None:
    stream = await openai_client(echo).completions.create(
        model="echo", prompt="a b c", stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "a b c"
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


async def test_completion_max_tokens_gives_finish_reason_length(
    echo: Daemon, openai_client: Any
) -> None:
    reply = await openai_client(echo).completions.create(
        model="echo", prompt="a b c d", max_tokens=2
    )
    assert reply.choices[0].text.split() == ["a", "b"]
    assert reply.choices[0].finish_reason == "length"


async def test_completion_with_suffix_on_a_model_without_fim_is_400(
    daemon: Daemon, openai_client: Any
) -> None:
    await daemon.start_agent(thinking())
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client(daemon).completions.create(model="thinker", prompt="a", suffix="b")
    assert "fill-in-the-middle" in raised.value.message


# -- embeddings -------------------------------------------------------------------------------


async def test_embeddings_as_floats(echo: Daemon, openai_client: Any) -> None:
    reply = await openai_client(echo).embeddings.create(
        model="echo", input=["alpha", "beta"], encoding_format="float"
    )
    assert [d.embedding for d in reply.data] == [embedding("alpha"), embedding("beta")]
    assert reply.usage.prompt_tokens == 2


async def test_embeddings_as_base64_little_endian_float32(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo.url + "/v1/embeddings",
        json={"model": "echo", "input": "alpha", "encoding_format": "base64"},
    ) as response:
        body = await response.json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(embedding("alpha"), abs=1e-6)


async def test_embeddings_through_the_sdk_default_encoding(
    echo: Daemon, openai_client: Any
) -> None:
    reply = await openai_client(echo).embeddings.create(model="echo", input="alpha")
    assert reply.data[0].embedding == pytest.approx(embedding("alpha"), abs=1e-6)


async def test_embeddings_reject_token_arrays(echo: Daemon, openai_client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client(echo).embeddings.create(model="echo", input=[[1, 2, 3]])
    assert "token" in raised.value.message


# -- models -----------------------------------------------------------------------------------


async def test_retrieve_model_echoes_the_id_asked(echo: Daemon, openai_client: Any) -> None:
    model = await openai_client(echo).models.retrieve("echo:latest")
    assert model.id == "echo:latest" and model.owned_by


async def test_retrieve_unknown_model_is_404(echo: Daemon, openai_client: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        await openai_client(echo).models.retrieve("nope")
