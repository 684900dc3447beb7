"""The editor's tools through the real Claude Code (installed from npm into tests/agent_clis),
against the mock model API answering with a tool call: the tools the model sees, the call handed
to the editor, the result fed back, and an editor's ``openai`` client getting ``tool_calls``
through the daemon. Skipped with the reason when node or npm is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import Backend, BackendError, Finish, TextDelta
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
CALL = Reply(tool_call=("mcp__editor__get_weather", {"city": "Tokyo"}))


def claude(api: ModelApi, root: Path) -> Backend:
    return create("claude", settings=real_clis.settings("claude", api, root / "home"))


def editor_tools(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("mcp__editor__")]


async def test_claude_hands_the_models_tool_call_to_the_editor(
    model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = CALL
    events = await collect(claude(model_api, tmp_path).serve(chat("Weather?", tools=[WEATHER])))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.name) for c in calls] == [(0, "get_weather")]
    assert json.loads(calls[0].arguments) == {"city": "Tokyo"}
    assert calls[0].id
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    (seen,) = model_api.answering()  # the run ended at the call: no second model turn
    assert editor_tools(seen.tool_names()) == ["mcp__editor__get_weather"]
    # Claude Code's own tools stay off while the editor's are offered.
    assert set(seen.tool_names()) <= {"mcp__editor__get_weather", "DeferredToolPlaceholder"}
    offered = next(t for t in seen.body["tools"] if t["name"] == "mcp__editor__get_weather")
    assert offered["input_schema"]["properties"] == {"city": {"type": "string"}}


async def test_claude_gets_the_editors_tool_result_in_the_next_request(
    model_api: ModelApi, tmp_path: Path
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
    events = await collect(claude(model_api, tmp_path).serve(request))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is sunny in Tokyo."
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    (seen,) = model_api.answering()
    prompt = json.dumps(seen.body["messages"])
    assert "sunny, 24 C" in prompt and "get_weather" in prompt


async def test_claude_offers_only_the_function_tool_choice_names(
    model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = CALL
    named = {"type": "function", "function": {"name": "get_weather"}}
    request = chat("Weather?", tools=[CLOCK, WEATHER], tool_choice=named)
    events = await collect(claude(model_api, tmp_path).serve(request))
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    (seen,) = model_api.answering()
    assert editor_tools(seen.tool_names()) == ["mcp__editor__get_weather"]
    assert "must answer by calling the tool mcp__editor__get_weather" in json.dumps(seen.body)


async def test_an_editor_gets_tool_calls_from_claude_through_the_daemon(
    model_api: ModelApi, tmp_path: Path, start_daemon: StartDaemon, openai_client: Any
) -> None:
    daemon = await start_daemon(first_chunk_timeout=30, idle_timeout=30, total_timeout=60)
    model_api.default = CALL
    agent = claude(model_api, tmp_path)
    await daemon.start_agent(agent)
    assert "tools" in agent.models()[0].capabilities
    reply = await openai_client(daemon).chat.completions.create(
        model=agent.models()[0].name,
        messages=[{"role": "user", "content": "Weather in Tokyo?"}],
        tools=[WEATHER],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}
    await agent.close()


async def test_claude_gets_one_repair_round_for_arguments_that_break_the_schema(
    model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.script(Reply(tool_call=("mcp__editor__get_weather", {"town": "Tokyo"})), CALL)
    events = await collect(claude(model_api, tmp_path).serve(chat("Weather?", tools=[WEATHER])))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Tokyo"}]
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    first, second = model_api.answering()
    assert "'city' is a required property" in json.dumps(second.body["messages"])
    assert "'city' is a required property" not in json.dumps(first.body["messages"])


async def test_claude_calling_with_bad_arguments_twice_is_a_clear_error(
    model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = Reply(tool_call=("mcp__editor__get_weather", {"city": 7}))
    events: list[Any] = []
    with pytest.raises(BackendError) as raised:
        async for event in claude(model_api, tmp_path).serve(chat("Weather?", tools=[WEATHER])):
            events.append(event)
    assert not any(isinstance(e, ToolCallDelta) for e in events)  # no invalid call is made
    assert len(model_api.answering()) == 2
    assert "even after a repair round" in raised.value.message
    assert "7 is not of type 'string' (at city)" in raised.value.message
