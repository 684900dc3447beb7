"""Held tool turns (agent/held.py) with the real Gemini CLI (ACP mode) against the mock model API:
the turn that called the editor's tool waits for its result and goes on in the same process when
the editor's next request carries it; a turn whose result does not come in time, or comes after
a changed history, is ended and the request served fresh. (Claude Code and Codex: in
test_held_turns.py.)"""

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
from tests.agent.test_held_turns import continued_through_the_daemon
from tests.agent.test_real_cli_tools import WEATHER
from tests.clis import chat, collect, group_alive
from tests.conftest import StartDaemon
from tests.fakes import until
from tests.model_api import ModelApi, Reply, Seen

pytestmark = pytest.mark.usefixtures("agent_clis")

QUESTION = {"role": "user", "content": "Weather in Tokyo?"}
#: How Gemini CLI names the editor's tool to its model.
PREFIX = {"gemini": "mcp_editor_"}
HOLDING = list(PREFIX)
ANSWER = "It is sunny in Tokyo."
#: Processes ready beside the one holding a turn (tools or not, Gemini CLI's command line is the
#: same, so one is kept ready).
READY_BESIDE = {"gemini": 1}


def call_reply(name: str) -> Reply:
    return Reply(tool_call=(PREFIX[name] + "get_weather", {"city": "Tokyo"}))


async def started(name: str, api: ModelApi, home: Path, wait: float = 30) -> CliBackend:
    """CLI ``name``'s backend, its turns held ``wait`` seconds for the editor's results."""
    settings = real_clis.settings(name, api, home, tool_result_timeout=wait)
    backend = create(name, settings=settings)
    assert isinstance(backend, CliBackend)
    await backend.start()
    return backend


@pytest.fixture
async def holder(
    request: pytest.FixtureRequest,
    model_api: ModelApi,
    tmp_path: Path,
    processes: list[CliProcess],  # recording from before the start
) -> AsyncIterator[CliBackend]:
    """The backend of the CLI ``request.param`` names (with the seconds its turns are held,
    as ``(name, seconds)``)."""
    name, wait = request.param if isinstance(request.param, tuple) else (request.param, 30)
    backend = await started(name, model_api, tmp_path / "home", wait)
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


def continues_its_own_history(name: str, first: Seen, second: Seen) -> None:
    """The model call ``second`` goes on from ``first``: the model's own tool call answered by
    the editor's result, not a new prompt holding a transcript."""
    history = second.body["contents"]
    assert history[0] == first.body["contents"][-1]
    assert [c["role"] for c in history] == ["user", "model", "user"]
    (called,) = [p["functionCall"] for p in history[1]["parts"] if "functionCall" in p]
    assert called["args"] == {"city": "Tokyo"}
    (result,) = [p["functionResponse"] for p in history[2]["parts"]]
    assert result["name"] == called["name"] and "sunny, 24 C" in json.dumps(result)
    assert "<tool_result" not in json.dumps(history)


@pytest.mark.parametrize("holder", HOLDING, indirect=True)
async def test_the_editors_result_continues_the_held_turn_in_the_same_process(
    holder: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call_reply(holder.name), Reply.text(ANSWER))
    call = await call_made(holder)
    assert holder.held_turns() == 1
    pool = holder._pool
    assert pool is not None
    # The pool gets a new process in place of the one holding the turn.
    beside = READY_BESIDE[holder.name]
    await until(lambda: pool.status() == {"ready": beside, "starting": 0, "busy": 1}, 60)
    started, taken = len(processes), (pool.taken, pool.missed)
    request = chat(messages=answered(call, "sunny, 24 C", [QUESTION]), tools=[WEATHER])
    events: list[BackendEvent] = []
    async for event in holder.serve(request):
        events.append(event)
        if isinstance(event, Finish):
            # No process was started or taken for the continuation.
            assert len(processes) == started and (pool.taken, pool.missed) == taken
    assert text(events) == ANSWER
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    first, second = model_api.answering()
    continues_its_own_history(holder.name, first, second)
    assert holder.held_turns() == 0


@pytest.mark.parametrize("holder", ["gemini"], indirect=True)
async def test_a_continued_turn_that_calls_again_is_held_again_and_goes_on(
    holder: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call_reply(holder.name), call_reply(holder.name), Reply.text(ANSWER))
    first = await call_made(holder)
    conversation = answered(first, "sunny, 24 C", [QUESTION])
    events = await collect(holder.serve(chat(messages=conversation, tools=[WEATHER])))
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    (second,) = [e for e in events if isinstance(e, ToolCallDelta)]
    assert second.id != first.id and holder.held_turns() == 1
    started = len(processes)
    request = chat(messages=answered(second, "rain, 18 C", conversation), tools=[WEATHER])
    assert text(await collect(holder.serve(request))) == ANSWER
    assert len(processes) == started and holder.held_turns() == 0
    # One model conversation over the three calls: the last holds both results in order.
    last = json.dumps(model_api.answering()[-1].body)
    assert last.index("sunny, 24 C") < last.index("rain, 18 C")
    assert "<tool_result" not in last


