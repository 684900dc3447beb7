"""The editor's tools through the real Claude Code, Codex and Gemini CLI (installed from npm
into tests/agent_clis),
against the mock model API answering with a tool call: the tools the model sees, the call handed
to the editor, the result fed back, and an editor's ``openai`` client getting ``tool_calls``
through the daemon. Skipped with the reason when node or npm is missing."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import Backend, BackendError, Finish, TextDelta, tool_server
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.events import ToolCallDelta
from tests import real_clis
from tests.clis import chat, collect
from tests.conftest import StartDaemon
from tests.model_api import ModelApi, Reply

pytestmark = pytest.mark.usefixtures("agent_clis")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "get_time", "description": "The time now", "parameters": {}},
}
#: The backends whose CLI takes the editor's tools, and the prefix its model sees them by.
PREFIX = {"claude": "mcp__editor__", "codex": "mcp__editor.", "gemini": "mcp_editor_"}
NAMES = list(PREFIX)
#: Tools besides the editor's that each CLI still shows its model (Claude Code's placeholder;
#: Codex's MCP resource tools, its question to the user and its image viewer).
EXTRA = {
    "claude": {"DeferredToolPlaceholder"},
    "codex": {
        "list_mcp_resources",
        "list_mcp_resource_templates",
        "read_mcp_resource",
        "request_user_input",
        "view_image",
    },
    "gemini": set(),
}


#: Gemini CLI checks a call's arguments against the schema itself and gives its model the error
#: without showing the call, so the backend's repair round is for Claude Code and Codex.
REPAIRED = ["claude", "codex"]


def call(name: str, arguments: dict[str, Any] | None = None) -> Reply:
    return Reply(tool_call=(PREFIX[name] + "get_weather", arguments or {"city": "Tokyo"}))


#: The backends a test made, closed after it (a turn held for the editor's result ends).
MADE: list[Backend] = []


@pytest.fixture(autouse=True)
async def _close_backends() -> AsyncIterator[None]:
    yield
    while MADE:
        await MADE.pop().close()


def cli(name: str, api: ModelApi, root: Path) -> Backend:
    backend = create(name, settings=real_clis.settings(name, api, root / "home"))
    MADE.append(backend)
    return backend


def editor_tools(name: str, names: list[str]) -> list[str]:
    return [n for n in names if n.startswith(PREFIX[name])]


@pytest.mark.parametrize("name", NAMES)
async def test_the_cli_hands_the_models_tool_call_to_the_editor(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = call(name)
    events = await collect(cli(name, model_api, tmp_path).serve(chat("Weather?", tools=[WEATHER])))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.name) for c in calls] == [(0, "get_weather")]
    assert json.loads(calls[0].arguments) == {"city": "Tokyo"}
    assert calls[0].id
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    (seen,) = model_api.answering()  # the run ended at the call: no second model turn
    assert editor_tools(name, seen.tool_names()) == [PREFIX[name] + "get_weather"]
    # The CLI's own tools stay off while the editor's are offered.
    assert set(seen.tool_names()) <= {PREFIX[name] + "get_weather", *EXTRA[name]}
    assert '"city": {"type": "string"}' in json.dumps(seen.body["tools"])


@pytest.mark.parametrize("name", NAMES)
async def test_the_cli_gets_the_editors_tool_result_in_the_next_request(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = Reply.text("It is sunny in Tokyo.")
    messages = [
        {"role": "user", "content": "Weather in Tokyo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 24 C"},
    ]
    request = chat(messages=messages, tools=[WEATHER])
    events = await collect(cli(name, model_api, tmp_path).serve(request))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is sunny in Tokyo."
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    (seen,) = model_api.answering()
    prompt = json.dumps(seen.body)
    assert "sunny, 24 C" in prompt and "get_weather" in prompt


@pytest.mark.parametrize("name", NAMES)
async def test_the_cli_offers_only_the_function_tool_choice_names(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = call(name)
    named = {"type": "function", "function": {"name": "get_weather"}}
    request = chat("Weather?", tools=[CLOCK, WEATHER], tool_choice=named)
    events = await collect(cli(name, model_api, tmp_path).serve(request))
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    (seen,) = model_api.answering()
    assert editor_tools(name, seen.tool_names()) == [PREFIX[name] + "get_weather"]
    assert f"must answer by calling the tool {PREFIX[name]}get_weather" in json.dumps(seen.body)


@pytest.mark.parametrize("name", NAMES)
async def test_an_editor_gets_tool_calls_from_the_cli_through_the_daemon(
    name: str,
    model_api: ModelApi,
    tmp_path: Path,
    start_daemon: StartDaemon,
    openai_client: Any,
) -> None:
    daemon = await start_daemon(first_chunk_timeout=30, idle_timeout=30, total_timeout=60)
    model_api.default = call(name)
    agent = cli(name, model_api, tmp_path)
    await daemon.start_agent(agent)
    assert "tools" in agent.models()[0].capabilities
    reply = await openai_client(daemon).chat.completions.create(
        model=agent.models()[0].name,
        messages=[{"role": "user", "content": "Weather in Tokyo?"}],
        tools=[WEATHER],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (made,) = choice.message.tool_calls
    assert made.function.name == "get_weather"
    assert json.loads(made.function.arguments) == {"city": "Tokyo"}
    await agent.close()


@pytest.mark.parametrize("name", REPAIRED)
async def test_the_cli_gets_one_repair_round_for_arguments_that_break_the_schema(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.script(call(name, {"town": "Tokyo"}), call(name))
    events = await collect(cli(name, model_api, tmp_path).serve(chat("Weather?", tools=[WEATHER])))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Tokyo"}]
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    first, second = model_api.answering()
    assert "'city' is a required property" in json.dumps(second.body)
    assert "'city' is a required property" not in json.dumps(first.body)


@pytest.mark.parametrize("name", REPAIRED)
async def test_the_cli_calling_with_bad_arguments_twice_is_a_clear_error(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = call(name, {"city": 7})
    events: list[Any] = []
    request = chat("Weather?", tools=[WEATHER])
    with pytest.raises(BackendError) as raised:
        async for event in cli(name, model_api, tmp_path).serve(request):
            events.append(event)
    assert not any(isinstance(e, ToolCallDelta) for e in events)  # no invalid call is made
    assert len(model_api.answering()) == 2
    assert "even after a repair round" in raised.value.message
    assert "7 is not of type 'string' (at city)" in raised.value.message


async def test_a_warm_gemini_session_connects_and_allows_no_mcp_server_but_the_editors(
    model_api: ModelApi, tmp_path: Path
) -> None:
    # The user's own Gemini CLI settings name an MCP server of theirs, trusted; its tool would
    # be allowed by the ACP policy's ``mcp_*`` rule if Gemini CLI connected the server.
    tools = tmp_path / "own-tools.json"
    schema = {"type": "object", "properties": {}}
    tools.write_text(json.dumps([{"name": "wipe", "description": "", "input_schema": schema}]))
    home = tmp_path / "home"
    backend = cli("gemini", model_api, tmp_path)
    own = {"command": sys.executable, "args": ["-I", tool_server.__file__, str(tools)]}
    settings_file = home / ".gemini" / "settings.json"
    settings = json.loads(settings_file.read_text())
    settings["mcpServers"] = {"own": {**own, "trust": True}}
    settings_file.write_text(json.dumps(settings))
    model_api.script(call("gemini"), Reply(tool_call=("mcp_own_wipe", {})))
    events = await collect(backend.serve(chat("Weather?", tools=[WEATHER])))
    assert [e.name for e in events if isinstance(e, ToolCallDelta)] == ["get_weather"]
    (seen,) = model_api.answering()
    assert seen.tool_names() == ["mcp_editor_get_weather"]
    # Without the editor's tools, still no server of the user's.
    events = await collect(backend.serve(chat("Wipe it.")))
    assert isinstance(events[-1], Finish)
    assert model_api.answering()[-1].tool_names() == []
    assert "wipe" not in json.dumps(model_api.answering()[-1].body.get("tools") or [])
