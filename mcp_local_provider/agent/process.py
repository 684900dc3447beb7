"""Running an agent CLI: one process per request, safely.

The process has no TTY (every stream is a pipe), runs in its own process group in a scratch
working directory, gets its prompt on stdin (argv has length limits and shows up in ``ps``),
and writes NDJSON events on stdout. Stderr is kept (its tail goes into error messages). On
cancellation the whole group gets SIGINT, then SIGKILL after a short grace, so nothing the CLI
started outlives the request.

One module past 300 lines on purpose: starting the process group, reading its streams and
stopping it are one life cycle whose clean-up must see every part it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from mcp_local_provider.agent.backend import BackendError

log = structlog.get_logger("mcp_local_provider.agent.process")

#: Longest stdout line read (a final result event carries the whole answer).
LINE_LIMIT = 16 * 1024 * 1024
#: How much of stderr is kept for error messages.
STDERR_TAIL = 4000


#: Our own settings (the bridge token among them) are not the CLI's business.
PRIVATE_PREFIX = "MCP_LOCAL_PROVIDER_"


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a CLI inherits: ours, without our own settings."""
    return {k: v for k, v in environ.items() if not k.startswith(PRIVATE_PREFIX)}


def find_binary(binary: str) -> str:
    """The full path of ``binary`` (a name on PATH or a path), or BackendError saying so."""
    found = shutil.which(binary)
    if found is None:
        raise BackendError(
            f"{binary!r} was not found on PATH; install it, or set `binary` to its path",
            "backend_unavailable",
        )
    return found


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tree_memory(pid: int) -> int | None:
    """Resident bytes of ``pid`` and its descendants, read from /proc (a few small reads per
    process, served from the kernel's memory, never a disk: the tree's children lists and each
    one's statm); None if ``pid`` is not there."""
    total, seen, todo = 0, set(), [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            if current == pid:
                return None
            continue  # a child that just exited
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", "rb") as children:
                    todo.extend(int(child) for child in children.read().split())
        except (OSError, ValueError):
            pass
    return total


class CliProcess:
    """One run of a CLI. Use as ``async with CliProcess(argv, ...) as proc:``; leaving the
    block (normally, by error or by cancellation) stops the process group and cleans up."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        close_stdin: bool = True,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        cancel_grace: float = 0.5,
        progress: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.stdin_data = stdin
        self.close_stdin = close_stdin
        self.workdir = workdir
        self.env = dict(env or {})
        self.idle_timeout = idle_timeout
        self.timeout = timeout
        self.cancel_grace = cancel_grace
        #: Whether an event is progress (resets the idle clock); by default every event is. A
        #: CLI retrying a failing model API prints events that are not.
        self.progress = progress or (lambda event: True)
        #: Output lines that were not JSON objects with a string ``type`` (skipped).
        self.malformed = 0
        #: Set once the answer is complete: on close the CLI may then exit on its own first.
        self.finished = False
        self.cwd: Path | None = None
        self.started_at = 0.0
        self._deadline: float | None = None
        self._exited = asyncio.Event()
        self._transport: asyncio.SubprocessTransport | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._scratch: str | None = None
        self._stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._io: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock()

    # -- life -------------------------------------------------------------------------------

    async def __aenter__(self) -> CliProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        cwd = self.workdir
        if cwd is None:
            self._scratch = await asyncio.to_thread(tempfile.mkdtemp, prefix="mcp-local-provider-")
            cwd = Path(self._scratch)
        self.cwd = cwd
        self.begin()
        env = {**child_environment(os.environ), "NO_COLOR": "1", "TERM": "dumb", **self.env}
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop)
        try:
            self._transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
            self.proc = asyncio.subprocess.Process(self._transport, protocol, loop)
            self._exited = protocol.exited
        except OSError as exc:
            await self._remove_scratch()
            raise BackendError(
                f"cannot run {self.argv[0]}: {exc.strerror or exc}", "backend_unavailable"
            ) from None
        self._io = [asyncio.create_task(self._read_stderr())]
        if self.stdin_data is not None or self.close_stdin:
            self._io.append(asyncio.create_task(self._feed_stdin()))
        self._tasks = [*self._io, asyncio.create_task(self._sweep_after_exit())]

    def begin(self) -> None:
        """Start the request's clock: ``timeout`` counts from here (a process started ahead
        of its request, see ``agent/warm.py``, begins when it is taken)."""
        self.started_at = asyncio.get_running_loop().time()
        if self.timeout is not None:
            self._deadline = self.started_at + self.timeout

    @property
    def alive(self) -> bool:
        """Whether the process is running (started and not exited)."""
        return self.proc is not None and not self._exited.is_set()

    def memory(self) -> int | None:
        """Resident bytes of the process and every process below it (a CLI's launcher may leave
        the work to a child), or None where /proc cannot tell (not Linux, or it exited)."""
        if not self.alive or self.proc is None:
            return None
        return tree_memory(self.proc.pid)

    async def exited(self) -> None:
        """Wait until the process has exited."""
        await self._exited.wait()

    async def send(self, data: bytes, close: bool = True) -> None:
        """Write ``data`` on stdin (the prompt of a process started ahead of it), then close
        stdin unless ``close`` is false."""
        assert self.proc is not None and self.proc.stdin is not None
        async with self._write_lock:
            try:
                self.proc.stdin.write(data)
                await self.proc.stdin.drain()
                if close:
                    self.proc.stdin.close()
            except (ConnectionError, BrokenPipeError, RuntimeError) as exc:
                raise self.failure(f"{self.name} stopped reading its input ({exc})") from None

    async def close(self) -> None:
        """Stop the process group if still running, reap it, and remove the scratch directory.

        Cancelling this skips the grace (SIGKILL at once) but not the clean-up, which is short.
        """
        try:
            await self.stop()
        except BaseException:
            self._signal(signal.SIGKILL)  # cancelled while stopping: no more grace
            raise
        finally:
            await _uninterrupted(self._clean_up())

    async def _clean_up(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._transport is not None:
            self._transport.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.proc is not None:
            with suppress(TimeoutError):  # reaped, so no zombie outlives the event loop
                async with asyncio.timeout(1):
                    await self._exited.wait()
        await self._remove_scratch()

    async def stop(self) -> None:
        """SIGINT to the whole group, SIGKILL after ``cancel_grace``; then sweep the group."""
        proc = self.proc
        if proc is None:
            return
        if not self._exited.is_set() and self.finished:
            # The answer is complete: let the CLI exit on its own (an app-server exits when
            # its input ends) before resorting to signals.
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
            with suppress(TimeoutError):
                async with asyncio.timeout(self.cancel_grace):
                    await self._exited.wait()
        if not self._exited.is_set():
            self._signal(signal.SIGINT)
            with suppress(TimeoutError):
                async with asyncio.timeout(self.cancel_grace):
                    await self._exited.wait()
        # SIGKILL for a CLI that ignored SIGINT, and for children it left in its group.
        self._signal(signal.SIGKILL)
        await asyncio.shield(proc.wait())

    async def _sweep_after_exit(self) -> None:
        """Once the CLI has exited, whatever it left in its group goes too (after a grace), so
        a straggler holding stdout open cannot keep the run waiting for the end of output."""
        await self._exited.wait()
        await asyncio.sleep(self.cancel_grace)
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def _remove_scratch(self) -> None:
        if self._scratch is not None:
            scratch, self._scratch = self._scratch, None
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    # -- streams ----------------------------------------------------------------------------

    async def _feed_stdin(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        stdin = self.proc.stdin
        with suppress(ConnectionError, BrokenPipeError):
            if self.stdin_data:
                stdin.write(self.stdin_data)
                await stdin.drain()
            if self.close_stdin:
                stdin.close()

    async def write_line(self, message: dict[str, Any]) -> None:
        """Send one JSON line on stdin (for CLIs that take messages, not a closed prompt)."""
        assert self.proc is not None and self.proc.stdin is not None
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        async with self._write_lock:
            try:
                self.proc.stdin.write(data)
                await self.proc.stdin.drain()
            except (ConnectionError, BrokenPipeError, RuntimeError) as exc:
                raise BackendError(f"{self.name} stopped reading its input: {exc}") from None

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr.append(chunk)
            self._stderr_size += len(chunk)
            while self._stderr_size - len(self._stderr[0]) >= STDERR_TAIL:
                self._stderr_size -= len(self._stderr.popleft())

    def stderr_tail(self, limit: int = 1000) -> str:
        text = b"".join(self._stderr).decode(errors="replace").strip()
        return text[-limit:]

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Each JSON object on stdout with a string ``type`` (or JSON-RPC ``method``/``id``).

        Blank lines are ignored; anything else that does not parse is skipped and counted in
        ``malformed``. Raises BackendError if the CLI makes no progress (see ``progress``) for
        ``idle_timeout``.
        """
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        loop = asyncio.get_running_loop()
        last_progress, stalled = loop.time(), False
        while True:
            wait, why = None, ""
            if self.idle_timeout is not None:
                wait = max(last_progress + self.idle_timeout - loop.time(), 0)
                did = "made no progress" if stalled else "printed nothing"
                why = f"{did} for {self.idle_timeout} s"
            if self._deadline is not None:
                left = self._deadline - loop.time()
                if wait is None or left < wait:
                    wait, why = max(left, 0), f"did not finish within {self.timeout} s"
            try:
                async with asyncio.timeout(wait):
                    line = await stdout.readline()
            except TimeoutError:
                raise BackendError(f"{self.name} {why}", "timeout") from None
            except ValueError:  # a line over LINE_LIMIT; the reader dropped it
                self._skip("line too long")
                continue
            if not line:
                return
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self._skip("not JSON", line)
                continue
            if not isinstance(event, dict) or not (
                isinstance(event.get("type"), str) or "method" in event or "id" in event
            ):
                self._skip("not an event object", line)
                continue
            if self.progress(event):
                last_progress, stalled = loop.time(), False
            else:
                stalled = True
            yield event

    def _skip(self, why: str, line: bytes = b"") -> None:
        self.malformed += 1
        log.warning(
            "cli_output_skipped", cli=self.name, why=why, line=line[:200].decode(errors="replace")
        )

    async def wait(self) -> int:
        """Wait for the process to exit (stderr fully read) and return its exit code."""
        assert self.proc is not None
        code = await self.proc.wait()
        for task in self._io:  # stderr read to its end, stdin written
            with suppress(asyncio.CancelledError, Exception):
                await task
        return code

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name

    def failure(self, what: str, code: str = "backend_error") -> BackendError:
        """A BackendError for ``what`` with the end of stderr appended."""
        tail = self.stderr_tail()
        return BackendError(f"{what}: {tail}" if tail else what, code)


async def _uninterrupted(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to its end even if the caller is cancelled meanwhile (then re-raise)."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The usual stream protocol, and an event set as soon as the process exits (on 3.11,
    ``Process.wait()`` also waits for every pipe to close, which a straggler can prevent)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=LINE_LIMIT, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()
