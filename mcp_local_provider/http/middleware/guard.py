"""The checks every HTTP request passes before its handler runs, keyed on the route family so
they also cover routes added later, and the headers every response carries.

In order: the raw ``Host`` header (and an absolute-form request target) against the exact
allow-list; no credentials in the query string; the ``Origin`` against its allow-list (CORS
preflight answered only for allowed origins on the editor API); no ``Content-Encoding`` and a
JSON ``Content-Type`` (if any) on bodies (on the editor API, only those with an ``Origin``);
the API key on the editor API when keys are on; the cap on requests in flight; and the body
itself, read once within ``body_timeout`` and ``max_body_bytes``. Refusals are
ProviderErrors, so they leave in the route family's shape.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from mcp_local_provider.core import errors
from mcp_local_provider.http.families import (
    AGENT,
    CONTROL,
    EDITOR_FAMILIES,
    HEALTH,
    METRICS,
    UI,
    route_family,
)
from mcp_local_provider.http.listeners import SECURITY_HEADERS
from mcp_local_provider.http.middleware.errors import error_response
from mcp_local_provider.http.state import (
    FORMAT_HEADER,
    SCOPE,
    SERVED_MODEL_HEADER,
    STATE,
    TOOLS_HEADER,
)
from mcp_local_provider.policy.defences import Security
from mcp_local_provider.policy.input_limits import check_model_name

#: Query parameters that name a credential. Credentials in URLs end up in logs and histories.
_CREDENTIAL_PARAMS = frozenset(
    {
        "token", "access_token", "api_key", "apikey", "api-key", "key", "bridge_token",
        "session_token", "auth", "authorization", "bearer", "password", "secret",
        "x-api-key",
    }
)  # fmt: skip
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_EXPOSED = (
    "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, x-should-retry, "
    + TOOLS_HEADER
    + ", "
    + SERVED_MODEL_HEADER
    + ", "
    + FORMAT_HEADER
)


def _bound_port(request: web.Request) -> int | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def host_allowed(request: web.Request, security: Security) -> bool:
    """The raw Host header (exactly one) and, for an absolute-form request line, its
    authority, are on the allow-list. ``request.host`` is not used: aiohttp derives it from an
    absolute-form URL and falls back to the socket address."""
    hosts = request.headers.getall("Host", [])
    port = _bound_port(request)
    if len(hosts) != 1 or not security.hosts.allows(hosts[0], port):
        return False
    target = request.raw_path
    if target.startswith("/") or target == "*":
        return True
    _, sep, rest = target.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return bool(sep) and "@" not in authority and security.hosts.allows(authority, port)


def _has_credentials(request: web.Request) -> bool:
    return any(name.lower() in _CREDENTIAL_PARAMS for name in request.query)


def _origin(request: web.Request) -> str | None:
    """The Origin header; more than one is refused as not allowed (``"\n"`` never matches)."""
    origins = request.headers.getall("Origin", [])
    if len(origins) > 1:
        return "\n"
    return origins[0] if origins else None


def _preflight(request: web.Request, origin: str) -> web.Response:
    asked = request.headers.get("Access-Control-Request-Headers", "")
    names = [n.strip() for n in asked.split(",") if _HEADER_NAME.match(n.strip())]
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": ", ".join(names)
            or "Authorization, Content-Type, x-api-key",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )


def _is_json(content_type: str) -> bool:
    """JSON, or no real label: ``application/octet-stream`` is what some clients (aiohttp's)
    send for unlabeled bytes, and unlike text/plain or form types a browser cannot send it
    cross-origin without a preflight, which only allowed origins pass."""
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in ("application/json", "application/octet-stream", "") or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _is_form(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"


def _check_body_headers(request: web.Request, strict: bool, forms: bool = False) -> None:
    for encoding in request.headers.getall("Content-Encoding", []):
        if encoding.strip().lower() not in ("", "identity"):
            raise errors.UnsupportedMediaType(
                "compressed request bodies are not accepted (Content-Encoding); send plain JSON"
            )
    content_type = request.headers.get("Content-Type")
    # Only bodies are checked: clients (aiohttp's, for one) label an empty POST as
    # application/octet-stream.
    if forms and content_type is not None and _is_form(content_type):
        return  # the web page's own forms: it checks their origin and CSRF token itself
    if strict and request.body_exists and content_type is not None and not _is_json(content_type):
        raise errors.UnsupportedMediaType(
            "request bodies must be JSON: send Content-Type: application/json (or none)"
        )


def _presented_key(request: web.Request) -> str | None:
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _check_key(request: web.Request, security: Security) -> None:
    presented = _presented_key(request)
    key_id = security.keys.match(presented) if presented is not None else None
    if key_id is None:
        raise errors.Unauthorized(
            "a valid API key is required (Authorization: Bearer <key> or x-api-key: <key>)"
        )
    request[SCOPE].client_key = key_id


async def _read_body(request: web.Request, security: Security) -> web.StreamResponse | None:
    """Read the body once, within the deadline and size limit; the handler's own ``read()``
    then returns it. A refusal here answers and closes the connection (the rest of the body is
    never read)."""
    limit = security.config.max_body_bytes
    error: errors.ProviderError | None = None
    if request.content_length is not None and request.content_length > limit:
        error = errors.PayloadTooLarge(f"the request body is larger than {limit} bytes")
    else:
        try:
            if request.content.is_eof():  # all of it has arrived: no deadline to arm
                body = await request.read()
            else:
                async with asyncio.timeout(security.config.body_timeout):
                    body = await request.read()
        except TimeoutError:
            error = errors.RequestTimeout(
                f"the request body did not arrive within {security.config.body_timeout:g} s"
            )
        except web.HTTPRequestEntityTooLarge:
            error = errors.PayloadTooLarge(f"the request body is larger than {limit} bytes")
        else:
            request[SCOPE].bytes_in = len(body)
            return None
    # Answer now and close: the rest of the body is never read (aiohttp would otherwise
    # linger to drain it).
    response = error_response(request, error)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    security, metrics, scope = state.security, state.metrics, request[SCOPE]
    kind = scope.family
    if not host_allowed(request, security):
        metrics.rejected("host", scope)
        raise errors.Forbidden(
            "this daemon answers only to requests addressed to localhost, 127.0.0.1 or [::1] "
            "(Host header); add other names to allowed_hosts"
        )
    if request.query_string and _has_credentials(request):
        raise errors.BadRequest(
            "credentials are not accepted in the URL; send them in the Authorization header"
        )
    origin = _origin(request)
    if origin is not None and not security.origins.allows(origin):
        metrics.rejected("origin", scope)
        raise errors.Forbidden("requests from this Origin are not allowed (allowed_origins)")
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if origin is not None and kind in EDITOR_FAMILIES:
            return _preflight(request, origin)
        metrics.rejected("origin", scope)
        raise errors.Forbidden("cross-origin requests are not allowed on this route")
    model = request.match_info.get("model")
    if model is not None:
        check_model_name(model)
    if request.method in ("POST", "PUT", "PATCH"):
        # The label is a defence against cross-site form posts, which carry an Origin: on the
        # editor API a request without one (``curl -d``, as Ollama's own documentation writes
        # it, labels its JSON application/x-www-form-urlencoded) is read as JSON whatever its
        # label says.
        strict = origin is not None or kind not in EDITOR_FAMILIES
        _check_body_headers(request, strict=strict, forms=kind == UI)
    # The web page logs in with a cookie of its own (http/ui), and holds its event stream open.
    if security.keys.enabled and kind not in (AGENT, CONTROL, HEALTH, UI):
        _check_key(request, security)
    counted = kind not in (AGENT, HEALTH, METRICS, UI)
    if counted and security.in_flight >= security.config.max_in_flight:
        raise errors.Overloaded("too many requests in flight; try again shortly")
    if counted:
        security.in_flight += 1
    try:
        if request.body_exists and request.method != "GET":
            refused = await _read_body(request, security)
            if refused is not None:
                return refused
        return await handler(request)
    finally:
        if counted:
            security.in_flight -= 1


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """The one hook every response passes before it is sent: its request id; security headers;
    CORS for allowed origins on the editor API; the session's rate-limit state on every
    response an agent session was chosen for; the tools header when the request's tools were
    not offered to the agent, the format header when its structured output format was not
    applied."""
    headers = response.headers
    scope = request.get(SCOPE)
    if scope is not None:
        headers["X-Request-Id"] = scope.request_id
        if scope.tools_not_offered:
            headers[TOOLS_HEADER] = "not-offered"
        call = scope.call
        if call is not None and call.served_model is not None:
            headers[SERVED_MODEL_HEADER] = call.served_model
        if scope.format_not_applied:
            headers[FORMAT_HEADER] = "not-applied"
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers.setdefault("Cache-Control", "no-store")
    state = request.app.get(STATE)
    if state is None:
        return
    security = state.security
    origin = request.headers.get("Origin")
    if (
        origin is not None
        and route_family(request.path) in EDITOR_FAMILIES
        and security.origins.allows(origin)
    ):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = _EXPOSED
        headers.add("Vary", "Origin")
    elif headers.get("Access-Control-Allow-Origin") == "*":
        del headers["Access-Control-Allow-Origin"]
    if scope is not None and scope.pending is not None:
        for name, value in security.throttle.headers(scope.pending.session).items():
            headers.setdefault(name, value)
