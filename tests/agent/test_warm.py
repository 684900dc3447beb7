"""Processes started ahead of their request (agent/warm.py), with the real CLIs against the mock
model API: a request served by a process that was ready before it, requests kept apart, a
ready or busy process that dies replaced, and nothing left running when the agent stops or is
killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mcp_local_provider.agent import BackendError, Finish, TextDelta
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.backends.cli import CliBackend
from mcp_local_provider.agent.check import check
from mcp_local_provider.agent.process import CliProcess
from tests import real_clis
from tests.agent.test_real_clis import ANSWER
from tests.clis import chat, collect, group_alive
from tests.fakes import Daemon, until
from tests.model_api import SILENT, ModelApi, Reply

pytestmark = pytest.mark.usefixtures("agent_clis")

NAMES = real_clis.NAMES
#: Starting a CLI (Gemini CLI's most of all) on a loaded 2-core machine.
READY_WITHIN = 60


@pytest.fixture
async def warm(
    request: pytest.FixtureRequest,
    model_api: ModelApi,
    tmp_path: Path,
    processes: list[CliProcess],  # recording from before the start
) -> AsyncIterator[CliBackend]:
    """The backend named by the test's parameter, started (so its pool fills) and closed."""
    settings = real_clis.settings(request.param, model_api, tmp_path / "home")
    backend = create(request.param, settings=settings)
    assert isinstance(backend, CliBackend)
    await backend.start()
    try:
        await ready(backend)
        yield backend
    finally:
        await backend.close()


async def ready(backend: CliBackend, count: int = 1) -> None:
    await until(lambda: (backend.pool_status() or {}).get("ready") == count, READY_WITHIN)


