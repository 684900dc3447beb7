"""The warm pool (agent/warm.py) with a stand-in CLI (a Python process that waits for its input to
end): what is ready, what is replaced, what is stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.process import CliProcess
from mcp_local_provider.agent.warm import MAX_FAILURES, Launch, WarmPool
from tests.clis import group_alive
from tests.fakes import until

WAITING = Launch((sys.executable, "-c", "import sys; sys.stdin.read()"), (), None)
CRASHING = Launch((sys.executable, "-c", "raise SystemExit(3)"), (), None)


class Recorder:
    """Makes the pool's processes and remembers each."""

    def __init__(self) -> None:
        self.made: list[CliProcess] = []
        self.warm_up_fails = False

    def make(self, launch: Launch) -> CliProcess:
        proc = CliProcess(launch.argv, close_stdin=False, cancel_grace=0.2)
        self.made.append(proc)
        return proc

    async def warm_up(self, proc: CliProcess) -> None:
        if self.warm_up_fails:
            raise BackendError("handshake refused")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def pool(recorder: Recorder) -> AsyncIterator[WarmPool]:
    pool = WarmPool(recorder.make, recorder.warm_up, max_idle=60)
    yield pool
    await pool.close()


def alive(procs: list[CliProcess]) -> list[int]:
    return [pid for proc in procs if proc.proc for pid in group_alive(proc.proc.pid)]


async def test_a_filled_launch_has_a_process_ready_that_take_hands_out(
    pool: WarmPool, recorder: Recorder
) -> None:
    pool.fill(WAITING)
    await until(lambda: pool.status() == {"ready": 1, "starting": 0, "busy": 0})
    proc = await pool.take(WAITING)
    assert proc is recorder.made[0] and proc.alive
    assert pool.status()["ready"] == 0 and (pool.taken, pool.missed) == (1, 0)
    await proc.close()


async def test_take_waits_for_a_process_still_starting_rather_than_missing(
    pool: WarmPool, recorder: Recorder
) -> None:
    pool.fill(WAITING)
    proc = await pool.take(WAITING)
    assert proc is recorder.made[0] and pool.missed == 0
    assert proc is not None
    await proc.close()


async def test_a_launch_never_filled_is_a_miss(pool: WarmPool) -> None:
    assert await pool.take(WAITING) is None
    assert pool.missed == 1


async def test_a_ready_process_that_exits_is_replaced(pool: WarmPool, recorder: Recorder) -> None:
    pool.fill(WAITING)
    await until(lambda: pool.status()["ready"] == 1)
    first = recorder.made[0]
    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGKILL)
    await until(lambda: len(recorder.made) == 2 and pool.status()["ready"] == 1)
    assert pool.replaced == 1
    assert await pool.take(WAITING) is recorder.made[1]


async def test_a_cli_that_keeps_exiting_is_restarted_a_few_times_only(
    pool: WarmPool, recorder: Recorder
) -> None:
    pool.fill(CRASHING)
    await until(lambda: len(recorder.made) == MAX_FAILURES and pool.status()["starting"] == 0)
    await until(lambda: pool.status()["ready"] == 0 and not alive(recorder.made))
    assert len(recorder.made) == MAX_FAILURES


async def test_a_failed_handshake_stops_the_process(pool: WarmPool, recorder: Recorder) -> None:
    recorder.warm_up_fails = True
    pool.fill(WAITING)
    await until(lambda: len(recorder.made) == MAX_FAILURES and pool.status()["starting"] == 0)
    assert pool.status()["ready"] == 0
    assert not alive(recorder.made)


async def test_a_process_idle_past_max_idle_is_replaced_when_taken(recorder: Recorder) -> None:
    pool = WarmPool(recorder.make, recorder.warm_up, max_idle=0.05)
    try:
        pool.fill(WAITING)
        await until(lambda: pool.status()["ready"] == 1)
        stale = recorder.made[0]
        await until(lambda: pool_age(stale) > 0.05)
        assert await pool.take(WAITING) is None
        assert pool.replaced == 1
        await until(lambda: not alive([stale]))
    finally:
        await pool.close()


