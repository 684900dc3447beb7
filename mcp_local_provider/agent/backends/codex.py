"""Codex through ``codex app-server``: JSON-RPC over stdio (one JSON object a line, no
``"jsonrpc"`` field), which streams token deltas and can interrupt a turn.

Each request has its own app-server (started ahead of it, past ``initialize`` and
``initialized``, ``agent/warm.py``): an ephemeral read-only
``thread/start`` (never asking for approval), one ``turn/start`` with the prompt, then
notifications until ``turn/completed``. A cancelled request sends ``turn/interrupt`` and waits
briefly for the turn to end before the process group is stopped.

When the request carries tools, the editor's MCP server (``agent/tools.py``) is the thread's
own (``thread/start``'s ``config``; its calls approved beforehand, and required, so the thread
starts with its tools listed). The turn is then held (``agent/held.py``): the thread asks for
Codex's raw model events, and once a model answer that calls the editor's tools is complete
(``rawResponse/completed``), every call of the editor's tools in it (``rawResponseItem/completed``
function calls) is handed to the editor while Codex's MCP calls wait in the server, together
(``supports_parallel_tool_calls``; Codex otherwise runs one call after the other) and for up to
``tool_result_timeout`` plus ``idle_timeout`` (``tool_timeout_sec``). The editor's next request
carrying their results continues the turn. With ``tool_result_timeout = 0`` the server holds
each call unanswered, the turn is interrupted as soon as the first ``mcpToolCall`` item of the
editor's server starts, and every call started before the turn ends is handed over.

Codex's own tools are switched off with config overrides on its command line (``-c``), except
those named in ``agent_tools`` (all are off while the editor's tools are offered). Two remain
that no switch removes: ``request_user_input`` (its question comes to this backend, which
declines it) and ``view_image`` (reads an image file, inside the read-only sandbox).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import suppress
from typing import Any

import structlog

from mcp_local_provider import __version__
from mcp_local_provider.agent import quota
from mcp_local_provider.agent import tools as editor
from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.backends.cli import (
    CliBackend,
    OutputParser,
    stalled,
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

CLIENT_INFO = {"name": "mcp_local_provider", "title": "mcp-local-provider", "version": __version__}
REASONING_DELTAS = ("item/reasoning/summaryTextDelta", "item/reasoning/textDelta")
#: Codex's own tools by the name ``agent_tools`` uses, and the override that switches each off.
TOOL_SWITCHES = {
    "shell": "features.shell_tool=false",  # exec_command, write_stdin
    "web_search": 'web_search="disabled"',
    "multi_agent": "features.multi_agent=false",  # spawn_agent, send_input, ...
    "goals": "features.goals=false",  # get_goal, create_goal, update_goal
}

log = structlog.get_logger("mcp_local_provider.agent.codex")


class CodexParser(OutputParser):
    """Turns app-server notifications into events."""

    cli = "codex"

    def __init__(self, tools: EditorTools | None = None, hold: bool = False) -> None:
        super().__init__()
        self.tools = tools
        #: The turn is held at a call (raw model events: the answer's calls, once it is whole).
        self.hold = hold
        self._calls: list[str] = []  # ids of the editor's tool calls handed over
        self.turn_id: str | None = None
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None
        self._items: dict[str, str] = {}  # agent message id -> text streamed for it
        #: An editor's call has started: the turn is to be interrupted (the server holds the
        #: call, so Codex would wait, or go on to another model call with an answer).
        self.stop_turn = False
        #: The turn has completed (``done`` alone may be a held turn's answer).
        self.turn_ended = False

    def progress(self, event: dict[str, Any]) -> bool:
        params = event.get("params") or {}
        if event.get("method") != "error" or not params.get("willRetry"):
            return True
        error = params.get("error") or {}
        self.stalled = f"its model API failed ({error.get('message') or 'no detail'}), retrying"
        log.warning("cli_model_retry", cli=self.cli, error=error.get("message"))
        return False

    def feed(self, event: dict[str, Any]) -> list[BackendEvent]:
        method = event.get("method")
        params = event.get("params") or {}
        if method == "item/agentMessage/delta":
            return self._delta(str(params.get("itemId") or ""), str(params.get("delta") or ""))
        if method == "item/completed":
            item = params.get("item") or {}
            if item.get("type") == "agentMessage":
                return self._completed(str(item.get("id") or ""), str(item.get("text") or ""))
            if item.get("type") == "mcpToolCall" and str(item.get("id")) in self._calls:
                # The call was cut short by the turn's interrupt: the turn ends next.
                return []
        elif method == "item/started" and self.tools is not None and not self.hold:
            return self._tool_call(params.get("item") or {})
        elif method == "rawResponseItem/completed" and self.tools is not None and self.hold:
            return self._raw_call(params.get("item") or {})
        elif method == "rawResponse/completed" and self.hold and self._calls:
            # The model's answer is whole: its calls are handed over, the turn held.
            self.done = True
            self._usage(params.get("usage") or {})
            return [Finish("tool_calls", self.usage)]
        elif method in REASONING_DELTAS and params.get("delta"):
            return [ReasoningDelta(str(params["delta"]))]
        elif method == "thread/tokenUsage/updated":
            self._usage(params.get("tokenUsage") or {})
        elif method == "turn/started":
            self.turn_id = (params.get("turn") or {}).get("id") or self.turn_id
        elif method == "error":
            error = params.get("error") or {}
            if not params.get("willRetry"):
                self.error = str(error.get("message") or "unknown error")
        elif method == "turn/completed":
            return self._turn_completed(params.get("turn") or {})
        return []

    def _tool_call(self, item: dict[str, Any]) -> list[BackendEvent]:
        if item.get("type") != "mcpToolCall" or item.get("server") != editor.SERVER:
            return []
        self.stop_turn = True
        return self._call(item.get("id"), item.get("tool"), item.get("arguments"))

    def _raw_call(self, item: dict[str, Any]) -> list[BackendEvent]:
        """A function call of the model's answer, as the model API gave it."""
        if item.get("type") != "function_call" or item.get("namespace") != NAMESPACE:
            return []
        return self._call(item.get("call_id"), item.get("name"), item.get("arguments"))

    def _call(self, call_id: Any, name: Any, arguments: Any) -> list[BackendEvent]:
        """The editor's call, once per id (the run keeps only the first where one call per
        answer is allowed, ``tools.handed_over``)."""
        assert self.tools is not None
        call_id = str(call_id or f"call_{len(self._calls)}")
        if call_id in self._calls:
            return []
        self._calls.append(call_id)
        text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        return [
            ToolCallDelta(len(self._calls) - 1, id=call_id, name=str(name or ""), arguments=text)
        ]

    def _delta(self, item: str, text: str) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        if item not in self._items:
            self._items[item] = ""
            if self.sent:  # a new message: keep it apart from the last one
                out += self.text("\n\n")
        self._items[item] += text
        return out + self.text(text)

    def _completed(self, item: str, text: str) -> list[BackendEvent]:
        streamed = self._items.get(item)
        if streamed is None:
            return self._delta(item, text)
        if text.startswith(streamed):
            return self._delta(item, text[len(streamed) :])
        return []

    def _usage(self, usage: dict[str, Any]) -> None:
        counts = usage.get("last") or usage.get("total") or usage
        if isinstance(counts, dict):
            self.usage = usage_from(
                counts.get("inputTokens"),
                counts.get("outputTokens"),
                counts.get("cachedInputTokens"),
            )

    def _turn_completed(self, turn: dict[str, Any]) -> list[BackendEvent]:
        self.done = self.turn_ended = True
        status = turn.get("status")
        if self._calls and not self.hold:
            # Interrupted once the calls had started (the server holds them): hand them over.
            return [Finish("tool_calls", self.usage)]
        if status == "completed":
            return [Finish("stop", self.usage)]
        if status == "interrupted":
            raise BackendError("the codex turn was interrupted", "cancelled")
        error = turn.get("error") or {}
        detail = (error.get("message") if isinstance(error, dict) else error) or self.error
        message = f"codex reported an error: {detail or status or 'unknown error'}"
        raise quota.refused(quota.codex(error if isinstance(error, dict) else None), message)


