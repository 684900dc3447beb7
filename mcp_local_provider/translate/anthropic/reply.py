"""Agent frames -> Anthropic Messages answers: one ``message`` body, or the SSE events
Anthropic streams (each with its ``event:`` line). Pure: no I/O.

A stream is ``message_start``, then content blocks one at a time (``content_block_start``,
``content_block_delta``..., ``content_block_stop``), then ``message_delta`` with the stop reason
and usage, then ``message_stop``. Blocks are numbered in order: thinking (``thinking_delta``),
text (``text_delta``) and tool calls (``tool_use`` with ``input_json_delta`` fragments).
"""

from __future__ import annotations

import json
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.ids import unique_hex
from mcp_local_provider.core.protocol import AnswerFrame, ToolCallDelta
from mcp_local_provider.translate.anthropic.errors import PING, event, stream_error
from mcp_local_provider.translate.common import (
    SSE_CONTENT_TYPE,
    FoldedAnswer,
    frame_delta,
    frame_usage,
)
from mcp_local_provider.translate.estimate import output_tokens

#: Agent finish reasons -> Anthropic stop reasons.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    return "msg_" + unique_hex(24)


def tool_use_id() -> str:
    return "toolu_" + unique_hex(24)


def stop_reason(finish_reason: str | None, called_tools: bool) -> str:
    reason = STOP_REASONS.get(finish_reason or "stop", "end_turn")
    return "tool_use" if called_tools and reason == "end_turn" else reason


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the ``input`` object (``{}`` when empty)."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise errors.AgentFailed("the agent's tool call arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise errors.AgentFailed("the agent's tool call arguments are not a JSON object")
    return value


class Usage:
    """Token counts for the answer: the agent's when it reports them, else the estimate."""

    def __init__(self, input_estimate: int) -> None:
        self.input_estimate = input_estimate
        self.reported: dict[str, Any] | None = None
        self.output_text = 0  # estimated tokens of the text generated so far

    def update(self, frame: AnswerFrame) -> None:
        usage = frame_usage(frame)
        if usage is not None:
            self.reported = usage

    @property
    def estimated(self) -> bool:
        return not isinstance((self.reported or {}).get("prompt_tokens"), int)

    @property
    def input_tokens(self) -> int:
        value = (self.reported or {}).get("prompt_tokens")
        return value if isinstance(value, int) else self.input_estimate

    @property
    def output_tokens(self) -> int:
        value = (self.reported or {}).get("completion_tokens")
        return value if isinstance(value, int) else self.output_text

    def body(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": self.output_tokens,
        }


class MessageReply(FoldedAnswer):
    """An Anthropic ``message``: streamed as Anthropic's SSE events, block by block, or folded
    into one body for a client that did not ask for a stream.

    One block is open at a time: a delta of another kind closes the open block and starts the
    next. Tool calls are keyed by the agent's ``index``; a fragment for a call whose block was
    already closed cannot be sent in Anthropic's format and fails the stream.
    """

    media_type = SSE_CONTENT_TYPE
    keepalive = PING

    def __init__(self, model: str, input_estimate: int) -> None:
        super().__init__()
        self.id = message_id()
        self.model = model
        self.usage = Usage(input_estimate)
        self.started = False
        self.blocks = 0  # blocks started so far; the open one is blocks - 1
        self.open: str | None = None  # "thinking", "text" or "tool:<index>"
        self.closed_tools: set[int] = set()
        self.called_tools = False
        self.generated: list[str] = []

    def _start(self) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**self.usage.body(), "output_tokens": 1},
        }
        return event("message_start", {"type": "message_start", "message": message}) + PING

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        if self.open.startswith("tool:"):
            self.closed_tools.add(int(self.open[5:]))
        self.open = None
        index = self.blocks - 1
        return event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open(self, key: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.open = key
        self.blocks += 1
        body = {"type": "content_block_start", "index": self.blocks - 1, "content_block": block}
        return out + event("content_block_start", body)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        body = {"type": "content_block_delta", "index": self.blocks - 1, "delta": delta}
        return event("content_block_delta", body)

    def _thinking(self, text: str) -> bytes:
        out = b""
        if self.open != "thinking":
            out = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self.generated.append(text)
        return out + self._delta({"type": "thinking_delta", "thinking": text})

    def _text(self, text: str) -> bytes:
        out = b""
        if self.open != "text":
            out = self._open("text", {"type": "text", "text": ""})
        self.generated.append(text)
        return out + self._delta({"type": "text_delta", "text": text})

    def _tool(self, position: int, call: ToolCallDelta) -> bytes:
        index = call.get("index")
        index = index if isinstance(index, int) else position
        key = f"tool:{index}"
        function = call.get("function") or {}
        out = b""
        if self.open != key:
            if index in self.closed_tools:
                raise errors.AgentFailed(
                    "the agent interleaved tool calls, which this stream cannot relay"
                )
            self.called_tools = True
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or tool_use_id(),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            out = self._open(key, block)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = dumps(arguments)
        if arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    # -- streamed ---------------------------------------------------------------------------

    def encode(self, frame: AnswerFrame) -> bytes:
        """The SSE bytes for one agent frame; the last one also ends the message."""
        out = b"" if self.started else self._start()
        delta, finish_reason = frame_delta(frame)
        self.usage.update(frame)
        if delta.get("reasoning_content"):
            out += self._thinking(str(delta["reasoning_content"]))
        if delta.get("content"):
            out += self._text(str(delta["content"]))
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                out += self._tool(position, call)
        if finish_reason is not None:
            out += self._end(finish_reason)
        return out

    def _end(self, finish_reason: str) -> bytes:
        out = self._close()
        self.usage.output_text = output_tokens("".join(self.generated))
        body = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(finish_reason, self.called_tools),
                "stop_sequence": None,
            },
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
        }
        return out + event("message_delta", body) + event("message_stop", {"type": "message_stop"})

    def finish(self) -> bytes:
        """Nothing follows ``message_stop``."""
        return b""

    def fail(self, error: errors.ProviderError) -> bytes:
        return stream_error(error)

    # -- folded ------------------------------------------------------------------------------

    def add(self, frame: AnswerFrame) -> None:
        self.fold(frame)
        self.usage.update(frame)

    def body(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if self.reasoning:
            thinking = "".join(self.reasoning)
            content.append({"type": "thinking", "thinking": thinking, "signature": ""})
        text = "".join(self.text)
        if text or not self.tool_calls:
            content.append({"type": "text", "text": text})
        for call in self.tool_calls:
            function = call["function"]
            content.append(
                {
                    "type": "tool_use",
                    "id": call["id"] or tool_use_id(),
                    "name": function["name"],
                    "input": tool_input(function["arguments"]),
                }
            )
        self.usage.output_text = output_tokens(text + "".join(self.reasoning))
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason(self.finish_reason, bool(self.tool_calls)),
            "stop_sequence": None,
            "usage": self.usage.body(),
        }


def count_body(input_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens}
