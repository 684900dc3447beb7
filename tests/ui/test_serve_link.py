"""``serve`` on a terminal prints a login link for the web page; anywhere else it does not."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import sys
from pathlib import Path
from typing import BinaryIO

import aiohttp

from tests.fakes import BRIDGE_TOKEN
from tests.security.helpers import DaemonProcess, free_port

LINK = re.compile(r"http://127\.0\.0\.1:\d+/ui/login\?code=[A-Za-z0-9_-]+")


def log_file(path: Path) -> BinaryIO:
    return open(path, "wb")


async def test_serve_on_a_terminal_prints_a_login_link_that_works(tmp_path: Path) -> None:
    port = free_port()
    primary, secondary = pty.openpty()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MCP_LOCAL_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN,
        "MCP_LOCAL_PROVIDER_STATE_DIR": str(tmp_path / "state"),
        "MCP_LOCAL_PROVIDER_APPROVAL": "manual",
        "MCP_LOCAL_PROVIDER_LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with log_file(log) as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mcp_local_provider", "serve", "--port", str(port),
            env=env, cwd=tmp_path, stdin=secondary, stdout=out, stderr=out,
        )  # fmt: skip
    os.close(secondary)
    try:
        async with asyncio.timeout(20):
            while not LINK.search(log.read_text(errors="replace")):
                assert proc.returncode is None, log.read_text()
                await asyncio.sleep(0.05)
        (link,) = LINK.findall(log.read_text())
        assert link.startswith(f"http://127.0.0.1:{port}/ui/login?code=")
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
            http.get(link) as response,
        ):
            assert response.status == 200
            assert "Log out" in await response.text()
    finally:
        proc.terminate()
        await proc.wait()
        os.close(primary)


async def test_serve_without_a_terminal_prints_no_link(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, free_port(), {}, [])
    await daemon.start()
    try:
        assert "/ui/login" not in daemon.log_text()
    finally:
        await daemon.stop()
