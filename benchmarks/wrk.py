"""Throughput driven by ``wrk``, a load generator in C that can keep a server busy where a Python
client runs out of CPU first; when ``wrk`` is not installed, several load processes instead.

``wrk`` posts the arm's request body with a small Lua script and reports, from its ``done``
hook, one JSON line: requests, duration, and each kind of error. Its answers are not read by
the script (that would slow it down), so the answers are checked by sampling instead: a few
requests through the Python client, which checks every byte, before and after each run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .answers import Spec, request_body
from .load import Arm, ArmFailed, Throughput

REPO = Path(__file__).resolve().parent.parent
#: Requests checked through the Python client before and after each run.
SAMPLES = 3

_SCRIPT = """\
local body = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = body:read("*a")
body:close()
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid Lua string literal


def script(arm: Arm, directory: Path) -> Path:
    """The Lua script posting ``arm``'s body with its headers."""
    headers = "\n".join(
        f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}"
        for name, value in arm.headers.items()
    )
    path = directory / f"wrk-{arm.name}.lua"
    path.write_text(_SCRIPT.format(headers=headers))
    return path


@dataclass(frozen=True)
class Driven(Throughput):
    """A throughput run and what limited it."""

    #: The load generator's name: ``wrk`` or ``N load processes``.
    driver: str = "wrk"
    #: The serving side's CPU share of one core while driven (its cost processes together).
    busy_share: float = 0.0


async def _samples(arm: Arm, body: bytes, spec: Spec) -> None:
    for _ in range(SAMPLES):
        await arm.whole(body, spec)


def _pinner(cores: frozenset[int] | None) -> Callable[[], None] | None:
    """What pins a load generator to ``cores`` as it starts."""
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


async def with_wrk(
    arm: Arm,
    spec: Spec,
    connections: int,
    seconds: float,
    directory: Path,
    cores: frozenset[int] | None,
) -> Driven:
    """``connections`` connections posting back to back for ``seconds``, from one ``wrk``
    thread pinned to ``cores``; answers sampled before and after."""
    program = wrk_path()
    assert program is not None
    body = request_body(arm.model, spec, stream=False)
    body_file = directory / f"wrk-{arm.name}.json"
    body_file.write_bytes(body)
    await _samples(arm, body, spec)
    cpu = arm.cpu_seconds()
    argv = [program, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "-s", str(script(arm, directory)), arm.url]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BENCH_BODY": str(body_file)},
        preexec_fn=_pinner(cores),
    )
    out, err = await process.communicate()
    used = arm.cpu_seconds() - cpu
    if process.returncode != 0:
        raise ArmFailed(arm.name, f"wrk exited with {process.returncode}: {err[-300:]!r}")
    summary = json.loads(out.decode().strip().splitlines()[-1])
    errors = {k: summary[k] for k in ("connect", "read", "write", "status", "timeout")}
    if any(errors.values()):
        raise ArmFailed(arm.name, f"wrk saw errors: {errors}")
    await _samples(arm, body, spec)
    elapsed = summary["duration_us"] / 1e6
    return Driven(summary["requests"], elapsed, used, "wrk", used / elapsed)


async def with_processes(
    arm: Arm,
    spec: Spec,
    connections: int,
    seconds: float,
    directory: Path,
    cores: frozenset[int] | None,
    processes: int,
) -> Driven:
    """The same load from ``processes`` Python load processes, for a machine without ``wrk``.
    They start, import and connect first; the clock and the CPU count start when all of them
    are told to go at once."""
    body = request_body(arm.model, spec, stream=False)
    body_file = directory / f"load-{arm.name}.json"
    body_file.write_bytes(body)
    await _samples(arm, body, spec)
    per = max(1, connections // processes)
    argv = [sys.executable, "-m", "benchmarks.load_process", arm.url, json.dumps(arm.headers),
            str(per), str(seconds), str(body_file)]  # fmt: skip
    children = [
        await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO,
            preexec_fn=_pinner(cores),
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        if (await child.stdout.readline()).strip() != b"ready":
            raise ArmFailed(arm.name, "a load process did not start")
    loop = asyncio.get_running_loop()
    cpu = arm.cpu_seconds()
    started = loop.time()
    outputs = await asyncio.gather(*(child.communicate(b"go\n") for child in children))
    elapsed = loop.time() - started
    used = arm.cpu_seconds() - cpu
    count = 0
    for child, (out, err) in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise ArmFailed(arm.name, f"a load process failed: {err[-300:]!r}")
        count += json.loads(out)["requests"]
    await _samples(arm, body, spec)
    return Driven(count, elapsed, used, f"{processes} load processes", used / elapsed)
