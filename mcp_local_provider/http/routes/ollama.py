"""The Ollama API: ``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``,
``/api/chat``, ``/api/generate``, ``/api/embed`` and ``/api/embeddings``.

A missing ``stream`` means streaming here (unlike ``/v1/*``). Bodies are read as JSON whatever
the Content-Type says (litellm sends none).
"""

from __future__ import annotations

import time

from aiohttp import web

from mcp_local_provider.core.catalog import require
from mcp_local_provider.core.registry import SessionState
from mcp_local_provider.http.calls import apply_format, call_for, fetch_embeddings, plan
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import answer, json_reply
from mcp_local_provider.http.state import STATE
from mcp_local_provider.translate.common import parse_body
from mcp_local_provider.translate.embeddings import shorten
from mcp_local_provider.translate.ollama import models as shapes
from mcp_local_provider.translate.ollama.reply import NDJSON_CONTENT_TYPE, OllamaReply, loaded
from mcp_local_provider.translate.ollama.request import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    ShowRequest,
)

routes = web.RouteTableDef()
STREAMED = ("application/json", NDJSON_CONTENT_TYPE)
operations = [
    Operation("get", "/", "Liveness, as Ollama answers it", media_types=("text/plain",)),
    Operation("get", "/api/version", "The Ollama version this daemon speaks"),
    Operation("get", "/api/tags", "The models agents serve"),
    Operation("get", "/api/ps", "The models whose agent is connected"),
    Operation("post", "/api/show", "One model's details", ShowRequest),
    Operation(
        "post",
        "/api/chat",
        "Chat",
        ChatRequest,
        media_types=STREAMED,
    ),
    Operation(
        "post",
        "/api/generate",
        "Completion",
        GenerateRequest,
        media_types=STREAMED,
    ),
    Operation("post", "/api/embed", "Embeddings", EmbedRequest),
    Operation("post", "/api/embeddings", "Embeddings (the older route)", EmbeddingsRequest),
]


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return json_reply({"version": shapes.OLLAMA_VERSION})


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    return json_reply(shapes.tags(request.app[STATE].catalog.entries()))


@routes.get("/api/ps")
async def running(request: web.Request) -> web.Response:
    state = request.app[STATE]
    connected = [s for s in state.registry.in_state(SessionState.ACTIVE) if s.connected]
    models = []
    for entry in state.catalog.entries():
        expiries = [s.expires_at or 0.0 for s in connected if s.serves(entry.target)]
        if expiries:
            models.append(shapes.running(entry, max(expiries)))
    return json_reply({"models": models})


@routes.post("/api/show")
async def show(request: web.Request) -> web.Response:
    asked = parse_body(ShowRequest, await request.read())
    entry = request.app[STATE].catalog.resolve(asked.model)
    user_agent = request.headers.get("User-Agent", "")
    return json_reply(shapes.show(entry, asked.model, user_agent))


@routes.post("/api/chat")
async def chat(request: web.Request) -> web.StreamResponse:
    started = time.monotonic_ns()
    asked = parse_body(ChatRequest, await request.read())
    entry, payload, needs = plan(request, asked)
    if not asked.messages:
        return json_reply(loaded(asked.model, "chat", asked.load_reason))
    call = call_for(request, "chat", entry.target, payload, asked.streaming, needs)
    return await answer(request, call, OllamaReply(asked.model, "chat", started=started))


@routes.post("/api/generate")
async def generate(request: web.Request) -> web.StreamResponse:
    started = time.monotonic_ns()
    asked = parse_body(GenerateRequest, await request.read())
    entry = request.app[STATE].catalog.resolve(asked.model)
    needs = asked.needs(entry)  # which depends on what the model can do (chat or completion)
    require(entry, asked.model, needs)
    if asked.loads_only:
        return json_reply(loaded(asked.model, "generate", asked.load_reason))
    kind = asked.kind(entry)
    payload = asked.payload(entry)
    apply_format(request, entry, asked.model, payload, asked.format_param)
    call = call_for(request, kind, entry.target, payload, asked.streaming, needs)
    return await answer(request, call, OllamaReply(asked.model, "generate", started=started))


@routes.post("/api/embed")
async def embed(request: web.Request) -> web.Response:
    started = time.monotonic_ns()
    asked = parse_body(EmbedRequest, await request.read())
    entry = request.app[STATE].catalog.resolve(asked.model, ["embedding"])
    texts = asked.inputs()
    if not texts:
        return json_reply({"model": asked.model, "embeddings": []})
    found, usage = await fetch_embeddings(request, entry, texts, asked.dimensions)
    return json_reply(
        {
            "model": asked.model,
            "embeddings": [shorten(v, asked.dimensions) for v in found],
            "total_duration": time.monotonic_ns() - started,
            "prompt_eval_count": usage["prompt_tokens"],
        }
    )


@routes.post("/api/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    asked = parse_body(EmbeddingsRequest, await request.read())
    entry = request.app[STATE].catalog.resolve(asked.model, ["embedding"])
    if not asked.prompt:
        return json_reply({"embedding": []})
    found, _ = await fetch_embeddings(request, entry, [asked.prompt], None)
    return json_reply({"embedding": found[0]})
