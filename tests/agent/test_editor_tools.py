"""The editor's tools on the agent side, without a CLI: what is offered for a request, how a
call is checked against its schema and repaired, and how Claude Code's output becomes calls."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from mcp_local_provider.agent import BackendError
from mcp_local_provider.agent.backends.claude import ClaudeParser
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import BackendEvent, Finish, TextDelta, ToolCallDelta
from mcp_local_provider.agent.tools import call_error, checked, offered
from tests.clis import chat

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def test_no_tools_or_tool_choice_none_offers_nothing() -> None:
    with offered(chat("x")) as none:
        assert none is None
    with offered(chat("x", tools=[WEATHER], tool_choice="none")) as none:
        assert none is None


def test_offered_tools_are_written_for_the_server_and_removed_after() -> None:
    with offered(chat("x", tools=[WEATHER, CLOCK], parallel_tool_calls=False)) as tools:
        assert tools is not None
        written = json.loads(tools.tools_file.read_text())
        assert [t["name"] for t in written] == ["get_weather", "get_time"]
        assert written[1]["input_schema"] == {"type": "object", "properties": {}}
        assert not tools.required and not tools.parallel
        assert "at most one tool" in tools.instructions("mcp__editor__")
        folder = tools.folder
    assert not folder.exists()


def test_a_named_tool_choice_offers_that_tool_only_and_requires_it() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    with offered(chat("x", tools=[WEATHER, CLOCK], tool_choice=choice)) as tools:
        assert tools is not None
        assert tools.names == ["get_time"] and tools.required
        assert "must answer by calling the tool p_get_time" in tools.instructions("p_")


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        ("get_weather", '{"city": "Tokyo"}', None),
        ("get_weather", "{}", "'city' is a required property"),
        ("get_weather", '{"city": 7}', "7 is not of type 'string' (at city)"),
        ("get_weather", '{"city": ', "are not JSON"),
        ("launch", "{}", "there is no tool named 'launch'"),
    ],
)
def test_call_arguments_are_checked_against_the_schema(
    name: str, arguments: str, problem: str | None
) -> None:
    with offered(chat("x", tools=[WEATHER])) as tools:
        assert tools is not None
        found = call_error(tools, name, arguments)
        if problem is None:
            assert found is None
        else:
            assert found is not None and problem in found


def answers(*scripts: list[BackendEvent]) -> tuple[list[Prompt], Any]:
    prompts: list[Prompt] = []

    async def run(prompt: Prompt) -> AsyncGenerator[BackendEvent, None]:
        prompts.append(prompt)
        for event in scripts[len(prompts) - 1]:
            yield event

    return prompts, run


def call(arguments: str) -> list[BackendEvent]:
    return [
        TextDelta("Checking."),
        ToolCallDelta(0, id="t1", name="get_weather", arguments=arguments),
        Finish("tool_calls"),
    ]


async def test_a_valid_call_passes_after_the_text_in_one_round() -> None:
    prompts, run = answers(call('{"city": "Oslo"}'))
    with offered(chat("x", tools=[WEATHER])) as tools:
        assert tools is not None
        events = [e async for e in checked(run, Prompt("", "x"), tools)]
    assert [type(e).__name__ for e in events] == ["TextDelta", "ToolCallDelta", "Finish"]
    assert len(prompts) == 1


async def test_required_tool_choice_repairs_an_answer_without_a_call() -> None:
    prompts, run = answers([TextDelta("Sunny."), Finish("stop")], call('{"city": "Oslo"}'))
    with offered(chat("x", tools=[WEATHER], tool_choice="required")) as tools:
        assert tools is not None
        events = [e async for e in checked(run, Prompt("", "x"), tools)]
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    assert "called no tool" in prompts[1].text


async def test_two_bad_answers_are_an_error_and_no_call() -> None:
    prompts, run = answers(call("{}"), call("{}"))
    seen: list[BackendEvent] = []
    with offered(chat("x", tools=[WEATHER])) as tools, pytest.raises(BackendError) as raised:
        assert tools is not None
        async for event in checked(run, Prompt("", "x"), tools):
            seen.append(event)
    assert raised.value.code == "invalid_tool_call"
    assert not any(isinstance(e, ToolCallDelta) for e in seen)
    assert len(prompts) == 2


def stream(*events: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "stream_event", "event": e} for e in events]


def tool_use(index: int, block_id: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    block = {"type": "tool_use", "id": block_id, "name": "mcp__editor__get_weather", "input": {}}
    delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
    return stream(
        {"type": "content_block_start", "index": index, "content_block": block},
        {"type": "content_block_delta", "index": index, "delta": delta},
        {"type": "content_block_stop", "index": index},
    )


@pytest.mark.parametrize(("parallel", "expected"), [(True, 2), (False, 1)])
def test_claude_parallel_calls_become_one_call_each_and_only_the_first_goes_unless_parallel(
    parallel: bool, expected: int
) -> None:
    request = chat("x", tools=[WEATHER], parallel_tool_calls=parallel)
    with offered(request) as tools:
        assert tools is not None
        parser = ClaudeParser(tools)
        lines = [
            *tool_use(0, "toolu_a", {"city": "Oslo"}),
            *tool_use(1, "toolu_b", {"city": "Rome"}),
            *stream({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
        ]
        events = [e for line in lines for e in parser.feed(line)]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.id, c.name) for c in calls] == [
        (0, "toolu_a", "get_weather"),
        (1, "toolu_b", "get_weather"),
    ]
    # The run hands the editor only the first when one call per answer is allowed.
    assert len([c for c in calls if tools.handed_over(c)]) == expected
    assert events[-1] == Finish("tool_calls", None)


def test_claude_whole_message_before_the_block_stop_gives_the_call_once() -> None:
    with offered(chat("x", tools=[WEATHER])) as tools:
        parser = ClaudeParser(tools)
        block = {"type": "tool_use", "id": "toolu_a", "name": "mcp__editor__get_weather"}
        message = {"type": "assistant", "message": {"content": [{**block, "input": {"city": "O"}}]}}
        start = {"type": "content_block_start", "index": 0, "content_block": block}
        lines = [
            *stream(start),
            message,
            *stream({"type": "content_block_stop", "index": 0}),
        ]
        calls = [e for line in lines for e in parser.feed(line) if isinstance(e, ToolCallDelta)]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "O"}]
