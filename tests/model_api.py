"""A mock model API for the real agent CLIs: enough of Anthropic's Messages API (Claude Code),
OpenAI's Responses API (Codex) and Gemini's API (Gemini CLI) to answer with scripted text,
stream it piece by piece, fail with a status, or stay silent. It listens on a random loopback
port and records every request, so tests can check what each CLI sent its model (the tools it
offered, above all).

``ModelApi.script(...)`` queues replies for the next answering calls; after the queue is empty
each call gets ``default``. Gemini CLI's routing call (a non-streaming ``generateContent`` that
asks which model should answer) is answered on its own and never takes a scripted reply.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: Usage every answer reports (prompt tokens, completion tokens).
USAGE = (12, 9)
#: Usage of Gemini CLI's routing call.
ROUTER_USAGE = (23, 5)


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``pieces`` streamed ``delay`` seconds apart, or an HTTP ``status``
    error, or (``silent``) nothing at all until the client gives up."""

    pieces: Sequence[str] = ("Hello there! How are you today?",)
    delay: float = 0.0
    status: int = 200
    silent: bool = False
    #: Reasoning sent before the answer (Anthropic: a thinking block; Responses: a summary).
    reasoning: str = ""
    #: Instead of text, a call of this tool (``name`` or, for Codex's MCP tools,
    #: ``namespace.name``) with these arguments.
    tool_call: tuple[str, dict[str, Any]] | None = None
    #: Instead of text, these calls in one answer (parallel calls); ``tool_call`` is one.
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: With a ``status``: the error body (else a generic one) and extra response headers, to
    #: answer as a vendor does when it refuses (a 429 with its rate-limit headers, say).
    error: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, text: str, *, pieces: int = 1, delay: float = 0.0) -> Reply:
        size = max(1, -(-len(text) // pieces))
        return cls(tuple(text[i : i + size] for i in range(0, len(text), size)), delay)

    @property
    def whole(self) -> str:
        return "".join(self.pieces)

    @property
    def calls(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The tool calls this answer makes (none: it answers in text)."""
        return self.tool_calls or (() if self.tool_call is None else (self.tool_call,))


FAIL = Reply(status=500)
SILENT = Reply(silent=True)


@dataclass
class Seen:
    """One request the mock received."""

    api: str  # "anthropic" | "responses" | "gemini" | "gemini-router" | "other"
    method: str
    path: str
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    #: When each streamed piece was written (monotonic clock).
    sent: list[float] = field(default_factory=list)

    def tool_names(self) -> list[str]:
        """The names of the tools this request offered the model."""
        names: list[str] = []
        for tool in self.body.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            if "functionDeclarations" in tool:  # Gemini
                names += [str(f.get("name")) for f in tool["functionDeclarations"]]
            elif tool.get("type") == "namespace":  # Codex's MCP tools
                names += [f"{tool.get('name')}.{t.get('name')}" for t in tool.get("tools") or []]
            else:
                names.append(str(tool.get("name") or tool.get("type")))
        return names


class ModelApi:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.replies: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.url = ""
        #: Numbers the tool calls answered, so each call has an id of its own.
        self._call_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def answering(self) -> list[Seen]:
        """The requests that asked for an answer (not routing, counting or other calls)."""
        return [s for s in self.seen if s.api in ("anthropic", "responses", "gemini")]

    # -- life ---------------------------------------------------------------------------------

    async def start(self) -> ModelApi:
        app = web.Application()
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post(r"/{version}/models/{model}:{verb}", self._gemini)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- routes -------------------------------------------------------------------------------

    async def _record(self, api: str, request: web.Request) -> Seen:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw.decode(errors="replace")}
        seen = Seen(api, request.method, request.path_qs, body if isinstance(body, dict) else {})
        self.seen.append(seen)
        return seen

    def _next(self) -> Reply:
        return self.replies.popleft() if self.replies else self.default

    async def _failed_or_silent(self, reply: Reply) -> web.Response | None:
        if reply.silent:
            await asyncio.Event().wait()  # until the client hangs up (the handler is cancelled)
        if reply.status != 200:
            error = reply.error or {
                "type": "error",
                "error": {"type": "api_error", "message": "mock failure"},
            }
            return web.json_response(error, status=reply.status, headers=dict(reply.headers))
        return None

    async def _other(self, request: web.Request) -> web.Response:
        await self._record("other", request)
        return web.json_response({"error": {"message": "not mocked"}}, status=404)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        seen = await self._record("anthropic", request)
        reply = self._next()
        if (failed := await self._failed_or_silent(reply)) is not None:
            return failed
        model = str(seen.body.get("model") or "claude")
        message: dict[str, Any] = {
            "id": f"msg_mock_{len(self.seen)}",  # each answer its own, as a real API's
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": USAGE[0], "output_tokens": 1},
        }
        if not seen.body.get("stream"):
            message["content"] = [{"type": "text", "text": reply.whole}]
            message["stop_reason"] = "end_turn"
            message["usage"] = {"input_tokens": USAGE[0], "output_tokens": USAGE[1]}
            return web.json_response(message)
        stream = await _sse(request)
        await _event(stream, "message_start", {"type": "message_start", "message": message})
        if reply.calls:
            ids = [f"toolu_mock_{next(self._call_ids)}" for _ in reply.calls]
            await _anthropic_tool_use(stream, list(zip(ids, reply.calls, strict=True)))
            return stream
        index = 0
        if reply.reasoning:
            await _anthropic_thinking(stream, reply.reasoning)
            index = 1
        block = {"type": "text", "text": ""}
        start = {"type": "content_block_start", "index": index, "content_block": block}
        await _event(stream, "content_block_start", start)
        async for piece in _pieces(reply):
            delta = {"type": "text_delta", "text": piece}
            data = {"type": "content_block_delta", "index": index, "delta": delta}
            await _event(stream, "content_block_delta", data)
            seen.sent.append(time.monotonic())
        stop = {"type": "content_block_stop", "index": index}
        await _event(stream, "content_block_stop", stop)
        done = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": USAGE[1]},
        }
        await _event(stream, "message_delta", done)
        await _event(stream, "message_stop", {"type": "message_stop"})
        return stream

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        seen = await self._record("responses", request)
        reply = self._next()
        if (failed := await self._failed_or_silent(reply)) is not None:
            return failed
        model = str(seen.body.get("model") or "gpt")
        response: dict[str, Any] = {
            "id": "resp_mock",
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": model,
            "output": [],
        }
        stream = await _sse(request)
        await _event(stream, "response.created", {"type": "response.created", "response": response})
        output: list[dict[str, Any]] = []
        if reply.reasoning:
            output.append(await _responses_reasoning(stream, reply.reasoning))
        if reply.calls:
            for name, arguments in reply.calls:
                number = next(self._call_ids)
                output.append(await _responses_call(stream, len(output), number, name, arguments))
            await _responses_completed(stream, response, output)
            return stream
        item: dict[str, Any] = {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        at = len(output)
        added = {"type": "response.output_item.added", "output_index": at, "item": item}
        await _event(stream, "response.output_item.added", added)
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": "msg_mock", "output_index": at, "content_index": 0}
        await _event(
            stream,
            "response.content_part.added",
            {"type": "response.content_part.added", **where, "part": part},
        )
        async for piece in _pieces(reply):
            data = {"type": "response.output_text.delta", **where, "delta": piece}
            await _event(stream, "response.output_text.delta", data)
            seen.sent.append(time.monotonic())
        text = {"type": "output_text", "text": reply.whole, "annotations": []}
        await _event(
            stream,
            "response.output_text.done",
            {"type": "response.output_text.done", **where, "text": reply.whole},
        )
        await _event(
            stream,
            "response.content_part.done",
            {"type": "response.content_part.done", **where, "part": text},
        )
        item = {**item, "status": "completed", "content": [text]}
        done = {"type": "response.output_item.done", "output_index": at, "item": item}
        await _event(stream, "response.output_item.done", done)
        output.append(item)
        await _responses_completed(stream, response, output)
        return stream

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        verb, model = request.match_info["verb"], request.match_info["model"]
        streaming = verb == "streamGenerateContent"
        if verb not in ("generateContent", "streamGenerateContent"):
            seen = await self._record("other", request)
            return web.json_response({}, status=404)
        seen = await self._record("gemini" if streaming else "gemini-router", request)
        if not streaming:
            # The routing call: Gemini CLI asks which model should answer, in JSON.
            choice = {"complexity_reasoning": "A short answer.", "complexity_score": 5}
            chunk = _gemini_chunk(json.dumps(choice), ROUTER_USAGE[0], ROUTER_USAGE[1], model)
            return web.json_response(chunk)
        reply = self._next()
        if (failed := await self._failed_or_silent(reply)) is not None:
            return failed
        stream = await _sse(request)
        if reply.calls:
            chunk = _gemini_chunk("", USAGE[0], USAGE[1], model)
            chunk["candidates"][0]["content"]["parts"] = [
                {"functionCall": {"name": name, "args": args}} for name, args in reply.calls
            ]
            await stream.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            return stream
        count = len(reply.pieces)
        i = 0
        async for piece in _pieces(reply):
            i += 1
            last = i == count
            chunk = _gemini_chunk(piece, USAGE[0], USAGE[1] if last else 0, model, finished=last)
            await stream.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            seen.sent.append(time.monotonic())
        return stream


async def _anthropic_tool_use(
    stream: web.StreamResponse, calls: list[tuple[str, tuple[str, dict[str, Any]]]]
) -> None:
    """Blocks 0, 1, ...: a call of each tool (``(id, (name, arguments))``); the message stops
    for them."""
    for index, (call_id, (name, arguments)) in enumerate(calls):
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        start = {"type": "content_block_start", "index": index, "content_block": block}
        await _event(stream, "content_block_start", start)
        delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
        data = {"type": "content_block_delta", "index": index, "delta": delta}
        await _event(stream, "content_block_delta", data)
        stop = {"type": "content_block_stop", "index": index}
        await _event(stream, "content_block_stop", stop)
    done = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": USAGE[1]},
    }
    await _event(stream, "message_delta", done)
    await _event(stream, "message_stop", {"type": "message_stop"})


async def _anthropic_thinking(stream: web.StreamResponse, text: str) -> None:
    """Block 0: a thinking block with ``text``."""
    block = {"type": "thinking", "thinking": "", "signature": ""}
    start = {"type": "content_block_start", "index": 0, "content_block": block}
    await _event(stream, "content_block_start", start)
    for delta in (
        {"type": "thinking_delta", "thinking": text},
        {"type": "signature_delta", "signature": "mock"},
    ):
        data = {"type": "content_block_delta", "index": 0, "delta": delta}
        await _event(stream, "content_block_delta", data)
    await _event(stream, "content_block_stop", {"type": "content_block_stop", "index": 0})


async def _responses_call(
    stream: web.StreamResponse, at: int, number: int, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """Output item ``at``: function call ``number`` (``namespace.name`` for a namespaced
    tool)."""
    namespace, _, function = name.rpartition(".")
    item: dict[str, Any] = {
        "id": f"fc_mock_{number}",
        "type": "function_call",
        "status": "completed",
        "call_id": f"call_mock_{number}",
        "name": function,
        "arguments": json.dumps(arguments),
    }
    if namespace:
        item["namespace"] = namespace
    added = {"type": "response.output_item.added", "output_index": at, "item": item}
    await _event(stream, "response.output_item.added", added)
    done = {"type": "response.output_item.done", "output_index": at, "item": item}
    await _event(stream, "response.output_item.done", done)
    return item


async def _responses_completed(
    stream: web.StreamResponse, response: dict[str, Any], output: list[dict[str, Any]]
) -> None:
    usage = {
        "input_tokens": USAGE[0],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": USAGE[1],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": sum(USAGE),
    }
    response = {**response, "status": "completed", "output": output, "usage": usage}
    await _event(stream, "response.completed", {"type": "response.completed", "response": response})


async def _responses_reasoning(stream: web.StreamResponse, text: str) -> dict[str, Any]:
    """Output item 0: a reasoning item whose summary is ``text``; returns the item."""
    item: dict[str, Any] = {"id": "rs_mock", "type": "reasoning", "summary": []}
    added = {"type": "response.output_item.added", "output_index": 0, "item": item}
    await _event(stream, "response.output_item.added", added)
    where = {"item_id": "rs_mock", "output_index": 0, "summary_index": 0}
    part = {"type": "summary_text", "text": ""}
    await _event(
        stream,
        "response.reasoning_summary_part.added",
        {"type": "response.reasoning_summary_part.added", **where, "part": part},
    )
    delta = {"type": "response.reasoning_summary_text.delta", **where, "delta": text}
    await _event(stream, "response.reasoning_summary_text.delta", delta)
    done_text = {"type": "response.reasoning_summary_text.done", **where, "text": text}
    await _event(stream, "response.reasoning_summary_text.done", done_text)
    item = {**item, "summary": [{"type": "summary_text", "text": text}]}
    done = {"type": "response.output_item.done", "output_index": 0, "item": item}
    await _event(stream, "response.output_item.done", done)
    return item


def _gemini_chunk(
    text: str, prompt: int, output: int, model: str, *, finished: bool = True
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if finished:
        candidate["finishReason"] = "STOP"
    usage = {"promptTokenCount": prompt}
    if output:
        usage |= {"candidatesTokenCount": output, "totalTokenCount": prompt + output}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}


async def _sse(request: web.Request) -> web.StreamResponse:
    stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await stream.prepare(request)
    return stream


async def _event(stream: web.StreamResponse, name: str, data: dict[str, Any]) -> None:
    await stream.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())


async def _pieces(reply: Reply) -> AsyncIterator[str]:
    """The reply's pieces: the first at once, each next one ``delay`` seconds later."""
    for i, piece in enumerate(reply.pieces):
        if i and reply.delay:
            await asyncio.sleep(reply.delay)
        yield piece


@asynccontextmanager
async def model_api(default: Reply | None = None) -> AsyncIterator[ModelApi]:
    api = await ModelApi(default).start()
    try:
        yield api
    finally:
        await api.stop()
