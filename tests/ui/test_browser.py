"""The web page in a real headless Chromium: log in with the link, approve an agent and see
it serve, watch its request go by, revoke it; and the attacks a browser can make (another
origin's page posting, with and without the cookie; a DNS-rebinding page; a label holding
``<script>``; a CSRF token replayed from another session; a login link reused or expired),
each refused. Screenshots of the page at two widths are written to ``build/screenshots`` (or
to ``$MCP_LOCAL_PROVIDER_SCREENSHOTS``; the README's come from ``docs/images``)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.core.registry import SessionState
from mcp_local_provider.http.state import PAGE
from mcp_local_provider.policy.page_access import same_origin_post
from tests.browser import ATTACKER_HOST, Browser, Page, need_chromium
from tests.conftest import StartDaemon
from tests.fakes import Daemon, until
from tests.readings import Meter
from tests.security.helpers import port_of
from tests.ui.pages import Rows, a_week_of_usage, login_path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_LABEL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = Browser(need_chromium())
    await chromium.start()
    yield chromium
    await chromium.close()


class Attacker:
    """Another web site: a server on its own loopback port whose pages the test writes."""

    def __init__(self, server: TestServer, pages: dict[str, str]) -> None:
        self.server = server
        self.pages = pages

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.server.port}{path}"


@pytest.fixture
async def attacker(aiohttp_server: Any) -> Attacker:
    pages: dict[str, str] = {}

    async def serve(request: web.Request) -> web.Response:
        if request.path not in pages:
            raise web.HTTPNotFound()
        return web.Response(text=pages[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return Attacker(await aiohttp_server(app), pages)


async def log_in(daemon: Daemon, browser: Browser, context: str | None = None) -> Page:
    async with aiohttp.ClientSession() as http:
        path = await login_path(daemon, http)
    page = await browser.new_page(context)
    await page.goto(daemon.url + path)
    assert await page.eval("location.pathname") == "/ui"
    assert "Log out" in await page.text()
    return page


async def csrf_of(page: Page) -> str:
    return str(await page.eval("document.querySelector('input[name=csrf]').value"))


async def pending_agent(daemon: Daemon, models: list[str] | None = None, **options: Any) -> str:
    """A real agent asking for access; returns its pending session's id."""
    await daemon.start_agent(EchoBackend(models), wait=False, **options)
    await until(lambda: bool(daemon.state.registry.in_state(SessionState.PENDING)))
    return daemon.state.registry.in_state(SessionState.PENDING)[-1].id


