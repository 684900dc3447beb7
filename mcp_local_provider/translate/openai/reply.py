"""Agent frames -> OpenAI answers: a chat completion or a legacy text completion, streamed as
SSE chunks or folded into one body (each a ``Reply``), and the embeddings list. Pure: no I/O."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.ids import unique_hex
from mcp_local_provider.core.protocol import AnswerFrame, ToolCallDelta
from mcp_local_provider.translate.common import (
    SSE_CONTENT_TYPE,
    FoldedAnswer,
    frame_delta,
    frame_usage,
)
from mcp_local_provider.translate.openai.errors import sse, stream_error

SSE_DONE = b"data: [DONE]\n\n"


def completion_id() -> str:
    return "chatcmpl-" + unique_hex(24)


def tool_call_id() -> str:
    return "call_" + unique_hex(24)


def no_usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class ChatReply(FoldedAnswer):
    """A ``chat.completion``: streamed as ``chat.completion.chunk`` SSE events, one event per
    frame, or folded into one body for a client that did not ask for a stream.

    Tool calls go out as OpenAI streams them: each call's ``id``, ``type`` and ``name`` once,
    on its first fragment, then ``arguments`` as string fragments (Void joins every fragment
    it sees, so a repeated name would garble it). The finish reason is ``tool_calls`` when
    the agent called a tool and said ``stop``.
    """

    __slots__ = ("created", "id", "model", "sent_role", "tools_started", "usage", "want_usage")
    media_type = SSE_CONTENT_TYPE
    keepalive = b""

    def __init__(self, model: str, want_usage: bool = False) -> None:
        super().__init__()
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.sent_role = False
        self.want_usage = want_usage
        self.usage: dict[str, Any] | None = None
        self.tools_started: dict[int, bool] = {}  # index -> whether its name was sent

    def _event(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return sse(body)

    def _choice(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            self.sent_role = True
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def _tool_delta(self, position: int, call: ToolCallDelta) -> dict[str, Any]:
        index = call.get("index")
        index = index if isinstance(index, int) else position
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):
            arguments = dumps(arguments)
        out: dict[str, Any] = {"index": index}
        out_function: dict[str, Any] = {}
        if index not in self.tools_started:
            self.tools_started[index] = False
            out["id"] = call.get("id") or tool_call_id()
            out["type"] = "function"
        if not self.tools_started[index] and function.get("name"):
            self.tools_started[index] = True
            out_function["name"] = function["name"]
        out_function["arguments"] = arguments
        out["function"] = out_function
        return out

    # -- streamed ---------------------------------------------------------------------------

    def encode(self, frame: AnswerFrame) -> bytes:
        """The SSE bytes for one agent frame; the last one carries the finish reason."""
        delta, finish_reason = frame_delta(frame)
        usage = frame_usage(frame)
        if usage is not None:
            self.usage = usage
        out = dict(delta)
        calls = delta.get("tool_calls")
        if calls is not None:
            out["tool_calls"] = [
                self._tool_delta(i, c) for i, c in enumerate(calls) if isinstance(c, dict)
            ]
            if not out["tool_calls"]:
                del out["tool_calls"]
        if finish_reason == "stop" and self.tools_started:
            finish_reason = "tool_calls"
        if not out and finish_reason is None and self.sent_role:
            return b""
        return self._event([self._choice(out, finish_reason)])

    def finish(self) -> bytes:
        """What follows the last frame: the usage chunk if asked for, then ``[DONE]``."""
        if self.want_usage:
            return self._event([], self.usage or no_usage()) + SSE_DONE
        return SSE_DONE

    def fail(self, error: errors.ProviderError) -> bytes:
        return stream_error(error)

    # -- folded ------------------------------------------------------------------------------

    def add(self, frame: AnswerFrame) -> None:
        self.fold(frame)
        usage = frame_usage(frame)
        if usage is not None:
            self.usage = usage

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) if self.text or not self.tool_calls else None,
            "refusal": None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        finish_reason = self.finish_reason or "stop"
        if self.tool_calls:
            for call in self.tool_calls:
                call["id"] = call["id"] or tool_call_id()
            message["tool_calls"] = self.tool_calls
            if finish_reason == "stop":
                finish_reason = "tool_calls"
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": self.usage or no_usage(),
        }


def text_completion_id() -> str:
    return "cmpl-" + unique_hex(24)


class CompletionReply:
    """``text_completion`` objects: SSE chunks as frames arrive, or one body at the end."""

    media_type = SSE_CONTENT_TYPE
    keepalive = b""

    def __init__(self, model: str, *, echo_prompt: str = "", want_usage: bool = False) -> None:
        self.id = text_completion_id()
        self.created = int(time.time())
        self.model = model
        self.pending_echo = echo_prompt  # OpenAI's echo=true: the prompt comes first
        self.want_usage = want_usage
        self.text: list[str] = [echo_prompt] if echo_prompt else []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def _object(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _take(self, frame: AnswerFrame) -> tuple[str, str | None]:
        delta, finish_reason = frame_delta(frame)
        usage = frame_usage(frame)
        if usage is not None:
            self.usage = usage
        if finish_reason is not None:
            self.finish_reason = finish_reason
        return str(delta.get("content") or ""), finish_reason

    def encode(self, frame: AnswerFrame) -> bytes:
        text, finish_reason = self._take(frame)
        if self.pending_echo:
            text, self.pending_echo = self.pending_echo + text, ""
        if not text and finish_reason is None:
            return b""
        return sse(self._object(text, finish_reason))

    def finish(self) -> bytes:
        if self.want_usage:
            body = {**self._object("", None), "choices": [], "usage": self.usage or no_usage()}
            return sse(body) + SSE_DONE
        return SSE_DONE

    def fail(self, error: errors.ProviderError) -> bytes:
        return stream_error(error)

    def add(self, frame: AnswerFrame) -> None:
        text, _ = self._take(frame)
        if text:
            self.text.append(text)

    def body(self) -> dict[str, Any]:
        return {
            **self._object("".join(self.text), self.finish_reason or "stop"),
            "usage": self.usage or no_usage(),
        }


def as_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what the OpenAI SDKs decode."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_body(
    model: str, found: list[list[float]], fmt: str, usage: dict[str, Any]
) -> dict[str, Any]:
    encode = as_base64 if fmt == "base64" else (lambda v: v)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(found)
        ],
        "model": model,
        "usage": usage,
    }
