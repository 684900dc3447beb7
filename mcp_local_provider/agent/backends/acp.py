"""The Agent Client Protocol (ACP: JSON-RPC 2.0 over stdio, one JSON object a line) as this
library speaks it to a CLI started with it (``gemini --acp``): ``initialize`` once per process
(``warm_up``), then per request ``session/new`` (a fresh session in the run's folder, with the
editor's MCP server when the request offers tools) and ``session/prompt``, whose
``session/update`` notifications carry the answer and whose response carries the stop reason
and the usage.

ACP shows a tool call (a ``tool_call`` update) but not its arguments in a form to rely on, so
the call of an editor's tool is read where it arrives: the editor's tool server asks the run's
result channel (``agent/held.py``) for the result, with the tool's name and arguments. The call
is handed over then; the MCP call waits, so the turn can be held and go on.

The CLI's requests to the client are declined: a permission request is answered ``cancelled``
(no tool runs unseen), anything else (file access, terminals) is refused.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import suppress
from typing import Any

from mcp_local_provider.agent import quota
from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.backends.cli import OutputParser, usage_from
from mcp_local_provider.agent.events import BackendEvent, Finish, ReasoningDelta, ToolCallDelta
from mcp_local_provider.agent.held import Channel
from mcp_local_provider.agent.process import CliProcess
from mcp_local_provider.agent.quota import QuotaSignal

PROTOCOL_VERSION = 1
CAPABILITIES = {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": False}
STOP_REASONS = {
    "end_turn": "stop",
    "max_tokens": "length",
    "max_turn_requests": "length",
    "refusal": "content_filter",
}


class AcpParser(OutputParser):
    """Turns one session's updates, and the prompt's response, into events."""

    def __init__(
        self, cli: str, refusal: Callable[[str], QuotaSignal | None] = lambda _: None
    ) -> None:
        super().__init__()
        self.cli = cli
        #: Reads a vendor's rate-limit or quota refusal out of an error's message.
        self.refusal = refusal
        #: Set when the CLI starts running a tool (a ``tool_call`` update, in progress).
        self.calling = False

    def feed(self, event: dict[str, Any]) -> list[BackendEvent]:
        update = (event.get("params") or {}).get("update") or {}
        kind = update.get("sessionUpdate")
        if kind == "tool_call" and update.get("status") == "in_progress":
            self.calling = True
            return []
        content = update.get("content") or {}
        text = str(content.get("text") or "") if isinstance(content, dict) else ""
        if kind == "agent_message_chunk":
            return self.text(text)
        if kind == "agent_thought_chunk" and text:
            return [ReasoningDelta(text)]
        return []

    def answered(self, result: dict[str, Any]) -> list[BackendEvent]:
        """The response to ``session/prompt``: the turn is over."""
        self.done = True
        reason = str(result.get("stopReason") or "end_turn")
        if reason == "cancelled":
            raise BackendError(f"the {self.cli} turn was cancelled", "cancelled")
        return [Finish(STOP_REASONS.get(reason, "stop"), self._usage(result))]

    def handed(self, call: dict[str, Any]) -> list[BackendEvent]:
        """The tool call the editor's tool server was asked (``{"name", "arguments"}``),
        handed to the editor: the answer ends with it. Its id is made here, unguessable (Gemini
        CLI makes its own from the tool's name and a timestamp when the model API gives none)."""
        self.calling = False
        arguments = call.get("arguments")
        text = json.dumps(arguments if isinstance(arguments, dict) else {})
        call_id = f"call_{secrets.token_hex(12)}"
        name = str(call.get("name") or "")
        return [ToolCallDelta(0, id=call_id, name=name, arguments=text), Finish("tool_calls")]

    def _usage(self, result: dict[str, Any]) -> dict[str, Any] | None:
        # The turn's own model calls (Gemini CLI 0.61 leaves its routing call out here).
        quota = (result.get("_meta") or {}).get("quota") or {}
        counts = quota.get("token_count") or {}
        return usage_from(counts.get("input_tokens"), counts.get("output_tokens"))


class AcpClient:
    """The client side of one ACP process."""

    def __init__(self, proc: CliProcess) -> None:
        self.proc = proc
        self._ids = itertools.count(1)

    async def initialize(self) -> None:
        await self.call(
            "initialize",
            {"protocolVersion": PROTOCOL_VERSION, "clientCapabilities": CAPABILITIES},
            self.proc.events(),
        )

    async def call(
        self, method: str, params: dict[str, Any], messages: AsyncIterator[dict[str, Any]]
    ) -> dict[str, Any]:
        """Send one request and read until its response (answering the CLI's requests
        meanwhile); returns the result."""
        call_id = await self.send(method, params)
        async for message in messages:
            if "method" in message:
                await self.decline(message)
            elif message.get("id") == call_id:
                return result_of(message, f"{method} failed")
        code = await self.proc.wait()
        raise self.proc.failure(f"{self.proc.name} exited with code {code} during {method}")

    async def send(self, method: str, params: dict[str, Any]) -> int:
        call_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
        await self.proc.write_line(message)
        return call_id

    async def decline(self, message: dict[str, Any]) -> None:
        """Answer a request from the CLI (notifications need no answer)."""
        if "id" not in message:
            return
        if message.get("method") == "session/request_permission":
            reply: dict[str, Any] = {"result": {"outcome": {"outcome": "cancelled"}}}
        else:
            reply = {"error": {"code": -32601, "message": "not supported"}}
        await self.proc.write_line({"jsonrpc": "2.0", "id": message["id"], **reply})

    async def prompt(
        self,
        text: str,
        parser: AcpParser,
        servers: list[dict[str, Any]] | None = None,
        calls: Channel | None = None,
    ) -> AsyncGenerator[BackendEvent, None]:
        """One request: a new session in the process's folder (connecting the MCP ``servers``),
        the prompt, the answer. With ``calls``, a tool call the CLI starts is read from that
        channel and ends the answer (a ToolCallDelta, then ``Finish("tool_calls")``); resumed
        after it (the turn held and continued with the call's result), the turn's output goes
        on, with a fresh clock."""
        messages = self.proc.events()
        assert self.proc.cwd is not None
        new = {"cwd": str(self.proc.cwd), "mcpServers": servers or []}
        session = await self.call("session/new", new, messages)
        session_id = str(session.get("sessionId") or "")
        params = {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}
        call_id = await self.send("session/prompt", params)
        try:
            while True:
                handed = False
                async for message in messages:
                    if message.get("method") == "session/update":
                        for event in parser.feed(message):
                            yield event
                        if calls is not None and parser.calling:
                            for event in parser.handed(await self._arrival(calls)):
                                yield event
                            handed = True
                            break
                    elif "method" in message:
                        await self.decline(message)
                    elif message.get("id") == call_id:
                        failed = f"{parser.cli} reported an error"
                        result = result_of(message, failed, parser.refusal)
                        for event in parser.answered(result):
                            yield event
                        return
                if not handed:
                    code = await self.proc.wait()
                    raise self.proc.failure(f"{self.proc.name} exited with code {code} mid-answer")
                # Resumed: the call has its result and the turn goes on, a new request's.
                self.proc.begin()
                messages = self.proc.events()
        finally:
            if not parser.done and self.proc.alive:
                # Stop the turn; the process is stopped right after.
                cancel = {"jsonrpc": "2.0", "method": "session/cancel", "params": params}
                with suppress(BackendError):
                    await self.proc.write_line(cancel)

    async def _arrival(self, calls: Channel) -> dict[str, Any]:
        """The call the CLI has just started running, once the tool server asks for its
        result; a BackendError if the CLI exits first or it does not come within the idle
        timeout."""
        arrival = asyncio.ensure_future(calls.arrivals.get())
        exited = asyncio.ensure_future(self.proc.exited())
        try:
            await asyncio.wait(
                {arrival, exited},
                timeout=self.proc.idle_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            arrival.cancel()
            exited.cancel()
        if arrival.done() and not arrival.cancelled():
            return arrival.result()
        if exited.done() and not exited.cancelled():
            raise self.proc.failure(f"{self.proc.name} exited while starting a tool call")
        raise BackendError(
            f"{self.proc.name} started a tool call that did not reach the editor's tool server "
            f"within {self.proc.idle_timeout} s",
            "timeout",
        )


def result_of(
    message: dict[str, Any],
    failed: str,
    refusal: Callable[[str], QuotaSignal | None] = lambda _: None,
) -> dict[str, Any]:
    """The result of a response, or BackendError(``failed``: the error's message); a
    QuotaError when ``refusal`` reads a vendor's rate-limit or quota refusal in it."""
    error = message.get("error")
    if error is not None:
        detail = str(error.get("message") if isinstance(error, dict) else error)
        raise quota.refused(refusal(detail), f"{failed}: {detail}")
    result = message.get("result")
    return result if isinstance(result, dict) else {}
