"""Usage that survives a restart: requests, errors by outcome, tokens, failovers and time spent
cooling down, per day (UTC), session label and model, in an SQLite database in the state
directory. Never a prompt or an answer: only counts.

Calls are counted in memory on the event loop (a few dictionary operations per call) and
written in batches by one worker thread every ``flush_interval`` seconds, in WAL mode, so the
relay never waits on the disk. A database that is corrupt or stays locked is renamed aside
(``usage.sqlite3.bad-<time>``), reported, and replaced by a new one: usage is never a reason
not to serve. Days older than ``retention_days`` are dropped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from mcp_local_provider.core.call import CallRecord
from mcp_local_provider.obs import health

log = structlog.get_logger("mcp_local_provider.usage")
#: The database's file name in the state directory.
DATABASE = "usage.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, session TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    estimated INTEGER NOT NULL DEFAULT 0, failovers INTEGER NOT NULL DEFAULT 0,
    cooling_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, session, model)
);
CREATE TABLE IF NOT EXISTS usage_errors (
    day TEXT NOT NULL, session TEXT NOT NULL, model TEXT NOT NULL, outcome TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, session, model, outcome)
);
"""
_UPSERT = """
INSERT INTO usage (day, session, model, requests, errors, input_tokens, output_tokens,
                   estimated, failovers, cooling_seconds)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, session, model) DO UPDATE SET
    requests = requests + excluded.requests, errors = errors + excluded.errors,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    estimated = max(estimated, excluded.estimated),
    failovers = failovers + excluded.failovers,
    cooling_seconds = cooling_seconds + excluded.cooling_seconds
"""
_UPSERT_ERRORS = """
INSERT INTO usage_errors (day, session, model, outcome, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (day, session, model, outcome) DO UPDATE SET count = count + excluded.count
"""
#: Writes in a row that may fail (the database locked, say) before it is set aside.
_FAILURES_BEFORE_ASIDE = 3
#: Bytes of the agent's answer per estimated token (frames carry JSON around the text).
_BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class UsageRow:
    """What one session label served of one model on one day (UTC)."""

    day: str  # ISO date
    session: str  # the session's label
    model: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    #: Some of the tokens are the daemon's estimate (the agent reported none).
    estimated: bool
    failovers: int
    cooling_seconds: float
    #: The errors by outcome ("timeout", "agent_error", "quota", ...), most frequent first.
    errors_by_outcome: tuple[tuple[str, int], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in self.__dataclass_fields__}
        row["errors_by_outcome"] = dict(self.errors_by_outcome)
        return row


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    failovers: int = 0
    cooling_seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)