#: How Codex names the editor's tools to its model: a namespace holding the functions.
NAMESPACE = f"mcp__{editor.SERVER}"
TOOL_PREFIX = f"{NAMESPACE}."


class CodexBackend(CliBackend):
    name = "codex"
    binary_name = "codex"
    default_models = ("codex",)
    tool_prefix = TOOL_PREFIX
    editor_tools = True
    warmable = True
    holds_turns = True

    async def start(self) -> None:
        unknown = set(self.settings.agent_tools) - set(TOOL_SWITCHES)
        if unknown:
            raise BackendError(
                f"codex has no tool group {', '.join(sorted(unknown))!r} to allow; "
                f"known: {', '.join(TOOL_SWITCHES)}",
                "backend_unavailable",
            )
        await super().start()

    def argv(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None = None
    ) -> list[str]:
        assert self.path is not None
        allowed = () if tools is not None else self.settings.agent_tools
        off = [
            arg
            for name, switch in TOOL_SWITCHES.items()
            if name not in allowed
            for arg in ("-c", switch)
        ]
        return [self.path, "app-server", *off, *self.settings.args]

    def warm(self, tools: EditorTools | None) -> bool:
        # The editor's tools are the thread's (``_thread``), not the process's.
        return self._pool is not None

    def parser(self, tools: EditorTools | None = None) -> OutputParser:
        return CodexParser(tools)

    async def warm_up(self, proc: CliProcess) -> None:
        params: dict[str, Any] = {"clientInfo": CLIENT_INFO}
        if self.holding:
            # A held turn needs the raw model events (``experimentalRawEvents``).
            params["capabilities"] = {"experimentalApi": True}
        await _call(proc, proc.events(), 0, "initialize", params)
        await proc.write_line({"method": "initialized"})

    async def _loop(
        self,
        request: InvokeRequest,
        prompt: Prompt,
        tools: EditorTools | None,
        hold: bool = False,
    ) -> AsyncGenerator[BackendEvent, None]:
        parser = CodexParser(tools, hold)
        ids = itertools.count(1)
        launch = self.launch(request, prompt, tools)
        async with self.running(launch, parser, self.warm(tools)) as proc:
            messages = proc.events()
            thread_id: str | None = None
            try:
                thread = await _call(
                    proc,
                    messages,
                    next(ids),
                    "thread/start",
                    self._thread(request, prompt, proc, tools, hold),
                )
                thread_id = str((thread.get("thread") or {}).get("id") or "")
                turn_call = next(ids)
                stopping = False
                text = [{"type": "text", "text": prompt.text}]
                params = {"threadId": thread_id, "input": text}
                await proc.write_line({"id": turn_call, "method": "turn/start", "params": params})
                while True:
                    async for message in messages:
                        if "id" in message and "method" in message:
                            await _decline(proc, message)
                            continue
                        if message.get("id") == turn_call:
                            turn = _result(message, "turn/start").get("turn") or {}
                            parser.turn_id = str(turn.get("id") or "") or parser.turn_id
                            continue
                        for event in parser.feed(message):
                            if isinstance(event, Finish) and not parser.turn_ended:
                                self._kept(launch, tools)  # held: the pool gets another
                            elif isinstance(event, Finish):
                                proc.finished = True
                            yield event
                        if parser.done:
                            break
                        if parser.stop_turn and parser.turn_id and not stopping:
                            stopping = True
                            await _stop_turn(proc, thread_id, parser.turn_id, next(ids))
                    if not parser.done or parser.turn_ended:
                        break
                    # Resumed: the waiting calls have their results and the same turn goes on
                    # (the idle clock starts again too: new events).
                    turn_id = parser.turn_id
                    parser = self._resumed(proc, CodexParser(tools, hold))
                    parser.turn_id = turn_id
                    messages = proc.events()
                if parser.done:
                    return
                code = await proc.wait()
                for event in parser.end(code, proc.stderr_tail()):
                    yield event
            except BackendError as exc:
                raise stalled(exc, parser) from None
            finally:
                self.malformed_lines += proc.malformed
                if not parser.turn_ended and parser.turn_id and thread_id:
                    await _interrupt(proc, thread_id, parser.turn_id, next(ids))

    def _thread(
        self,
        request: InvokeRequest,
        prompt: Prompt,
        proc: CliProcess,
        tools: EditorTools | None,
        hold: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "cwd": str(proc.cwd),
            "approvalPolicy": "never",
            "sandbox": "read-only",
            "ephemeral": True,
        }
        if tools is not None:
            # This thread's own MCP server: approved beforehand (else Codex refuses every
            # call), and required, so the thread starts only once its tools are listed.
            command, *args = tools.server_command(hold=True)
            server = {
                "command": command,
                "args": args,
                "default_tools_approval_mode": "approve",
                "required": True,
            }
            if hold:
                # Each call waits for the editor's result, longer than the turn is held; an
                # answer's calls wait together, so they all reach the editor at once.
                wait = self.settings.tool_result_timeout + self.settings.idle_timeout
                server["tool_timeout_sec"] = wait
                server["supports_parallel_tool_calls"] = tools.parallel
                params["experimentalRawEvents"] = True
            params["config"] = {"mcp_servers": {editor.SERVER: server}}
        model = self.cli_model(request)
        if model:
            params["model"] = model
        if prompt.system:
            params["developerInstructions"] = prompt.system
        return params


