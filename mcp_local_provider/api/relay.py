"""Relaying an agent's frames to an HTTP client as a stream, one write per frame."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from .. import errors
from ..app import STATE
from ..models import Entry
from ..router import Call, Event
from ..translate.embeddings import embedding_payload, usage_of, vectors

log = structlog.get_logger("mcp_local_provider.relay")


async def fetch_embeddings(
    request: web.Request, entry: Entry, texts: list[str], dimensions: int | None
) -> tuple[list[list[float]], dict[str, Any]]:
    """Ask the agent for embeddings of ``texts``: (vectors, usage), for either API family."""
    payload = embedding_payload(entry, texts, dimensions)
    call = call_for(
        request, "embedding", entry.target, payload, False, ["embedding"], scope="embeddings"
    )
    last: Event | None = None
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
    return Call(
        kind=kind,
        model=model,
        payload=payload,
        stream=stream,
        scope=scope,
        needs=tuple(needs),
        session_hint=request.headers.get(SESSION_HEADER),
    )


async def relay(
    request: web.Request,
    events: AsyncIterator[Event],
    *,
    content_type: str,
    encode: Callable[[Event], bytes],
    finish: Callable[[], bytes],
    encode_error: Callable[[errors.ProviderError], bytes],
) -> web.StreamResponse:
    """Stream ``events`` to the client.

    The status line is sent with the first frame, so a failure before it (no agent, timeout,
    agent error) still gets a proper HTTP error. A failure after it is written in-band with
    ``encode_error`` and the stream is closed without its normal ending.
    """
    response: web.StreamResponse | None = None
    try:
        async for event in events:
            if response is None:
                response = web.StreamResponse(
                    headers={
                        "Content-Type": content_type,
                        "Cache-Control": "no-cache",
                        "X-Accel-Buffering": "no",
                    }
                )
                await response.prepare(request)
            data = encode(event)
            if data:  # a frame may have nothing to show yet (a tool-call fragment, say)
                await response.write(data)
        if response is None:  # pragma: no cover - the router always ends with a frame or error
            raise errors.AgentFailed("the agent ended the request without an answer")
        await response.write(finish())
    except errors.ProviderError as exc:
        if response is None:
            raise
        await response.write(encode_error(exc))
    except (ConnectionError, asyncio.CancelledError):
        raise  # the client went away: nothing more can be written
    except Exception:
        if response is None:
            raise
        # The status line is out: a second response cannot follow, so say it in-band.
        log.exception("relay_failed", path=request.path)
        await response.write(encode_error(errors.AgentFailed("the agent's answer was malformed")))
    await response.write_eof()
    return response
