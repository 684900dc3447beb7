"""Answers: a call's frames streamed or folded into one body (``answer``, every chat and
completion route's last step), and JSON bodies, encoded once by the daemon's codec
(``core/codec.py``) rather than by the standard library's encoder that ``web.json_response``
uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import hdrs, web

from mcp_local_provider.core.call import Call
from mcp_local_provider.core.codec import dumps_bytes
from mcp_local_provider.http.state import STATE
from mcp_local_provider.http.streaming import relay
from mcp_local_provider.translate.common import Reply


async def answer(request: web.Request, call: Call, reply: Reply) -> web.StreamResponse:
    """Open ``call`` and answer with ``reply``: relayed frame by frame when the client asked
    for a stream, else folded into one JSON body. Either way the call settles here, and a
    malformed answer counts as the call's (the body is built inside). When a fallback model
    served the call, the answer names it (the router knows it once the call is open)."""
    async with request.app[STATE].router.open(call) as frames:
        if call.served_model is not None:
            reply.model = call.served_model
        if call.stream:
            return await relay(request, frames, reply)
        async for frame in frames:
            reply.add(frame)
        return json_reply(reply.body())


def json_reply(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``body`` as an ``application/json`` response. The header is given as it is sent:
    aiohttp's ``content_type`` argument would parse and rebuild it for every response."""
    sent = {**headers, hdrs.CONTENT_TYPE: "application/json"} if headers else _JSON
    return web.Response(body=dumps_bytes(body), status=status, headers=sent)


_JSON = {hdrs.CONTENT_TYPE: "application/json"}
