"""The real Claude Code and Codex CLIs, headless, using the daemon as their model server: a turn,
and a tool round trip (the agent calls the CLI's own tool, the CLI runs it and sends the result
back). Skipped when node or npm is missing; installs the pinned CLIs from the committed lockfile
in tests/agent_clis with ``npm ci`` the first time. Neither needs a login."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import real_clis
from tests.backends import ToolRoundTrip
from tests.fakes import Daemon

SECRET = "sunflower-42"


@pytest.fixture(scope="module")
def coding_clients() -> Path:
    """The folder of the installed CLIs' commands (tests/agent_clis, shared with the tests that
    run them as agents)."""
    problem = real_clis.install()
    if problem is not None:
        pytest.skip(problem)
    return real_clis.BIN


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello.txt").write_text(SECRET + "\n")
    (tmp_path / "home").mkdir()
    return work


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what the CLI needs: no settings, keys or logins of the person running the tests."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8", **extra}


async def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


# -- Claude Code -----------------------------------------------------------------------------


async def claude(bin_dir: Path, daemon: Daemon, workdir: Path, *args: str) -> list[Any]:
    env = clean_env(
        workdir.parent / "home",
        ANTHROPIC_BASE_URL=daemon.url,
        ANTHROPIC_API_KEY="local",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
    )
    argv = [str(bin_dir / "claude"), "-p", *args, "--output-format", "stream-json", "--verbose"]
    code, out, err = await run(argv, workdir, env)
    assert code == 0, f"claude failed ({code}):\n{out[-3000:]}\n{err[-3000:]}"
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_claude_code_completes_a_turn(
    echo_daemon: Daemon, coding_clients: Path, workdir: Path
) -> None:
    lines = await claude(coding_clients, echo_daemon, workdir, "say hi", "--model", "echo")
    result = lines[-1]
    assert result["type"] == "result" and result["subtype"] == "success", result
    assert result["result"].endswith("say hi")  # the echo agent repeats the prompt


async def test_claude_code_runs_a_tool_the_agent_calls(
    daemon: Daemon, coding_clients: Path, workdir: Path
) -> None:
    path = workdir / "hello.txt"
    backend = ToolRoundTrip("Read", json.dumps({"file_path": str(path)}))
    await daemon.start_agent(backend)
    lines = await claude(
        coding_clients, daemon, workdir, "what is in hello.txt?", "--model", "roundtrip"
    )
    result = lines[-1]
    assert result["subtype"] == "success", result
    assert SECRET in result["result"]
    tool_message = next(m for m in backend.requests[-1].messages if m["role"] == "tool")
    assert tool_message["tool_call_id"] == "call_1"
    assert SECRET in json.dumps(tool_message["content"])


# -- Codex CLI -------------------------------------------------------------------------------


async def codex(bin_dir: Path, daemon: Daemon, workdir: Path, model: str, prompt: str) -> str:
    codex_home = workdir.parent / "codex-home"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "local"\n\n'
        "[model_providers.local]\n"
        'name = "mcp-local-provider"\n'
        f'base_url = "{daemon.url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "LOCAL_PROVIDER_API_KEY"\n'
    )
    env = clean_env(
        workdir.parent / "home", CODEX_HOME=str(codex_home), LOCAL_PROVIDER_API_KEY="local"
    )
    argv = [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", prompt]
    code, out, err = await run(argv, workdir, env)
    assert code == 0, f"codex failed ({code}):\n{out[-3000:]}\n{err[-3000:]}"
    return out


async def test_codex_completes_a_turn(
    echo_daemon: Daemon, coding_clients: Path, workdir: Path
) -> None:
    out = await codex(coding_clients, echo_daemon, workdir, "echo", "say hi")
    assert out.strip().endswith("say hi")


async def test_codex_runs_a_tool_the_agent_calls(
    daemon: Daemon, coding_clients: Path, workdir: Path
) -> None:
    backend = ToolRoundTrip("exec_command", json.dumps({"cmd": "cat hello.txt"}))
    await daemon.start_agent(backend)
    out = await codex(coding_clients, daemon, workdir, "roundtrip", "what is in hello.txt?")
    assert out.strip().startswith("The tool said:")
    assert SECRET in out  # Codex ran `cat hello.txt` and sent its output back
    tool_message = next(m for m in backend.requests[-1].messages if m["role"] == "tool")
    assert tool_message["tool_call_id"] == "call_1"


# -- the README's examples, as written, against the quick start's echo agent ------------------


def readme_blocks(section: str, language: str) -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, flags=re.S)


async def test_the_readme_claude_code_example_works_and_sets_the_context_window(
    echo_daemon: Daemon, coding_clients: Path, workdir: Path, http: aiohttp.ClientSession
) -> None:
    [block] = readme_blocks("Use it from Claude Code", "sh")
    exports = dict(re.findall(r"^export (\w+)=(\S+)", block, flags=re.M))
    [model] = re.findall(r"^claude --model (\S+)", block, flags=re.M)
    exports["ANTHROPIC_BASE_URL"] = echo_daemon.url  # the test daemon's port
    async with http.get(echo_daemon.url + f"/v1/models/{model}") as response:
        assert response.status == 200  # the quick start serves the example's model
        context_length = (await response.json())["context_length"]
    assert exports["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == str(context_length)
    env = clean_env(
        workdir.parent / "home",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        **exports,
    )
    argv = [str(coding_clients / "claude"), "-p", "say hi", "--model", model]
    code, out, err = await run([*argv, "--output-format", "stream-json", "--verbose"], workdir, env)
    assert code == 0, f"claude failed ({code}):\n{out[-3000:]}\n{err[-3000:]}"
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert result["subtype"] == "success" and not result["is_error"], result
    # Without the setting Claude Code takes 1,000,000 tokens for a model it does not know.
    assert result["modelUsage"][model]["contextWindow"] == context_length


async def test_the_readme_codex_example_works_outside_a_git_repository(
    echo_daemon: Daemon, coding_clients: Path, workdir: Path
) -> None:
    [config] = readme_blocks("Use it from Codex CLI", "toml")
    [command] = readme_blocks("Use it from Codex CLI", "sh")
    codex_home = workdir.parent / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        config.replace("http://127.0.0.1:11434", echo_daemon.url)
    )
    words = shlex.split(command)
    assert not (workdir / ".git").exists()
    env = clean_env(
        workdir.parent / "home",
        CODEX_HOME=str(codex_home),
        **dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-")),
    )
    argv = [w for w in words if not ("=" in w and not w.startswith("-"))]
    assert argv[0] == "codex"
    code, out, err = await run([str(coding_clients / "codex"), *argv[1:]], workdir, env)
    assert code == 0, f"codex failed ({code}):\n{out[-3000:]}\n{err[-3000:]}"
    assert out.strip().endswith(argv[-1])  # the echo agent repeats the prompt
