"""Agent frames -> OpenAI Responses answers: one ``response`` object, or the SSE events the
Responses API streams (an ``event:`` line and a ``data:`` line each, every event with the next
``sequence_number``). Pure: no I/O.

Output items come in the order the agent produces them: ``reasoning`` (its text as a summary),
``message`` (one ``output_text`` part) and ``function_call`` items. A stream is
``response.created``, ``response.in_progress``, then per item ``response.output_item.added``,
its deltas and ``response.output_item.done``, then ``response.completed`` (``response.incomplete``
when the agent hit ``max_output_tokens``, ``response.failed`` when it failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
from mcp_local_provider.translate.estimate import output_tokens
from mcp_local_provider.translate.responses.errors import error_object


def new_id(prefix: str) -> str:
    return f"{prefix}_{unique_hex(32)}"


def sse(name: str, body: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(body).encode() + b"\n\n"


def usage_body(reported: dict[str, Any] | None, input_estimate: int, output: int) -> dict[str, Any]:
    """The agent's counts when it reports them, else the estimates."""
    reported = reported or {}
    prompt = reported.get("prompt_tokens")
    completion = reported.get("completion_tokens")
    input_tokens = prompt if isinstance(prompt, int) else input_estimate
    output_count = completion if isinstance(completion, int) else output
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_count,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_count,
    }


IdMaker = Callable[[str], str]


class Answer:
    """The output items built from agent frames, shared by the aggregate and the stream.
    ``ids`` makes each id from its prefix (tests pass a predictable one)."""

    def __init__(
        self, model: str, request: dict[str, Any], input_estimate: int, ids: IdMaker = new_id
    ) -> None:
        self.ids = ids
        self.id = ids("resp")
        self.created_at = int(time.time())
        self.model = model
        self.request = request  # echoed fields: instructions, tools, tool_choice, ...
        self.input_estimate = input_estimate
        self.output: list[dict[str, Any]] = []
        self.reported: dict[str, Any] | None = None
        self.generated: list[str] = []
        self.status = "in_progress"
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None

    @property
    def estimated(self) -> bool:
        return not isinstance((self.reported or {}).get("prompt_tokens"), int)

    def settle(self, finish_reason: str | None) -> None:
        if finish_reason == "length":
            self.status = "incomplete"
            self.incomplete = {"reason": "max_output_tokens"}
        elif finish_reason == "content_filter":
            self.status = "incomplete"
            self.incomplete = {"reason": "content_filter"}
        else:
            self.status = "completed"

    def fail(self, error: errors.ProviderError) -> None:
        self.status = "failed"
        self.error = error_object(error)

    def body(self) -> dict[str, Any]:
        request = self.request
        done = self.status != "in_progress"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "model": self.model,
            "output": self.output if done else [],
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None, **(request.get("reasoning") or {})},
            "store": False,
            "temperature": request.get("temperature"),
            "text": request.get("text") or {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice") or "auto",
            "tools": request.get("tools") or [],
            "top_p": request.get("top_p"),
            "truncation": "disabled",
            "usage": self.usage() if done else None,
            "metadata": request.get("metadata") or {},
        }

    def usage(self) -> dict[str, Any]:
        return usage_body(
            self.reported, self.input_estimate, output_tokens("".join(self.generated))
        )


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [] if status == "in_progress" else [output_text(text)],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, text: str | None) -> dict[str, Any]:
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": summary}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