def pool_age(proc: CliProcess) -> float:
    return asyncio.get_running_loop().time() - proc.started_at


async def test_only_the_last_launches_keep_processes(pool: WarmPool, recorder: Recorder) -> None:
    other = Launch(WAITING.argv, (("X", "1"),), None)
    third = Launch(WAITING.argv, (("X", "2"),), None)
    for launch in (WAITING, other, third):
        pool.fill(launch)
    await until(lambda: pool.status()["ready"] == 2 and not alive(recorder.made[:1]))
    assert await pool.take(WAITING) is None  # the oldest launch was forgotten


async def test_closing_the_pool_stops_every_process_it_holds(recorder: Recorder) -> None:
    pool = WarmPool(recorder.make, recorder.warm_up)
    pool.fill(WAITING)
    pool.fill(Launch(WAITING.argv, (("X", "1"),), None))
    await until(lambda: pool.status()["ready"] == 2)
    await pool.close()
    assert not alive(recorder.made)
    assert await pool.take(WAITING) is None


async def test_a_hung_handshake_is_given_up_and_its_process_stopped(recorder: Recorder) -> None:
    async def hang(proc: CliProcess) -> None:
        await asyncio.Event().wait()

    pool = WarmPool(recorder.make, hang, warm_up_timeout=0.1)
    try:
        pool.fill(WAITING)
        await until(lambda: len(recorder.made) == MAX_FAILURES and pool.status()["starting"] == 0)
        assert pool.status()["ready"] == 0
        assert not alive(recorder.made)
        assert await pool.take(WAITING) is None  # nothing to wait for: the request starts its own
    finally:
        await pool.close()


async def test_a_ready_process_grown_past_max_memory_is_replaced_when_taken(
    recorder: Recorder,
) -> None:
    pool = WarmPool(recorder.make, recorder.warm_up, max_memory=1 << 20)  # 1 MiB: any CLI is over
    try:
        pool.fill(WAITING)
        await until(lambda: pool.status()["ready"] == 1)
        big = recorder.made[0]
        assert await pool.take(WAITING) is None
        assert pool.replaced == 1
        await until(lambda: not alive([big]))
    finally:
        await pool.close()


async def test_a_ready_process_within_max_memory_is_taken(recorder: Recorder) -> None:
    pool = WarmPool(recorder.make, recorder.warm_up, max_memory=1 << 30)
    try:
        pool.fill(WAITING)
        await until(lambda: pool.status()["ready"] == 1)
        proc = await pool.take(WAITING)
        assert proc is recorder.made[0] and pool.replaced == 0
        assert proc is not None
        await proc.close()
    finally:
        await pool.close()


PARENT_OF_A_BIG_CHILD = Launch(
    (
        sys.executable,
        "-c",
        "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
        '\'import sys; b = bytearray(64 << 20); b[::4096] = b"x" * (len(b) // 4096); '
        "sys.stdin.read()'], stdin=sys.stdin).wait()",
    ),
    (),
    None,
)


def own_memory(pid: int) -> int:
    """Resident bytes of ``pid`` alone."""
    statm = Path(f"/proc/{pid}/statm").read_text()
    return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_a_processs_memory_counts_the_children_it_started(recorder: Recorder) -> None:
    proc = recorder.make(PARENT_OF_A_BIG_CHILD)
    await proc.start()
    try:
        assert proc.proc is not None
        await until(lambda: (proc.memory() or 0) > 64 << 20, 10)
        # The parent alone holds far less: the memory is its child's.
        assert own_memory(proc.proc.pid) < 64 << 20
    finally:
        await proc.close()
    assert proc.memory() is None  # gone: nothing to measure
