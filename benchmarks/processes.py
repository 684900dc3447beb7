"""The processes under test: started, pinned to cores, watched through /proc, and stopped."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Cores:
    """Where each side runs: the daemon alone on one core, everything else on the others."""

    daemon: frozenset[int] | None
    others: frozenset[int] | None

    @classmethod
    def split(cls) -> Cores:
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2:
            return cls(None, None)
        return cls(frozenset(available[:1]), frozenset(available[1:]))

    def describe(self) -> str:
        if self.daemon is None or self.others is None:
            return "not pinned (fewer than 2 cores)"
        return f"daemon on core {sorted(self.daemon)}, the rest on {sorted(self.others)}"


class Child:
    """A child process whose CPU time and memory are read from /proc."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU time so far, all threads: nanoseconds from each thread's schedstat, or clock
        ticks (10 ms) from /proc/PID/stat where the kernel keeps no schedstat."""
        total = 0
        try:
            for task in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{task}/schedstat") as fh:
                    total += int(fh.read().split()[0])
            return total / 1e9
        except (FileNotFoundError, ValueError, IndexError):
            pass
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def pin(self, cores: frozenset[int] | None) -> frozenset[int]:
        """Pin every thread the child has now (threads it starts later inherit the pinning);
        the cores its threads may run on, all of them together."""
        allowed: set[int] = set()
        for task in os.listdir(f"/proc/{self.pid}/task"):
            with suppress(ProcessLookupError):
                if cores is not None:
                    os.sched_setaffinity(int(task), cores)
                allowed |= os.sched_getaffinity(int(task))
        return frozenset(allowed)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE

    async def ready_line(self, limit: float) -> str:
        """The first line the child prints (its ``ready`` line)."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(limit):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not start within {limit} s") from None
        if not line:
            raise RuntimeError(f"{self.name} exited with {await self.process.wait()}")
        return line.decode().strip()

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start(
    name: str,
    argv: list[str],
    cores: frozenset[int] | None,
    log_dir: Path,
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    ready_line: bool = True,
) -> Child:
    """Start ``argv`` with stdout piped (for its ready line) and stderr to ``<name>.log``;
    without ``ready_line``, stdout goes to the log too (a child that prints a line per request
    would otherwise fill the pipe and stall)."""
    log = os.open(log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if ready_line else log,
            stderr=log,
            cwd=cwd,
            env=env,
        )
    finally:
        os.close(log)
    if cores is not None:
        with suppress(ProcessLookupError):
            os.sched_setaffinity(process.pid, cores)
    return Child(name, process)


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclass(frozen=True)
class DaemonFiles:
    config: Path
    token_file: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def agent_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/agent"


def write_daemon_config(directory: Path, connections: int) -> DaemonFiles:
    """A config with the daemon's defaults (audit log, access log, info level) except the
    limits a benchmark must lift: rate limits, connection counts and per-session concurrency."""
    port = free_port()
    token_file = directory / "bridge-token"
    token_file.write_text(secrets.token_urlsafe(32))
    token_file.chmod(0o600)
    state = directory / "state"
    state.mkdir(mode=0o700)
    lines = [
        f"port = {port}",
        "ipv6_loopback = false",
        f'state_dir = "{state}"',
        f'token_file = "{token_file}"',
        'approval = "auto"',
        f"max_connections = {connections}",
        f"max_in_flight = {connections}",
        f"max_concurrency = {connections}",
        f"max_queued_requests = {connections}",
        "max_requests = 1000000000",
        "requests_per_minute = 0",
        "tokens_per_minute = 0",
        "max_pending = 64",
        "max_pending_per_token = 64",
        "max_message_chars = 4000000",
        "max_request_chars = 8000000",
        "",
        "[agent]",
        f"max_concurrency = {connections}",
    ]
    config = directory / "daemon.toml"
    config.write_text("\n".join(lines) + "\n")
    return DaemonFiles(config, token_file, port)


async def wait_http(url: str, limit: float, child: Child) -> None:
    """Poll ``url`` until it answers 200."""
    async with asyncio.timeout(limit), aiohttp.ClientSession() as http:
        while True:
            if child.process.returncode is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def wait_model(base_url: str, model: str, limit: float) -> None:
    """Poll the daemon's model list until an agent serving ``model`` is connected."""
    async with asyncio.timeout(limit), aiohttp.ClientSession() as http:
        while True:
            with suppress(aiohttp.ClientError):
                async with http.get(base_url + "/v1/models") as response:
                    if response.status == 200:
                        listed = await response.json()
                        if any(m.get("id") == model for m in listed.get("data", ())):
                            return
            await asyncio.sleep(0.05)
