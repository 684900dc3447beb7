"""The Ollama API through the official ``ollama`` Python client (and raw HTTP where a client
hides the wire), against a real daemon and real agents."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import ollama
import pytest

from mcp_local_provider.agent.backends.echo import SUFFIX_MARKER, embedding
from tests.backends import failing_midway, thinking, tool_calling
from tests.fakes import Daemon


@pytest.fixture
async def echo(daemon: Daemon) -> Daemon:
    """A daemon with an echo agent granted inference and embeddings."""
    await daemon.start_agent(scopes=("inference", "embeddings"))
    return daemon


async def ndjson(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, str, list[Any]]:
    async with http.post(url, json=body) as response:
        raw = await response.read()
        lines = [json.loads(line) for line in raw.decode().splitlines()]
        return response.status, response.headers["Content-Type"], lines


# -- discovery --------------------------------------------------------------------------------


async def test_root_says_ollama_is_running(echo: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.get(echo.url + "/") as response:
        assert response.status == 200
        assert await response.text() == "Ollama is running"
    async with http.head(echo.url + "/") as response:
        assert response.status == 200


async def test_version_is_new_enough_for_copilot(echo: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.get(echo.url + "/api/version") as response:
        version = (await response.json())["version"]
    assert tuple(int(p) for p in version.split(".")) >= (0, 6, 4)


async def test_list_shows_tagged_names_with_capabilities(echo: Daemon, ollama_client: Any) -> None:
    listed = await ollama_client(echo).list()
    assert [m.model for m in listed.models] == ["echo:latest"]
    raw = listed.models[0].model_dump()
    assert len(raw["digest"]) == 64


async def test_tags_carry_name_model_and_ollama_capabilities(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(echo.url + "/api/tags") as response:
        model = (await response.json())["models"][0]
    assert model["name"] == model["model"] == "echo:latest"
    assert set(model["capabilities"]) == {"completion", "insert", "embedding"}


async def test_tags_are_empty_without_sessions(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.get(daemon.url + "/api/tags") as response:
        assert await response.json() == {"models": []}


async def test_show_gives_capabilities_context_and_a_suffix_template(
    echo: Daemon, ollama_client: Any
) -> None:
    shown = await ollama_client(echo).show("echo:latest")
    assert "completion" in shown.capabilities and "insert" in shown.capabilities
    assert ".Suffix" in shown.template
    info = shown.modelinfo
    assert info[info["general.architecture"] + ".context_length"] == 32768
    assert shown.parameters.split() == ["num_ctx", "32768"]


async def test_show_accepts_the_old_name_field(echo: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.post(echo.url + "/api/show", json={"name": "echo"}) as response:
        assert response.status == 200
        assert "insert" in (await response.json())["capabilities"]


async def test_show_template_has_no_suffix_without_fim(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await daemon.start_agent(tool_calling())
    async with http.post(daemon.url + "/api/show", json={"model": "tooly"}) as response:
        shown = await response.json()
    assert ".Suffix" not in shown["template"]
    assert "tools" in shown["capabilities"] and "insert" not in shown["capabilities"]


async def test_show_of_unknown_model_is_a_json_404(echo: Daemon, ollama_client: Any) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        await ollama_client(echo).show("nope")
    assert raised.value.status_code == 404
    assert "model 'nope' not found" in raised.value.error


async def test_ps_lists_models_of_connected_agents(echo: Daemon, ollama_client: Any) -> None:
    running = await ollama_client(echo).ps()
    assert [m.model for m in running.models] == ["echo:latest"]
    assert running.models[0].expires_at is not None


# -- chat -------------------------------------------------------------------------------------


async def test_chat_not_streaming_echoes_the_name_sent(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).chat(
        model="echo:latest", messages=[{"role": "user", "content": "hello there"}]
    )
    assert reply.model == "echo:latest"
    assert reply.message.content == "hello there"
    assert reply.done and reply.done_reason == "stop"
    assert reply.eval_count == 2 and reply.prompt_eval_count == 2
    assert reply.total_duration is not None and reply.total_duration > 0


async def test_chat_streams_lines_ending_with_done(echo: Daemon, ollama_client: Any) -> None:
    parts = [
        part
        async for part in await ollama_client(echo).chat(
            model="echo", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    ]
    assert "".join(p.message.content for p in parts) == "one two three"
    assert [p.done for p in parts] == [False, False, False, True]
    assert parts[-1].done_reason == "stop" and parts[-1].model == "echo"


async def test_chat_without_stream_field_streams_ndjson(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    status, content_type, lines = await ndjson(
        http,
        echo.url + "/api/chat",
        {"model": "echo", "messages": [{"role": "user", "content": "a b"}]},
    )
    assert status == 200
    assert content_type == "application/x-ndjson"
    assert lines[-1]["done"] is True and all(not line["done"] for line in lines[:-1])


async def test_chat_without_content_type_header_is_accepted(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    body = json.dumps(
        {
            "model": "echo",
            "stream": False,
            "messages": [{"role": "user", "content": "x", "images": []}],
            "options": {"temperature": 0.1, "num_ctx": 4096},
        }
    ).encode()
    async with http.post(
        echo.url + "/api/chat", data=body, skip_auto_headers=["Content-Type"]
    ) as r:
        assert r.status == 200
        assert (await r.json())["message"]["content"] == "x"


async def test_chat_with_no_messages_only_loads(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).chat(model="echo", messages=[])
    assert reply.done and reply.done_reason == "load"


async def test_chat_tool_calls_arrive_whole_with_object_arguments(
    daemon: Daemon, ollama_client: Any
) -> None:
    await daemon.start_agent(tool_calling(repeat_name=True))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    messages = [{"role": "user", "content": "weather?"}]
    client = ollama_client(daemon)
    reply = await client.chat(model="tooly", messages=messages, tools=tools)
    call = reply.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "Tokyo"}
    assert reply.done_reason == "stop"
    parts = [
        p
        async for p in await client.chat(model="tooly", messages=messages, tools=tools, stream=True)
    ]
    with_calls = [p for p in parts if p.message.tool_calls]
    assert len(with_calls) == 1 and not with_calls[0].done
    assert with_calls[0].message.tool_calls[0].function.arguments == {"city": "Tokyo"}
    assert parts[-1].done


async def test_chat_tool_results_reach_the_agent_in_openai_shape(
    daemon: Daemon, ollama_client: Any
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    await ollama_client(daemon).chat(
        model="tooly",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
                ],
            },
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    )
    sent = backend.requests[0].messages
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Tokyo"}',
    }
    assert sent[2] == {"role": "tool", "content": "sunny", "name": "get_weather"}
    assert backend.requests[0].parameters["tools"][0]["function"]["name"] == "get_weather"


async def test_chat_relays_thinking(daemon: Daemon, ollama_client: Any) -> None:
    await daemon.start_agent(thinking())
    reply = await ollama_client(daemon).chat(
        model="thinker", messages=[{"role": "user", "content": "2+2?"}]
    )
    assert reply.message.thinking == "let me see"
    assert reply.message.content == "The answer is 4."


async def test_chat_with_tools_on_a_model_without_tools_answers_in_text(
    echo: Daemon, ollama_client: Any
) -> None:
    reply = await ollama_client(echo).chat(
        model="echo",
        messages=[{"role": "user", "content": "x"}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
    )
    assert reply.message.content == "x"
    assert not reply.message.tool_calls


async def test_empty_tools_list_is_not_a_tools_request(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).chat(
        model="echo", messages=[{"role": "user", "content": "x"}], tools=[]
    )
    assert reply.message.content == "x"


async def test_mid_stream_failure_is_an_error_line_and_no_done(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await daemon.start_agent(failing_midway())
    status, _, lines = await ndjson(
        http,
        daemon.url + "/api/chat",
        {"model": "flaky", "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 200
    assert lines[0]["message"]["content"] == "partial "
    assert lines[-1] == {"error": "upstream fell over"}
    assert not any(line.get("done") for line in lines)


async def test_unknown_model_on_chat_is_a_json_404(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(echo.url + "/api/chat", json={"model": "nope", "messages": []}) as r:
        assert r.status == 404
        assert r.headers["Content-Type"].startswith("application/json")
        assert (await r.json())["error"].startswith("model 'nope' not found")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b'{"messages": []}', "model"),
        (
            b'{"model": "echo", "format": "yaml", "messages": [{"role": "user", "content": "x"}]}',
            "invalid format",
        ),
    ],
)
async def test_bad_chat_bodies_are_400_with_a_message(
    echo: Daemon, http: aiohttp.ClientSession, body: bytes, message: str
) -> None:
    async with http.post(echo.url + "/api/chat", data=body) as response:
        assert response.status == 400
        assert message in (await response.json())["error"]


# -- generate ---------------------------------------------------------------------------------


async def test_generate_with_suffix_is_fill_in_the_middle(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).generate(
        model="echo", prompt="def add(a, b):", suffix="    return c", raw=True
    )
    assert reply.response == "def add(a, b):" + SUFFIX_MARKER + "    return c"
    assert reply.done and reply.done_reason == "stop"


async def test_generate_streams_void_autocomplete(echo: Daemon, ollama_client: Any) -> None:
    parts = [
        part
        async for part in await ollama_client(echo).generate(
            model="echo:latest",
            prompt="x = 1\ny = ",
            suffix="\nprint(y)",
            raw=True,
            options={"stop": ["\n\n"], "num_predict": 64},
            stream=True,
        )
    ]
    assert "".join(p.response for p in parts) == "x = 1\ny = " + SUFFIX_MARKER + "\nprint(y)"
    assert parts[-1].done and parts[-1].model == "echo:latest"


async def test_generate_num_predict_and_stop_reach_the_agent(
    echo: Daemon, ollama_client: Any
) -> None:
    client = ollama_client(echo)
    cut = await client.generate(
        model="echo", prompt="a b c d e", raw=True, options={"num_predict": 2}
    )
    assert cut.response.split() == ["a", "b"] and cut.done_reason == "length"
    stopped = await client.generate(
        model="echo", prompt="a b STOP c", raw=True, options={"stop": ["STOP"]}
    )
    assert stopped.response == "a b " and stopped.done_reason == "stop"


async def test_generate_without_raw_is_a_chat_with_the_system_prompt(
    daemon: Daemon, ollama_client: Any
) -> None:
    backend = thinking()
    await daemon.start_agent(backend)
    await ollama_client(daemon).generate(model="thinker", prompt="2+2?", system="be brief")
    request = backend.requests[0]
    assert request.kind == "chat"
    assert request.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "2+2?"},
    ]


async def test_generate_raw_with_system_is_400(echo: Daemon, ollama_client: Any) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        await ollama_client(echo).generate(model="echo", prompt="x", system="s", raw=True)
    assert raised.value.status_code == 400
    assert "raw mode" in raised.value.error


async def test_generate_with_suffix_on_a_model_without_fim_is_400(
    daemon: Daemon, ollama_client: Any
) -> None:
    await daemon.start_agent(thinking())
    with pytest.raises(ollama.ResponseError) as raised:
        await ollama_client(daemon).generate(model="thinker", prompt="a", suffix="b")
    assert raised.value.status_code == 400
    assert "fill-in-the-middle" in raised.value.error


async def test_generate_with_empty_prompt_only_loads(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).generate(model="echo", prompt="")
    assert reply.done and reply.done_reason == "load" and reply.response == ""


# -- embeddings -------------------------------------------------------------------------------


async def test_embed_returns_one_vector_per_input(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).embed(model="echo", input=["alpha", "beta gamma"])
    assert reply.model == "echo"
    assert [list(v) for v in reply.embeddings] == [embedding("alpha"), embedding("beta gamma")]
    assert reply.prompt_eval_count == 3


async def test_embed_dimensions_shortens_to_unit_length(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).embed(model="echo", input="alpha", dimensions=4)
    vector = reply.embeddings[0]
    assert len(vector) == 4
    assert sum(x * x for x in vector) == pytest.approx(1.0)


async def test_legacy_embeddings_route(echo: Daemon, ollama_client: Any) -> None:
    reply = await ollama_client(echo).embeddings(model="echo", prompt="alpha")
    assert list(reply.embedding) == embedding("alpha")


async def test_embed_without_the_embeddings_scope_is_refused(
    echo_daemon: Daemon, ollama_client: Any
) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        await ollama_client(echo_daemon).embed(model="echo", input="x")
    assert raised.value.status_code == 403
    assert "embeddings" in raised.value.error


async def test_embed_on_a_chat_only_model_is_400(daemon: Daemon, ollama_client: Any) -> None:
    await daemon.start_agent(thinking(), scopes=("inference", "embeddings"))
    with pytest.raises(ollama.ResponseError) as raised:
        await ollama_client(daemon).embed(model="thinker", input="x")
    assert raised.value.status_code == 400
    assert "embeddings" in raised.value.error


async def test_embed_rejects_inputs_that_are_not_text(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(echo.url + "/api/embed", json={"model": "echo", "input": [1, 2]}) as r:
        assert r.status == 400
        assert "invalid input type" in (await r.json())["error"]


async def test_empty_prompt_with_keep_alive_zero_reports_unload(
    echo: Daemon, ollama_client: Any
) -> None:
    reply = await ollama_client(echo).generate(model="echo", prompt="", keep_alive=0)
    assert reply.done_reason == "unload"


async def test_show_for_copilot_names_the_model_as_requested(
    echo: Daemon, http: aiohttp.ClientSession
) -> None:
    headers = {"User-Agent": "GitHubCopilotChat/0.30.0"}
    async with http.post(
        echo.url + "/api/show", json={"model": "echo:latest"}, headers=headers
    ) as r:
        info = (await r.json())["model_info"]
    assert info["general.basename"] == "echo:latest"


async def test_head_requests_on_discovery_routes(echo: Daemon, http: aiohttp.ClientSession) -> None:
    for path in ("/api/version", "/api/tags"):
        async with http.head(echo.url + path) as response:
            assert response.status == 200
