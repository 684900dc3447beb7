"""From an HTTP request to router calls: ``call_for`` builds the router's view of a request,
and ``fetch_embeddings`` runs the one call both API families make for embeddings."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Call
from mcp_local_provider.core.catalog import Entry
from mcp_local_provider.core.protocol import AnswerFrame
from mcp_local_provider.http.state import SCOPE, STATE
from mcp_local_provider.translate.embeddings import embedding_payload, usage_of, vectors


async def fetch_embeddings(
    request: web.Request, entry: Entry, texts: list[str], dimensions: int | None
) -> tuple[list[list[float]], dict[str, Any]]:
    """Ask the agent for embeddings of ``texts``: (vectors, usage), for either API family."""
    payload = embedding_payload(entry, texts, dimensions)
    call = call_for(
        request, "embedding", entry.target, payload, False, ["embedding"], scope="embeddings"
    )
    last: AnswerFrame | None = None
    async with request.app[STATE].router.open(call) as events:
        async for event in events:
            last = event
        if last is None:  # pragma: no cover - the router always ends with a frame or an error
            raise errors.AgentFailed("the agent ended the request without an answer")
        return vectors(last, len(texts)), usage_of(last)


#: Names the session to route to, instead of letting the router choose.
SESSION_HEADER = "X-MCP-Session"


def call_for(
    request: web.Request,
    kind: str,
    model: str,
    payload: dict[str, Any],
    stream: bool,
    needs: list[str],
    scope: str = "inference",
) -> Call:
    """The router's view of an HTTP request: what to ask which model for."""
    request_scope = request[SCOPE]
    call = Call(
        kind=kind,
        model=model,
        payload=payload,
        stream=stream,
        scope=scope,
        needs=tuple(needs),
        session_hint=request.headers.get(SESSION_HEADER),
        request_id=request_scope.call_id(),
        request=request_scope,
    )
    if request_scope.call is None:
        request_scope.call = call  # the audit line describes the request's first call
    return call
