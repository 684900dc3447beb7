"""``/ui``: the web page. Log in with a one-time link, then see and decide on agents, watch
usage and live traffic. Every action is a same-origin POST carrying the CSRF token of the
browser's page session; see ``policy/page_access.py`` and docs/security.md.

``/control/ui/login`` (bridge token) makes the login codes the ``ui`` command prints.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from urllib.parse import parse_qs

import structlog
from aiohttp import web

from mcp_local_provider import __version__
from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.http.auth import require_bridge_token
from mcp_local_provider.http.openapi import Operation
from mcp_local_provider.http.replies import json_reply
from mcp_local_provider.http.state import PAGE, SCOPE, STATE
from mcp_local_provider.http.ui import render
from mcp_local_provider.http.ui.state import MAX_STREAMS, USAGE_DAYS
from mcp_local_provider.obs.traffic import Passed
from mcp_local_provider.policy.page_access import COOKIE_NAME, PageSession, same_origin_post

log = structlog.get_logger("mcp_local_provider.ui")
routes = web.RouteTableDef()
operations = [
    Operation(
        "post", "/control/ui/login", "A one-time login code for the web page",
        bridge_token=True, status=201,
    ),
]  # fmt: skip

#: The page's own policy, stricter than the API's: its script and style come from the daemon,
#: nothing inline, no frames, forms post only back here.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
        "frame-ancestors 'none'"
    ),
    # Not no-referrer: under it Chromium sends "Origin: null" on the page's own form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
ASSET_TYPES = {"page.css": "text/css", "page.js": "text/javascript", "icon.svg": "image/svg+xml"}
#: The assets' bytes, read once when the module is imported, never on a request.
ASSETS = {name: (render.ASSETS / name).read_bytes() for name in ASSET_TYPES}
ACTIONS = ("approve", "deny", "revoke")
#: Seconds between keep-alive comments on the event stream.
STREAM_PING = 15.0


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def _logged_in(request: web.Request) -> PageSession | None:
    return request.app[PAGE].access.session(request.cookies.get(COOKIE_NAME))


def _for_the_script(request: web.Request) -> PageSession:
    """A request only the page's own script makes: from the page's origin, logged in.

    Another origin could not read the answer anyway (no CORS), but refusing it outright
    leaves it nothing to time or count either."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        request.app[STATE].metrics.rejected("origin", request[SCOPE])
        raise errors.Forbidden("only the web page itself reads this")
    session = _logged_in(request)
    if session is None:
        raise errors.Unauthorized("log in to the web page first (mcp-local-provider ui)")
    return session


def _daemon(request: web.Request) -> render.Daemon:
    state, page = request.app[STATE], request.app[PAGE]
    config = state.config
    return render.Daemon(
        version=__version__,
        uptime_seconds=time.time() - state.started_at,
        listening=page.listening,
        config_file=str(config.config_file) if config.config_file else None,
        approval=state.approval,
    )


async def _panel_data(
    request: web.Request, session: PageSession, notice: str | None = None
) -> render.Panels:
    state, page = request.app[STATE], request.app[PAGE]
    usage, failed = None, False
    if page.usage is not None:
        try:
            usage = list(await page.usage.rows(USAGE_DAYS))
        except Exception:  # the page must show even when the store fails
            log.exception("usage_unavailable")
            failed = True
    return render.Panels(
        sessions=list(state.registry),
        now=state.registry.clock(),
        csrf=page.access.csrf_token(session),
        usage=usage,
        traffic=list(state.traffic.recent),
        notice=notice,
        last_used=state.traffic.last_used,
        usage_failed=failed,
    )


async def _dashboard(
    request: web.Request, session: PageSession, notice: str | None = None, status: int = 200
) -> web.Response:
    panels = await _panel_data(request, session, notice)
    return _html(render.dashboard(_daemon(request), panels), status)


@routes.get("/ui")
async def show(request: web.Request) -> web.Response:
    """The page for a logged-in browser; for any other, how to log in."""
    session = _logged_in(request)
    if session is None:
        return _html(render.login_page())
    return await _dashboard(request, session)


