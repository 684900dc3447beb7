"""``mcp-local-provider ui``: a one-time login link for the web page, printed or opened."""

from __future__ import annotations

import asyncio
import webbrowser
from pathlib import Path

import aiohttp
import pytest

from mcp_local_provider.cli.main import main
from tests.conftest import StartDaemon
from tests.fakes import BRIDGE_TOKEN, Daemon


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "bridge-token"
    path.write_text(BRIDGE_TOKEN + "\n")
    path.chmod(0o600)
    return path


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def printed_link(out: str, daemon: Daemon) -> str:
    (link,) = [word for word in out.split() if word.startswith(daemon.url + "/ui/login?code=")]
    return link


async def test_ui_prints_a_link_that_logs_a_browser_in_once(
    daemon: Daemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli("ui", "--url", daemon.url, "--token-file", str(token_file)) == 0
    out = capsys.readouterr().out
    assert "works once, within 5 minutes" in out
    link = printed_link(out, daemon)
    assert BRIDGE_TOKEN not in out
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(link) as response:
            assert response.status == 200
            assert "Log out" in await response.text()
        async with http.get(link) as response:
            assert response.status == 403


async def test_ui_open_hands_the_link_to_the_browser(
    daemon: Daemon,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    assert await run_cli("ui", "--open", "--url", daemon.url, "--token-file", str(token_file)) == 0
    assert opened == [printed_link(capsys.readouterr().out, daemon)]


async def test_ui_against_a_daemon_without_the_page_says_so(
    start_daemon: StartDaemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = await start_daemon(ui=False)
    assert await run_cli("ui", "--url", daemon.url, "--token-file", str(token_file)) == 1
    err = capsys.readouterr().err
    assert "serves no web page (ui = false" in err and err.count("\n") == 1


async def test_ui_with_a_wrong_token_is_a_one_line_error(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token\n")
    wrong.chmod(0o600)
    assert await run_cli("ui", "--url", daemon.url, "--token-file", str(wrong)) == 1
    err = capsys.readouterr().err
    assert "could not get a login link (401)" in err and err.count("\n") == 1


async def test_ui_without_a_daemon_is_a_one_line_error(
    token_file: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    assert await run_cli("ui", "--url", url, "--token-file", str(token_file)) == 1
    assert capsys.readouterr().err.startswith(
        f"mcp-local-provider: cannot reach the daemon at {url}"
    )
