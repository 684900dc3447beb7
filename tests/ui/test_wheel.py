"""Installed, not only checked out: a wheel built from the source tree carries the page's
files, and a daemon run from a fresh virtual environment serves ``/ui`` and its assets."""

from __future__ import annotations

import asyncio
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import aiohttp
import pytest

from mcp_local_provider.http.ui.routes import ASSET_TYPES
from tests.fakes import BRIDGE_TOKEN
from tests.security.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "mcp_local_provider" / "http" / "ui" / "static"


def build_wheel(tmp_path: Path) -> Path:
    """``pip wheel`` on a copy of the tree (so no build files land in the checkout)."""
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "node_modules", "build", "dist", "*.egg-info", "__pycache__",
            ".*_cache", "tests", "benchmarks",
        ),
    )  # fmt: skip
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0:
        pytest.skip(f"the wheel could not be built here (no build backend?): {built.stderr[-400:]}")
    (wheel,) = (tmp_path / "dist").glob("mcp_local_provider-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed; its dependencies are borrowed from
    this one's site-packages by path, so nothing of this checkout is importable there."""
    env = tmp_path / "fresh"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
        check=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A plain path line: the borrowed directory's own .pth files (this checkout's editable
    # install among them) are not run.
    (Path(purelib) / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env


def installed_at(env: Path, cwd: Path) -> str:
    """Where ``env``'s Python imports the package from."""
    return subprocess.run(
        [env / "bin" / "python", "-c", "import mcp_local_provider as m; print(m.__file__)"],
        capture_output=True, text=True, check=True, cwd=cwd,
    ).stdout  # fmt: skip


def test_the_wheel_carries_the_pages_files(tmp_path: Path) -> None:
    names = zipfile.ZipFile(build_wheel(tmp_path)).namelist()
    for asset in ("page.html", *ASSET_TYPES):
        assert f"mcp_local_provider/http/ui/static/{asset}" in names


async def test_an_installed_daemon_serves_the_page_and_its_assets(tmp_path: Path) -> None:
    env = await asyncio.to_thread(
        fresh_venv, tmp_path, await asyncio.to_thread(build_wheel, tmp_path)
    )
    where = await asyncio.to_thread(installed_at, env, tmp_path)
    assert where.startswith(str(env)), where
    port = free_port()
    daemon = await asyncio.create_subprocess_exec(
        env / "bin" / "mcp-local-provider", "serve", "--port", str(port),
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "MCP_LOCAL_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN,
            "MCP_LOCAL_PROVIDER_STATE_DIR": str(tmp_path / "state"),
            "MCP_LOCAL_PROVIDER_LOG_FORMAT": "json",
        },
        cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with http.get(base + "/health") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
            async with http.post(
                base + "/control/ui/login", headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"}
            ) as response:
                path = (await response.json())["path"]
            async with http.get(base + path) as response:
                assert response.status == 200
                page = await response.text()
            assert "Log out" in page and base in page  # the page, with where it listens
            for name, kind in ASSET_TYPES.items():
                async with http.get(base + "/ui/static/" + name) as response:
                    assert response.status == 200 and response.content_type == kind
                    assert await response.read() == (ASSETS / name).read_bytes()
    finally:
        daemon.terminate()
        await daemon.wait()
