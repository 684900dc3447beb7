"""Held tool turns (agent/held.py) with the real Claude Code and Codex against the mock model
API: the turn that called the editor's tools waits for their results and goes on in the same
process when the editor's next request carries them (one call or parallel calls); a turn whose
results do not come in time, come after a changed history or come for only some of its calls is
ended and the request served fresh; cancelling the continuation stops the CLI (Gemini CLI's too;
its other held-turn tests are in test_held_turns_gemini.py)."""

from __future__ import annotations

import asyncio
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
from mcp_local_provider.agent.serving import RequestRunner
from mcp_local_provider.agent.warm import WarmPool
from tests import real_clis
from tests.agent.test_real_cli_tools import WEATHER
from tests.clis import chat, collect, group_alive
from tests.conftest import StartDaemon
from tests.fakes import until
from tests.model_api import ModelApi, Reply, Seen

pytestmark = pytest.mark.usefixtures("agent_clis")

QUESTION = {"role": "user", "content": "Weather in Tokyo?"}
#: How each CLI names the editor's weather tool to its model.
TOOL = {"claude": "mcp__editor__get_weather", "codex": "mcp__editor.get_weather"}
NAMES = list(TOOL)
#: Gemini CLI too, for the tests that need one call and nothing of how a CLI lays out its
#: history (its own tests are in test_held_turns_gemini.py).
EVERY = {**TOOL, "gemini": "mcp_editor_get_weather"}
ANSWER = "It is sunny in Tokyo."


def call(name: str, *cities: str) -> Reply:
    """One answer calling the editor's tool once per city (parallel calls for two)."""
    return Reply(tool_calls=tuple((EVERY[name], {"city": city}) for city in cities or ("Tokyo",)))


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def held(
    request: pytest.FixtureRequest,
    name: str,
    model_api: ModelApi,
    tmp_path: Path,
    processes: list[CliProcess],
) -> AsyncIterator[CliBackend]:
    """The CLI ``name``, its turns held ``request.param`` seconds for the editor's results."""
    wait = getattr(request, "param", 30)
    settings = real_clis.settings(name, model_api, tmp_path / "home", tool_result_timeout=wait)
    backend = create(name, settings=settings)
    assert isinstance(backend, CliBackend)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def answered(
    calls: list[ToolCallDelta], results: list[str], before: list[dict[str, Any]]
) -> list[Any]:
    """The conversation ``before``, the calls and the first ``len(results)`` results, as the
    editor sends them next."""
    made = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]
    message = {"role": "assistant", "content": "", "tool_calls": made}
    tool = [
        {"role": "tool", "tool_call_id": c.id, "content": result}
        for c, result in zip(calls, results, strict=False)
    ]
    return [*before, message, *tool]


async def calls_made(backend: CliBackend, count: int = 1) -> list[ToolCallDelta]:
    events = await collect(backend.serve(chat(messages=[QUESTION], tools=[WEATHER])))
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(calls) == count and len({c.id for c in calls}) == count
    return calls


async def refilled(name: str, backend: CliBackend) -> WarmPool:
    """The backend's pool, once it has a new process in place of the one holding the turn
    (Claude Code's with the editor's tools has a command line of its own, so the first one is
    still there too)."""
    pool = backend._pool
    assert pool is not None
    ready = {"claude": 2, "codex": 1, "gemini": 1}[name]
    await until(lambda: pool.status() == {"ready": ready, "starting": 0, "busy": 1}, 60)
    return pool


async def holder(name: str, backend: CliBackend, processes: list[CliProcess]) -> CliProcess:
    """The process holding the backend's one held turn (once the pool is refilled)."""
    pool = await refilled(name, backend)
    ready = {id(p) for waiting in pool._ready.values() for p in waiting}
    (holding,) = [p for p in processes if p.alive and id(p) not in ready]
    return holding