def text(events: list[object]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def alive(procs: list[CliProcess]) -> list[int]:
    return [pid for proc in procs if proc.proc for pid in group_alive(proc.proc.pid)]


@pytest.mark.parametrize("warm", NAMES, indirect=True)
async def test_a_request_is_served_by_a_process_started_before_it(
    warm: CliBackend, processes: list[CliProcess]
) -> None:
    (ahead,) = processes
    events = await collect(warm.serve(chat("Say hello.")))
    assert text(events) == ANSWER
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    # The request took the process started ahead; its successor is ready for the next one.
    assert warm._pool is not None and (warm._pool.taken, warm._pool.missed) == (1, 0)
    await ready(warm)
    assert len(processes) == 2 and not alive([ahead])


@pytest.mark.parametrize("warm", NAMES, indirect=True)
async def test_a_warm_request_sees_nothing_of_the_request_before_it(
    warm: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    model_api.script(Reply.text("The code word is kept."), Reply.text(ANSWER))
    await collect(warm.serve(chat("Remember the code word PELICAN-77.")))
    await ready(warm)
    events = await collect(warm.serve(chat("Say hello.")))
    assert text(events) == ANSWER
    first, second = model_api.answering()[-2:]
    assert "PELICAN-77" in json.dumps(first.body)
    # The second model call holds nothing of the first request: prompt, answer or history.
    assert "PELICAN-77" not in json.dumps(second.body)
    assert "kept" not in json.dumps(second.body)
    # Two processes, each in its own scratch folder.
    assert processes[0].cwd != processes[1].cwd


@pytest.mark.parametrize("warm", NAMES, indirect=True)
async def test_a_ready_process_that_dies_is_replaced(
    warm: CliBackend, processes: list[CliProcess]
) -> None:
    (ahead,) = processes
    assert ahead.proc is not None
    os.killpg(ahead.proc.pid, signal.SIGKILL)
    await until(lambda: len(processes) == 2, READY_WITHIN)
    await ready(warm)
    events = await collect(warm.serve(chat("Say hello.")))
    assert text(events) == ANSWER
    assert warm._pool is not None and warm._pool.replaced == 1


@pytest.mark.parametrize("warm", NAMES, indirect=True)
async def test_a_warm_process_killed_mid_turn_fails_its_request_and_is_replaced(
    warm: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    (ahead,) = processes
    model_api.script(SILENT)
    run = asyncio.create_task(collect(warm.serve(chat("Hi."))))
    await until(lambda: bool(model_api.answering()), READY_WITHIN)
    assert ahead.proc is not None
    os.killpg(ahead.proc.pid, signal.SIGKILL)
    with pytest.raises(BackendError):
        await run
    assert not alive([ahead])
    await ready(warm)
    events = await collect(warm.serve(chat("Say hello.")))
    assert text(events) == ANSWER


@pytest.mark.parametrize("warm", NAMES, indirect=True)
async def test_cancelling_a_warm_request_stops_its_process_within_two_seconds(
    warm: CliBackend, model_api: ModelApi, processes: list[CliProcess]
) -> None:
    (ahead,) = processes
    model_api.script(SILENT)
    run = asyncio.create_task(collect(warm.serve(chat("Hi."))))
    await until(lambda: bool(model_api.answering()), READY_WITHIN)
    loop = asyncio.get_running_loop()
    started = loop.time()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert loop.time() - started < 2.0
    assert not alive([ahead])


@pytest.mark.parametrize("name", NAMES)
async def test_closing_the_backend_stops_every_process_it_started(
    name: str, model_api: ModelApi, tmp_path: Path, processes: list[CliProcess]
) -> None:
    backend = create(name, settings=real_clis.settings(name, model_api, tmp_path / "home"))
    assert isinstance(backend, CliBackend)
    await backend.start()
    await ready(backend)
    await collect(backend.serve(chat("Say hello.")))
    await until(lambda: len(processes) == 2, READY_WITHIN)
    await backend.close()
    assert not alive(processes)


AGENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from mcp_local_provider.agent.backends import create
    from mcp_local_provider.core.config import BackendSettings

    async def main():
        backend = create(sys.argv[1], settings=BackendSettings.model_validate_json(sys.argv[2]))
        await backend.start()
        while (backend.pool_status() or {}).get("ready") != 1:
            await asyncio.sleep(0.02)
        print(json.dumps([p.proc.pid for ps in backend._pool._ready.values() for p in ps]))
        sys.stdout.flush()
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("name", NAMES)
async def test_a_killed_agent_leaves_no_process_behind(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    settings = real_clis.settings(name, model_api, tmp_path / "home")
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT, name, settings.model_dump_json(),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert agent.stdout is not None
    async with asyncio.timeout(READY_WITHIN):
        (group,) = json.loads(await agent.stdout.readline())
    assert group_alive(group)
    agent.kill()
    await agent.wait()
    # Its input gone, the CLI exits: no orphan keeps running.
    await until(lambda: not group_alive(group), 10)


#: The backends whose process started ahead can also take the editor's tools (Claude Code: the
#: server is given to the running process; Codex: it is the thread's own; Gemini CLI: the
#: session's own).
WITH_TOOLS = {"claude": "mcp__editor__", "codex": "mcp__editor.", "gemini": "mcp_editor_"}


def tool(name: str) -> dict[str, object]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {
        "type": "function",
        "function": {"name": name, "description": name, "parameters": schema},
    }


@pytest.mark.parametrize("warm", list(WITH_TOOLS), indirect=True)
async def test_a_request_with_tools_takes_a_process_started_ahead_and_sees_only_its_tools(
    warm: CliBackend, model_api: ModelApi
) -> None:
    prefix = WITH_TOOLS[warm.name]
    model_api.script(
        Reply(tool_call=(prefix + "get_weather", {"city": "Tokyo"})),
        Reply(tool_call=(prefix + "get_weather", {"city": "Tokyo"})),
        Reply(tool_call=(prefix + "get_time", {"city": "Oslo"})),
    )
    pool = warm._pool
    assert pool is not None
    for _ in range(2):  # the first may start the process the later ones take
        events = await collect(warm.serve(chat("Weather?", tools=[tool("get_weather")])))
        assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
        # Claude Code: one process per command line (the system text names the tools).
        await ready(warm, 2 if warm.name == "claude" else 1)
    taken = pool.taken
    assert taken >= 1
    events = await collect(warm.serve(chat("Time?", tools=[tool("get_time")])))
    calls = [e for e in events if not isinstance(e, TextDelta | Finish)]
    assert [getattr(c, "name", None) for c in calls] == ["get_time"]
    assert pool.taken == taken + 1
    # The last model call offered this request's tool, and nothing of the earlier requests'.
    names = model_api.answering()[-1].tool_names()
    assert prefix + "get_time" in names and prefix + "get_weather" not in names


@pytest.mark.parametrize("name", NAMES)
async def test_check_shows_the_warm_processes(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    backend = create(name, settings=real_clis.settings(name, model_api, tmp_path / "home"))
    lines: list[str] = []
    try:
        assert await check(backend, lines.append), lines
    finally:
        await backend.close()
    assert any(line.startswith("  ok    warm processes: 1 ready, 0 starting") for line in lines)


@pytest.mark.parametrize("warm", ["claude"], indirect=True)
async def test_the_daemons_status_view_shows_the_warm_pool_of_a_real_cli_agent(
    warm: CliBackend, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await daemon.start_agent(warm, status_interval=0.02)
    [session] = list(daemon.state.registry)
    await until(lambda: session.warm == {"ready": 1, "starting": 0, "busy": 0}, READY_WITHIN)
    async with http.post(
        daemon.url + "/v1/chat/completions",
        json={"model": warm.models()[0].name, "messages": [{"role": "user", "content": "hi"}]},
    ) as response:
        assert response.status == 200, await response.text()
    # The request took the ready process; its successor starts and becomes ready in turn.
    assert warm._pool is not None and warm._pool.taken == 1
    await until(lambda: session.warm == {"ready": 1, "starting": 0, "busy": 0}, READY_WITHIN)
    async with http.get(daemon.url + "/control/sessions", headers=daemon.auth) as response:
        [listed] = (await response.json())["sessions"]
    assert listed["warm"] == {"ready": 1, "starting": 0, "busy": 0}
