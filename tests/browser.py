"""A real headless Chromium driven over the DevTools protocol (a WebSocket, through aiohttp's
client: no extra dependency). Enough to open pages, click, read the DOM, run a page's own
script, see the headers the browser really sent, and take screenshots.

``chromium_path()`` finds Debian's ``chromium``; tests skip, saying so, where it is absent.
The browser resolves ``*.attacker.test`` to 127.0.0.1, for pages that play another site.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

#: Names the browser resolves to 127.0.0.1, as a DNS-rebinding or attacker's site would be.
ATTACKER_HOST = "attacker.test"


def chromium_path() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


def need_chromium() -> str:
    found = chromium_path()
    if found is None:
        pytest.skip("no headless browser: install Debian's chromium (apt-get install chromium)")
    return found


class BrowserError(Exception):
    pass


class Browser:
    """One Chromium process and its DevTools connection."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True)
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}

    async def start(self, timeout: float = 30) -> None:
        profile = self._profile.name
        self._proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--headless=new",
            "--no-sandbox",  # tests may run as root, in containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--password-store=basic",
            "--use-mock-keychain",
            f"--host-resolver-rules=MAP {ATTACKER_HOST} 127.0.0.1, MAP *.{ATTACKER_HOST} 127.0.0.1",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        active = Path(profile) / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not active.exists() or len(active.read_text().splitlines()) < 2:
            if self._proc.returncode is not None or loop.time() > end:
                raise BrowserError("chromium did not start")
            await asyncio.sleep(0.05)
        port, path = active.read_text().splitlines()[:2]
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        self._profile.cleanup()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif (page := self._pages.get(data.get("sessionId", ""))) is not None:
                page.event(data["method"], data.get("params", {}))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BrowserError("the browser connection closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        assert self._ws is not None
        key = next(self._ids)
        message: dict[str, Any] = {"id": key, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        await self._ws.send_str(json.dumps(message))
        async with asyncio.timeout(30):
            answer = await future
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def new_context(self) -> str:
        """A fresh browser context: its own cookies, like another browser profile."""
        return str((await self.send("Target.createBrowserContext"))["browserContextId"])

    async def new_page(self, context: str | None = None, *, bypass_csp: bool = False) -> Page:
        params: dict[str, Any] = {"url": "about:blank"}
        if context is not None:
            params["browserContextId"] = context
        target = (await self.send("Target.createTarget", params))["targetId"]
        session = (await self.send("Target.attachToTarget", {"targetId": target, "flatten": True}))[
            "sessionId"
        ]
        page = Page(self, session)
        self._pages[session] = page
        for domain in ("Page", "Runtime", "Network", "Log"):
            await page.send(f"{domain}.enable")
        if bypass_csp:  # the page plays one its attacker served, which has no CSP
            await page.send("Page.setBypassCSP", {"enabled": True})
        return page


class Page:
    """One tab, attached with its own DevTools session."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.loads = 0
        self._loaded = asyncio.Event()
        #: Headers each request really carried (cookies included), by request id, in order.
        self._extra: dict[str, list[dict[str, str]]] = {}
        self._urls: dict[str, list[tuple[str, str]]] = {}
        #: Status of each document the tab loaded, in order.
        self.documents: list[tuple[str, int]] = []
        self.dialogs: list[str] = []
        #: Script errors, and what the browser logged as errors (CSP refusals among them).
        self.errors: list[str] = []
        self.console: list[str] = []

    def event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self.loads += 1
            self._loaded.set()
        elif method == "Network.requestWillBeSent":
            request = params["request"]
            # A redirect keeps the request id: each hop is one more entry.
            self._urls.setdefault(params["requestId"], []).append(
                (request["method"], request["url"])
            )
        elif method == "Network.requestWillBeSentExtraInfo":
            # It may come before or after requestWillBeSent: joined when read (sent_to).
            headers = {k.lower(): v for k, v in params.get("headers", {}).items()}
            self._extra.setdefault(params["requestId"], []).append(headers)
        elif method == "Network.responseReceived" and params.get("type") == "Document":
            self.documents.append((params["response"]["url"], params["response"]["status"]))
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params.get("message", ""))
            asyncio.get_running_loop().create_task(
                self.send("Page.handleJavaScriptDialog", {"accept": False})
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description") or details))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            # Where the browser reports what it refused: CSP violations, failed loads.
            self.errors.append(params["entry"].get("text", ""))
        elif method == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value")) for a in params.get("args", [])))

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    @contextlib.asynccontextmanager
    async def navigation(self, timeout: float = 15) -> AsyncIterator[None]:
        """Wait, on leaving the block, for the page load the block started."""
        self._loaded.clear()
        yield
        async with asyncio.timeout(timeout):
            await self._loaded.wait()

    async def goto(self, url: str) -> None:
        async with self.navigation():
            result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")

    async def eval(self, expression: str) -> Any:
        """Run ``expression`` in the page (awaiting a promise) and return its value."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(result["exceptionDetails"].get("text", "script failed"))
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        """Click the element and wait for the page it leads to."""
        async with self.navigation():
            found = await self.eval(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                " if (!e) return false; e.click(); return true; })()"
            )
            if not found:
                raise BrowserError(f"nothing matches {selector}")

    async def text(self, selector: str = "body") -> str:
        value = await self.eval(
            f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
        )
        return str(value)

    async def wait_for(self, expression: str, timeout: float = 10) -> Any:
        """Poll ``expression`` in the page until it is truthy; return it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if loop.time() > end:
                raise AssertionError(f"in the page, never true: {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self, width: int, height: int = 900) -> bytes:
        """A PNG of the whole page laid out ``width`` pixels wide."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        shot = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        return base64.b64decode(shot["data"])

    def sent_to(self, fragment: str, method: str = "POST") -> list[dict[str, str]]:
        """Headers of the requests (with ``method``) whose URL contains ``fragment``."""
        found = []
        for request_id, hops in self._urls.items():
            for (sent_method, url), headers in zip(
                hops, self._extra.get(request_id, []), strict=False
            ):
                if sent_method == method and fragment in url:
                    found.append(headers)
        return found
