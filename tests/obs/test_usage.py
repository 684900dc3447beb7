"""Usage kept across restarts: counted per day, session and model, written in batches off the
event loop, read back by the control API and the CLI; a bad database is set aside, never a
reason not to serve."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.cli.main import main
from mcp_local_provider.obs.usage import DATABASE, UsageRow, UsageStore
from mcp_local_provider.obs.usage_report import read_rows
from tests.conftest import StartDaemon
from tests.fakes import Daemon
from tests.faults.test_failover import Refusing, quota

CHAT = "/v1/chat/completions"
DAY = 86400.0
#: Noon, 2026-11-24 (UTC).
NOON = 1_795_521_600.0


async def chat(http: aiohttp.ClientSession, daemon: Daemon, text: str = "one two three") -> int:
    body = {"model": "echo", "messages": [{"role": "user", "content": text}]}
    async with http.post(daemon.url + CHAT, json=body) as response:
        await response.read()
        return response.status


async def usage(http: aiohttp.ClientSession, daemon: Daemon, query: str = "") -> dict[str, Any]:
    async with http.get(daemon.url + "/control/usage" + query, headers=daemon.auth) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


def set_aside(folder: Path) -> list[Path]:
    """The databases moved aside in ``folder`` (without their WAL files)."""
    return [p for p in folder.glob(DATABASE + ".bad-*") if not p.name.endswith(("-wal", "-shm"))]


async def test_usage_counts_equal_the_requests_sent_across_a_daemon_restart(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    first = await start_daemon()
    await first.start_agent(label="Work laptop")
    for _ in range(3):
        assert await chat(http, first) == 200
    await first.stop_agents()
    await first.server.close()  # the app's clean-up writes what is left
    second = await start_daemon()  # the same state directory
    await second.start_agent(label="Work laptop")
    for _ in range(2):
        assert await chat(http, second) == 200
    [row] = (await usage(http, second))["rows"]
    assert (row["session"], row["model"], row["requests"], row["errors"]) == (
        "Work laptop", "echo", 5, 0,
    )  # fmt: skip
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["estimated"] is False  # the echo agent reports its usage


async def test_errors_are_counted_by_outcome_and_rows_sum_by_session(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon()
    await daemon.start_agent(Refusing(quota(60)), label="Personal", agent_id="personal")
    await daemon.start_agent(label="Work", agent_id="work")
    assert await chat(http, daemon) == 200  # Personal refused, Work answered
    body = await usage(http, daemon, "?since=1d&by=session")
    rows = {row["session"]: row for row in body["rows"]}
    assert rows["Personal"]["errors_by_outcome"] == {"quota": 1}
    assert rows["Personal"]["failovers"] == 1 and rows["Personal"]["cooling_seconds"] >= 59
    assert (rows["Work"]["requests"], rows["Work"]["errors"]) == (1, 0)


async def test_the_usage_command_prints_a_table_and_json(
    start_daemon: StartDaemon,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = await start_daemon()
    await daemon.start_agent(label="Work")
    assert await chat(http, daemon) == 200
    assert daemon.state.usage is not None
    await daemon.state.usage.flush()
    # The command reads the database itself, read-only, while the daemon runs.
    monkeypatch.setenv("MCP_LOCAL_PROVIDER_STATE_DIR", str(daemon.state.config.state_dir))
    args = ["usage", "--by", "model"]
    assert await asyncio.to_thread(main, args) == 0
    table = capsys.readouterr().out
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert "MODEL" in table and "echo" in table and "total" in table
    [row] = as_json["rows"]
    assert row["model"] == "echo" and row["requests"] == 1


def test_a_since_that_is_not_a_period_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--since", "lately"]) == 1
    assert "since must be a number of days" in capsys.readouterr().err


async def test_control_usage_refuses_a_bad_grouping_and_needs_the_token(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(daemon.url + "/control/usage?by=planet", headers=daemon.auth) as r:
        assert r.status == 400 and "by must be one of" in await r.text()
    async with http.get(daemon.url + "/control/usage") as r:
        assert r.status == 401


# -- the store itself ---------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(store: UsageStore, session: str = "Work", model: str = "echo", **fields: Any) -> None:
    """One settled call as the router hands it to the store."""
    pending: Any = SimpleNamespace(
        session=SimpleNamespace(label=session, agent_id="a"),
        call=SimpleNamespace(model=model, request_scope=SimpleNamespace(bytes_in=400)),
        outcome=fields.get("outcome", "ok"),
        usage=fields.get("usage", {"prompt_tokens": 10, "completion_tokens": 5}),
        received=fields.get("received", 80),
        cooled=None,
        moved_on=False,
    )
    store.observe_call(pending)


async def test_calls_are_written_in_batches_by_one_thread_not_the_loop(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / DATABASE, flush_interval=3600, clock=Clock())
    await store.start()
    writers: set[str] = set()
    original = store._write

    def spy(batch: Any) -> Any:
        writers.add(threading.current_thread().name)
        return original(batch)

    store._write = spy  # type: ignore[method-assign]
    for _ in range(100):
        record(store)
    assert read_rows(tmp_path / DATABASE, 1, Clock()) == []  # nothing written yet
    await store.flush()
    assert writers and all(name.startswith("usage") for name in writers)
    [row] = read_rows(tmp_path / DATABASE, 1, Clock())
    assert row == UsageRow("2026-11-24", "Work", "echo", 100, 0, 1000, 500, False, 0, 0.0)
    await store.close()


async def test_tokens_the_agent_did_not_report_are_estimated_and_marked(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / DATABASE, clock=Clock())
    await store.start()
    record(store, usage=None, received=400)
    [row] = await store.rows(1)
    assert (row.input_tokens, row.output_tokens, row.estimated) == (100, 100, True)
    await store.close()


async def test_days_past_the_retention_are_dropped(tmp_path: Path) -> None:
    clock = Clock(NOON - 10 * DAY)
    store = UsageStore(tmp_path / DATABASE, retention_days=5, clock=clock)
    await store.start()
    record(store)
    await store.close()
    clock.now = NOON
    store = UsageStore(tmp_path / DATABASE, retention_days=5, clock=clock)
    await store.start()
    record(store)
    assert [r.day for r in await store.rows(30)] == ["2026-11-24"]
    await store.close()


async def test_a_corrupt_database_is_moved_aside_and_a_new_one_started(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / DATABASE).write_bytes(b"this is not a database " * 100)
    daemon = await start_daemon()
    await daemon.start_agent(label="Work")
    assert await chat(http, daemon) == 200  # served all the same
    [row] = (await usage(http, daemon))["rows"]
    assert row["requests"] == 1
    [aside] = set_aside(state_dir)
    assert aside.read_bytes().startswith(b"this is not a database")
    async with http.get(daemon.url + "/health/deep", headers=daemon.auth) as response:
        component = (await response.json())["components"]["usage"]
    assert component["status"] == "degraded" and str(aside) in component["set_aside"]


async def test_a_database_that_stays_locked_is_set_aside_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / DATABASE
    store = UsageStore(path, clock=Clock())
    await store.start()
    record(store)
    await store.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the database
    try:
        record(store)
        for _ in range(3):
            await store.flush()
    finally:
        holder.close()
    assert store.problem is not None and "locked" in store.problem
    [aside] = set_aside(tmp_path)
    rows = await store.rows(1)
    assert [r.requests for r in rows] == [1]  # the locked-out call, kept and written anew
    assert [r.requests for r in read_rows(aside, 1, Clock())] == [1]
    await store.close()


async def test_a_state_directory_that_cannot_hold_the_database_does_not_stop_serving(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state directory should be")
    store = UsageStore(blocker / DATABASE, clock=Clock())
    await store.start()
    record(store)
    assert await store.rows(1) == []  # nothing kept, nothing raised
    assert store.problem is not None and "cannot be created" in store.problem
    await store.close()
