"""The Anthropic Messages routes: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Claude Code calls them with ``ANTHROPIC_BASE_URL`` pointing at the daemon, adding ``?beta=true``
and ``anthropic-version``/``anthropic-beta`` headers: any version and any beta list are accepted
(features the agent cannot honour are dropped; see ``translate/anthropic``). Errors leave in
Anthropic's shape (``http/middleware/errors.py``).
"""

from __future__ import annotations

import structlog
from aiohttp import web

from mcp_local_provider.http.calls import call_for, plan
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import answer, json_reply
from mcp_local_provider.translate.anthropic.reply import MessageReply, count_body
from mcp_local_provider.translate.anthropic.request import CountRequest, MessagesRequest
from mcp_local_provider.translate.common import parse_body
from mcp_local_provider.translate.estimate import payload_tokens

routes = web.RouteTableDef()
operations = [
    Operation(
        "post",
        "/v1/messages",
        "Anthropic Messages",
        MessagesRequest,
        media_types=("application/json", "text/event-stream"),
    ),
    Operation("post", "/v1/messages/count_tokens", "Anthropic token count", CountRequest),
]
log = structlog.get_logger("mcp_local_provider.anthropic")


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    asked = parse_body(MessagesRequest, await request.read())
    if asked.ignored:
        log.debug("fields_ignored", fields=asked.ignored)
    entry, payload, needs = plan(request, asked)
    call = call_for(request, "chat", entry.target, payload, bool(asked.stream), needs)
    reply = MessageReply(asked.model, payload_tokens(payload))
    response = await answer(request, call, reply)
    if reply.usage.estimated:
        log.info("usage_estimated", input_tokens=reply.usage.input_tokens)
    return response


@routes.post("/v1/messages/count_tokens")
async def count_tokens(request: web.Request) -> web.Response:
    asked = parse_body(CountRequest, await request.read())
    _, payload, _ = plan(request, asked)
    return json_reply(count_body(payload_tokens(payload)))
