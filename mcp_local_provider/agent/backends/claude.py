"""Claude Code in headless mode (``claude -p --output-format stream-json``), one turn with its
tools off (``--tools ""``) unless ``agent_tools`` names some. Token deltas come from the wrapped
stream events; usage and the stop reason from the result event.

When the request carries tools, Claude Code loads them from the editor's MCP server
(``--mcp-config``, ``--strict-mcp-config``; ``agent/tools.py``) with its own tools off, and its
model sees them as ``mcp__editor__NAME``. A call is handed to the editor as soon as the model's
message ends with it (whole arguments, one ``ToolCallDelta`` per call). The turn is then held
(``agent/held.py``): the MCP call waits in the server for the editor's result, and the
editor's next request carrying it continues the turn. With ``tool_result_timeout = 0`` the run
is ended there instead (``--max-turns 1``, the server never answering).

A ``response_format`` goes to Claude Code's own JSON mode (``--json-schema``): its model answers
through a ``StructuredOutput`` tool, and the result's ``structured_output`` is the answer.

When its model API fails, Claude Code retries (ten times over minutes by default) and prints a
``system/api_retry`` event before each retry. Those are logged, and are not progress: the idle
timeout still ends a run that only retries.
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from mcp_local_provider.agent import quota
from mcp_local_provider.agent import tools as editor
from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.backends.cli import (
    SYSTEM_ARG_LIMIT,
    CliBackend,
    OutputParser,
    text_blocks,
    usage_from,
)
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import (
    BackendEvent,
    Finish,
    InvokeRequest,
    ReasoningDelta,
    ToolCallDelta,
)
from mcp_local_provider.agent.process import CliProcess
from mcp_local_provider.agent.tools import EditorTools

log = structlog.get_logger("mcp_local_provider.agent.claude")

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


#: How Claude Code names the tools of the editor's MCP server to its model.
TOOL_PREFIX = f"mcp__{editor.SERVER}__"


class ClaudeParser(OutputParser):
    cli = "claude"

    def __init__(self, tools: EditorTools | None = None) -> None:
        super().__init__()
        self.stop_reason: str | None = None
        # Text streamed since the last whole assistant message (which repeats it).
        self._streamed = False
        self.tools = tools
        self._blocks: dict[int, dict[str, Any]] = {}  # stream block index -> tool_use in progress
        self._called: list[str] = []  # ids of the tool_use blocks handed to the editor

    def _call(self, block_id: str, name: str, arguments: str) -> list[BackendEvent]:
        """A whole call of the editor's tool, once per tool_use block; other tools (Claude
        Code's placeholder) are not the editor's and are ignored. Every call is sent: the run
        keeps only the first where one call per answer is allowed (``tools.handed_over``)."""
        if self.tools is None or block_id in self._called or not name.startswith(TOOL_PREFIX):
            return []
        self._called.append(block_id)
        name = name[len(TOOL_PREFIX) :]
        return [ToolCallDelta(len(self._called) - 1, id=block_id, name=name, arguments=arguments)]

    def _message_tool_uses(self, message: dict[str, Any]) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        for block in message.get("content") or ():
            if isinstance(block, dict) and block.get("type") == "tool_use":
                arguments = json.dumps(block.get("input") or {})
                events += self._call(str(block.get("id")), str(block.get("name")), arguments)
        return events

    def progress(self, event: dict[str, Any]) -> bool:
        if event.get("type") != "system" or event.get("subtype") != "api_retry":
            return True
        status = event.get("error_status") or event.get("error") or "no response"
        self.stalled = (
            f"its model API failed ({status}); retry {event.get('attempt')} of "
            f"{event.get('max_retries')} was pending"
        )
        log.warning(
            "cli_model_retry",
            cli=self.cli,
            attempt=event.get("attempt"),
            max_retries=event.get("max_retries"),
            retry_delay_ms=event.get("retry_delay_ms"),
            error_status=event.get("error_status"),
            error=event.get("error"),
        )
        return False

    def feed(self, event: dict[str, Any]) -> list[BackendEvent]:
        kind = event.get("type")
        if self.structured and kind != "result":
            return []  # the answer is the result's structured output, nothing else
        if kind == "stream_event":
            return self._stream_event(event.get("event") or {})
        if kind == "assistant":
            if event.get("is_api_error_message"):
                return []  # the model API's error as a message; the result reports it
            message = event.get("message") or {}
            calls = self._message_tool_uses(message) if self.tools is not None else []
            if self._streamed:
                self._streamed = False
                return calls
            return [*self.message(text_blocks(message.get("content"))), *calls]
        if kind == "result":
            return self._result(event)
        return []

    def _stream_event(self, event: dict[str, Any]) -> list[BackendEvent]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                self._streamed = True
                return self.text(str(delta.get("text") or ""))
            if delta.get("type") == "thinking_delta" and delta.get("thinking"):
                return [ReasoningDelta(str(delta["thinking"]))]
            if delta.get("type") == "input_json_delta" and self.tools is not None:
                block = self._blocks.get(_index(event))
                if block is not None:
                    block["arguments"] += str(delta.get("partial_json") or "")
        elif kind == "content_block_start" and self.tools is not None:
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._blocks[_index(event)] = {
                    "id": str(block.get("id")),
                    "name": str(block.get("name")),
                    "arguments": "",
                }
        elif kind == "content_block_stop" and self.tools is not None:
            block = self._blocks.pop(_index(event), None)
            if block is not None:
                return self._call(block["id"], block["name"], block["arguments"] or "{}")
        elif kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = str(reason)
            if reason == "tool_use" and self._called:
                # The model's message ends with the calls: hand them over, end the run.
                self.done = True
                return [Finish("tool_calls", _usage(event))]
        return []

    def _result(self, event: dict[str, Any]) -> list[BackendEvent]:
        self.done = True
        subtype = str(event.get("subtype") or "")
        if self.structured and "structured_output" in event and not event.get("is_error"):
            answer = json.dumps(event["structured_output"])
            return [*self.text(answer), Finish("stop", _usage(event))]
        if subtype == "error_max_turns":
            return [*self.final(event.get("result")), Finish("length", _usage(event))]
        if event.get("is_error") or subtype.startswith("error"):
            detail = event.get("result") or subtype or "unknown error"
            raise quota.refused(quota.claude(event), f"claude reported an error: {detail}")
        events = self.final(event.get("result"))
        reason = str(event.get("stop_reason") or self.stop_reason or "end_turn")
        return [*events, Finish(FINISH_REASONS.get(reason, "stop"), _usage(event))]


def _index(event: dict[str, Any]) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else -1


def _usage(event: dict[str, Any]) -> dict[str, Any] | None:
    usage = event.get("usage")
    if not isinstance(usage, dict):
        return None
    cached = usage.get("cache_read_input_tokens")
    fresh = usage.get("input_tokens")
    prompt = None
    if isinstance(fresh, int):
        prompt = fresh + int(usage.get("cache_creation_input_tokens") or 0) + int(cached or 0)
    return usage_from(prompt, usage.get("output_tokens"), cached)


class ClaudeBackend(CliBackend):
    name = "claude"
    binary_name = "claude"
    default_models = ("claude-code",)
    tool_prefix = TOOL_PREFIX
    editor_tools = True
    native_output = True
    warmable = True
    holds_turns = True

    def argv(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None = None
    ) -> list[str]:
        assert self.path is not None
        own = "" if tools is not None else ",".join(self.settings.agent_tools)
        argv = [
            self.path, "-p",
            "--output-format", "stream-json", "--verbose", "--include-partial-messages",
            "--tools", own,
        ]  # fmt: skip
        if self.settings.warm:
            # The prompt is a message on stdin, so the process can start before it is known.
            argv += ["--input-format", "stream-json"]
        if tools is not None and self.settings.warm:
            # The editor's tools only, approved beforehand (nobody can approve one headless);
            # the run ends when the model calls one, so one turn is enough. The server is given
            # to the running process (``begin``), so the command line is the same for every
            # request with tools and the process can start ahead.
            argv += ["--strict-mcp-config", "--allowedTools", TOOL_PREFIX.rstrip("_")]
            if not self.holding:
                argv += ["--max-turns", "1"]
        elif tools is not None:
            config = tools.folder / "claude-mcp.json"
            allowed = ",".join(TOOL_PREFIX + name for name in tools.names)
            argv += ["--mcp-config", str(config), "--strict-mcp-config"]
            argv += ["--allowedTools", allowed]
            if not self.holding:
                argv += ["--max-turns", "1"]
        elif own:
            # Headless, nobody can approve a tool: the chosen ones are approved beforehand, and
            # the agent gets the turns to use them.
            argv += ["--allowedTools", own]
        else:
            argv += ["--max-turns", "1"]
        wanted = self.native_format(request, tools)
        if wanted is not None:
            # Claude Code's own JSON mode: a StructuredOutput tool whose input is the answer.
            argv += ["--json-schema", json.dumps(wanted.json_schema)]
        if prompt.system and len(prompt.system.encode()) <= SYSTEM_ARG_LIMIT:
            argv += ["--system-prompt", prompt.system]
        model = self.cli_model(request)
        if model:
            argv += ["--model", model]
        return argv + list(self.settings.args)

    def prepare(self, tools: EditorTools) -> None:
        if not self.settings.warm:
            config = tools.folder / "claude-mcp.json"
            servers = tools.mcp_servers(hold=self.holding)
            config.write_text(json.dumps({"mcpServers": servers}))

    def warm(self, tools: EditorTools | None) -> bool:
        # The editor's MCP server is given to the process when its request comes (``begin``).
        return self._pool is not None

    async def warm_up(self, proc: CliProcess) -> None:
        # Claude Code loads (settings, plugins, commands) before it answers this, and prints
        # nothing and calls no model until its first message comes.
        if self.settings.warm:
            await self._control(proc, {"subtype": "initialize"}, "start")

    async def begin(self, proc: CliProcess, prompt: Prompt, tools: EditorTools | None) -> None:
        if tools is not None and self.settings.warm:
            # Give the running process the editor's MCP server; answered once it is connected.
            servers = tools.mcp_servers(hold=self.holding)
            request = {"subtype": "mcp_set_servers", "servers": servers}
            await self._control(proc, request, "load the editor's tools")
        await super().begin(proc, prompt, tools)

    async def _control(self, proc: CliProcess, request: dict[str, Any], what: str) -> None:
        """Send a control request on stdin and wait for its response."""
        line = {"type": "control_request", "request_id": request["subtype"], "request": request}
        await proc.send(json.dumps(line).encode() + b"\n", close=False)
        async for event in proc.events():
            if event.get("type") != "control_response":
                continue
            response = event.get("response") or {}
            detail = response.get("response") or {}
            errors = detail.get("errors") or (
                response.get("error") if response.get("subtype") == "error" else None
            )
            if errors:
                raise BackendError(f"claude could not {what}: {errors}")
            return
        code = await proc.wait()
        raise proc.failure(f"claude exited with code {code} (trying to {what})")

    def stdin_text(self, prompt: Prompt) -> str:
        if prompt.system and len(prompt.system.encode()) <= SYSTEM_ARG_LIMIT:
            text = prompt.text
        else:
            text = prompt.inline()
        if not self.settings.warm:
            return text
        # One user message, then the end of input: Claude Code answers it and exits.
        message = {"role": "user", "content": text}
        return json.dumps({"type": "user", "message": message, "parent_tool_use_id": None}) + "\n"

    def environment(self, tools: EditorTools | None = None) -> dict[str, str]:
        env = super().environment(tools)
        if self.holding:
            # A held call waits for the editor's result: longer than the turn is held.
            wait = int((self.settings.tool_result_timeout + self.settings.idle_timeout) * 1000)
            env.setdefault("MCP_TOOL_TIMEOUT", str(wait))
        return env

    def parser(self, tools: EditorTools | None = None) -> OutputParser:
        return ClaudeParser(tools)