class UsageStore:
    """The usage database. ``observe_call`` and ``observe_failover`` are router observers;
    ``rows`` reads it back (what is still in memory included)."""

    def __init__(
        self,
        path: Path,
        retention_days: int = 90,
        *,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.clock = clock
        self._pending: dict[tuple[str, str, str], _Tally] = {}
        self._db: sqlite3.Connection | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage")
        self._flusher: asyncio.Task[None] | None = None
        self._failures = 0
        self._closed = False
        self._pruned = ""  # the day old rows were last dropped
        self._day = ""
        self._day_ends = 0.0
        #: What went wrong with the database, for health and logs (None: nothing).
        self.problem: str | None = None
        #: Where a bad database was moved, if one was.
        self.set_aside: list[Path] = []

    # -- on the event loop ---------------------------------------------------------------------

    def observe_call(self, pending: CallRecord) -> None:
        """Count one settled call (a router observer): never raises, never blocks."""
        if pending.moved_on:
            return  # counted as a failover already
        try:
            tally = self._tally(pending)
            tally.requests += 1
            if pending.outcome != "ok":
                tally.errors += 1
                outcome = pending.outcome or "unknown"
                tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
            self._tokens(tally, pending)
            tally.cooling_seconds += pending.cooled or 0.0
        except Exception:
            log.exception("usage_observer_failed")

    def observe_failover(self, pending: CallRecord, reason: str) -> None:
        """Count an attempt given up before its first frame (a router failover observer)."""
        try:
            tally = self._tally(pending)
            tally.requests += 1
            tally.errors += 1
            tally.failovers += 1
            tally.outcomes[reason] = tally.outcomes.get(reason, 0) + 1
            tally.cooling_seconds += pending.cooled or 0.0
        except Exception:
            log.exception("usage_observer_failed")

    def _tally(self, pending: CallRecord) -> _Tally:
        key = (self._today(), pending.session.label or pending.session.agent_id, pending.call.model)
        tally = self._pending.get(key)
        if tally is None:
            tally = self._pending[key] = _Tally()
        return tally

    def _today(self) -> str:
        now = self.clock()
        if now >= self._day_ends:
            self._day = time.strftime("%Y-%m-%d", time.gmtime(now))
            self._day_ends = (now // 86400 + 1) * 86400
        return self._day

    @staticmethod
    def _tokens(tally: _Tally, pending: CallRecord) -> None:
        usage = pending.usage or {}
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if _count(prompt) is None and _count(completion) is None:
            if pending.outcome != "ok":
                return  # nothing was answered: nothing to estimate
            request = pending.call.request_scope
            prompt = (request.bytes_in if request is not None else 0) // _BYTES_PER_TOKEN
            completion = pending.received // _BYTES_PER_TOKEN
            tally.estimated = True
        elif usage.get("estimated"):
            tally.estimated = True
        tally.input_tokens += _count(prompt) or 0
        tally.output_tokens += _count(completion) or 0

    async def start(self) -> None:
        """Open the database (setting a bad one aside) and write batches from now on."""
        await self._run(self._open)
        self._flusher = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        """Write what is left and close the database."""
        if self._closed:
            return
        if self._flusher is not None:
            self._flusher.cancel()
            with suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()
        await self._run(self._close)
        self._closed = True
        self._worker.shutdown(wait=True)

    async def flush(self) -> None:
        """Write the calls counted so far."""
        if self._closed:
            return  # the daemon is stopping: what is counted now is not kept
        batch, self._pending = self._pending, {}
        if batch:
            unwritten = await self._run(self._write, batch)
            if unwritten is not None:
                self._merge_back(unwritten)  # kept for the next batch

    async def rows(self, since_days: int) -> list[UsageRow]:
        """One row per (day, session, model) for today and the ``since_days - 1`` days before
        it, oldest day first."""
        await self.flush()
        if self._closed:
            return []
        first = time.strftime(
            "%Y-%m-%d", time.gmtime(self.clock() - max(0, since_days - 1) * 86400)
        )
        rows: list[UsageRow] = await self._run(self._read, first)
        return rows

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:  # keep counting whatever one batch hit
                log.exception("usage_flush_failed")

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work, *args)

    # -- in the worker thread ------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._connect()
        except OSError as exc:  # the state directory cannot be written
            self.problem = f"the usage database cannot be created: {exc}"
            log.warning("usage_unavailable", path=str(self.path), error=str(exc))
            return
        except sqlite3.Error as exc:
            self._aside(f"the usage database could not be opened ({exc})")
            try:
                self._connect()
            except (sqlite3.Error, OSError) as again:
                self.problem = f"the usage database cannot be used: {again}"
                log.warning("usage_unavailable", path=str(self.path), error=str(again))
                self._db = None

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            db.executescript(_SCHEMA)
            self._prune(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _prune(self, db: sqlite3.Connection) -> None:
        """Drop the days past the retention (at start-up, then once a day)."""
        now = self.clock()
        cutoff = time.strftime("%Y-%m-%d", time.gmtime(now - self.retention_days * 86400))
        db.execute("DELETE FROM usage WHERE day < ?", (cutoff,))
        db.execute("DELETE FROM usage_errors WHERE day < ?", (cutoff,))
        self._pruned = time.strftime("%Y-%m-%d", time.gmtime(now))

    def _aside(self, why: str) -> None:
        """Rename the database (and its WAL files) aside, and say so."""
        self._close()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        moved = self.path.with_name(f"{self.path.name}.bad-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                with suppress(OSError):
                    source.rename(Path(str(moved) + suffix))
        self.set_aside.append(moved)
        self.problem = f"{why}; it was moved to {moved} and a new one started"
        log.warning("usage_database_set_aside", path=str(self.path), moved_to=str(moved), why=why)

    def _write(
        self, batch: dict[tuple[str, str, str], _Tally]
    ) -> dict[tuple[str, str, str], _Tally] | None:
        """Write ``batch``; what could not be written is returned (to be merged back)."""
        if self._db is None:
            return None
        try:
            with self._transaction() as db:
                db.executemany(_UPSERT, [_values(key, t) for key, t in batch.items()])
                db.executemany(
                    _UPSERT_ERRORS,
                    [(*key, o, n) for key, t in batch.items() for o, n in t.outcomes.items()],
                )
                if self._pruned != min(key[0] for key in batch):  # a new day began
                    self._prune(db)
            self._failures = 0
            return None
        except sqlite3.Error as exc:
            self._failures += 1
            log.warning("usage_write_failed", error=str(exc), failures=self._failures)
            corrupt = not isinstance(exc, sqlite3.OperationalError)  # locked, busy: wait
            if corrupt or self._failures >= _FAILURES_BEFORE_ASIDE:
                self._aside(f"the usage database could not be written ({exc})")
                self._failures = 0
                with suppress(sqlite3.Error):
                    self._connect()
            return batch

    def _merge_back(self, batch: dict[tuple[str, str, str], _Tally]) -> None:
        """Keep a batch that could not be written for the next one (on the event loop)."""
        for key, tally in batch.items():
            current = self._pending.setdefault(key, _Tally())
            current.requests += tally.requests
            current.errors += tally.errors
            current.input_tokens += tally.input_tokens
            current.output_tokens += tally.output_tokens
            current.estimated = current.estimated or tally.estimated
            current.failovers += tally.failovers
            current.cooling_seconds += tally.cooling_seconds
            for outcome, count in tally.outcomes.items():
                current.outcomes[outcome] = current.outcomes.get(outcome, 0) + count

    def _transaction(self) -> _Transaction:
        assert self._db is not None
        return _Transaction(self._db)

    def _read(self, first_day: str) -> list[UsageRow]:
        if self._db is None:
            return []
        try:
            return query_rows(self._db, first_day)
        except sqlite3.Error as exc:
            log.warning("usage_read_failed", error=str(exc))
            self.problem = f"the usage database could not be read: {exc}"
            return []

    def _close(self) -> None:
        if self._db is not None:
            with suppress(sqlite3.Error):
                self._db.close()
            self._db = None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _values(key: tuple[str, str, str], t: _Tally) -> tuple[Any, ...]:
    return (
        *key, t.requests, t.errors, t.input_tokens, t.output_tokens, int(t.estimated),
        t.failovers, t.cooling_seconds,
    )  # fmt: skip


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def query_rows(db: sqlite3.Connection, first_day: str) -> list[UsageRow]:
    """The rows of ``db`` from ``first_day`` (an ISO date) on, oldest first."""
    found = db.execute(
        "SELECT day, session, model, requests, errors, input_tokens, output_tokens,"
        " estimated, failovers, cooling_seconds FROM usage WHERE day >= ?"
        " ORDER BY day, session, model",
        (first_day,),
    ).fetchall()
    outcomes: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for day, session, model, outcome, count in db.execute(
        "SELECT day, session, model, outcome, count FROM usage_errors WHERE day >= ?"
        " ORDER BY count DESC, outcome",
        (first_day,),
    ):
        outcomes.setdefault((day, session, model), []).append((outcome, count))
    return [
        UsageRow(
            day,
            session,
            model,
            requests,
            errors,
            inp,
            out,
            bool(est),
            fo,
            round(cool, 1),
            tuple(outcomes.get((day, session, model), ())),
        )
        for day, session, model, requests, errors, inp, out, est, fo, cool in found
    ]


def usage_health(store: UsageStore) -> dict[str, Any]:
    """The usage store's ``/health/deep`` component: degraded (never unhealthy: requests are
    served either way) while its database has a problem or was set aside."""
    return health.component(
        health.HEALTHY if store.problem is None else health.DEGRADED,
        store.problem,
        set_aside=[str(p) for p in store.set_aside],
    )
