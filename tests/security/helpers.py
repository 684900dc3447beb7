"""Helpers for the security tests: raw HTTP over a socket (for requests a client library
would tidy up), and the real daemon run as a separate process (``serve`` as a user runs it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from tests.fakes import BRIDGE_TOKEN, Daemon


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def port_of(daemon: Daemon) -> int:
    port = daemon.server.port
    assert port is not None
    return port


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return RawResponse(status, headers, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


async def raw_exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send ``data`` as is and read until the daemon closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def raw_head(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send ``data`` and read the response's status line and headers (for kept-alive sockets)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()


async def raw_request(
    port: int,
    method: str,
    target: str,
    *,
    host: str | None = "127.0.0.1",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> RawResponse:
    """One request, written byte for byte as given (``host=None``: no Host header)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    items = headers.items() if isinstance(headers, dict) else headers or []
    lines += [f"{name}: {value}" for name, value in items]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return parse_response(await raw_exchange(port, data))


def free_port() -> int:
    """A port free on 127.0.0.1 (and, where there is IPv6, on [::1])."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET6) as s6:
                s6.bind(("::1", port))
        except OSError as exc:
            if exc.errno == 98:  # in use on [::1]: try another
                continue
        return port
    raise RuntimeError("no free port")


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class DaemonProcess:
    """``mcp-local-provider serve`` in a child process, with JSON logs captured to a file."""

    def __init__(self, tmp_path: Path, port: int, env: dict[str, str], args: list[str]) -> None:
        self.tmp_path = tmp_path
        self.port = port
        self.env = env
        self.args = args
        self.log_path = tmp_path / "daemon.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_dir(self) -> Path:
        return self.tmp_path / "state"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _open_log(self) -> BinaryIO:
        return open(self.log_path, "wb")

    async def start(self, *, wait: bool = True) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.tmp_path),
            "MCP_LOCAL_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN,
            "MCP_LOCAL_PROVIDER_STATE_DIR": str(self.state_dir),
            "MCP_LOCAL_PROVIDER_APPROVAL": "auto",
            "MCP_LOCAL_PROVIDER_LOG_FORMAT": "json",
            "MCP_LOCAL_PROVIDER_LOG_LEVEL": "debug",
            "MCP_LOCAL_PROVIDER_SHUTDOWN_GRACE": "0.5",
            **self.env,
        }
        with self._open_log() as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mcp_local_provider", "serve",
                "--port", str(self.port), *self.args,
                env=env, cwd=self.tmp_path,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        if wait:
            await self.wait_ready()

    async def wait_ready(self, wait: float = 15.0) -> None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        async with aiohttp.ClientSession() as http:
            while loop.time() < end:
                if self.proc.returncode is not None:
                    raise AssertionError(f"daemon exited early:\n{self.log_text()}")
                try:
                    async with http.get(self.url + "/health") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"daemon not ready in time:\n{self.log_text()}")

    async def exit_code(self, wait: float = 15.0) -> int:
        assert self.proc is not None
        async with asyncio.timeout(wait):
            return await self.proc.wait()

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.exit_code(10)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


class CountingEcho:
    """An echo backend that counts the requests it served (to prove one never got there)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from mcp_local_provider.agent.backends.echo import EchoBackend

        class _Counting(EchoBackend):
            def __init__(self, *a: Any, **k: Any) -> None:
                super().__init__(*a, **k)
                self.served = 0

            async def run(self, request: Any) -> Any:
                self.served += 1
                async for event in super().run(request):
                    yield event

        return _Counting(*args, **kwargs)


async def audit_lines(daemon: Daemon) -> list[dict[str, Any]]:
    """Every line of the daemon's audit log, once the writer caught up."""
    from mcp_local_provider.http.state import STATE

    audit = daemon.app[STATE].security.audit
    await audit.drain()
    if not audit.path.exists():
        return []
    return [json.loads(line) for line in audit.path.read_text().splitlines()]


def chat_body(text: str = "hello", model: str = "echo", **extra: Any) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


async def granted_raw_agent(agent: Any, **hello: Any) -> dict[str, Any]:
    """Say hello on an auto-approving daemon and return the ``session_granted`` frame."""
    frame: dict[str, Any] = await agent.hello(**hello)
    if frame["type"] == "session_pending":
        frame = await agent.recv()
    assert frame["type"] == "session_granted", frame
    return frame
