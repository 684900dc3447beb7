"""Held tool turns (agent/held.py) with the real Claude Code against the mock model API: the
turn that called the editor's tool waits for its result and goes on in the same process when
the editor's next request carries it; a turn whose result does not come in time, or comes after
a changed history, is ended and the request served fresh."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import Finish, TextDelta
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.backends.cli import CliBackend
from mcp_local_provider.agent.events import BackendEvent, ToolCallDelta
from mcp_local_provider.agent.process import CliProcess
from tests import real_clis
from tests.agent.test_real_cli_tools import WEATHER
from tests.clis import chat, collect, group_alive
from tests.conftest import StartDaemon
from tests.fakes import until
from tests.model_api import ModelApi, Reply

pytestmark = pytest.mark.usefixtures("agent_clis")

QUESTION = {"role": "user", "content": "Weather in Tokyo?"}
CALL = Reply(tool_call=("mcp__editor__get_weather", {"city": "Tokyo"}))
ANSWER = "It is sunny in Tokyo."


@pytest.fixture
async def claude(
    request: pytest.FixtureRequest, model_api: ModelApi, tmp_path: Path
) -> AsyncIterator[CliBackend]:
    """Claude Code, its turns held ``request.param`` seconds for the editor's results."""
    wait = getattr(request, "param", 30)
    settings = real_clis.settings("claude", model_api, tmp_path / "home", tool_result_timeout=wait)
    backend = create("claude", settings=settings)
    assert isinstance(backend, CliBackend)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def answered(call: ToolCallDelta, result: str, before: list[dict[str, Any]]) -> list[Any]:
    """The conversation ``before``, the call and its result, as the editor sends it next."""
    function = {"name": call.name, "arguments": call.arguments}
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"id": call.id, "type": "function", "function": function}
    ]}  # fmt: skip
    return [*before, message, {"role": "tool", "tool_call_id": call.id, "content": result}]


async def call_made(backend: CliBackend) -> ToolCallDelta:
    events = await collect(backend.serve(chat(messages=[QUESTION], tools=[WEATHER])))
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    (call,) = [e for e in events if isinstance(e, ToolCallDelta)]
    return call


def text(events: list[BackendEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def alive(procs: list[CliProcess]) -> list[int]:
    return [pid for proc in procs if proc.proc for pid in group_alive(proc.proc.pid)]


async def test_the_editors_result_continues_the_held_turn_in_the_same_process(
    claude: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(CALL, Reply.text(ANSWER))
    call = await call_made(claude)
    assert claude.held_turns() == 1
    pool = claude._pool
    assert pool is not None
    # The pool gets a new process in place of the one holding the turn.
    await until(lambda: pool.status() == {"ready": 2, "starting": 0, "busy": 1}, 60)
    started, taken = len(processes), (pool.taken, pool.missed)
    request = chat(messages=answered(call, "sunny, 24 C", [QUESTION]), tools=[WEATHER])
    events: list[BackendEvent] = []
    async for event in claude.serve(request):
        events.append(event)
        if isinstance(event, Finish):
            # No process was started or taken for the continuation.
            assert len(processes) == started and (pool.taken, pool.missed) == taken
    assert text(events) == ANSWER
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    first, second = model_api.answering()
    # The model sees its own conversation go on: its tool_use answered by a tool_result,
    # not a new prompt holding a transcript.
    history = second.body["messages"]
    assert history[0] == first.body["messages"][0]
    turns = [m for m in history if m["role"] != "system"]  # Claude Code adds its environment
    assert [m["role"] for m in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0]["input"] == {"city": "Tokyo"}
    (block,) = [b for b in turns[2]["content"] if b.get("type") == "tool_result"]
    assert "sunny, 24 C" in json.dumps(block["content"])
    assert "<tool_result" not in json.dumps(history)
    assert claude.held_turns() == 0


@pytest.mark.parametrize("claude", [0.3], indirect=True)
async def test_a_turn_held_past_the_timeout_is_ended_and_the_result_served_fresh(
    claude: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(CALL, Reply.text(ANSWER))
    call = await call_made(claude)
    holder = processes[-1]
    await until(lambda: claude.held_turns() == 0 and not alive([holder]), 10)
    request = chat(messages=answered(call, "sunny, 24 C", [QUESTION]), tools=[WEATHER])
    events = await collect(claude.serve(request))
    assert text(events) == ANSWER
    # Served fresh: the whole conversation rendered into a new prompt.
    assert "sunny, 24 C" in json.dumps(model_api.answering()[-1].body["messages"][0])


async def test_a_result_after_a_changed_history_ends_the_held_turn_and_is_served_fresh(
    claude: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(CALL, Reply.text(ANSWER))
    call = await call_made(claude)
    holder = processes[-1]
    other = {"role": "user", "content": "Weather in Osaka?"}
    request = chat(messages=answered(call, "sunny, 24 C", [other]), tools=[WEATHER])
    events = await collect(claude.serve(request))
    assert text(events) == ANSWER
    assert claude.held_turns() == 0
    await until(lambda: not alive([holder]), 10)
    (prompt,) = model_api.answering()[-1].body["messages"][:1]
    assert "Osaka" in json.dumps(prompt) and "sunny, 24 C" in json.dumps(prompt)


async def test_the_agents_shutdown_ends_a_held_turn_and_its_process(
    claude: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(CALL)
    await call_made(claude)
    holder = processes[-1]
    assert claude.held_turns() == 1 and alive([holder])
    await claude.close()
    assert claude.held_turns() == 0 and not alive([holder])


async def test_through_the_daemon_the_result_reaches_the_session_holding_the_turn(
    model_api: ModelApi, tmp_path: Path, start_daemon: StartDaemon, openai_client: Any
) -> None:
    daemon = await start_daemon(first_chunk_timeout=30, idle_timeout=30, total_timeout=60)
    backends = []
    for n in range(2):  # two sessions serving the same model
        settings = real_clis.settings("claude", model_api, tmp_path / f"home{n}")
        backend = create("claude", settings=settings)
        assert isinstance(backend, CliBackend)
        backends.append(backend)
        await daemon.start_agent(backend, agent_id=f"agent-{n}")
    model_api.script(CALL, Reply.text(ANSWER))
    client = openai_client(daemon)
    try:
        first = await client.chat.completions.create(
            model="claude-code", messages=[QUESTION], tools=[WEATHER]
        )
        (made,) = first.choices[0].message.tool_calls
        (maker,) = [b for b in backends if b.held_turns() == 1]
        # Without the conversation's affinity, the policy would pick the other session (it
        # has served fewer requests): the tool call's id is what routes the result.
        daemon.state.router.choice._affinity.clear()
        call = ToolCallDelta(0, id=made.id, name="get_weather", arguments=made.function.arguments)
        second = await client.chat.completions.create(
            model="claude-code", messages=answered(call, "sunny, 24 C", [QUESTION]), tools=[WEATHER]
        )
        assert second.choices[0].message.content == ANSWER
        assert maker.held_turns() == 0
        # The held turn went on: the model saw its tool_use answered in its own conversation.
        history = model_api.answering()[-1].body["messages"]
        assert any(
            b.get("type") == "tool_result" for m in history for b in m["content"]
            if isinstance(m["content"], list) and isinstance(b, dict)
        )  # fmt: skip
    finally:
        await daemon.stop_agents()
        for backend in backends:
            await backend.close()
