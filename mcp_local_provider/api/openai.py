"""The OpenAI-compatible routes: ``/v1/chat/completions`` and ``/v1/models``."""

from __future__ import annotations

from aiohttp import web

from ..app import STATE
from ..registry import SessionState
from ..router import Call
from ..translate.common import parse_body
from ..translate.openai import (
    ChatAggregate,
    ChatRequest,
    ChatStream,
    models_list,
    stream_error,
)
from .relay import relay

routes = web.RouteTableDef()

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    chat = parse_body(ChatRequest, await request.read())
    call = Call(
        kind="chat",
        model=chat.model,
        payload=chat.payload(),
        stream=bool(chat.stream),
        session_hint=request.headers.get("X-MCP-Session"),
    )
    async with request.app[STATE].router.open(call) as events:
        if call.stream:
            stream = ChatStream(chat.model, chat.wants_usage)
            return await relay(
                request,
                events,
                content_type=SSE_CONTENT_TYPE,
                encode=stream.encode,
                finish=stream.finish,
                encode_error=stream_error,
            )
        aggregate = ChatAggregate(chat.model)
        async for event in events:
            aggregate.add(event)
    return web.json_response(aggregate.body())


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    names: dict[str, None] = {}
    for session in state.registry.in_state(SessionState.ACTIVE):
        for model in session.models:
            names.setdefault(model.name)
    return web.json_response(models_list(list(names), int(state.started)))
