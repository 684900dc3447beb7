"""Continue's CLI (``cn -p``, npm ``@continuedev/cli``, installed into tests/agent_clis) as the
editor, against a real daemon: a chat with the echo agent, and with each CLI backend (the real
Claude Code, Codex and Gemini CLI against the mock model API) a chat and a tool round trip: the
model calls Continue's own Read tool, Continue runs it, and the result reaches the next model
request and the answer cn's output.
Skipped with the reason when node or npm is missing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_local_provider.agent import Backend
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.agent.events import BackendEvent, InvokeRequest
from tests import real_clis
from tests.conftest import StartDaemon
from tests.fakes import Daemon
from tests.model_api import ModelApi, Reply

pytestmark = pytest.mark.usefixtures("agent_clis")

CN = real_clis.BIN / "cn"
#: How long one ``cn -p`` run may take (it starts Node and, behind the daemon, another CLI).
RUN_TIMEOUT = 120.0


@dataclass
class Run:
    code: int
    out: str
    err: str


async def cn(daemon: Daemon, model: str, prompt: str, root: Path, *, provider: str) -> Run:
    """Run ``cn -p prompt`` with a config whose one model is ``model`` at the daemon, through
    Continue's ``ollama`` or ``openai`` provider, in ``root/work`` with ``root/home`` as HOME."""
    home, work = root / "home", root / "work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    base = daemon.url if provider == "ollama" else daemon.url + "/v1"
    config = root / "config.yaml"
    config.write_text(
        "name: local\nversion: 0.0.1\nschema: v1\nmodels:\n"
        f"  - name: local\n    provider: {provider}\n    model: {model}\n"
        f"    apiBase: {base}\n    apiKey: noop\n    roles: [chat]\n"
    )
    env = real_clis.continue_environment(home)
    process = await asyncio.create_subprocess_exec(
        str(CN),
        "--config",
        str(config),
        "-p",
        prompt,
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        message = f"cn -p did not finish in {RUN_TIMEOUT} s:\n{out!r}\n{err!r}"
        raise AssertionError(message) from None
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


class Recording(EchoBackend):
    """The echo agent, keeping the requests it served."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[InvokeRequest] = []

    def serve(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        self.requests.append(request)
        return super().serve(request)


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_continue_cli_completes_a_chat_with_the_echo_agent(
    daemon: Daemon, tmp_path: Path, provider: str
) -> None:
    agent = Recording()
    await daemon.start_agent(agent)
    run = await cn(daemon, "echo", "hello from continue", tmp_path, provider=provider)
    assert run.code == 0, run.err
    assert run.out.strip() == "hello from continue"
    (request,) = agent.requests
    assert request.messages[-1]["content"] == "hello from continue"
    assert "Continue CLI" in request.messages[0]["content"]  # Continue's own system prompt


#: The name the CLI's model sees Continue's tools by (they reach it through the backend's MCP
#: server, named "editor").
PREFIX = {"claude": "mcp__editor__", "codex": "mcp__editor.", "gemini": "mcp_editor_"}


def cli(name: str, api: ModelApi, root: Path) -> Backend:
    return create(name, settings=real_clis.settings(name, api, root / f"{name}-home"))


@pytest.mark.parametrize("name", list(PREFIX))
async def test_continue_cli_completes_a_chat_through_a_cli_backend(
    name: str, start_daemon: StartDaemon, model_api: ModelApi, tmp_path: Path
) -> None:
    daemon = await start_daemon(first_chunk_timeout=60, idle_timeout=60, total_timeout=120)
    model_api.default = Reply.text("Paris is the capital of France.")
    agent = cli(name, model_api, tmp_path)
    await daemon.start_agent(agent)
    model = agent.models()[0].name
    run = await cn(daemon, model, "What is the capital of France?", tmp_path, provider="ollama")
    assert run.code == 0, run.err
    assert run.out.strip() == "Paris is the capital of France."
    (seen,) = model_api.answering()
    assert "What is the capital of France?" in json.dumps(seen.body)
    await agent.close()


@pytest.mark.parametrize("name", list(PREFIX))
async def test_continue_cli_runs_the_tool_the_backends_model_calls_and_it_uses_the_result(
    name: str, start_daemon: StartDaemon, model_api: ModelApi, tmp_path: Path
) -> None:
    daemon = await start_daemon(first_chunk_timeout=60, idle_timeout=60, total_timeout=120)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("The launch code is ambergris-42.\n")
    model_api.script(
        Reply(tool_call=(PREFIX[name] + "Read", {"filepath": "notes.txt"})),
        Reply.text("The note says the launch code is ambergris-42."),
    )
    agent = cli(name, model_api, tmp_path)
    await daemon.start_agent(agent)
    model = agent.models()[0].name
    run = await cn(daemon, model, "What does notes.txt say?", tmp_path, provider="ollama")
    assert run.code == 0, run.err
    assert run.out.strip().endswith("The note says the launch code is ambergris-42.")
    first, second = model_api.answering()
    assert PREFIX[name] + "Read" in first.tool_names()
    assert "ambergris-42" not in json.dumps(first.body)
    # Continue ran its Read tool (its own wording around the file's text) and sent the result.
    assert "Content of notes.txt:\\nThe launch code is ambergris-42." in json.dumps(second.body)
    await agent.close()
