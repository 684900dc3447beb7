"""Load on the real ``serve`` process: 1,000 concurrent streams across 50 agent sessions, every
request accounted for in the answers, the audit log and the metrics; then no leak (RSS, open
file descriptors and asyncio tasks back to their baseline)."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp

from tests.faults.live import (
    LOAD,
    Tally,
    audit_requests,
    chat,
    echo_agents,
    metrics,
    open_fds,
    rss_bytes,
    stop_agents,
    stream_once,
    tasks,
    total,
)

SESSIONS = 50
STREAMS = 1000


async def burst(base: str, count: int, tally: Tally) -> None:
    """``count`` streams at once, each on its own connection, each a few chunks long."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as editors:
        await asyncio.gather(
            *(
                stream_once(editors, base, chat(text=f"load {i} ok"), tally, timeout=120)
                for i in range(count)
            )
        )


async def settled(http: aiohttp.ClientSession, base: str, pid: int, fds: int, live: int) -> None:
    """Wait (a few seconds at most) for fds and tasks to come back down to the baseline."""
    now = (0, 0)
    try:
        async with asyncio.timeout(10):
            while True:
                now = (open_fds(pid), await tasks(http, base))
                if now[0] <= fds and now[1] <= live:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"(fds, tasks) {now} did not return to {(fds, live)}") from None


async def audited(state_dir: Path, count: int) -> list[dict[str, Any]]:
    """The audit log's request lines, once ``count`` are there (or after a few seconds)."""
    lines = audit_requests(state_dir)
    with suppress(TimeoutError):
        async with asyncio.timeout(5):
            while len(lines) < count:
                await asyncio.sleep(0.05)
                lines = audit_requests(state_dir)
    return lines


async def test_a_thousand_concurrent_streams_are_all_accounted_for_and_leave_no_leak(
    daemon_process: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await daemon_process(max_concurrency=32, first_chunk_timeout=120, **LOAD)
    assert daemon.proc is not None
    pid = daemon.proc.pid
    agents = await echo_agents(daemon.url, SESSIONS, max_concurrency=32)
    try:
        warmup = Tally()
        await burst(daemon.url, STREAMS, warmup)  # the allocator's pools grow once
        await asyncio.sleep(0.5)
        # Tasks first: asking opens the client's keep-alive connection, which the fd count
        # must then include, here as in every count that follows.
        baseline_tasks = await tasks(http, daemon.url)
        baseline_rss, baseline_fds = rss_bytes(pid), open_fds(pid)

        tally = Tally()
        await burst(daemon.url, STREAMS, tally)
        await burst(daemon.url, STREAMS, tally)
        await settled(http, daemon.url, pid, baseline_fds, baseline_tasks)
        rss = rss_bytes(pid)
        samples = await metrics(http, daemon.url)
    finally:
        await stop_agents(agents)

    # Every request ended in exactly one way, and was answered (nothing was over a limit).
    assert warmup.completed == STREAMS, warmup.statuses
    assert tally.sent == 2 * STREAMS == tally.completed + tally.errored
    assert tally.statuses == {"ok": 2 * STREAMS}
    # The audit log has one line per request, and the metrics count the same. Lines reach the
    # file shortly after their request (the writer batches them off the event loop).
    lines = await audited(daemon.state_dir, 3 * STREAMS)
    assert len(lines) == 3 * STREAMS
    assert {line["outcome"] for line in lines} == {"ok"}
    assert len({line["request_id"] for line in lines}) == 3 * STREAMS
    assert len({line["session_id"] for line in lines}) == SESSIONS
    assert total(samples, "requests_total", family="openai", status="200") == 3 * STREAMS
    assert total(samples, "relay_calls_total", outcome="ok") == 3 * STREAMS
    assert total(samples, "relay_calls_total") == 3 * STREAMS
    assert total(samples, "relay_calls_in_flight") == 0
    assert total(samples, "requests_in_flight", family="openai") == 0
    # No leak: memory within 10% of the baseline, fds and tasks back to it.
    assert rss <= baseline_rss * 1.10, (rss, baseline_rss)
