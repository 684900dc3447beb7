"""Agent frames -> Ollama replies for ``/api/chat`` and ``/api/generate``. Pure: no I/O.

Streaming, each frame becomes at most one NDJSON line as it arrives (``"done": false``), and a
successful stream always ends with one ``"done": true`` line carrying ``done_reason``, the
durations in nanoseconds and the token counts: ollama-js throws if that line is missing.
Tool calls are gathered until the agent finishes (Ollama sends each call whole, with
``arguments`` as a JSON object) and sent on one line before the done line. A failure after the
first line is one ``{"error": ...}`` line, and no done line follows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Literal

from mcp_local_provider.core import errors
from mcp_local_provider.core.ids import unique_hex
from mcp_local_provider.core.protocol import AnswerFrame, Delta
from mcp_local_provider.translate.common import frame_delta, frame_usage, merge_tool_call
from mcp_local_provider.translate.ollama.errors import error_line, line

NDJSON_CONTENT_TYPE = "application/x-ndjson"
Clock = Callable[[], int]


def rfc3339(ns: int) -> str:
    """A UTC time as Go writes it: nanoseconds, trailing zeros trimmed, ``Z``."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else base + "Z"


def tool_call_id() -> str:
    return "call_" + unique_hex(8)


def ollama_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole OpenAI-shaped tool calls as Ollama's: ``arguments`` parsed into an object."""
    out = []
    for index, call in enumerate(calls):
        function = call.get("function") or {}
        out.append(
            {
                "id": call.get("id") or tool_call_id(),
                "function": {
                    "index": index,
                    "name": function.get("name") or "",
                    "arguments": _arguments(function.get("arguments")),
                },
            }
        )
    return out


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, dict):
        raise errors.AgentFailed("the agent sent tool-call arguments that are not a JSON object")
    return value


def done_reason(finish_reason: str | None) -> str:
    """Ollama's reasons are "stop" and "length"; tool calls end with "stop" there too."""
    return "length" if finish_reason == "length" else "stop"


class OllamaReply:
    """One ``/api/chat`` (``shape="chat"``) or ``/api/generate`` (``"generate"``) answer.

    Streaming: ``encode`` each frame, then ``finish`` for the done line. Not streaming: ``add``
    each frame, then ``body`` for the one object.
    """

    media_type = NDJSON_CONTENT_TYPE
    keepalive = b""

    def __init__(
        self,
        model: str,
        shape: Literal["chat", "generate"],
        *,
        started: int | None = None,
        clock: Clock = time.time_ns,
        ticks: Clock = time.monotonic_ns,
    ) -> None:
        self.model = model
        self.shape = shape
        self.clock = clock
        self.ticks = ticks
        self.started = ticks() if started is None else started
        self.first: int | None = None
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.tool_calls: list[dict[str, Any]] = []
        self.content: list[str] = []
        self.thinking: list[str] = []

    def _take(self, frame: AnswerFrame) -> Delta:
        if self.first is None:
            self.first = self.ticks()
        delta, finish = frame_delta(frame)
        if finish is not None:
            self.finish_reason = finish
        usage = frame_usage(frame)
        if usage is not None:
            self.usage = usage
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                merge_tool_call(self.tool_calls, call)
        return delta

    def _body(
        self, text: str, thinking: str, tool_calls: list[dict[str, Any]] | None, done: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "created_at": rfc3339(self.clock())}
        if self.shape == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            body["message"] = message
        else:
            body["response"] = text
            if thinking:
                body["thinking"] = thinking
        body["done"] = done
        return body

    # -- streaming -------------------------------------------------------------------------

    def encode(self, frame: AnswerFrame) -> bytes:
        delta = self._take(frame)
        text = delta.get("content") or ""
        thinking = delta.get("reasoning_content") or ""
        if not (text or thinking):
            return b""
        return line(self._body(str(text), str(thinking), None, False))

    def finish(self) -> bytes:
        """The tool calls (if any), then the done line."""
        out = b""
        if self.tool_calls and self.shape == "chat":
            out = line(self._body("", "", ollama_tool_calls(self.tool_calls), False))
        return out + line(self._final(self._body("", "", None, True)))

    # -- not streaming ---------------------------------------------------------------------

    def fail(self, error: errors.ProviderError) -> bytes:
        return error_line(error)

    def add(self, frame: AnswerFrame) -> None:
        delta = self._take(frame)
        if delta.get("content"):
            self.content.append(str(delta["content"]))
        if delta.get("reasoning_content"):
            self.thinking.append(str(delta["reasoning_content"]))

    def body(self) -> dict[str, Any]:
        calls = ollama_tool_calls(self.tool_calls) if self.shape == "chat" else None
        return self._final(self._body("".join(self.content), "".join(self.thinking), calls, True))

    # -- the closing fields ----------------------------------------------------------------

    def _final(self, body: dict[str, Any]) -> dict[str, Any]:
        end = self.ticks()
        first = self.first if self.first is not None else end
        body["done_reason"] = done_reason(self.finish_reason)
        body["total_duration"] = max(0, end - self.started)
        usage = self.usage or {}
        prompt_tokens = usage.get("prompt_tokens")
        if isinstance(prompt_tokens, int):
            body["prompt_eval_count"] = prompt_tokens
        body["prompt_eval_duration"] = max(0, first - self.started)
        completion_tokens = usage.get("completion_tokens")
        if isinstance(completion_tokens, int):
            body["eval_count"] = completion_tokens
        body["eval_duration"] = max(0, end - first)
        return body


def loaded(
    model: str,
    shape: Literal["chat", "generate"],
    reason: str = "load",
    clock: Clock = time.time_ns,
) -> dict[str, Any]:
    """Ollama's answer to an empty prompt or message list: the model is "loaded" (or, with
    ``keep_alive`` 0, "unloaded")."""
    body: dict[str, Any] = {"model": model, "created_at": rfc3339(clock())}
    if shape == "chat":
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    body["done"] = True
    body["done_reason"] = reason
    return body