class ResponseReply(FoldedAnswer):
    """A ``response`` object: streamed as Responses SSE events, or folded into one body for a
    client that did not ask for a stream.

    One item is open at a time, as with the real API: a delta of another kind (reasoning,
    text, a tool call with another index) completes the open item and adds the next. A
    fragment for a tool call whose item was already completed fails the stream.
    """

    media_type = SSE_CONTENT_TYPE
    keepalive = b""

    def __init__(
        self, model: str, request: dict[str, Any], input_estimate: int, ids: IdMaker = new_id
    ) -> None:
        super().__init__()
        self.answer = Answer(model, request, input_estimate, ids)
        self.sequence = 0
        self.started = False
        self.open: dict[str, Any] | None = None  # the open item, with its buffers
        self.closed_tools: set[int] = set()

    @property
    def model(self) -> str:
        return self.answer.model

    @model.setter
    def model(self, name: str) -> None:
        self.answer.model = name

    def _event(self, kind: str, /, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(kind, body)

    def _start(self) -> bytes:
        self.started = True
        body = self.answer.body()
        return self._event("response.created", response=body) + self._event(
            "response.in_progress", response=body
        )

    # -- items ------------------------------------------------------------------------------

    def _add(self, item: dict[str, Any], key: str) -> bytes:
        out = self._complete()
        index = len(self.answer.output)
        self.answer.output.append(item)
        self.open = {"key": key, "index": index, "item": item, "text": []}
        return out + self._event("response.output_item.added", output_index=index, item=item)

    def _complete(self) -> bytes:
        """Finish the open item: its closing events, then ``response.output_item.done``."""
        current = self.open
        if current is None:
            return b""
        self.open = None
        index, item = current["index"], current["item"]
        text = "".join(current["text"])
        ids = {"item_id": item["id"], "output_index": index}
        out = b""
        if item["type"] == "message":
            part = output_text(text)
            out += self._event("response.output_text.done", **ids, content_index=0, text=text)
            out += self._event("response.content_part.done", **ids, content_index=0, part=part)
            done = message_item(item["id"], text, "completed")
        elif item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            out += self._event(
                "response.reasoning_summary_text.done", **ids, summary_index=0, text=text
            )
            out += self._event(
                "response.reasoning_summary_part.done", **ids, summary_index=0, part=part
            )
            done = reasoning_item(item["id"], text)
        else:
            self.closed_tools.add(current["tool_index"])
            out += self._event(
                "response.function_call_arguments.done", **ids, name=item["name"], arguments=text
            )
            done = call_item(item["id"], item["call_id"], item["name"], text, "completed")
        self.answer.output[index] = done
        return out + self._event("response.output_item.done", output_index=index, item=done)

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["item"]["id"], "output_index": self.open["index"]}

    def _reasoning(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["key"] != "reasoning":
            out = self._add(reasoning_item(self.answer.ids("rs"), None), "reasoning")
            part = {"type": "summary_text", "text": ""}
            out += self._event(
                "response.reasoning_summary_part.added", **self._where(), summary_index=0, part=part
            )
        assert self.open is not None
        self.open["text"].append(text)
        self.answer.generated.append(text)
        return out + self._event(
            "response.reasoning_summary_text.delta", **self._where(), summary_index=0, delta=text
        )

    def _text(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["key"] != "text":
            out = self._add(message_item(self.answer.ids("msg"), "", "in_progress"), "text")
            out += self._event(
                "response.content_part.added",
                **self._where(),
                content_index=0,
                part=output_text(""),
            )
        assert self.open is not None
        self.open["text"].append(text)
        self.answer.generated.append(text)
        return out + self._event(
            "response.output_text.delta", **self._where(), content_index=0, delta=text, logprobs=[]
        )

    def _tool(self, position: int, call: ToolCallDelta) -> bytes:
        index = call.get("index")
        index = index if isinstance(index, int) else position
        key = f"tool:{index}"
        function = call.get("function") or {}
        out = b""
        if self.open is None or self.open["key"] != key:
            if index in self.closed_tools:
                raise errors.AgentFailed(
                    "the agent interleaved tool calls, which this stream cannot relay"
                )
            item = call_item(
                self.answer.ids("fc"),
                call.get("id") or self.answer.ids("call"),
                str(function.get("name") or ""),
                "",
                "in_progress",
            )
            out = self._add(item, key)
            assert self.open is not None
            self.open["tool_index"] = index
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = dumps(arguments)
        if arguments:
            assert self.open is not None
            self.open["text"].append(arguments)
            out += self._event(
                "response.function_call_arguments.delta", **self._where(), delta=arguments
            )
        return out

    # -- frames -----------------------------------------------------------------------------

    def encode(self, frame: AnswerFrame) -> bytes:
        """The SSE bytes for one agent frame; the last one also ends the response."""
        out = b"" if self.started else self._start()
        delta, finish_reason = frame_delta(frame)
        usage = frame_usage(frame)
        if usage is not None:
            self.answer.reported = usage
        if delta.get("reasoning_content"):
            out += self._reasoning(str(delta["reasoning_content"]))
        if delta.get("content"):
            out += self._text(str(delta["content"]))
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                out += self._tool(position, call)
        if finish_reason is not None:
            out += self._complete()
            self.answer.settle(finish_reason)
            name = "response.completed"
            if self.answer.status == "incomplete":
                name = "response.incomplete"
            out += self._event(name, response=self.answer.body())
        return out

    def finish(self) -> bytes:
        return b""

    def fail(self, error: errors.ProviderError) -> bytes:
        """A failure after the stream began: ``response.failed`` carrying the error."""
        self.open = None
        self.answer.fail(error)
        return self._event("response.failed", response=self.answer.body())

    # -- folded ------------------------------------------------------------------------------

    def add(self, frame: AnswerFrame) -> None:
        self.fold(frame)
        usage = frame_usage(frame)
        if usage is not None:
            self.answer.reported = usage

    def body(self) -> dict[str, Any]:
        answer = self.answer
        if self.reasoning:
            answer.output.append(reasoning_item(self.answer.ids("rs"), "".join(self.reasoning)))
        text = "".join(self.text)
        if text or not self.tool_calls:
            answer.output.append(message_item(self.answer.ids("msg"), text, "completed"))
        for call in self.tool_calls:
            function = call["function"]
            answer.output.append(
                call_item(
                    self.answer.ids("fc"),
                    call["id"] or self.answer.ids("call"),
                    function["name"],
                    function["arguments"],
                    "completed",
                )
            )
        answer.generated = [text, *self.reasoning]
        answer.settle(self.finish_reason)
        return answer.body()
