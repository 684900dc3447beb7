"""The OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/models`` and ``/v1/models/{id}`` (the last two in Anthropic's shape
for clients that send ``anthropic-version``).

A missing ``stream`` means "don't stream" here; the body decides, never the Accept header
(openai-node 4.x sends ``Accept: application/json`` on streams too).
"""

from __future__ import annotations

from aiohttp import web

from mcp_local_provider.http.calls import call_for, fetch_embeddings, plan
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import answer, json_reply
from mcp_local_provider.http.state import STATE
from mcp_local_provider.translate.anthropic import models as anthropic_models
from mcp_local_provider.translate.common import parse_body
from mcp_local_provider.translate.embeddings import shorten
from mcp_local_provider.translate.openai import models
from mcp_local_provider.translate.openai.reply import ChatReply, CompletionReply, embeddings_body
from mcp_local_provider.translate.openai.request import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
)

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
    Operation("post", "/v1/embeddings", "Embeddings", EmbeddingRequest),
    Operation("get", "/v1/models", "The models agents serve"),
    Operation("get", "/v1/models/{model}", "One model"),
]


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    chat = parse_body(ChatRequest, await request.read())
    entry, payload, needs = plan(request, chat)
    call = call_for(request, "chat", entry.target, payload, bool(chat.stream), needs)
    return await answer(request, call, ChatReply(chat.model, chat.wants_usage))


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    asked = parse_body(CompletionRequest, await request.read())
    needs = asked.needs()
    entry = request.app[STATE].catalog.resolve(asked.model, needs)
    call = call_for(
        request, "completion", entry.target, asked.payload(entry.target), bool(asked.stream), needs
    )
    reply = CompletionReply(
        asked.model, echo_prompt=asked.text if asked.echo else "", want_usage=asked.wants_usage
    )
    return await answer(request, call, reply)


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    asked = parse_body(EmbeddingRequest, await request.read())
    entry = request.app[STATE].catalog.resolve(asked.model, ["embedding"])
    found, usage = await fetch_embeddings(request, entry, asked.inputs(), asked.dimensions)
    found = [shorten(v, asked.dimensions) for v in found]
    return json_reply(embeddings_body(asked.model, found, asked.encoding_format, usage))


#: Sent by every Anthropic client; the model routes then answer in Anthropic's shape.
ANTHROPIC_VERSION = "anthropic-version"


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    entries = request.app[STATE].catalog.entries()
    if ANTHROPIC_VERSION in request.headers:
        listed = [(e.name, e.created, e.context_length) for e in entries]
        return json_reply(anthropic_models.models_page(listed))
    return json_reply(
        models.models_list([(e.name, int(e.created), e.context_length) for e in entries])
    )


@routes.get("/v1/models/{model:.+}")
async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    entry = request.app[STATE].catalog.resolve(name)
    if ANTHROPIC_VERSION in request.headers:
        return json_reply(anthropic_models.model_info(name, entry.created, entry.context_length))
    return json_reply(models.model_entry(name, int(entry.created), entry.context_length))