async def _call(
    proc: CliProcess,
    messages: AsyncIterator[dict[str, Any]],
    call_id: int,
    method: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Send one request and read until its response; returns the result."""
    await proc.write_line({"id": call_id, "method": method, "params": params})
    async for message in messages:
        if "id" in message and "method" in message:
            await _decline(proc, message)
        elif message.get("id") == call_id:
            return _result(message, method)
    code = await proc.wait()
    raise BackendError(
        f"codex app-server exited with code {code} during {method}: {proc.stderr_tail()}".rstrip(
            ": "
        )
    )


def _result(message: dict[str, Any], method: str) -> dict[str, Any]:
    error = message.get("error")
    if error is not None:
        detail = error.get("message") if isinstance(error, dict) else error
        raise BackendError(f"codex {method} failed: {detail}")
    result = message.get("result")
    return result if isinstance(result, dict) else {}


async def _decline(proc: CliProcess, request: dict[str, Any]) -> None:
    """Answer a request from the app-server: approvals are declined, anything else refused."""
    if str(request.get("method", "")).endswith("requestApproval"):
        reply: dict[str, Any] = {"id": request["id"], "result": {"decision": "decline"}}
    else:
        reply = {"id": request["id"], "error": {"code": -32601, "message": "not supported"}}
    await proc.write_line(reply)


async def _stop_turn(proc: CliProcess, thread_id: str, turn_id: str, call_id: int) -> None:
    """Ask the turn to stop, without waiting for it to say it has."""
    params = {"threadId": thread_id, "turnId": turn_id}
    with suppress(BackendError):
        await proc.write_line({"id": call_id, "method": "turn/interrupt", "params": params})


async def _interrupt(proc: CliProcess, thread_id: str, turn_id: str, call_id: int) -> None:
    """Ask the turn to stop and give it half of ``cancel_grace`` to say it has (the process
    group is stopped after that, so the whole cancel stays within two graces)."""
    params = {"threadId": thread_id, "turnId": turn_id}
    with suppress(BackendError, TimeoutError, OSError):
        async with asyncio.timeout(proc.cancel_grace / 2):
            await proc.write_line({"id": call_id, "method": "turn/interrupt", "params": params})
            async for message in proc.events():
                if message.get("method") == "turn/completed":
                    proc.finished = True  # it may now exit on its own when its input ends
                    return
