"""Helpers for the web page's tests: login codes from the control API, usage rows shaped like
the usage store's, and a usage source serving them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


def a_week_of_usage() -> list[Row]:
    """Seven days of two sessions' use of three models, for the chart and the screenshots."""
    today = datetime.now(UTC).date()
    rows = []
    for back in range(7):
        day = (today - timedelta(days=6 - back)).isoformat()
        rows.append(Row(day, "Claude Code on laptop", "claude", 40 + 9 * back, back % 3,
                        52_000 + 7_000 * back, 9_000 + 1_500 * back))  # fmt: skip
        rows.append(Row(day, "Codex", "gpt-5-codex", 25 + (back * 7) % 11, 0,
                        30_000 + (back * 9_000) % 41_000, 6_000, failovers=back % 2))  # fmt: skip
        if back >= 4:
            rows.append(Row(day, "Gemini CLI", "gemini-2.5-pro", 12, 1, 18_000, 4_000,
                            estimated=True, cooling_seconds=300.0))  # fmt: skip
    return rows
