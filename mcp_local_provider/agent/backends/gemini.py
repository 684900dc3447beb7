"""Gemini CLI, in its ACP mode by a process started ahead (with ``warm``, the default) or in
headless mode (``gemini -o stream-json``, the prompt on stdin).

Headless, assistant messages marked ``delta`` are token deltas; the result event carries the
status and token stats. The exit code decides when there is no usable result: 53 (turn limit)
ends with ``length``, 130 means it was interrupted, anything else non-zero is an error.

Gemini CLI runs headless only in a folder it trusts; the backend's folder is a fresh scratch
directory, so it is trusted for the run (``GEMINI_CLI_TRUST_WORKSPACE``). Its own tools are
switched off by a policy file that denies every tool but those in ``agent_tools``.

With ``warm`` (the default), every request is served in ACP mode by a process started ahead
(``gemini --acp``, ``agent/backends/acp.py``), a fresh session each. A request with tools gets
the editor's MCP server (``agent/tools.py``) in its ``session/new``, and the model sees its tools
as ``mcp_editor_NAME``. Gemini CLI's ACP mode checks an MCP tool against the policy under the
server name ``mcp_editor`` (its tool-name prefix) instead of ``editor``, so no rule scoped to
the server (``mcp_editor_*``, ``mcpName``, a trusted server) ever matches there: the ACP policy
allows ``mcp_*`` (any MCP server's tools) instead, and ``--allowed-mcp-server-names editor``
keeps every other server (the user's own, an extension's) from being connected at all. A call
is read where it arrives, in the editor's tool server (see ``acp.py``), and handed to the
editor; the turn is then held (``agent/held.py``) until the editor's next request brings the
result, with ``tool_result_timeout = 0`` ended.

With ``warm = false`` a request runs headless, one start each. With tools, the run then gets a
scratch folder of its own whose project settings (``.gemini/settings.json``) add the editor's
MCP server, trusted (Gemini CLI refuses a system settings file under a world-writable folder
such as /tmp); the policy allows that server's tools and none of Gemini CLI's. Its calls
(``tool_use`` events) are handed to the editor at once, which ends the run.

With its default model (``auto``) it first asks a routing model which model should answer (no
setting turns that off; naming a model does, see docs/agents.md); headless, the stats of the
result then list both. The usage reported is the answering model's (the last one
listed); when the routing and answering models are the same, the one entry includes the
routing call and the usage says so (``"includes_overhead": true``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
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
from mcp_local_provider.agent.held import Channel
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
#: The policy files ``start`` writes: headless without tools; ACP without tools; ACP with the
#: editor's tools when ``agent_tools`` names some (else the ACP one serves both).
POLICIES = ("policy.toml", "acp.toml", "acp-tools.toml")


def acp_server(tools: EditorTools) -> dict[str, Any]:
    """The editor's tool server as an ACP ``session/new`` MCP server; its calls wait for the
    editor's result (``--hold``)."""
    command, *args = tools.server_command(hold=True)
    return {"name": editor.SERVER, "command": command, "args": args, "env": []}


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
    holds_turns = True
    #: Gemini CLI waits ten minutes for an MCP call (a session's servers take no timeout).
    max_tool_wait = 600.0

    #: The folder holding the tool policies, made by ``start``.
    _policy_dir: str | None = None

    async def start(self) -> None:
        await self._write_policy()
        await super().start()

    async def _write_policy(self) -> None:
        if self._policy_dir is None:
            folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="mcp-local-provider-gemini-")
            own = self.settings.agent_tools
            texts = (policy(own), policy(own, "mcp_*"), policy((), "mcp_*"))
            for name, text in zip(POLICIES, texts, strict=True):
                await asyncio.to_thread((Path(folder) / name).write_text, text)
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
        known) rather than headless mode: with ``warm``, tools or not."""
        return self.settings.warm

    @property
    def holding(self) -> bool:
        # A held turn is an ACP session's: headless runs end at the call.
        return self.settings.warm and super().holding

    def warm(self, tools: EditorTools | None) -> bool:
        # The editor's server is given to the session (``session/new``), not the process.
        return self._pool is not None

    async def warm_up(self, proc: CliProcess) -> None:
        if "--acp" in proc.argv:
            await AcpClient(proc).initialize()

    def _run(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None
    ) -> AsyncGenerator[BackendEvent, None]:
        if self.acp(tools):
            return self._run_acp(request, prompt, tools)
        return super()._run(request, prompt, tools)

    def _holding(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools, channel: Channel
    ) -> AsyncGenerator[BackendEvent, None]:
        return self._run_acp(request, prompt, tools, channel, hold=True)

    async def _run_acp(
        self,
        request: InvokeRequest,
        prompt: Prompt,
        tools: EditorTools | None,
        channel: Channel | None = None,
        hold: bool = False,
    ) -> AsyncGenerator[BackendEvent, None]:
        """One ACP session. With ``tools``, its calls are read from ``channel`` (one of its own
        if none is given); with ``hold``, the run goes on after a hand-over once resumed."""
        parser = AcpParser(self.name, quota.gemini)
        launch = self.launch(request, prompt, tools)
        async with AsyncExitStack() as stack:
            if tools is not None and channel is None:
                channel = Channel(tools.folder)
                await channel.open()
                stack.push_async_callback(channel.close)
            proc = await stack.enter_async_context(self.running(launch, parser, self.warm(tools)))
            servers = [] if tools is None else [acp_server(tools)]
            try:
                answer = AcpClient(proc).prompt(prompt.inline(), parser, servers, channel)
                async with aclosing(answer) as events:
                    async for event in events:
                        # The process is not marked finished: once the answer is whole it is
                        # signalled at once, since with an MCP server connected Gemini CLI
                        # takes half a second to exit when its input ends (SIGINT: 0.1 s).
                        if hold and isinstance(event, Finish) and event.reason == "tool_calls":
                            # This process stays with its held turn: the pool gets another.
                            asyncio.get_running_loop().call_soon(self._refill, launch, tools)
                        yield event
            except BackendError as exc:
                raise stalled(exc, parser) from None
            finally:
                self.malformed_lines += proc.malformed

    def environment(self, tools: EditorTools | None = None) -> dict[str, str]:
        # The scratch folder is new for every run; a configured workdir was chosen by the user.
        return {"GEMINI_CLI_TRUST_WORKSPACE": "true", **self.settings.env}

    def workdir(self, tools: EditorTools | None = None) -> Path | None:
        # Headless with the editor's tools, Gemini CLI's own are off, so its folder holds only
        # the settings that load the editor's server.
        if tools is None or self.acp(tools):
            return super().workdir()
        return tools.folder / "work"

    def argv(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None = None
    ) -> list[str]:
        assert self.path is not None and self._policy_dir is not None
        # ``-p`` forces headless mode; its text is appended to what stdin carries, so it stays
        # empty and the prompt never appears in argv.
        if self.acp(tools):
            name = POLICIES[2 if tools is not None and self.settings.agent_tools else 1]
            rules = str(Path(self._policy_dir, name))
            servers = ["--allowed-mcp-server-names", editor.SERVER]
            argv = [self.path, "--acp", *servers, "--policy", rules]
        else:
            rules = str(Path(self._policy_dir, POLICIES[0]))
            if tools is not None:
                rules = str(tools.folder / "gemini-policy.toml")
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
        if self.acp(tools):
            return  # the server goes to the session (``acp_server``)
        (tools.folder / "gemini-policy.toml").write_text(policy((), TOOL_PREFIX + "*"))
        folder = tools.folder / "work"
        settings = folder / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        servers = tools.mcp_servers(hold=True)
        servers[editor.SERVER]["trust"] = True
        del servers[editor.SERVER]["type"]
        settings.write_text(json.dumps({"mcpServers": servers}))