def text(events: list[BackendEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def alive(procs: list[CliProcess]) -> list[int]:
    return [pid for proc in procs if proc.proc for pid in group_alive(proc.proc.pid)]


def results_seen(name: str, first: Seen, second: Seen) -> dict[str, str]:
    """The tool results the model got in ``second``, by call id, checking that ``second``
    goes on from ``first``'s conversation (its own calls answered, not a re-rendered
    transcript)."""
    if name == "claude":
        history = second.body["messages"]
        assert history[0] == first.body["messages"][0]
        turns = [m for m in history if m["role"] != "system"]  # Claude Code adds its environment
        before = [m for m in first.body["messages"] if m["role"] != "system"]
        # Two messages more: the model's calls and their results.
        assert [m["role"] for m in turns] == [m["role"] for m in before] + ["assistant", "user"]
        assert "<tool_result" not in json.dumps(history)
        return {
            b["tool_use_id"]: json.dumps(b["content"])
            for b in turns[-1]["content"]
            if b.get("type") == "tool_result"
        }
    items = second.body["input"]
    assert items[: len(first.body["input"])] == first.body["input"]
    new = items[len(first.body["input"]) :]
    assert [i["type"] for i in new if i["type"] == "function_call"]
    assert "<tool_result" not in json.dumps(items)
    return {
        i["call_id"]: json.dumps(i["output"]) for i in new if i["type"] == "function_call_output"
    }


async def test_the_editors_result_continues_the_held_turn_in_the_same_process(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call(name), Reply.text(ANSWER))
    (made,) = await calls_made(held)
    assert held.held_turns() == 1
    pool = await refilled(name, held)
    started, taken = len(processes), (pool.taken, pool.missed)
    request = chat(messages=answered([made], ["sunny, 24 C"], [QUESTION]), tools=[WEATHER])
    events: list[BackendEvent] = []
    async for event in held.serve(request):
        events.append(event)
        if isinstance(event, Finish):
            # No process was started or taken for the continuation.
            assert len(processes) == started and (pool.taken, pool.missed) == taken
    assert text(events) == ANSWER
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    first, second = model_api.answering()
    # The model sees its own call answered by its result in the same conversation.
    seen = results_seen(name, first, second)
    assert list(seen) == [made.id] and "sunny, 24 C" in seen[str(made.id)]
    assert held.held_turns() == 0


async def test_a_continued_turn_that_calls_again_is_held_again_in_the_same_process(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call(name, "Tokyo"), call(name, "Oslo"), Reply.text(ANSWER))
    (tokyo,) = await calls_made(held)
    holding = await holder(name, held, processes)
    started = len(processes)
    step = answered([tokyo], ["sunny"], [QUESTION])
    events = await collect(held.serve(chat(messages=step, tools=[WEATHER])))
    (oslo,) = [e for e in events if isinstance(e, ToolCallDelta)]
    assert json.loads(oslo.arguments) == {"city": "Oslo"} and held.held_turns() == 1
    last = chat(messages=answered([oslo], ["snow"], step), tools=[WEATHER])
    assert text(await collect(held.serve(last))) == ANSWER
    # The three model calls came from the one process, each going on from the one before.
    _, second, third = model_api.answering()
    assert "snow" in results_seen(name, second, third)[str(oslo.id)]
    assert len(processes) == started
    await until(lambda: not alive([holding]), 10)  # the turn is over: its process stopped


async def test_parallel_calls_are_held_together_and_continued_with_both_results(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call(name, "Tokyo", "Oslo"), Reply.text(ANSWER))
    made = await calls_made(held, 2)
    assert [json.loads(c.arguments)["city"] for c in made] == ["Tokyo", "Oslo"]
    assert held.held_turns() == 1
    await refilled(name, held)
    started = len(processes)
    request = chat(messages=answered(made, ["sunny", "snow"], [QUESTION]), tools=[WEATHER])
    events = await collect(held.serve(request))
    assert text(events) == ANSWER
    first, second = model_api.answering()
    seen = results_seen(name, first, second)
    # Each call got its own result.
    assert set(seen) == {c.id for c in made}
    assert "sunny" in seen[str(made[0].id)] and "snow" in seen[str(made[1].id)]
    assert len(processes) == started and held.held_turns() == 0


async def test_a_second_call_where_one_was_allowed_is_refused_and_the_turn_goes_on(
    name: str, held: CliBackend, model_api: ModelApi
) -> None:
    model_api.script(call(name, "Tokyo", "Oslo"), Reply.text(ANSWER))
    one = {"tools": [WEATHER], "parallel_tool_calls": False}
    events = await collect(held.serve(chat(messages=[QUESTION], **one)))
    (made,) = [e for e in events if isinstance(e, ToolCallDelta)]
    request = chat(messages=answered([made], ["sunny"], [QUESTION]), **one)
    events = await asyncio.wait_for(collect(held.serve(request)), 20)
    assert text(events) == ANSWER
    first, second = model_api.answering()
    seen = results_seen(name, first, second)
    assert "sunny" in seen.pop(str(made.id))
    # The call the editor never got was answered "not run", not left waiting.
    assert [("not run" in result) for result in seen.values()] == [True]


async def test_results_for_only_some_parallel_calls_end_the_turn_and_are_served_fresh(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call(name, "Tokyo", "Oslo"), Reply.text(ANSWER))
    made = await calls_made(held, 2)
    holding = await holder(name, held, processes)
    request = chat(messages=answered(made, ["sunny"], [QUESTION]), tools=[WEATHER])
    events = await collect(held.serve(request))
    assert text(events) == ANSWER
    assert held.held_turns() == 0
    await until(lambda: not alive([holding]), 10)
    # Served fresh: the conversation rendered into a new prompt.
    last = json.dumps(model_api.answering()[-1].body)
    assert "sunny" in last and "function_call_output" not in last and 'tool_result"' not in last


@pytest.mark.parametrize("held", [0.3], indirect=True)
async def test_a_turn_held_past_the_timeout_is_ended_and_the_result_served_fresh(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call(name), Reply.text(ANSWER))
    (made,) = await calls_made(held)
    pool = held._pool
    assert pool is not None
    await until(lambda: held.held_turns() == 0 and pool.busy == 0, 10)
    request = chat(messages=answered([made], ["sunny, 24 C"], [QUESTION]), tools=[WEATHER])
    events = await collect(held.serve(request))
    assert text(events) == ANSWER
    # Served fresh: the whole conversation rendered into a new prompt.
    assert "sunny, 24 C" in fresh_prompt(name, model_api.answering()[-1])


@pytest.mark.parametrize("held", [0], indirect=True)
async def test_with_holding_off_the_call_ends_the_run_and_the_result_is_served_fresh(
    name: str, held: CliBackend, model_api: ModelApi
) -> None:
    model_api.script(call(name), Reply.text(ANSWER))
    (made,) = await calls_made(held)
    pool = held._pool
    assert pool is not None
    assert held.held_turns() == 0 and pool.busy == 0  # the process is stopped already
    request = chat(messages=answered([made], ["sunny, 24 C"], [QUESTION]), tools=[WEATHER])
    assert text(await collect(held.serve(request))) == ANSWER
    assert "sunny, 24 C" in fresh_prompt(name, model_api.answering()[-1])


def fresh_prompt(name: str, seen: Seen) -> str:
    """The user prompt of a request served fresh (the conversation rendered into it)."""
    if name == "claude":
        return json.dumps(seen.body["messages"][0])
    (item,) = [i for i in seen.body["input"] if i.get("role") == "user"][-1:]
    assert not [i for i in seen.body["input"] if i["type"] == "function_call_output"]
    return json.dumps(item)


async def test_a_result_after_a_changed_history_ends_the_held_turn_and_is_served_fresh(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call(name), Reply.text(ANSWER))
    (made,) = await calls_made(held)
    holding = await holder(name, held, processes)
    other = {"role": "user", "content": "Weather in Osaka?"}
    request = chat(messages=answered([made], ["sunny, 24 C"], [other]), tools=[WEATHER])
    events = await collect(held.serve(request))
    assert text(events) == ANSWER
    assert held.held_turns() == 0
    await until(lambda: not alive([holding]), 10)
    prompt = fresh_prompt(name, model_api.answering()[-1])
    assert "Osaka" in prompt and "sunny, 24 C" in prompt


@pytest.mark.parametrize("name", list(EVERY))
async def test_cancelling_a_continued_turn_stops_the_cli_within_two_seconds(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    slow = Reply.text("It is sunny in Tokyo, all week long.", pieces=30, delay=0.5)
    model_api.script(call(name), slow)
    (made,) = await calls_made(held)
    holding = await holder(name, held, processes)
    request = chat(messages=answered([made], ["sunny, 24 C"], [QUESTION]), tools=[WEATHER])
    first_text = asyncio.Event()

    async def continued() -> None:
        async for event in held.serve(request):
            if isinstance(event, TextDelta):
                first_text.set()

    run = asyncio.create_task(continued())
    await asyncio.wait_for(first_text.wait(), 30)
    loop = asyncio.get_running_loop()
    cancelled = loop.time()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert loop.time() - cancelled < 2.0
    # Nothing left behind: the process holding the turn and its tool server are gone.
    assert not alive([holding]) and held.held_turns() == 0
    assert len(model_api.answering()) == 2


@pytest.mark.parametrize("slots", [1, 2])
async def test_a_held_turn_keeps_its_slot_until_another_request_needs_it(
    slots: int, name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    RequestRunner(held, slots)  # the agent serves this many requests at once
    model_api.script(call(name), Reply.text("Hello."), Reply.text(ANSWER))
    (made,) = await calls_made(held)
    holding = await holder(name, held, processes)
    # Another request comes: with one slot the held turn gives it up (ended, its process
    # stopped) rather than make the request wait; with two both fit.
    assert text(await collect(held.serve(chat("Say hello.")))) == "Hello."
    assert held.held_turns() == (1 if slots == 2 else 0)
    if slots == 1:
        await until(lambda: not alive([holding]), 10)
    request = chat(messages=answered([made], ["sunny, 24 C"], [QUESTION]), tools=[WEATHER])
    assert text(await collect(held.serve(request))) == ANSWER
    last = model_api.answering()[-1]
    if slots == 1:  # served afresh
        assert "sunny, 24 C" in fresh_prompt(name, last)
    else:  # the held turn went on
        assert "sunny, 24 C" in results_seen(name, model_api.answering()[0], last)[str(made.id)]


async def test_the_agents_shutdown_ends_a_held_turn_and_its_process(
    name: str, held: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(call(name))
    await calls_made(held)
    holding = await holder(name, held, processes)
    assert held.held_turns() == 1 and alive([holding])
    await held.close()
    assert held.held_turns() == 0 and not alive([holding])


async def continued_through_the_daemon(
    name: str, model_api: ModelApi, tmp_path: Path, start_daemon: StartDaemon, openai_client: Any
) -> tuple[str, Seen, Seen]:
    """Two sessions of CLI ``name`` serve one model; the editor's result for the call one of
    them made continues that session's held turn. The call's id and the two model calls seen."""
    daemon = await start_daemon(first_chunk_timeout=30, idle_timeout=30, total_timeout=60)
    backends = []
    for n in range(2):  # two sessions serving the same model
        settings = real_clis.settings(name, model_api, tmp_path / f"home{n}")
        backend = create(name, settings=settings)
        assert isinstance(backend, CliBackend)
        backends.append(backend)
        await daemon.start_agent(backend, agent_id=f"agent-{n}")
    model_api.script(call(name), Reply.text(ANSWER))
    client = openai_client(daemon)
    model = backends[0].models()[0].name
    try:
        first = await client.chat.completions.create(
            model=model, messages=[QUESTION], tools=[WEATHER]
        )
        (made,) = first.choices[0].message.tool_calls
        (maker,) = [b for b in backends if b.held_turns() == 1]
        # Without the conversation's affinity, the policy would pick the other session (it
        # has served fewer requests): the tool call's id is what routes the result.
        daemon.state.router.choice._affinity.clear()
        call_made = ToolCallDelta(
            0, id=made.id, name="get_weather", arguments=made.function.arguments
        )
        second = await client.chat.completions.create(
            model=model,
            messages=answered([call_made], ["sunny, 24 C"], [QUESTION]),
            tools=[WEATHER],
        )
        assert second.choices[0].message.content == ANSWER
        assert maker.held_turns() == 0
        first_seen, second_seen = model_api.answering()
        return made.id, first_seen, second_seen
    finally:
        await daemon.stop_agents()
        for backend in backends:
            await backend.close()


async def test_through_the_daemon_the_result_reaches_the_session_holding_the_turn(
    name: str, model_api: ModelApi, tmp_path: Path, start_daemon: StartDaemon, openai_client: Any
) -> None:
    made, first, second = await continued_through_the_daemon(
        name, model_api, tmp_path, start_daemon, openai_client
    )
    # The held turn went on: the model saw its call answered in its own conversation.
    assert "sunny, 24 C" in results_seen(name, first, second)[made]
