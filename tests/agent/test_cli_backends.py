"""The agent-CLI backends against fake CLIs replaying tests/fixtures (see tests/fake_cli.py)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import BackendError, Finish, InvokeRequest, ReasoningDelta, TextDelta
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.backends.gemini import GeminiParser
from tests.clis import ANSWER, FIXTURES, FakeCli, chat, collect, group_alive
from tests.fakes import until

CLIS = ["claude", "cursor", "gemini", "codex"]
# Backends whose happy path streams token deltas and reports usage.
TOKEN_LEVEL = ["claude", "gemini", "codex"]


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def prompt_sent(fake: FakeCli) -> str:
    """What the last run received as its prompt (stdin, or codex's turn/start input)."""
    run = fake.last()
    if run["name"] == "codex":
        turn = next(c for c in run["calls"] if c.get("method") == "turn/start")
        return str(turn["params"]["input"][0]["text"])
    return str(run["stdin"])


@pytest.mark.parametrize("name", TOKEN_LEVEL)
async def test_happy_path_streams_token_deltas_and_reported_usage(
    fake_cli: FakeCli, name: str
) -> None:
    events = await collect(fake_cli.backend(name).serve(chat()))
    assert texts(events) == ["Hello", " there!", " How", " are", " you", " today?"]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert finish.usage is not None and finish.usage["completion_tokens"] == 9
    assert "estimated" not in finish.usage


async def test_cursor_streams_each_message_and_estimates_usage(fake_cli: FakeCli) -> None:
    events = await collect(fake_cli.backend("cursor").serve(chat()))
    assert "".join(texts(events)) == ANSWER
    assert len(texts(events)) == 6
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.usage is not None
    assert finish.usage["estimated"] is True
    assert finish.usage["completion_tokens"] == 8  # 31 characters / 4, rounded up


@pytest.mark.parametrize("name", CLIS)
async def test_message_level_output_is_one_delta(fake_cli: FakeCli, name: str) -> None:
    events = await collect(fake_cli.backend(name, "message_only").serve(chat()))
    assert texts(events) == [ANSWER]
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"


@pytest.mark.parametrize("name", ["claude", "codex"])
async def test_reasoning_is_sent_as_reasoning_deltas(fake_cli: FakeCli, name: str) -> None:
    events = await collect(fake_cli.backend(name).serve(chat()))
    assert [e.text for e in events if isinstance(e, ReasoningDelta)] == ["Greeting the user."]


async def test_claude_retrying_a_failing_model_api_is_no_progress(
    fake_cli: FakeCli, caplog: pytest.LogCaptureFixture
) -> None:
    # Claude Code prints a retry event every 0.3 s here (the recording, replayed faster, then
    # silence): the idle timeout fires after the last progress, and says why.
    backend = fake_cli.backend("claude", "api_retry", delay=0.3, idle_timeout=0.8, hang=True)
    with pytest.raises(BackendError) as raised:
        await collect(backend.serve(chat()))
    assert raised.value.code == "timeout"
    assert re.fullmatch(
        r"claude made no progress for 0\.8 s: its model API failed \(500\); "
        r"retry \d of 10 was pending",
        raised.value.message,
    )
    assert any("cli_model_retry" in r.getMessage() for r in caplog.records)


def test_gemini_usage_is_the_answering_calls_not_the_routing_calls(fake_cli: FakeCli) -> None:
    parser = GeminiParser()
    lines = (FIXTURES / "gemini" / "happy.ndjson").read_text().splitlines()
    events = [e for line in lines for e in parser.feed(json.loads(line))]
    stats = json.loads(lines[-1])["stats"]
    assert len(stats["models"]) == 2 and stats["input_tokens"] == 35  # routing + answer
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.usage == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def test_gemini_usage_that_includes_the_routing_call_says_so() -> None:
    parser = GeminiParser()
    parser.feed({"type": "init", "model": "auto"})
    stats = {"input_tokens": 35, "output_tokens": 14, "models": {"gemini-x": {}}}
    events = parser.feed({"type": "result", "status": "success", "stats": stats})
    assert events == [
        Finish(
            "stop",
            {
                "prompt_tokens": 35,
                "completion_tokens": 14,
                "total_tokens": 49,
                "includes_overhead": True,
            },
        )
    ]


def test_gemini_usage_with_a_chosen_model_is_all_the_answers() -> None:
    parser = GeminiParser()
    parser.feed({"type": "init", "model": "gemini-2.5-flash"})
    stats = {"input_tokens": 12, "output_tokens": 9, "models": {"gemini-2.5-flash": {}}}
    events = parser.feed({"type": "result", "status": "success", "stats": stats})
    assert events == [
        Finish("stop", {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21})
    ]


ERRORS = {  # the start of each error, as recorded against a model API answering 500
    "claude": "claude reported an error: API Error: 500 mock failure.",
    "cursor": "cursor-agent reported an error: You have reached your usage limit",
    "gemini": 'gemini reported an error: [API Error: {"type":"error","error":{"type":"api_error"',
    "codex": "codex reported an error: We\u2019re currently experiencing high demand",
}


@pytest.mark.parametrize("name", CLIS)
async def test_an_error_result_is_a_backend_error(fake_cli: FakeCli, name: str) -> None:
    exit_code = 1 if name in ("gemini", "cursor") else 0
    with pytest.raises(BackendError) as raised:
        events = fake_cli.backend(name, "error_result", exit=exit_code).serve(chat())
        async for event in events:
            assert not isinstance(event, TextDelta), "the error reached the editor as text"
    assert raised.value.message.startswith(ERRORS[name])


@pytest.mark.parametrize("name", CLIS)
async def test_a_non_zero_exit_without_a_result_surfaces_stderr(
    fake_cli: FakeCli, name: str
) -> None:
    backend = fake_cli.backend(name, "no_result", exit=2, stderr="Error: you are not logged in")
    with pytest.raises(BackendError) as raised:
        await collect(backend.serve(chat()))
    assert "exited with code 2" in raised.value.message
    assert raised.value.message.endswith("Error: you are not logged in")


MALFORMED = {"claude": 3, "cursor": 2, "gemini": 2, "codex": 2}


@pytest.mark.parametrize("name", CLIS)
async def test_malformed_lines_are_skipped_and_counted(fake_cli: FakeCli, name: str) -> None:
    backend = fake_cli.backend(name, "malformed")
    events = await collect(backend.serve(chat()))
    assert "".join(texts(events)) == ANSWER
    assert backend.malformed_lines == MALFORMED[name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", CLIS)
async def test_a_slow_run_cancelled_midway_leaves_no_process_behind(
    fake_cli: FakeCli, name: str
) -> None:
    backend = fake_cli.backend(name, delay=0.1, child=True)
    first = asyncio.Event()

    async def consume() -> None:
        async for event in backend.serve(chat()):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 2
    run = fake_cli.last()
    await until(lambda: not group_alive(run["pgid"]), timeout=1)
    if name == "codex":
        assert fake_cli.last().get("interrupted") is True  # asked to stop before any signal


@pytest.mark.parametrize("name", CLIS)
async def test_a_cli_ignoring_sigint_is_killed_within_two_seconds(
    fake_cli: FakeCli, name: str
) -> None:
    backend = fake_cli.backend(name, delay=0.1, child=True, ignore_sigint=True, cancel_grace=1.0)
    task = asyncio.create_task(collect(backend.serve(chat())))
    await until(lambda: bool(list(fake_cli.records.glob("*.json"))))
    await asyncio.sleep(0.2)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 2
    await until(lambda: not group_alive(fake_cli.last()["pgid"]), timeout=1)


@pytest.mark.parametrize("name", CLIS)
async def test_the_prompt_goes_on_stdin_never_in_argv(fake_cli: FakeCli, name: str) -> None:
    words = "please keep this prompt out of ps " * 50
    await collect(fake_cli.backend(name).serve(chat(words)))
    run = fake_cli.last()
    assert prompt_sent(fake_cli) == words
    assert all("keep this prompt" not in arg for arg in run["argv"])
    assert run["stdin_isatty"] is False and run["stdout_isatty"] is False
    assert run["pgid"] == run["pid"]
    assert run["env"]["NO_COLOR"] == "1"


async def test_the_daemons_settings_and_token_are_kept_from_the_cli(
    fake_cli: FakeCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_LOCAL_PROVIDER_BRIDGE_TOKEN", "secret-bridge-token")
    await collect(fake_cli.backend("claude", env={"EXTRA": "1"}).serve(chat()))
    env = fake_cli.last()["env"]
    assert "MCP_LOCAL_PROVIDER_BRIDGE_TOKEN" not in env
    assert env["NO_COLOR"] == "1" and env["TERM"] == "dumb"


@pytest.mark.parametrize("name", CLIS)
async def test_a_stop_sequence_ends_the_answer_and_the_cli_early(
    fake_cli: FakeCli, name: str
) -> None:
    backend = fake_cli.backend(name, delay=0.1)
    began = time.monotonic()
    events = await collect(backend.serve(chat(stop=["How"])))
    assert "".join(texts(events)) == "Hello there! "
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert finish.usage is not None and finish.usage["estimated"] is True
    await until(lambda: not group_alive(fake_cli.last()["pgid"]), timeout=2)
    assert time.monotonic() - began < 0.1 * 20


@pytest.mark.parametrize("name", CLIS)
async def test_max_tokens_caps_the_answer_with_length(fake_cli: FakeCli, name: str) -> None:
    events = await collect(fake_cli.backend(name).serve(chat(max_tokens=3)))
    assert "".join(texts(events)) == ANSWER[:12]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "length"
    assert finish.usage is not None and finish.usage["completion_tokens"] == 3


async def test_claude_runs_headless_one_turn_without_tools_and_takes_the_system_prompt(
    fake_cli: FakeCli,
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    await collect(fake_cli.backend("claude").serve(chat(messages=messages)))
    argv = fake_cli.last()["argv"]
    assert argv[:10] == [
        "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
        "--tools", "", "--max-turns", "1", "--system-prompt",
    ]  # fmt: skip
    assert argv[10] == "Be brief."
    assert fake_cli.last()["stdin"] == "Hi"


async def test_a_huge_system_prompt_goes_on_stdin_instead(fake_cli: FakeCli) -> None:
    system = "rule " * 20000
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]
    await collect(fake_cli.backend("claude").serve(chat(messages=messages)))
    assert "--system-prompt" not in fake_cli.last()["argv"]
    assert fake_cli.last()["stdin"].endswith("</instructions>\n\nHi")


@pytest.mark.parametrize("name", ["cursor", "gemini"])
async def test_clis_without_a_system_option_get_it_in_the_prompt(
    fake_cli: FakeCli, name: str
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    await collect(fake_cli.backend(name).serve(chat(messages=messages)))
    assert fake_cli.last()["stdin"] == "<instructions>\nBe brief.\n</instructions>\n\nHi"


async def test_cursor_runs_read_only_and_its_binary_name_is_configurable(fake_cli: FakeCli) -> None:
    await collect(fake_cli.backend("cursor", binary="agent").serve(chat()))
    run = fake_cli.last()
    assert run["name"] == "agent"
    assert run["argv"] == ["-p", "--output-format", "stream-json", "--mode", "ask"]


async def test_cursor_repeated_and_accumulated_messages_are_reconciled(fake_cli: FakeCli) -> None:
    events = await collect(fake_cli.backend("cursor", "partial").serve(chat()))
    assert texts(events) == ["Hello", " there!", " How are", " you today?"]


async def test_gemini_headless_argv_keeps_the_prompt_off_the_command_line(
    fake_cli: FakeCli,
) -> None:
    await collect(fake_cli.backend("gemini").serve(chat()))
    argv = fake_cli.last()["argv"]
    assert argv[:3] + argv[4:] == ["-o", "stream-json", "--policy", "-p", ""]


async def test_gemini_exit_53_is_the_turn_limit_and_ends_with_length(fake_cli: FakeCli) -> None:
    events = await collect(fake_cli.backend("gemini", "turn_limit", exit=53).serve(chat()))
    assert texts(events) == ["Hello"]
    assert isinstance(events[-1], Finish) and events[-1].reason == "length"


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [(130, "cancelled", "interrupted"), (41, "backend_unavailable", "not signed in")],
)
async def test_gemini_exit_codes_are_mapped(
    fake_cli: FakeCli, code: int, kind: str, text: str
) -> None:
    with pytest.raises(BackendError) as raised:
        await collect(fake_cli.backend("gemini", "no_result", exit=code).serve(chat()))
    assert raised.value.code == kind
    assert text in raised.value.message


async def test_codex_starts_a_read_only_ephemeral_thread_that_never_asks(fake_cli: FakeCli) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    await collect(fake_cli.backend("codex").serve(chat(messages=messages)))
    run = fake_cli.last()
    assert run["argv"][0] == "app-server"
    methods = [c.get("method") for c in run["calls"]]
    assert methods[:4] == ["initialize", "initialized", "thread/start", "turn/start"]
    thread = run["calls"][2]["params"]
    assert thread["sandbox"] == "read-only" and thread["approvalPolicy"] == "never"
    assert thread["ephemeral"] is True and thread["cwd"] == run["cwd"]
    assert thread["developerInstructions"] == "Be brief."


async def test_a_codex_rpc_error_is_a_backend_error(fake_cli: FakeCli) -> None:
    backend = fake_cli.backend("codex", env={"FAKE_CODEX_FAIL": "thread/start"})
    with pytest.raises(BackendError, match="codex thread/start failed: thread/start refused"):
        await collect(backend.serve(chat()))


@pytest.mark.parametrize("name", CLIS)
async def test_extra_args_and_the_chosen_model_are_passed(fake_cli: FakeCli, name: str) -> None:
    backend = fake_cli.backend(name, args=("--extra", "1"), models=["fast-model"])
    assert [m.name for m in backend.models()] == ["fast-model"]
    await collect(backend.serve(chat(model="fast-model")))
    run = fake_cli.last()
    if name == "codex":
        assert run["calls"][2]["params"]["model"] == "fast-model"
        assert run["argv"][0] == "app-server" and run["argv"][-2:] == ["--extra", "1"]
    else:
        flag = "-m" if name == "gemini" else "--model"
        assert run["argv"][run["argv"].index(flag) + 1] == "fast-model"
        assert "--extra" in run["argv"]


async def test_without_chosen_models_the_cli_picks_its_own(fake_cli: FakeCli) -> None:
    backend = fake_cli.backend("claude")
    assert [m.name for m in backend.models()] == ["claude-code"]
    await collect(backend.serve(chat(model="claude-code")))
    assert "--model" not in fake_cli.last()["argv"]


async def test_a_configured_workdir_is_the_clis_working_directory(
    fake_cli: FakeCli, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    backend = fake_cli.backend("claude", workdir=workdir)
    await backend.start()
    await collect(backend.serve(chat()))
    assert fake_cli.last()["cwd"] == str(workdir)


async def test_embeddings_are_refused_clearly(fake_cli: FakeCli) -> None:
    request = InvokeRequest(id="r", kind="embedding", model="m", input=["x"])
    with pytest.raises(BackendError, match="chat and completions only") as raised:
        await collect(fake_cli.backend("claude").serve(request))
    assert raised.value.code == "unsupported"


async def test_a_completion_is_served_as_a_continue_instruction(fake_cli: FakeCli) -> None:
    request = InvokeRequest(id="r", kind="completion", model="m", prompt="def add(a, b):")
    events = await collect(fake_cli.backend("claude").serve(request))
    assert "".join(texts(events)) == ANSWER
    assert "--system-prompt" in fake_cli.last()["argv"]
    assert fake_cli.last()["stdin"] == "def add(a, b):"


async def test_a_missing_cli_fails_at_start() -> None:
    backend = create("claude", settings=None)
    backend.binary = "definitely-not-installed-cli"  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="not found on PATH"):
        await backend.start()


async def test_claude_allowed_tools_are_switched_on_and_approved(fake_cli: FakeCli) -> None:
    await collect(fake_cli.backend("claude", agent_tools=("Read", "Grep")).serve(chat()))
    argv = fake_cli.last()["argv"]
    assert argv[argv.index("--tools") + 1] == "Read,Grep"
    assert argv[argv.index("--allowedTools") + 1] == "Read,Grep"
    assert "--max-turns" not in argv


async def test_codex_switches_its_own_tools_off_on_its_command_line(fake_cli: FakeCli) -> None:
    await collect(fake_cli.backend("codex").serve(chat()))
    assert fake_cli.last()["argv"] == [
        "app-server",
        "-c", "features.shell_tool=false",
        "-c", 'web_search="disabled"',
        "-c", "features.multi_agent=false",
        "-c", "features.goals=false",
    ]  # fmt: skip


async def test_codex_allowed_tool_groups_stay_on(fake_cli: FakeCli) -> None:
    await collect(fake_cli.backend("codex", agent_tools=("shell", "goals")).serve(chat()))
    argv = fake_cli.last()["argv"]
    assert "features.shell_tool=false" not in argv and "features.goals=false" not in argv
    assert 'web_search="disabled"' in argv


@pytest.mark.parametrize(("name", "tools"), [("codex", ("exec_command",)), ("cursor", ("Read",))])
async def test_own_tools_a_cli_cannot_allow_are_refused_at_start(
    fake_cli: FakeCli, name: str, tools: tuple[str, ...]
) -> None:
    with pytest.raises(BackendError) as raised:
        await fake_cli.backend(name, agent_tools=tools).start()
    assert raised.value.code == "backend_unavailable"


async def test_gemini_policy_denies_every_tool_but_the_allowed_ones(fake_cli: FakeCli) -> None:
    backend = fake_cli.backend("gemini", agent_tools=("read_file",))
    await collect(backend.serve(chat()))
    argv = fake_cli.last()["argv"]
    policy = Path(argv[argv.index("--policy") + 1])
    assert policy_rules(policy) == [
        {"toolName": "*", "decision": "deny", "priority": 900},
        {"toolName": "read_file", "decision": "allow", "priority": 901},
    ]
    await backend.close()
    assert policy_rules(policy) is None  # removed with the backend


def policy_rules(path: Path) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    rules: list[dict[str, Any]] = tomllib.loads(path.read_text())["rule"]
    return rules
