"""Every error leaves as one JSON response in its route family's shape, never a traceback."""

from __future__ import annotations

import math
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from mcp_local_provider.core import errors
from mcp_local_provider.http.families import ERROR_BODIES, route_family
from mcp_local_provider.http.replies import json_reply
from mcp_local_provider.http.state import SCOPE

log = structlog.get_logger("mcp_local_provider.http")

_STATUS_ERRORS: dict[int, type[errors.ProviderError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    408: errors.RequestTimeout,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    429: errors.RateLimited,
}


def error_body(path: str, error: errors.ProviderError) -> dict[str, Any]:
    """The error in the shape clients of that route family parse: its dialect's, or the
    daemon's own (control, health, the agent socket)."""
    shape = ERROR_BODIES.get(route_family(path), daemon_error_body)
    return shape(error)


def daemon_error_body(error: errors.ProviderError) -> dict[str, Any]:
    return {"error": {"message": error.message, "code": error.code}}


def error_response(request: web.Request, error: errors.ProviderError) -> web.Response:
    """The response for ``error``, noted in the request's scope for its records."""
    scope = request.get(SCOPE)
    if scope is not None:
        scope.error = error
    headers = {} if error.retryable else {"x-should-retry": "false"}
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    headers.update(error.headers)
    return json_reply(error_body(request.path, error), status=error.status, headers=headers)


def _from_http(exc: web.HTTPException, method: str) -> errors.ProviderError:
    kind = _STATUS_ERRORS.get(exc.status, errors.ProviderError)
    error = kind(_http_message(exc, method))
    error.status = exc.status
    return error


def _http_message(exc: web.HTTPException, method: str) -> str:
    if exc.status == 404:
        return "no such route"
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return f"{method} is not allowed on this route" + (f"; use {allowed}" if allowed else "")
    if exc.status == 413:
        return "the request body is too large"
    if exc.status == 415:
        return "unsupported media type"
    return exc.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ProviderError as exc:
        return error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(request, _from_http(exc, request.method))
        scope = request.get(SCOPE)
        if scope is not None:
            scope.error_from_http = True
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except ConnectionResetError:
        raise
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return error_response(request, errors.ProviderError("internal error"))
