"""The OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/models`` and ``/v1/models/{id}`` (the last two in Anthropic's shape
for clients that send ``anthropic-version``).

A missing ``stream`` means "don't stream" here; the body decides, never the Accept header
(openai-node 4.x sends ``Accept: application/json`` on streams too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from mcp_local_provider.core.call import served_name
from mcp_local_provider.core.protocol import AnswerFrame
from mcp_local_provider.http.calls import call_for, fetch_embeddings, plan
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import json_reply
from mcp_local_provider.http.state import STATE
from mcp_local_provider.http.streaming import relay
from mcp_local_provider.translate.anthropic.reply import model_info, models_page
from mcp_local_provider.translate.common import parse_body
from mcp_local_provider.translate.embeddings import OpenAIEmbeddingRequest, openai_body, shorten
from mcp_local_provider.translate.openai.chat import (
    ChatAggregate,
    ChatRequest,
    ChatStream,
    model_entry,
    models_list,
    stream_error,
)
from mcp_local_provider.translate.openai.completions import CompletionReply, CompletionRequest

routes = web.RouteTableDef()
STREAMED = ("application/json", "text/event-stream")
operations = [
    Operation(
        "post",
        "/v1/chat/completions",
        "Chat completion",
        ChatRequest,
        media_types=STREAMED,
    ),
    Operation(
        "post",
        "/v1/completions",
        "Text completion",
        CompletionRequest,
        media_types=STREAMED,
    ),
    Operation("post", "/v1/embeddings", "Embeddings", OpenAIEmbeddingRequest),
    Operation("get", "/v1/models", "The models agents serve"),
    Operation("get", "/v1/models/{model}", "One model"),
]

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


async def _sse(
    request: web.Request,
    events: AsyncIterator[AnswerFrame],
    encode: Callable[[AnswerFrame], bytes],
    finish: Callable[[], bytes],
) -> web.StreamResponse:
    return await relay(
        request,
        events,
        content_type=SSE_CONTENT_TYPE,
        encode=encode,
        finish=finish,
        encode_error=stream_error,
    )


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    chat = parse_body(ChatRequest, await request.read())
    entry, payload, needs = plan(request, chat)
    call = call_for(request, "chat", entry.target, payload, bool(chat.stream), needs)
    async with request.app[STATE].router.open(call) as events:
        if call.stream:
            stream = ChatStream(served_name(call, chat.model), chat.wants_usage)
            return await _sse(request, events, stream.encode, stream.finish)
        aggregate = ChatAggregate(served_name(call, chat.model))
        async for event in events:
            aggregate.add(event)
        return json_reply(aggregate.body())


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    asked = parse_body(CompletionRequest, await request.read())
    needs = asked.needs()
    entry = request.app[STATE].catalog.resolve(asked.model, needs)
    call = call_for(
        request, "completion", entry.target, asked.payload(entry.target), bool(asked.stream), needs
    )
    async with request.app[STATE].router.open(call) as events:
        reply = CompletionReply(
            served_name(call, asked.model),
            echo_prompt=asked.text if asked.echo else "",
            want_usage=asked.wants_usage,
        )
        if call.stream:
            return await _sse(request, events, reply.encode, reply.finish)
        async for event in events:
            reply.add(event)
        return json_reply(reply.body())


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    asked = parse_body(OpenAIEmbeddingRequest, await request.read())
    entry = request.app[STATE].catalog.resolve(asked.model, ["embedding"])
    found, usage = await fetch_embeddings(request, entry, asked.inputs(), asked.dimensions)
    found = [shorten(v, asked.dimensions) for v in found]
    return json_reply(openai_body(asked.model, found, asked.encoding_format, usage))


#: Sent by every Anthropic client; the model routes then answer in Anthropic's shape.
ANTHROPIC_VERSION = "anthropic-version"


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    entries = request.app[STATE].catalog.entries()
    if ANTHROPIC_VERSION in request.headers:
        return json_reply(models_page([(e.name, e.created, e.context_length) for e in entries]))
    return json_reply(models_list([(e.name, int(e.created), e.context_length) for e in entries]))


@routes.get("/v1/models/{model:.+}")
async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    entry = request.app[STATE].catalog.resolve(name)
    if ANTHROPIC_VERSION in request.headers:
        return json_reply(model_info(name, entry.created, entry.context_length))
    return json_reply(model_entry(name, int(entry.created), entry.context_length))
