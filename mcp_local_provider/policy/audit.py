"""The audit log: one JSON line per routed request and per session event, never a prompt.

Lines are handed to one writer thread, so a slow or stalled disk never blocks the event loop
(docs/security.md has the measurements behind that choice). The thread computes the prompt
digest, renders the line (JSON with every non-ASCII and control character escaped, so a line
can never contain a newline of its own: a forged line is impossible), and writes the lines that
queued up together with one ``os.write`` on an ``O_APPEND`` descriptor, within
``BATCH_INTERVAL`` of their request (not fsynced). The file is created
with mode 0600 and rotated by size. If a write fails the log turns unhealthy, callers refuse
new requests (fail closed), and the thread keeps trying every ``retry_interval`` seconds; lines
that arrive meanwhile are kept (up to ``max_backlog``) and written once it recovers.

Why not ``logging``'s ``QueueListener`` and ``RotatingFileHandler``: a handler reports a failed
write to ``handleError`` and moves on, so the log could not fail closed (refuse requests while
lines are being lost) nor keep the lines that arrive during the outage; and its rotation does
not notice a file moved away by logrotate, which the writer here checks before each batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import secrets
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from mcp_local_provider.policy.digest import PromptDigester

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


def render(record: dict[str, Any]) -> bytes:
    """One audit line: JSON, ASCII only, so the only newline is the one that ends it.

    A line of plain values (a request's is) is encoded by pydantic-core, faster (3.9 against
    5.9 us for a request's line), with the same bytes: the standard library's encoder writes
    any other line, and any line where the two would differ (a character outside printable
    ASCII, which it escapes; a float below 1e-4, which it writes with an exponent; NaN or
    infinity, which it refuses)."""
    values = record.values()
    if _PLAIN.issuperset(map(type, values)) and all(
        value == 0.0 or 1e-4 <= abs(value) <= _LARGEST for value in values if type(value) is float
    ):
        try:
            line = to_json(record)
        except PydanticSerializationError:
            pass
        else:
            # Both escape control characters alike; only the standard library escapes DEL.
            if line.isascii() and b"\x7f" not in line:
                return line + b"\n"
    return _encode(record).encode("ascii") + b"\n"


#: The value types both encoders write alike (floats apart: those in the range checked).
_PLAIN = frozenset({str, int, float, bool, type(None)})
_LARGEST = sys.float_info.max


def iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def load_or_create_key(path: Path) -> bytes:
    """The per-install digest secret: 32 random bytes, hex in a 0600 file, made on first use."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made by a concurrent start-up: use that one
            return load_or_create_key(path)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text + "\n")
        return bytes.fromhex(text)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < 16:
        raise ValueError(f"the audit key in {path} is shorter than 16 bytes")
    return key


class _Drain:
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future

    def done(self) -> None:
        def resolve() -> None:
            if not self.future.done():
                self.future.set_result(None)

        self.loop.call_soon_threadsafe(resolve)


_STOP = object()
#: Seconds the writer waits after a batch, so that lines arriving meanwhile share one wake-up
#: and one write. The delay before a line is in the file is at most this.
BATCH_INTERVAL = 0.01


