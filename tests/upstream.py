"""A canned OpenAI-compatible upstream for the openai backend's tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WORDS = ["Hello", " there!", " How", " are", " you", " today?"]
USAGE = {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}


@dataclass
class Upstream:
    """What the upstream was asked, and how it answers (``mode``)."""

    mode: str = "stream"  # stream | json | error | midstream_error | tools | slow
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app

    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        self.requests.append((request.path, body))
        self.headers.append(dict(request.headers))

    async def models(self, request: web.Request) -> web.Response:
        self._record(request, {})
        return web.json_response(
            {"object": "list", "data": [{"id": "up-small"}, {"id": "up-large"}]}
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        if self.mode == "error":
            error = {"error": {"message": "slow down", "type": "rate_limit_error", "code": None}}
            return web.json_response(error, status=429)
        if self.mode == "json":
            message = {
                "role": "assistant",
                "content": "".join(WORDS),
                "reasoning_content": "Thinking.",
            }
            return web.json_response({
                "id": "c1", "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": USAGE,
            })  # fmt: skip
        chunks: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        finish = "stop"
        if self.mode == "tools":
            chunks += [
                {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                 "function": {"name": "weather", "arguments": ""}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
            ]  # fmt: skip
            finish = "tool_calls"
        else:
            chunks += [{"reasoning_content": "Thinking."}] + [{"content": w} for w in WORDS]
        return await self._sse(request, [_chunk(d) for d in chunks], finish)

    async def _sse(
        self, request: web.Request, chunks: list[dict[str, Any]], finish: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(b": keep-alive comment\n\n")
            for chunk in chunks:
                if self.mode == "slow":
                    await asyncio.sleep(0.2)
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if self.mode == "midstream_error":
                await response.write(b'data: {"error": {"message": "model crashed"}}\n\n')
                return response
            last = chunks[-1]
            done = {
                **last,
                "choices": [{**last["choices"][0], "delta": {}, "finish_reason": finish}],
            }
            await response.write(b"data: " + json.dumps(done).encode() + b"\n\n")
            usage = {**last, "choices": [], "usage": USAGE}
            await response.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionError):
            self.disconnected.set()
            raise
        return response

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        chunks = [
            {"id": "t1", "object": "text_completion", "choices": [{"index": 0, "text": w}]}
            for w in ("return", " a + b")
        ]
        return await self._sse(request, chunks, "stop")

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(i), 0.5]}
            for i in range(len(body["input"]))
        ]
        return web.json_response(
            {"object": "list", "data": data[::-1], "usage": {"prompt_tokens": 2, "total_tokens": 2}}
        )


def _chunk(delta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "up-small",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
