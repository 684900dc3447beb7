"""Helpers for the web page's tests: login codes from the control API, usage rows shaped like
the usage store's, and a usage source serving them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from tests.fakes import Daemon


@dataclass(frozen=True)
class Row:
    """A row shaped like the usage store's ``UsageRow``."""

    day: str
    session: str
    model: str
    requests: int = 1
    errors: int = 0
    input_tokens: int = 10
    output_tokens: int = 5
    estimated: bool = False
    failovers: int = 0
    cooling_seconds: float = 0.0


class Rows:
    """A usage source holding fixed rows; records the days it was asked for."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self._rows = list(rows)
        self.asked: list[int] = []

    async def rows(self, since_days: int) -> list[Row]:
        self.asked.append(since_days)
        return self._rows


async def login_path(daemon: Daemon, http: aiohttp.ClientSession) -> str:
    """``/ui/login?code=...``, as the ``ui`` command gets it."""
    async with http.post(daemon.url + "/control/ui/login", headers=daemon.auth) as response:
        assert response.status == 201, await response.text()
        path: str = (await response.json())["path"]
    return path


async def logged_in(daemon: Daemon) -> tuple[aiohttp.ClientSession, str]:
    """A client holding a page session's cookie, and the CSRF token from its page."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    path = await login_path(daemon, http)
    async with http.get(daemon.url + path) as response:
        assert response.status == 200
        page = await response.text()
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return http, page[start : page.index('"', start)]