class AuditLog:
    def __init__(
        self,
        path: Path,
        digester: PromptDigester,
        *,
        max_bytes: int,
        backups: int,
        retry_interval: float,
        max_backlog: int = 10_000,
        batch_interval: float = BATCH_INTERVAL,
        on_health: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.path = path
        self.digester = digester
        self.max_bytes = max_bytes
        self.backups = backups
        self.retry_interval = retry_interval
        self.max_backlog = max_backlog
        self.batch_interval = batch_interval
        self.on_health = on_health
        #: Called (from the writer thread) for each line that could not be written when due.
        self.on_failed_line: Callable[[], None] | None = None
        self.written = 0
        self.lost = 0
        self.failures = 0
        self._failed = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._backlog: deque[bytes] = deque()
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._size = 0
        self._torn = False  # a write stopped half-way: start the next one on a fresh line
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the event loop's side (never blocks) --------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while lines cannot be written, or the writer is far behind."""
        return not self._failed and self._queue.qsize() < self.max_backlog

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()

    def request(self, record: dict[str, Any], payload: Mapping[str, Any] | None) -> None:
        """Queue a request line; its prompt digest is computed from ``payload`` off the loop."""
        self._put(({"ts": time.time(), "event": "request", **record}, payload))

    def event(self, record: dict[str, Any]) -> None:
        self._put(({"ts": time.time(), **record}, None))

    def _put(self, item: tuple[dict[str, Any], Mapping[str, Any] | None]) -> None:
        if self._thread is not None:
            self._queue.put(item)
            return
        # Not running (stopped during shutdown, or never started): write it here and now.
        try:
            self._keep(self._line(*item))
        except Exception:
            self.lost += 1
        self._flush()
        self._close()

    async def drain(self) -> None:
        """Wait until every line queued so far is written (or kept for a retry)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Drain(loop, future))
        await future

    async def stop(self) -> None:
        if self._thread is None:
            return
        await asyncio.sleep(0)  # lines queued with call_soon by requests that just ended
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        retry_at = 0.0
        while True:
            timeout = max(0.0, retry_at - time.monotonic()) if self._failed else None
            try:
                items = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                items = []
            # Everything queued meanwhile goes in the same batch: one wake-up and one write.
            with suppress(queue.Empty):
                while True:
                    items.append(self._queue.get_nowait())
            drains: list[_Drain] = []
            for item in items:
                if item is _STOP:
                    self._flush()
                    self.lost += len(self._backlog)
                    self._close()
                    for drain in drains:
                        drain.done()
                    return
                if isinstance(item, _Drain):
                    drains.append(item)
                    continue
                record, payload = item
                try:
                    self._keep(self._line(record, payload))
                except Exception:  # a line that cannot be rendered is lost, not the thread
                    self.lost += 1
            if not self._failed or time.monotonic() >= retry_at:
                self._flush()
                if self._failed:
                    retry_at = time.monotonic() + self.retry_interval
            for drain in drains:
                drain.done()
            if not self._failed and self.batch_interval:
                # Let lines gather rather than being woken for each: a wake-up costs the event
                # loop more than the write (the thread must take the GIL from it).
                time.sleep(self.batch_interval)

    def _line(self, record: dict[str, Any], payload: Mapping[str, Any] | None) -> bytes:
        record["ts"] = iso(record["ts"])
        if payload is not None:
            record["prompt_digest"] = self.digester.digest(payload)
            record["digest_alg"] = self.digester.algorithm
            record["digest_key_id"] = self.digester.key_id
        return render(record)

    def _keep(self, line: bytes) -> None:
        self._backlog.append(line)
        if self._failed:
            self._count_failed(1)
        while len(self._backlog) > self.max_backlog:
            self._backlog.popleft()
            self.lost += 1

    def _flush(self) -> None:
        try:
            while self._backlog:
                self._ensure_open()
                lines = self._next_batch()
                if lines:
                    self._write(lines)
                else:
                    self._rotate()
        except OSError as exc:
            self._close()
            if not self._failed:
                self._failed = True
                self.failures += 1
                self._count_failed(len(self._backlog))
                self._tell(False, exc.strerror or type(exc).__name__)
            return
        if self._failed:
            self._failed = False
            self._tell(True, "")

    def _next_batch(self) -> list[bytes]:
        """The lines at the front of the backlog that fit in the file before it must rotate
        (at least one if the file is empty); none if the first one does not fit."""
        lines: list[bytes] = []
        size = self._size
        for line in self._backlog:
            if size and size + len(line) > self.max_bytes:
                break
            lines.append(line)
            size += len(line)
        return lines

    def _write(self, lines: list[bytes]) -> None:
        """Write ``lines`` with as few ``os.write`` calls as the OS allows; the lines written
        whole leave the backlog even if a later one fails, so none is written twice."""
        assert self._fd is not None
        data = b"".join(lines)
        start = 0
        if self._torn:  # the last write stopped half-way: start on a fresh line
            data = b"\n" + data
            start = 1
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                self._torn = True
                written = os.write(self._fd, view[done:])
                done += written
                self._size += written
            self._torn = False
        finally:
            end = start
            for line in lines:
                end += len(line)
                if end > done:
                    break
                self._backlog.popleft()
                self.written += 1

    def _ensure_open(self) -> None:
        """Open the file, or reopen it if it was moved or deleted (external rotation)."""
        if self._fd is not None:
            try:
                now = os.stat(self.path)
                if (now.st_dev, now.st_ino) == self._ino:
                    return
            except FileNotFoundError:
                pass
            self._close()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IsADirectoryError(21, "the audit log path is not a regular file")
            if stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
        self._fd, self._ino, self._size = fd, (info.st_dev, info.st_ino), info.st_size

    def _rotate(self) -> None:
        self._close()
        base = str(self.path)
        if self.backups == 0:
            os.unlink(base)
        else:
            for n in range(self.backups - 1, 0, -1):
                if os.path.exists(f"{base}.{n}"):
                    os.replace(f"{base}.{n}", f"{base}.{n + 1}")
            os.replace(base, f"{base}.1")
        self._ensure_open()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._ino = self._fd, None, None
            with suppress(OSError):
                os.close(fd)

    def _count_failed(self, lines: int) -> None:
        if self.on_failed_line is not None:
            for _ in range(lines):
                with suppress(Exception):  # a metric must never stop the writer
                    self.on_failed_line()

    def _tell(self, healthy: bool, reason: str) -> None:
        loop, callback = self._loop, self.on_health
        if loop is not None and callback is not None and not loop.is_closed():
            with suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback, healthy, reason)