@routes.get("/ui/")
async def slash(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")


@routes.get("/ui/panels")
async def panels(request: web.Request) -> web.Response:
    """The panels alone, for the page's script to refresh."""
    session = _for_the_script(request)
    return _html(render.render_panels(await _panel_data(request, session)))


# No HEAD: a HEAD request (a link checker, a preview) must not use up the one-time code.
@routes.get("/ui/login", allow_head=False)
async def login(request: web.Request) -> web.Response:
    """Exchange a login link's code for a page session (the cookie), then show the page.

    Only a link opened from outside the browser (``Sec-Fetch-Site: none``) or from the page
    itself is honoured: another site cannot log the browser in with a code of its choosing.
    """
    site = request.headers.get("Sec-Fetch-Site")
    page = request.app[PAGE]
    opened_here = site in (None, "none", "same-origin")
    new = page.access.redeem(request.query.get("code")) if opened_here else None
    if new is None:
        log.info("ui_login_refused", fetch_site=site)
        request.app[STATE].metrics.rejected("auth", request[SCOPE])
        return _html(
            render.login_page("This login link is not valid: it was used already, or it expired."),
            status=403,
        )
    log.info("ui_login", sessions=len(page.access))
    response = web.HTTPSeeOther("/ui", headers=PAGE_HEADERS)
    response.set_cookie(COOKIE_NAME, new.cookie, path="/ui", httponly=True, samesite="Strict")
    raise response


async def _check_post(request: web.Request) -> PageSession:
    """The request comes from the page itself, from a logged-in browser, with its token
    (the form is read only once the first two hold)."""
    state = request.app[STATE]
    scope = request[SCOPE]
    if not same_origin_post(
        request.headers.get("Sec-Fetch-Site"),
        request.headers.get("Origin"),
        request.headers.get("Host"),
    ):
        state.metrics.rejected("origin", scope)
        log.warning("ui_cross_origin_refused", fetch_site=request.headers.get("Sec-Fetch-Site"))
        raise errors.Forbidden("the web page accepts actions only from itself (same origin)")
    session = _logged_in(request)
    if session is None:
        state.metrics.rejected("auth", scope)
        raise errors.Forbidden("log in to the web page first (mcp-local-provider ui)")
    if not session.csrf_matches(await _csrf(request)):
        state.metrics.rejected("auth", scope)
        log.warning("ui_csrf_refused")
        raise errors.Forbidden("this form is stale or not this browser's; reload the page")
    return session


async def _csrf(request: web.Request) -> str | None:
    """The form's one ``csrf`` field; None for anything else (tokens are plain ASCII, so the
    body's declared charset does not matter)."""
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    try:
        fields = parse_qs((await request.read()).decode("ascii"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get("csrf", [])
    return values[0] if len(values) == 1 else None


@routes.post("/ui/sessions/{session_id}/{action}")
async def act(request: web.Request) -> web.Response:
    """Approve or deny a pending agent, or revoke a session; then show the page again."""
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise errors.NotFound(f"no action {action!r}")
    session = await _check_post(request)
    hub = request.app[STATE].hub
    session_id = request.match_info["session_id"]
    try:
        if action == "approve":
            hub.approve(session_id)
        elif action == "deny":
            hub.deny(session_id)
        else:
            await hub.revoke(session_id)
    except errors.ProviderError as exc:
        return await _dashboard(request, session, notice=exc.message, status=exc.status)
    log.info("ui_action", action=action, session_id=session_id)
    raise web.HTTPSeeOther("/ui", headers=PAGE_HEADERS)


@routes.post("/ui/logout")
async def logout(request: web.Request) -> web.Response:
    session = await _check_post(request)
    request.app[PAGE].access.end(session)
    response = web.HTTPSeeOther("/ui", headers=PAGE_HEADERS)
    response.del_cookie(COOKIE_NAME, path="/ui")
    raise response


@routes.get("/ui/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Requests as they finish, as server-sent events (``event: request``), until the browser
    leaves, logs out, or the daemon stops."""
    _for_the_script(request)
    state, page = request.app[STATE], request.app[PAGE]
    if len(page.streams) >= MAX_STREAMS:
        raise errors.Overloaded("too many open web pages; close one")
    queue: asyncio.Queue[Passed | None] = asyncio.Queue(maxsize=256)

    def notify(passed: Passed) -> None:
        with suppress(asyncio.QueueFull):  # a page that cannot keep up misses some rows
            queue.put_nowait(passed)

    response = web.StreamResponse(
        headers={**PAGE_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    page.streams.add(queue)
    stop = state.traffic.watch(notify)
    try:
        while True:
            try:
                async with asyncio.timeout(STREAM_PING):
                    passed = await queue.get()
            except TimeoutError:
                if page.access.session(request.cookies.get(COOKIE_NAME)) is None:
                    await response.write(b"event: logout\ndata: {}\n\n")
                    break
                await response.write(b": ping\n\n")
                continue
            if passed is None:  # the daemon is stopping
                break
            await response.write(f"event: request\ndata: {dumps(passed.view())}\n\n".encode())
    finally:
        stop()
        page.streams.discard(queue)
    return response


async def close_streams(app: web.Application) -> None:
    """On shutdown: end the event streams, which would otherwise hold it up."""
    app[PAGE].close_streams()


@routes.get("/ui/static/{name}")
async def asset(request: web.Request) -> web.Response:
    """The page's script and style sheet, from the installed package."""
    name = request.match_info["name"]
    kind = ASSET_TYPES.get(name)
    if kind is None:
        raise errors.NotFound("no such file")
    body = ASSETS[name]
    charset = None if kind.startswith("image/") else "utf-8"
    return web.Response(body=body, content_type=kind, charset=charset, headers=PAGE_HEADERS)


@routes.post("/control/ui/login")
async def login_code(request: web.Request) -> web.Response:
    """A one-time code for ``/ui/login?code=...``; the caller builds the link."""
    require_bridge_token(request)
    access = request.app[PAGE].access
    return json_reply(
        {"path": "/ui/login?code=" + access.new_code(), "expires_in": access.code_ttl}, status=201
    )