@pytest.mark.parametrize("holder", ["gemini"], indirect=True)
async def test_a_held_gemini_turn_repeating_one_call_five_times_ends_with_length(
    holder: CliBackend, model_api: ModelApi
) -> None:
    model_api.script(*[call_reply("gemini")] * 6)
    conversation: list[dict[str, Any]] = [QUESTION]
    call = await call_made(holder)
    for _ in range(4):  # calls 2 to 5, each the same as the first: Gemini CLI's loop detection
        conversation = answered(call, "sunny, 24 C", conversation)
        events = await collect(holder.serve(chat(messages=conversation, tools=[WEATHER])))
        finish = events[-1]
        assert isinstance(finish, Finish)
        if finish.reason == "length":
            break
        (call,) = [e for e in events if isinstance(e, ToolCallDelta)]
    assert isinstance(finish, Finish) and finish.reason == "length" and not text(events)
    assert holder.held_turns() == 0


def first_prompt(seen: Seen) -> str:
    """The first content of a model call, as JSON."""
    return json.dumps(seen.body["contents"][0])


def outside_pool(processes: list[CliProcess], backend: CliBackend) -> list[CliProcess]:
    """The processes running that the pool does not hold ready (taken, or starting)."""
    assert backend._pool is not None
    ready = {id(p) for procs in backend._pool._ready.values() for p in procs}
    return [p for p in processes if p.alive and id(p) not in ready]


async def holding_process(processes: list[CliProcess], backend: CliBackend) -> CliProcess:
    """The process holding ``backend``'s one held turn, once the pool has settled."""
    pool = backend._pool
    assert pool is not None and backend.held_turns() == 1
    beside = READY_BESIDE[backend.name]
    await until(lambda: pool.status() == {"ready": beside, "starting": 0, "busy": 1}, 60)
    (proc,) = outside_pool(processes, backend)
    return proc


@pytest.mark.parametrize("holder", [(name, 0.3) for name in HOLDING], indirect=True)
async def test_a_turn_held_past_the_timeout_is_ended_and_the_result_served_fresh(
    holder: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call_reply(holder.name), Reply.text(ANSWER))
    call = await call_made(holder)
    # The turn ends, and its process with it: every process left is one the pool holds ready.
    await until(lambda: not holder.held_turns() and not outside_pool(processes, holder), 60)
    request = chat(messages=answered(call, "sunny, 24 C", [QUESTION]), tools=[WEATHER])
    events = await collect(holder.serve(request))
    assert text(events) == ANSWER
    # Served fresh: the whole conversation rendered into a new prompt.
    assert "sunny, 24 C" in first_prompt(model_api.answering()[-1])


@pytest.mark.parametrize("holder", [(name, 0) for name in HOLDING], indirect=True)
async def test_with_holding_off_the_call_ends_the_run_and_its_result_is_served_fresh(
    holder: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call_reply(holder.name), Reply.text(ANSWER))
    call = await call_made(holder)
    assert holder.held_turns() == 0
    await until(lambda: not outside_pool(processes, holder), 60)  # its process stopped
    request = chat(messages=answered(call, "sunny, 24 C", [QUESTION]), tools=[WEATHER])
    assert text(await collect(holder.serve(request))) == ANSWER
    assert "sunny, 24 C" in first_prompt(model_api.answering()[-1])


@pytest.mark.parametrize("holder", HOLDING, indirect=True)
async def test_a_result_after_a_changed_history_ends_the_held_turn_and_is_served_fresh(
    holder: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call_reply(holder.name), Reply.text(ANSWER))
    call = await call_made(holder)
    held = await holding_process(processes, holder)
    other = {"role": "user", "content": "Weather in Osaka?"}
    request = chat(messages=answered(call, "sunny, 24 C", [other]), tools=[WEATHER])
    events = await collect(holder.serve(request))
    assert text(events) == ANSWER
    assert holder.held_turns() == 0
    await until(lambda: not alive([held]), 10)
    prompt = first_prompt(model_api.answering()[-1])
    assert "Osaka" in prompt and "sunny, 24 C" in prompt


@pytest.mark.parametrize("holder", HOLDING, indirect=True)
async def test_the_agents_shutdown_ends_a_held_turn_and_its_process(
    holder: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call_reply(holder.name))
    await call_made(holder)
    held = await holding_process(processes, holder)
    assert alive([held])
    await holder.close()
    assert holder.held_turns() == 0 and not alive([held])


async def test_through_the_daemon_the_result_reaches_the_session_holding_the_turn(
    model_api: ModelApi, tmp_path: Path, start_daemon: StartDaemon, openai_client: Any
) -> None:
    _, first, second = await continued_through_the_daemon(
        "gemini", model_api, tmp_path, start_daemon, openai_client
    )
    continues_its_own_history("gemini", first, second)
