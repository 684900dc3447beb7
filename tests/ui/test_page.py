"""The web page over plain HTTP: login, cookie, headers, actions and their checks, live
traffic, usage, and ``ui = false``. The same attacks from a real browser are in
``test_browser.py``."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.core.registry import SessionState
from mcp_local_provider.http.state import PAGE
from mcp_local_provider.http.ui.routes import PAGE_HEADERS
from mcp_local_provider.http.ui.state import MAX_STREAMS
from mcp_local_provider.policy.page_access import COOKIE_NAME
from tests.conftest import StartDaemon
from tests.fakes import Daemon, RawAgent, until
from tests.readings import Meter
from tests.ui.pages import Row, Rows, logged_in, login_path

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


async def pending_session(daemon: Daemon, raw_agent: Any, **hello: Any) -> tuple[RawAgent, str]:
    agent = await raw_agent(daemon)
    frame = await agent.hello(**hello)
    assert frame["type"] == "session_pending"
    return agent, frame["session_id"]


async def test_without_a_login_the_page_only_says_how_to_log_in(
    start_daemon: StartDaemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual")
    await pending_session(daemon, raw_agent, label="Secret project laptop")
    async with http.get(daemon.url + "/ui") as response:
        assert response.status == 200
        page = await response.text()
    assert "mcp-local-provider ui --open" in page
    assert "Secret project laptop" not in page and "csrf" not in page
    for path in ("/ui/panels", "/ui/events"):
        async with http.get(daemon.url + path) as response:
            assert response.status == 401


async def test_login_codes_need_the_bridge_token(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(daemon.url + "/control/ui/login") as response:
        assert response.status == 401
    async with http.post(
        daemon.url + "/control/ui/login", headers={"Authorization": "Bearer wrong"}
    ) as response:
        assert response.status == 401


async def test_a_login_link_sets_a_strict_http_only_session_cookie_for_ui_only(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    path = await login_path(daemon, http)
    async with http.get(daemon.url + path, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/ui"
        cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE_NAME + "=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= attributes
    assert "SameSite=Strict" in cookie and "Path=/ui" in cookie
    # A browser-session cookie: it goes when the browser closes (the daemon ends it sooner).
    assert "expires" not in attributes and "max-age" not in attributes
    assert daemon.state.bridge_token not in cookie


async def test_the_bridge_token_never_reaches_the_browser(daemon: Daemon) -> None:
    http, _ = await logged_in(daemon)
    async with http:
        for path in ("/ui", "/ui/panels", "/ui/static/page.js", "/ui/static/page.css"):
            async with http.get(daemon.url + path) as response:
                assert daemon.state.bridge_token not in await response.text()


async def test_a_code_works_once(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    path = await login_path(daemon, http)
    async with aiohttp.ClientSession() as first, first.get(daemon.url + path) as response:
        assert response.status == 200
    async with aiohttp.ClientSession() as second, second.get(daemon.url + path) as response:
        assert response.status == 403
        assert "used already, or it expired" in await response.text()
        assert COOKIE_NAME not in response.cookies


async def test_a_head_request_does_not_use_up_the_code(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    path = await login_path(daemon, http)
    async with http.head(daemon.url + path) as response:
        assert response.status == 405
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(daemon.url + path) as response:
            assert response.status == 200
        assert COOKIE_NAME in {cookie.key for cookie in jar}


async def test_an_expired_code_is_refused(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(ui_login_ttl=0.05)
    path = await login_path(daemon, http)
    await asyncio.sleep(0.1)
    async with http.get(daemon.url + path) as response:
        assert response.status == 403
    assert Meter(daemon)("rejected_total", reason="auth") == 1


async def test_a_link_followed_from_another_site_does_not_log_in(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    path = await login_path(daemon, http)
    for site in ("cross-site", "same-site"):
        async with http.get(daemon.url + path, headers={"Sec-Fetch-Site": site}) as response:
            assert response.status == 403
            assert COOKIE_NAME not in response.cookies
    # The link still works when opened from the terminal, as meant.
    async with http.get(
        daemon.url + path, headers={"Sec-Fetch-Site": "none"}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert COOKIE_NAME in response.cookies


async def test_every_page_response_carries_the_strict_headers(daemon: Daemon) -> None:
    http, _ = await logged_in(daemon)
    async with http:
        for path in ("/ui", "/ui/panels", "/ui/static/page.js"):
            async with http.get(daemon.url + path) as response:
                for name, value in PAGE_HEADERS.items():
                    assert response.headers[name] == value, (path, name)
                assert response.headers["X-Frame-Options"] == "DENY"
    csp = PAGE_HEADERS["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


async def test_the_page_and_its_assets_have_no_inline_script_or_style(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    await pending_session(daemon, raw_agent)
    http, _ = await logged_in(daemon)
    async with http, http.get(daemon.url + "/ui") as response:
        page = await response.text()
    assert page.count("<script") == 1 and '<script src="/ui/static/page.js"' in page
    assert " style=" not in page and "<style" not in page
    assert not re.search(r"\son[a-z]+\s*=", page, re.IGNORECASE)  # no event attributes


@pytest.mark.parametrize(
    ("name", "kind"),
    [("page.js", "text/javascript"), ("page.css", "text/css"), ("icon.svg", "image/svg+xml")],
)
async def test_assets_are_served_with_their_type(
    daemon: Daemon, http: aiohttp.ClientSession, name: str, kind: str
) -> None:
    async with http.get(daemon.url + "/ui/static/" + name) as response:
        assert response.status == 200
        assert response.content_type == kind
        assert len(await response.read()) > 100


@pytest.mark.parametrize("name", ["page.html", "..%2F..%2Fapp.py", "nope.js", "__init__.py"])
async def test_only_the_pages_assets_are_served(
    daemon: Daemon, http: aiohttp.ClientSession, name: str
) -> None:
    async with http.get(daemon.url + "/ui/static/" + name) as response:
        assert response.status == 404


async def test_approve_from_the_page_grants_the_agent(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    agent, session_id = await pending_session(daemon, raw_agent)
    http, csrf = await logged_in(daemon)
    async with (
        http,
        http.post(
            daemon.url + f"/ui/sessions/{session_id}/approve",
            data={"csrf": csrf},
            headers=SAME_ORIGIN,
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 303
    assert (await agent.recv())["type"] == "session_granted"
    assert daemon.state.registry.get(session_id).state is SessionState.ACTIVE


async def test_deny_and_revoke_from_the_page(start_daemon: StartDaemon, raw_agent: Any) -> None:
    daemon = await start_daemon(approval="manual")
    _, denied = await pending_session(daemon, raw_agent)
    _, revoked = await pending_session(daemon, raw_agent, agent_id="second")
    http, csrf = await logged_in(daemon)
    async with http:
        for session_id, action in ((denied, "deny"), (revoked, "approve"), (revoked, "revoke")):
            async with http.post(
                daemon.url + f"/ui/sessions/{session_id}/{action}",
                data={"csrf": csrf},
                headers=SAME_ORIGIN,
            ) as response:
                assert response.status == 200  # the page again, after the redirect
    registry = daemon.state.registry
    assert registry.get(denied).state is SessionState.DENIED
    assert registry.get(revoked).state is SessionState.REVOKED


async def test_an_action_that_does_not_fit_shows_the_page_with_why(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await daemon.start_agent()
    (session,) = list(daemon.state.registry)
    client, csrf = await logged_in(daemon)
    async with (
        client,
        client.post(
            daemon.url + f"/ui/sessions/{session.id}/approve",
            data={"csrf": csrf},
            headers=SAME_ORIGIN,
        ) as response,
    ):
        assert response.status == 409
        assert "not pending" in await response.text()


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Origin and no Sec-Fetch-Site: not the page
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_actions_not_from_the_page_itself_are_refused_even_with_cookie_and_token(
    start_daemon: StartDaemon, raw_agent: Any, headers: dict[str, str]
) -> None:
    daemon = await start_daemon(approval="manual")
    _, session_id = await pending_session(daemon, raw_agent)
    http, csrf = await logged_in(daemon)
    async with (
        http,
        http.post(
            daemon.url + f"/ui/sessions/{session_id}/approve", data={"csrf": csrf}, headers=headers
        ) as response,
    ):
        assert response.status == 403
    assert daemon.state.registry.get(session_id).state is SessionState.PENDING
    assert Meter(daemon)("rejected_total", reason="origin") == 1


@pytest.mark.parametrize("csrf", [None, "", "forged"])
async def test_actions_without_this_sessions_csrf_token_are_refused(
    start_daemon: StartDaemon, raw_agent: Any, csrf: str | None
) -> None:
    daemon = await start_daemon(approval="manual")
    _, session_id = await pending_session(daemon, raw_agent)
    http, _ = await logged_in(daemon)
    form = {} if csrf is None else {"csrf": csrf}
    async with (
        http,
        http.post(
            daemon.url + f"/ui/sessions/{session_id}/approve", data=form, headers=SAME_ORIGIN
        ) as response,
    ):
        assert response.status == 403
    assert daemon.state.registry.get(session_id).state is SessionState.PENDING


async def test_another_browsers_csrf_token_is_refused(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    _, session_id = await pending_session(daemon, raw_agent)
    victim, stolen = await logged_in(daemon)
    attacker, _ = await logged_in(daemon)
    async with (
        victim,
        attacker,
        attacker.post(
            daemon.url + f"/ui/sessions/{session_id}/approve",
            data={"csrf": stolen},
            headers=SAME_ORIGIN,
        ) as response,
    ):
        assert response.status == 403
    assert daemon.state.registry.get(session_id).state is SessionState.PENDING


async def test_logging_out_ends_the_page_session(daemon: Daemon) -> None:
    http, csrf = await logged_in(daemon)
    async with http:
        async with http.post(
            daemon.url + "/ui/logout", data={"csrf": csrf}, headers=SAME_ORIGIN
        ) as response:
            assert response.status == 200
            assert "mcp-local-provider ui --open" in await response.text()
        assert len(daemon.app[PAGE].access) == 0


async def test_form_posts_elsewhere_are_still_refused(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    # As a browser posts a form: with an Origin (a request without one is not a browser form,
    # and the editor API reads its body as JSON whatever its label).
    headers = {**SAME_ORIGIN, "Origin": daemon.url}
    async with http.post(
        daemon.url + "/v1/chat/completions", data={"model": "echo"}, headers=headers
    ) as response:
        assert response.status == 415


async def test_live_traffic_streams_each_request_without_its_text(echo_daemon: Daemon) -> None:
    http, _ = await logged_in(echo_daemon)
    async with http, http.get(echo_daemon.url + "/ui/events") as stream:
        assert stream.content_type == "text/event-stream"
        await until(lambda: echo_daemon.state.traffic.watchers == 1)
        async with http.post(
            echo_daemon.url + "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "canary prompt"}]},
        ) as response:
            assert response.status == 200
        lines = []
        async with asyncio.timeout(5):
            while not lines or lines[-1] != b"\n":
                lines.append(await stream.content.readline())
    text = b"".join(lines).decode()
    assert text.startswith("event: request\n")
    event = json.loads(text.split("data: ", 1)[1])
    assert event["route"] == "/v1/chat/completions" and event["status"] == 200
    assert event["model"] == "echo" and event["session_label"] == "Test agent"
    assert "canary" not in text


async def test_usage_is_drawn_from_the_injected_source(start_daemon: StartDaemon) -> None:
    today = datetime.now(UTC).date().isoformat()
    source = Rows([Row(today, "Laptop <b>", "opus", requests=3, input_tokens=1200)])
    daemon = await start_daemon(usage=source)
    http, _ = await logged_in(daemon)
    async with http, http.get(daemon.url + "/ui") as response:
        page = await response.text()
    assert set(source.asked) == {7}  # the last 7 days
    assert "<svg" in page and "opus" in page and "1,200" in page
    assert "Laptop &lt;b&gt;" in page and "Laptop <b>" not in page


async def test_a_new_daemon_reads_its_usage_store_and_says_nothing_was_served_yet(
    daemon: Daemon,
) -> None:
    http, _ = await logged_in(daemon)
    async with http, http.get(daemon.url + "/ui") as response:
        assert "No requests in the last days." in await response.text()


async def test_with_ui_off_there_is_no_page_and_no_login(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(ui=False)
    for method, path in (("GET", "/ui"), ("GET", "/ui/login"), ("POST", "/control/ui/login")):
        async with http.request(method, daemon.url + path, headers=daemon.auth) as response:
            assert response.status == 404, path


async def test_event_streams_are_capped(daemon: Daemon) -> None:
    http, _ = await logged_in(daemon)
    streams = daemon.app[PAGE].streams
    for _ in range(MAX_STREAMS):
        streams.add(asyncio.Queue())
    async with http, http.get(daemon.url + "/ui/events") as response:
        assert response.status == 503


async def test_event_streams_end_when_the_daemon_shuts_down(echo_daemon: Daemon) -> None:
    http, _ = await logged_in(echo_daemon)
    async with http, http.get(echo_daemon.url + "/ui/events") as stream:
        await until(lambda: len(echo_daemon.app[PAGE].streams) == 1)
        await echo_daemon.app.shutdown()
        async with asyncio.timeout(5):
            assert await stream.content.read() == b""  # ended, well before the next ping
    assert not echo_daemon.app[PAGE].streams


@pytest.mark.parametrize(
    "body", [b"\xff\xfe=\x80", b"csrf=%ff%fe", b"%", b"=&&==", b"a=1&" * 20, b"csrf=1&csrf=2"]
)
@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=no-such-charset",
        "application/json",
    ],
)
async def test_malformed_forms_from_a_logged_in_page_are_403_never_5xx(
    daemon: Daemon, body: bytes, content_type: str
) -> None:
    http, _ = await logged_in(daemon)
    async with (
        http,
        http.post(
            daemon.url + "/ui/logout",
            data=body,
            headers={**SAME_ORIGIN, "Content-Type": content_type},
        ) as response,
    ):
        assert response.status == 403
    assert len(daemon.app[PAGE].access) == 1  # still logged in


@pytest.mark.parametrize("path", ["/ui/panels", "/ui/events"])
@pytest.mark.parametrize("site", ["same-site", "cross-site", "none"])
async def test_what_only_the_pages_script_reads_is_refused_to_other_origins(
    daemon: Daemon, path: str, site: str
) -> None:
    http, _ = await logged_in(daemon)
    async with http, http.get(daemon.url + path, headers={"Sec-Fetch-Site": site}) as response:
        assert response.status == 403
    assert Meter(daemon)("rejected_total", reason="origin") == 1


class BrokenStore:
    async def rows(self, since_days: int) -> list[Row]:
        raise OSError("disk on fire")


async def test_a_failing_usage_source_does_not_break_the_page(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(usage=BrokenStore())
    http, _ = await logged_in(daemon)
    async with http, http.get(daemon.url + "/ui") as response:
        assert response.status == 200
        page = await response.text()
    assert "Usage could not be read" in page and "disk on fire" not in page
