"""The backends driving the real agent CLIs (installed from npm into tests/agent_clis) against
the mock model API: the answer, streaming, cancellation, failures, and what the CLIs offer
their model. Skipped with the reason when node or npm is missing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import Backend, BackendError, BackendEvent, Finish, TextDelta
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.process import CliProcess
from tests import real_clis
from tests.clis import chat, collect, group_alive
from tests.conftest import StartDaemon
from tests.fakes import until
from tests.model_api import FAIL, SILENT, ModelApi, Reply, Seen, model_api

pytestmark = pytest.mark.usefixtures("agent_clis")

NAMES = real_clis.NAMES
ANSWER = "Hello there! How are you today?"
#: Tools Codex offers its model that no switch removes: a question to the user (which the
#: backend declines) and reading an image inside the read-only sandbox.
CODEX_UNSWITCHABLE = ["request_user_input", "view_image"]


def backend(name: str, api: ModelApi, root: Path, **fields: Any) -> Backend:
    return create(name, settings=real_clis.settings(name, api, root / "home", **fields))


@dataclass
class Answered:
    """One request answered by a real CLI: what the backend yielded, what the model saw."""

    events: list[BackendEvent]
    seen: list[Seen]


@pytest.fixture(scope="module")
def answered(agent_clis: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Answered]:
    """Each real CLI answers one request, all at once (each start costs seconds)."""

    async def answer(name: str) -> Answered:
        async with model_api() as api:
            home = tmp_path_factory.mktemp(name)
            events = await collect(backend(name, api, home).serve(chat("Say hello.")))
            return Answered(events, api.seen)

    async def answer_all() -> list[Answered]:
        return await asyncio.gather(*(answer(name) for name in NAMES))

    return dict(zip(NAMES, asyncio.run(answer_all()), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_the_real_cli_answers_through_its_backend(name: str, answered: dict[str, Answered]) -> None:
    events = answered[name].events
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == ANSWER
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    # The mock reports 12 prompt and 9 completion tokens for the answer.
    assert finish.usage == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def test_gemini_answers_in_its_fresh_untrusted_scratch_folder(
    answered: dict[str, Answered],
) -> None:
    # Gemini CLI 0.61 exits 55 in a folder it does not trust, and every run's folder is new.
    assert isinstance(answered["gemini"].events[-1], Finish)
    assert [s.api for s in answered["gemini"].seen] == ["gemini-router", "gemini"]


@pytest.mark.parametrize("name", NAMES)
def test_the_model_is_offered_none_of_the_clis_own_tools(
    name: str, answered: dict[str, Answered]
) -> None:
    (asked,) = [s for s in answered[name].seen if s.api in ("anthropic", "responses", "gemini")]
    expected = CODEX_UNSWITCHABLE if name == "codex" else []
    assert asked.tool_names() == expected


ALLOWED = {"claude": ("Read",), "gemini": ("read_file",), "codex": ("web_search",)}
#: Offered beside allowed tools: Claude Code adds a placeholder once any tool is on.
BESIDE = {"claude": {"DeferredToolPlaceholder"}, "gemini": set(), "codex": set(CODEX_UNSWITCHABLE)}


@pytest.mark.parametrize("name", NAMES)
async def test_tools_allowed_in_the_settings_are_offered(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    agent = backend(name, model_api, tmp_path, agent_tools=ALLOWED[name])
    await collect(agent.serve(chat("Say hello.")))
    (asked,) = model_api.answering()
    assert set(asked.tool_names()) - BESIDE[name] == set(ALLOWED[name])


@pytest.mark.parametrize("name", NAMES)
async def test_each_piece_reaches_the_backend_as_the_model_sends_it(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    pieces = ("one ", "two ", "three ", "four")
    model_api.default = Reply(pieces, delay=0.5)
    arrived: list[float] = []
    async for event in backend(name, model_api, tmp_path).serve(chat("Count.")):
        if isinstance(event, TextDelta):
            arrived.append(time.monotonic())
            assert event.text == pieces[len(arrived) - 1]
    (asked,) = model_api.answering()
    assert len(arrived) == len(pieces)
    # Each piece reaches the backend before the model sends the next one: nothing is buffered.
    assert all(got < sent for got, sent in zip(arrived, asked.sent[1:], strict=False)), (
        arrived,
        asked.sent,
    )


@pytest.mark.parametrize("name", NAMES)
async def test_cancelling_a_waiting_request_leaves_no_process(
    name: str, model_api: ModelApi, tmp_path: Path, processes: list[CliProcess]
) -> None:
    model_api.default = SILENT
    run = asyncio.create_task(collect(backend(name, model_api, tmp_path).serve(chat("Hi."))))
    await until(lambda: bool(model_api.answering()), timeout=30)
    (proc,) = processes
    assert proc.proc is not None
    group = proc.proc.pid
    assert group_alive(group)
    started = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert time.monotonic() - started < 2.5
    assert group_alive(group) == []


@pytest.mark.parametrize("name", NAMES)
async def test_a_failing_model_api_is_a_backend_error(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = FAIL
    with pytest.raises(BackendError) as raised:
        await collect(backend(name, model_api, tmp_path).serve(chat("Hi.")))
    assert raised.value.code == "backend_error"
    assert "reported an error" in raised.value.message


async def test_claude_retrying_a_failing_model_api_gives_up_at_the_idle_timeout(
    model_api: ModelApi, tmp_path: Path
) -> None:
    # Claude Code retries a 500 ten times over more than two minutes, printing an event before
    # each retry; those are not progress.
    model_api.default = FAIL
    agent = backend("claude", model_api, tmp_path, retries=True, idle_timeout=3, timeout=60)
    started = time.monotonic()
    with pytest.raises(BackendError) as raised:
        await collect(agent.serve(chat("Hi.")))
    assert raised.value.code == "timeout"
    assert "its model API failed (500)" in raised.value.message
    assert len(model_api.answering()) >= 2  # it did retry
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("name", NAMES)
async def test_an_editor_streams_an_answer_from_the_real_cli_through_the_daemon(
    name: str, model_api: ModelApi, tmp_path: Path, start_daemon: StartDaemon, openai_client: Any
) -> None:
    # A CLI's start takes seconds, more on a busy machine.
    daemon = await start_daemon(first_chunk_timeout=30, idle_timeout=30, total_timeout=60)
    model_api.default = Reply(("Hello", " from", " the", " model"), delay=0.2)
    agent = backend(name, model_api, tmp_path)
    await daemon.start_agent(agent)
    model = agent.models()[0].name
    stream = await openai_client(daemon).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], stream=True
    )
    pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert [p for p in pieces if p] == ["Hello", " from", " the", " model"]
    await agent.close()


def test_the_lockfile_names_no_registry_host() -> None:
    lock = (real_clis.FOLDER / "package-lock.json").read_text()
    assert '"resolved"' not in lock
    assert "omit-lockfile-registry-resolved=true" in (real_clis.FOLDER / ".npmrc").read_text()
