"""Gemini CLI in headless mode (``gemini -o stream-json``), the prompt on stdin.

Assistant messages marked ``delta`` are token deltas; the result event carries the status and
token stats. The exit code decides when there is no usable result: 53 (turn limit) ends with
``length``, 130 means it was interrupted, anything else non-zero is an error.

Gemini CLI runs headless only in a folder it trusts; the backend's folder is a fresh scratch
directory, so it is trusted for the run (``GEMINI_CLI_TRUST_WORKSPACE``). Its own tools are
switched off by a policy file that denies every tool but those in ``agent_tools``.

When the request carries tools, the run gets a scratch folder of its own whose project settings
(``.gemini/settings.json``) add the editor's MCP server (``agent/tools.py``), trusted so no call
needs approval (Gemini CLI refuses a system settings file under a world-writable folder such as
/tmp); the policy allows that server's tools and none of Gemini CLI's, and the model sees them
as ``mcp_editor_NAME``. Its calls (``tool_use`` events) are handed to the editor
when the first of them has run (``tool_result``), which ends the run.

With its default model (``auto``) it first asks a routing model which model should answer; the
stats of the result then list both. The usage reported is the answering model's (the last one
listed); when the routing and answering models are the same, the one entry includes the
routing call and the usage says so (``"includes_overhead": true``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import structlog

from mcp_local_provider.agent import quota
from mcp_local_provider.agent import tools as editor
from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.backends.acp import AcpClient, AcpParser
from mcp_local_provider.agent.backends.cli import (
    CliBackend,
    OutputParser,
    failure,
    stalled,
    usage_from,
)
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, ToolCallDelta
from mcp_local_provider.agent.process import CliProcess
from mcp_local_provider.agent.tools import EditorTools

EXIT_MEANINGS = {
    41: ("gemini is not signed in (exit 41); run `gemini` once to sign in", "backend_unavailable"),
    42: ("gemini rejected its input (exit 42)", "backend_error"),
    52: ("gemini's configuration is invalid (exit 52)", "backend_unavailable"),
    54: ("a gemini tool failed (exit 54)", "backend_error"),
    130: ("gemini was interrupted (exit 130)", "cancelled"),
}
EXIT_TURN_LIMIT = 53
#: The model name Gemini CLI reports when it routes each request itself.
ROUTED_MODEL = "auto"

log = structlog.get_logger("mcp_local_provider.agent.gemini")


def policy(allowed: tuple[str, ...], also: str | None = None) -> str:
    """A Gemini CLI policy (TOML) that denies every tool except ``allowed`` (and those matching
    ``also``, the editor's); a denied tool is not offered to the model at all."""
    rules = ['[[rule]]\ntoolName = "*"\ndecision = "deny"\npriority = 900\n']
    rules += [
        f'[[rule]]\ntoolName = "{name}"\ndecision = "allow"\npriority = 901\n' for name in allowed
    ]
    if also is not None:
        rules.append(f'[[rule]]\ntoolName = "{also}"\ndecision = "allow"\npriority = 902\n')
    header = "# Gemini CLI's own tools for mcp-local-provider: none but the allowed ones.\n"
    return header + "\n".join(rules)


#: How Gemini CLI names the editor's tools to its model.
TOOL_PREFIX = f"mcp_{editor.SERVER}_"


class GeminiParser(OutputParser):
    cli = "gemini"

    def __init__(self, tools: EditorTools | None = None) -> None:
        super().__init__()
        self.tools = tools
        self._calls: list[str] = []
        self.error: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None

    def feed(self, event: dict[str, Any]) -> list[BackendEvent]:
        kind = event.get("type")
        if kind == "init":
            self.model = str(event.get("model") or "") or None
        elif kind == "message" and event.get("role") == "assistant":
            content = str(event.get("content") or "")
            return self.text(content) if event.get("delta") else self.message(content)
        elif kind == "tool_use" and self.tools is not None:
            return self._tool_call(event)
        if kind == "error":
            if event.get("severity") != "warning":
                self.error = str(event.get("message") or "unknown error")
            return []
        if kind == "result":
            self.usage = self._usage(event.get("stats") or {})
            if event.get("status") == "success":
                self.done = True
                return [Finish("stop", self.usage)]
            # The exit code says whether this was the turn limit: decide in ``end``.
            error = event.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else error
            self.error = str(message or self.error or "unknown error")
        return []

    def _tool_call(self, event: dict[str, Any]) -> list[BackendEvent]:
        assert self.tools is not None
        name = str(event.get("tool_name") or "")
        if not name.startswith(TOOL_PREFIX):
            return []
        call_id = str(event.get("tool_id") or f"call_{len(self._calls)}")
        self._calls.append(call_id)
        arguments = dict(event.get("parameters") or {})
        arguments.pop("wait_for_previous", None)  # Gemini CLI's own addition to every schema
        name = name[len(TOOL_PREFIX) :]
        text = json.dumps(arguments)
        # The call is held by the server: hand it over now and end the run.
        self.done = True
        return [
            ToolCallDelta(0, id=call_id, name=name, arguments=text),
            Finish("tool_calls", self.usage),
        ]

    def _usage(self, stats: dict[str, Any]) -> dict[str, Any] | None:
        models = stats.get("models")
        routed = self.model == ROUTED_MODEL
        if isinstance(models, dict) and models and routed:
            # The routing call comes first, so the answering model is the last one listed.
            answering = list(models.values())[-1]
            if len(models) > 1 and isinstance(answering, dict):
                stats, routed = answering, False
        usage = usage_from(
            stats.get("input_tokens"), stats.get("output_tokens"), stats.get("cached")
        )
        if usage is not None and routed:
            log.info("cli_usage_includes_overhead", cli=self.cli, why="routing call")
            usage["includes_overhead"] = True
        return usage

    def end(self, code: int, stderr: str) -> list[BackendEvent]:
        if self.done:
            return []
        if code == EXIT_TURN_LIMIT:
            return [Finish("length", self.usage)]
        if code in EXIT_MEANINGS:
            what, kind = EXIT_MEANINGS[code]
            raise failure(what, self.error or stderr, kind)
        if self.error is not None:
            signal = quota.gemini(self.error, stderr)
            raise quota.refused(signal, f"gemini reported an error: {self.error}")
        return super().end(code, stderr)


class GeminiBackend(CliBackend):
    name = "gemini"
    binary_name = "gemini"
    default_models = ("gemini-cli",)
    tool_prefix = TOOL_PREFIX
    editor_tools = True
    warmable = True

    #: The folder holding the tool policy, made by ``start``.
    _policy_dir: str | None = None

    async def start(self) -> None:
        await self._write_policy()
        await super().start()

    async def _write_policy(self) -> None:
        if self._policy_dir is None:
            folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="mcp-local-provider-gemini-")
            text = policy(self.settings.agent_tools)
            await asyncio.to_thread((Path(folder) / "policy.toml").write_text, text)
            self._policy_dir = folder

    async def close(self) -> None:
        await super().close()
        if self._policy_dir is not None:
            folder, self._policy_dir = self._policy_dir, None
            await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _ready(self, request: InvokeRequest) -> Prompt:
        prompt = await super()._ready(request)
        await self._write_policy()  # closed, and used again
        return prompt

    def acp(self, tools: EditorTools | None) -> bool:
        """Whether the run speaks ACP (``gemini --acp``, which can start before its prompt is
        known) rather than headless mode (the editor's tools need the latter)."""
        return self.settings.warm and tools is None

    async def warm_up(self, proc: CliProcess) -> None:
        if "--acp" in proc.argv:
            await AcpClient(proc).initialize()

    def _run(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None
    ) -> AsyncGenerator[BackendEvent, None]:
        if self.acp(tools):
            return self._run_acp(request, prompt)
        return super()._run(request, prompt, tools)

    async def _run_acp(
        self, request: InvokeRequest, prompt: Prompt
    ) -> AsyncGenerator[BackendEvent, None]:
        parser = AcpParser(self.name, quota.gemini)
        launch = self.launch(request, prompt, None)
        async with self.running(launch, parser, self.warm(None)) as proc:
            try:
                answer = AcpClient(proc).prompt(prompt.inline(), parser)
                async with aclosing(answer) as events:
                    async for event in events:
                        if isinstance(event, Finish):
                            proc.finished = True
                        yield event
            except BackendError as exc:
                raise stalled(exc, parser) from None
            finally:
                self.malformed_lines += proc.malformed

    def environment(self, tools: EditorTools | None = None) -> dict[str, str]:
        # The scratch folder is new for every run; a configured workdir was chosen by the user.
        return {"GEMINI_CLI_TRUST_WORKSPACE": "true", **self.settings.env}

    def workdir(self, tools: EditorTools | None = None) -> Path | None:
        # With the editor's tools, Gemini CLI's own are off, so its folder holds only the
        # settings that load the editor's server.
        if tools is None:
            return super().workdir()
        return tools.folder / "work"

    def argv(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None = None
    ) -> list[str]:
        assert self.path is not None and self._policy_dir is not None
        # ``-p`` forces headless mode; its text is appended to what stdin carries, so it stays
        # empty and the prompt never appears in argv.
        rules = str(Path(self._policy_dir, "policy.toml"))
        if tools is not None:
            rules = str(tools.folder / "gemini-policy.toml")
        if self.acp(tools):
            argv = [self.path, "--acp", "--policy", rules]
        else:
            argv = [self.path, "-o", "stream-json", "--policy", rules]
        model = self.cli_model(request)
        if model:
            argv += ["-m", model]
        if self.acp(tools):
            return [*argv, *self.settings.args]
        return [*argv, *self.settings.args, "-p", ""]

    def parser(self, tools: EditorTools | None = None) -> OutputParser:
        return GeminiParser(tools)

    def prepare(self, tools: EditorTools) -> None:
        (tools.folder / "gemini-policy.toml").write_text(policy((), TOOL_PREFIX + "*"))
        folder = tools.folder / "work"
        settings = folder / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        servers = tools.mcp_servers(hold=True)
        servers[editor.SERVER]["trust"] = True
        del servers[editor.SERVER]["type"]
        settings.write_text(json.dumps({"mcpServers": servers}))