def save(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def screenshots() -> Path:
    return Path(os.environ.get("MCP_LOCAL_PROVIDER_SCREENSHOTS") or ROOT / "build/screenshots")


async def test_log_in_approve_watch_a_request_and_revoke(
    start_daemon: StartDaemon, browser: Browser, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual", usage=Rows(a_week_of_usage()))
    daemon.app[PAGE].listening = [daemon.url]  # what serve sets once it listens
    page = await log_in(daemon, browser)
    assert await page.eval("document.cookie") == ""  # HttpOnly: no script can read it
    session_id = await pending_agent(daemon, label="Claude Code on laptop", models=["claude"])
    await page.goto(daemon.url + "/ui")
    assert "Claude Code on laptop" in await page.text("#pending")

    await page.click(f'tr[data-session="{session_id}"] button.approve')
    client, _task = daemon.agents[-1]
    await asyncio.wait_for(client.wait_ready(), 5)
    assert "active" in await page.text(f'#sessions tr[data-session="{session_id}"] .state')
    # The page's own form post passed, carrying what the origin check reads.
    approve = f"/ui/sessions/{session_id}/approve"
    await until(lambda: len(page.sent_to(approve)) == 1)
    (sent,) = page.sent_to(approve)
    assert sent["sec-fetch-site"] == "same-origin"
    assert sent["origin"] == daemon.url

    await page.wait_for("window.EventSource && document.readyState === 'complete'")
    await until(lambda: daemon.state.traffic.watchers == 1)
    async with http.post(
        daemon.url + "/v1/chat/completions",
        json={"model": "claude", "messages": [{"role": "user", "content": "secret words"}]},
    ) as response:
        assert response.status == 200
    row = await page.wait_for(
        "[...document.querySelectorAll('#traffic-rows tr')]"
        ".map(r => r.textContent).find(t => t.includes('/v1/chat/completions'))"
    )
    assert "claude" in row and "Claude Code on laptop" in row and "200" in row
    assert "secret words" not in await page.text()

    await page.goto(daemon.url + "/ui")  # the page as it stands, for the pictures
    assert "gpt-5-codex" in await page.text("#usage")
    for width, name in ((1280, "ui-wide.png"), (420, "ui-narrow.png")):
        assert len(save(screenshots() / name, await page.screenshot(width))) > 10_000

    await page.click(f'tr[data-session="{session_id}"] button.revoke')
    assert daemon.state.registry.get(session_id).state is SessionState.REVOKED
    assert "revoked" in await page.text(f'tr[data-session="{session_id}"] .state')
    assert page.errors == []  # the script ran clean, and the CSP refused nothing of the page


async def test_the_panels_refresh_on_their_own(start_daemon: StartDaemon, browser: Browser) -> None:
    daemon = await start_daemon(approval="manual")
    page = await log_in(daemon, browser)
    await pending_agent(daemon, label="Arrived later")
    await page.wait_for("document.querySelector('#pending').textContent.includes('Arrived later')")


def form_page(target: str, csrf: str) -> str:
    """Another site's page that posts a form to the daemon as soon as it loads."""
    return f"""<!doctype html><form method="post" action="{target}">
<input type="hidden" name="csrf" value="{csrf}"></form>
<script>document.forms[0].submit()</script>"""


@pytest.mark.parametrize("action", ["approve", "revoke"])
@pytest.mark.parametrize(
    ("host", "cookie_sent"),
    [
        # Another port on the page's own host: the same site, so the Strict cookie goes along.
        ("127.0.0.1", True),
        # Another site altogether: the browser keeps the cookie back.
        ("localhost", False),
        (ATTACKER_HOST, False),
    ],
)
async def test_another_origins_page_cannot_approve_or_revoke(
    start_daemon: StartDaemon,
    browser: Browser,
    attacker: Attacker,
    action: str,
    host: str,
    cookie_sent: bool,
) -> None:
    daemon = await start_daemon(approval="manual")
    victim = await log_in(daemon, browser)
    stolen = await csrf_of(victim)  # the worst case: the attacker even knows the token
    session_id = await pending_agent(daemon)
    if action == "revoke":
        daemon.state.hub.approve(session_id)
    before = daemon.state.registry.get(session_id).state
    target = f"{daemon.url}/ui/sessions/{session_id}/{action}"
    attacker.pages["/form"] = form_page(target, stolen)
    attacker.pages["/fetch"] = f"""<!doctype html><script>
fetch({json.dumps(target)}, {{method: "POST", mode: "no-cors", credentials: "include",
  body: new URLSearchParams({{csrf: {json.dumps(stolen)}}})}})
  .finally(() => document.title = "sent");
</script>"""

    tab = await browser.new_page()  # the same browser, so the same cookie jar
    await tab.goto(attacker.url(host, "/form"))
    await tab.wait_for(f"location.href.startsWith({json.dumps(daemon.url)})")
    await tab.goto(attacker.url(host, "/fetch"))
    await tab.wait_for("document.title === 'sent'")

    await until(lambda: len(tab.sent_to(target)) == 2)  # the browser reports them apart
    posts = tab.sent_to(target)
    for headers in posts:
        assert ("cookie" in headers) is cookie_sent
        assert headers["sec-fetch-site"] != "same-origin"
    assert tab.documents[1] == (target, 403)
    assert daemon.state.registry.get(session_id).state is before
    assert Meter(daemon)("rejected_total", reason="origin") == 2


async def test_a_dns_rebinding_page_gets_nothing(
    start_daemon: StartDaemon, browser: Browser
) -> None:
    """After rebinding, the attacker's page is same-origin with http://attacker.test:<port>
    and its requests reach the daemon: the Host header gives it away, on every route."""
    daemon = await start_daemon(approval="manual")
    session_id = await pending_agent(daemon, label="Private label")
    await log_in(daemon, browser)
    rebound = await browser.new_page(bypass_csp=True)
    origin = f"http://{ATTACKER_HOST}:{port_of(daemon)}"
    await rebound.goto(origin + "/ui")
    assert rebound.documents[-1] == (origin + "/ui", 403)
    results = await rebound.eval(
        f"""(async () => {{
  const out = [];
  for (const path of ["/ui", "/ui/panels", "/ui/events", "/control/sessions"]) {{
    const r = await fetch(path, {{credentials: "include"}});
    out.push([r.status, await r.text()]);
  }}
  const r = await fetch("/ui/sessions/{session_id}/approve", {{method: "POST",
    credentials: "include", body: new URLSearchParams({{csrf: "x"}})}});
  out.push([r.status, await r.text()]);
  return out;
}})()"""
    )
    assert [status for status, _ in results] == [403] * 5
    assert not any("Private label" in body for _, body in results)
    assert daemon.state.registry.get(session_id).state is SessionState.PENDING


async def test_a_label_holding_script_is_shown_as_text(
    start_daemon: StartDaemon, browser: Browser
) -> None:
    daemon = await start_daemon(approval="manual")
    await pending_agent(daemon, label=SCRIPT_LABEL)
    page = await log_in(daemon, browser)
    assert SCRIPT_LABEL in await page.text("#pending")
    await asyncio.sleep(0.2)  # time for an image error handler, were there one
    assert await page.eval("typeof window.__pwned") == "undefined"
    assert await page.eval("document.querySelectorAll('#pending script, #pending img').length") == 0
    assert page.dialogs == []
    assert page.errors == []  # not even a blocked inline script: there was none to block


async def test_a_stolen_csrf_token_is_refused_in_another_session(
    start_daemon: StartDaemon, browser: Browser
) -> None:
    daemon = await start_daemon(approval="manual")
    session_id = await pending_agent(daemon)
    victim = await log_in(daemon, browser)
    stolen = await csrf_of(victim)
    thief = await log_in(daemon, browser, await browser.new_context())
    post = f"""(async token => (await fetch("/ui/sessions/{session_id}/approve", {{
  method: "POST", body: new URLSearchParams({{csrf: token}}), redirect: "manual"}})).status)"""
    assert await thief.eval(f"{post}({json.dumps(stolen)})") == 403
    assert daemon.state.registry.get(session_id).state is SessionState.PENDING
    # The same post with the thief's own token passes: only the token was wrong.
    own = await csrf_of(thief)
    assert await thief.eval(f"{post}({json.dumps(own)})") in (0, 303)  # opaque redirect
    assert daemon.state.registry.get(session_id).state is SessionState.ACTIVE


async def test_a_used_login_link_does_not_log_in_again(
    daemon: Daemon, browser: Browser, http: aiohttp.ClientSession
) -> None:
    path = await login_path(daemon, http)
    first = await browser.new_page()
    await first.goto(daemon.url + path)
    assert "Log out" in await first.text()
    second = await browser.new_page(await browser.new_context())
    await second.goto(daemon.url + path)
    assert second.documents[-1][1] == 403
    assert "used already, or it expired" in await second.text()
    assert await second.eval("fetch('/ui/panels').then(r => r.status)") == 401


async def test_an_expired_login_link_does_not_log_in(
    start_daemon: StartDaemon, browser: Browser, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(ui_login_ttl=0.2)
    path = await login_path(daemon, http)
    await asyncio.sleep(0.3)
    page = await browser.new_page()
    await page.goto(daemon.url + path)
    assert page.documents[-1][1] == 403
    assert "Log out" not in await page.text()


@pytest.mark.parametrize(
    ("policy", "origin_sent"), [("no-referrer", "null"), ("same-origin", "the page's")]
)
async def test_what_chromium_sends_on_a_pages_own_form_post_under_each_referrer_policy(
    browser: Browser, aiohttp_server: Any, policy: str, origin_sent: str
) -> None:
    """Why the page is served with ``Referrer-Policy: same-origin`` and checked on
    ``Sec-Fetch-Site``: under ``no-referrer`` Chromium's own same-origin form post says
    ``Origin: null``, which an Origin-only check would refuse."""
    seen: list[dict[str, str]] = []

    async def form(request: web.Request) -> web.Response:
        return web.Response(
            text='<form method="post" action="/post"><input name="a" value="b"></form>'
            "<script>document.forms[0].submit()</script>",
            content_type="text/html",
            headers={"Referrer-Policy": policy},
        )

    async def post(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="posted")

    app = web.Application()
    app.router.add_get("/form", form)
    app.router.add_post("/post", post)
    server = await aiohttp_server(app)
    host = f"127.0.0.1:{server.port}"
    page = await browser.new_page()
    await page.goto(f"http://{host}/form")
    await page.wait_for("document.body && document.body.textContent === 'posted'")
    (headers,) = seen
    expected = "null" if origin_sent == "null" else f"http://{host}"
    assert headers["Origin"] == expected
    assert headers["Sec-Fetch-Site"] == "same-origin"
    assert same_origin_post(headers["Sec-Fetch-Site"], headers["Origin"], host)
    # An Origin-only check passes the page under same-origin, and refuses it under no-referrer.
    assert same_origin_post(None, headers["Origin"], host) is (policy == "same-origin")


async def test_after_a_restart_the_browser_logs_in_again_and_sees_the_stored_usage(
    start_daemon: StartDaemon, browser: Browser, http: aiohttp.ClientSession
) -> None:
    before = await start_daemon()
    await before.start_agent(label="Laptop agent")
    for _ in range(3):
        body = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}
        async with http.post(before.url + "/v1/chat/completions", json=body) as response:
            assert response.status == 200
    page = await log_in(before, browser)
    assert "Laptop agent" in await page.text("#usage table")
    await before.stop_agents()
    await before.server.close()  # the usage store writes what it counted as the app ends

    # The same state directory: the usage store on disk outlives the daemon.
    after = await start_daemon()
    # The same browser, its cookie still set: the new daemon does not know it.
    await page.goto(after.url + "/ui")
    assert "mcp-local-provider ui --open" in await page.text()
    page = await log_in(after, browser)
    table = await page.text("#usage table")
    assert "Laptop agent" in table and "echo" in table
