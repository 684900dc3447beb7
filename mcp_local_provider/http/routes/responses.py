"""The OpenAI Responses route: ``POST /v1/responses``, stateless (nothing is stored).

Codex CLI calls it with ``wire_api = "responses"``. It always asks for a stream and sends
``Accept-Encoding: zstd,gzip``: answers are sent uncompressed, which every client accepts.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from mcp_local_provider.http.calls import call_for, plan
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import answer
from mcp_local_provider.translate.common import parse_body
from mcp_local_provider.translate.estimate import payload_tokens
from mcp_local_provider.translate.responses.reply import ResponseReply
from mcp_local_provider.translate.responses.request import ResponsesRequest

routes = web.RouteTableDef()
operations = [
    Operation(
        "post",
        "/v1/responses",
        "OpenAI Responses (stateless)",
        ResponsesRequest,
        media_types=("application/json", "text/event-stream"),
    )
]
log = structlog.get_logger("mcp_local_provider.responses")


@routes.post("/v1/responses")
async def responses(request: web.Request) -> web.StreamResponse:
    asked = parse_body(ResponsesRequest, await request.read())
    if asked.ignored:
        log.debug("fields_ignored", fields=asked.ignored)
    entry, payload, needs = plan(request, asked)
    estimate = payload_tokens(payload)
    echoed = asked.model_dump(exclude={"input"}, exclude_none=True)
    call = call_for(request, "chat", entry.target, payload, bool(asked.stream), needs)
    reply = ResponseReply(asked.model, echoed, estimate)
    response = await answer(request, call, reply)
    if reply.answer.estimated:
        log.info("usage_estimated", input_tokens=estimate)
    return response
