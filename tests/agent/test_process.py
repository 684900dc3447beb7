"""The CLI process runner: no TTY, own process group, prompt on stdin, NDJSON, cancellation."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import BackendError
from mcp_local_provider.agent.process import CliProcess, find_binary
from tests.clis import group_alive
from tests.fakes import until

REPORT = """
import json, os, sys
data = sys.stdin.read()
tty = [s.isatty() for s in (sys.stdin, sys.stdout, sys.stderr)]
print(json.dumps({"type": "report", "stdin": data, "pid": os.getpid(), "pgid": os.getpgid(0),
                  "sid": os.getsid(0), "tty": tty, "cwd": os.getcwd()}), flush=True)
"""

# Starts a child in its group, reports both, then prints a line every 50 ms for a long time.
SLOW = """
import json, signal, subprocess, sys, time
if sys.argv[1:] == ["ignore-sigint"]:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
import os
print(json.dumps({"type": "started", "pgid": os.getpgid(0), "child": child.pid}), flush=True)
for i in range(1200):
    time.sleep(0.05)
    print(json.dumps({"type": "tick", "i": i}), flush=True)
"""


def python(code: str, *args: str, **options: Any) -> CliProcess:
    return CliProcess([sys.executable, "-c", code, *args], **options)


async def events_of(proc: CliProcess) -> list[dict[str, Any]]:
    return [event async for event in proc.events()]


async def test_the_cli_gets_no_tty_its_own_group_and_the_prompt_on_stdin() -> None:
    prompt = "a secret prompt " * 1000
    async with python(REPORT, stdin=prompt.encode()) as proc:
        [report] = await events_of(proc)
        assert await proc.wait() == 0
    assert report["stdin"] == prompt
    assert prompt not in " ".join(proc.argv)
    assert report["tty"] == [False, False, False]
    assert report["pgid"] == report["pid"] == report["sid"]
    assert report["pgid"] != os.getpgid(0)


async def test_a_scratch_directory_is_made_for_the_run_and_removed_after() -> None:
    async with python(REPORT, stdin=b"") as proc:
        [report] = await events_of(proc)
        assert await asyncio.to_thread(os.path.isdir, report["cwd"])
    assert os.path.basename(report["cwd"]).startswith("mcp-local-provider-")
    assert not await asyncio.to_thread(os.path.exists, report["cwd"])


async def test_a_configured_workdir_is_used_and_kept(tmp_path: Path) -> None:
    async with python(REPORT, stdin=b"", workdir=tmp_path) as proc:
        [report] = await events_of(proc)
    assert report["cwd"] == str(tmp_path)
    assert await asyncio.to_thread(os.path.isdir, tmp_path)


async def test_malformed_lines_are_skipped_and_counted() -> None:
    code = (
        "print('not json'); print('[1]'); print(); print('{\"type\": 1}');"
        'print(\'{"type": "ok"}\'); print(\'{"type": "a",\')'
    )
    async with python(code) as proc:
        events = await events_of(proc)
    assert events == [{"type": "ok"}]
    assert proc.malformed == 4


async def test_the_tail_of_stderr_is_kept_for_error_messages() -> None:
    code = "import sys; sys.stderr.write('x' * 10000 + 'the real reason'); sys.exit(3)"
    async with python(code) as proc:
        await events_of(proc)
        assert await proc.wait() == 3
        error = proc.failure("it failed")
    assert error.message.startswith("it failed: xxx")
    assert error.message.endswith("the real reason")
    assert len(error.message) < 1100


async def test_silence_longer_than_idle_timeout_is_a_timeout_error() -> None:
    async with python("import time; time.sleep(30)", idle_timeout=0.2) as proc:
        with pytest.raises(BackendError, match=r"printed nothing for 0\.2 s") as raised:
            await events_of(proc)
    assert raised.value.code == "timeout"


async def test_a_run_longer_than_timeout_is_stopped() -> None:
    async with python(SLOW, timeout=0.4, idle_timeout=5) as proc:
        with pytest.raises(BackendError, match=r"did not finish within 0\.4 s"):
            await events_of(proc)


async def _cancel_mid_run(*args: str) -> tuple[dict[str, Any], float]:
    started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def consume() -> None:
        async with python(SLOW, *args, cancel_grace=0.3) as proc:
            async for event in proc.events():
                if not started.done():
                    started.set_result(event)

    task = asyncio.create_task(consume())
    first = await asyncio.wait_for(started, 5)
    await asyncio.sleep(0.1)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return first, time.monotonic() - began


async def test_cancelling_kills_the_whole_process_group_within_two_seconds() -> None:
    first, took = await _cancel_mid_run()
    assert took < 2
    await until(lambda: not group_alive(first["pgid"]), timeout=1)


async def test_a_cli_ignoring_sigint_is_killed_after_the_grace() -> None:
    first, took = await _cancel_mid_run("ignore-sigint")
    assert 0.25 < took < 2
    await until(lambda: not group_alive(first["pgid"]), timeout=1)


async def test_a_child_left_holding_stdout_neither_outlives_the_run_nor_stalls_it() -> None:
    code = (
        "import json, os, subprocess, sys;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(json.dumps({'type': 'done', 'pgid': os.getpgid(0)}), flush=True)"
    )
    began = time.monotonic()
    async with python(code, cancel_grace=0.2) as proc:
        [event] = await events_of(proc)  # the end of output comes although the child has it open
        assert await proc.wait() == 0
    assert time.monotonic() - began < 2
    assert not group_alive(event["pgid"])


async def test_json_lines_can_be_written_to_a_cli_that_keeps_stdin_open() -> None:
    echo = "import sys\nfor line in sys.stdin:\n    print(line, end='', flush=True)"
    async with python(echo, close_stdin=False) as proc:
        await proc.write_line({"type": "ping", "n": 1})
        events = proc.events()
        assert await anext(events) == {"type": "ping", "n": 1}
        await events.aclose()


def test_a_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="'no-such-cli' was not found on PATH") as raised:
        find_binary("no-such-cli")
    assert raised.value.code == "backend_unavailable"


async def test_an_unrunnable_binary_is_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "cli"
    script.write_text("not executable")
    with pytest.raises(BackendError, match="cannot run"):
        async with CliProcess([str(script)]):
            pass
