"""Processes started ahead of their request, so that no request waits for a CLI to start.

A CLI backend describes the process a request needs as a ``Launch`` (command line,
environment, working folder). The pool keeps a started process ready for each of the last few
launches it was asked for (the agent's default one from the start, then whatever the editors'
requests needed), already through its start-up and its handshake (``warm_up``). A request
takes a ready process when one matches, and its replacement starts at once in the background;
otherwise the request starts its own (as without the pool) and the pool starts one for next
time.

Each process serves one request and is then stopped, as a cold one is: a request never meets
anything an earlier one left in a process (conversation, tools, files in its scratch folder).
A ready process that exits is replaced (a few times in a row at most, then only when a
request asks again), one older than ``max_idle`` is replaced when taken, and ``close`` stops
every process the pool started.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import structlog

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.process import CliProcess
from mcp_local_provider.core.protocol import WarmStatus

log = structlog.get_logger("mcp_local_provider.agent.warm")

#: Ready processes that exit on their own this many times in a row stop being replaced until
#: a request asks for one again (a CLI that cannot start must not be restarted in a loop).
MAX_FAILURES = 3


@dataclass(frozen=True)
class Launch:
    """What makes two requests' processes interchangeable: the same command line, environment
    and working folder (None: a fresh scratch folder for each process)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    workdir: Path | None


class WarmPool:
    """Ready processes by ``Launch``; ``make`` builds an unstarted process for a launch and
    ``warm_up`` takes a started one through the CLI's handshake."""

    def __init__(
        self,
        make: Callable[[Launch], CliProcess],
        warm_up: Callable[[CliProcess], Awaitable[None]],
        *,
        size: int = 1,
        launches: int = 2,
        max_idle: float = 900.0,
        max_memory: int | None = None,
        warm_up_timeout: float = 60.0,
    ) -> None:
        self._make = make
        self._warm_up = warm_up
        self.size = size
        self.launches = launches
        self.max_idle = max_idle
        #: Bytes a ready process (with its children) may hold; one grown past it is replaced.
        self.max_memory = max_memory
        self.warm_up_timeout = warm_up_timeout
        self._ready: OrderedDict[Launch, list[CliProcess]] = OrderedDict()
        self._starting: dict[Launch, set[asyncio.Task[None]]] = {}
        self._failures: dict[Launch, int] = {}
        self._watchers: dict[CliProcess, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        #: Processes taken from the pool and not yet stopped.
        self.busy = 0
        self.taken = 0
        self.missed = 0
        self.replaced = 0
        self._closed = False

    # -- requests ---------------------------------------------------------------------------

    async def take(self, launch: Launch) -> CliProcess | None:
        """A ready process for ``launch`` (its request's clock started), or None. One still
        starting is waited for (it is further along than a new one would be). The caller calls
        ``fill`` once its request is over: a process started while the request runs would
        compete with it for the CPU."""
        if self._closed:
            return None
        self._remember(launch)
        self._failures.pop(launch, None)
        found = self._ready_one(launch)
        starting = self._starting.get(launch)
        if found is None and starting:
            await asyncio.wait(set(starting), return_when=asyncio.FIRST_COMPLETED)
            found = self._ready_one(launch)
        if found is None:
            self.missed += 1
            return None
        self.taken += 1
        found.begin()
        return found

    def _ready_one(self, launch: Launch) -> CliProcess | None:
        ready = self._ready.get(launch, [])
        loop = asyncio.get_running_loop()
        while ready:
            proc = ready.pop(0)
            self._unwatch(proc)
            if proc.alive and loop.time() - proc.started_at < self.max_idle and self._fits(proc):
                return proc
            self.replaced += 1
            self._discard(proc)
        return None

    def _fits(self, proc: CliProcess) -> bool:
        """Whether ``proc`` is within ``max_memory`` (a CLI that grew while it waited, a leak
        say, is replaced rather than given a request)."""
        if self.max_memory is None:
            return True
        held = proc.memory()
        if held is None or held <= self.max_memory:
            return True
        log.warning("warm_process_too_big", memory_mib=held >> 20, limit_mib=self.max_memory >> 20)
        return False

    def fill(self, launch: Launch) -> None:
        """Start processes for ``launch`` until ``size`` are ready or starting."""
        if self._closed:
            return
        self._remember(launch)
        starting = self._starting.setdefault(launch, set())
        while len(self._ready.get(launch, ())) + len(starting) < self.size:
            task = asyncio.create_task(self._start(launch))
            starting.add(task)
            task.add_done_callback(starting.discard)

    def status(self) -> WarmStatus:
        """How many processes are ready, starting, and serving a request."""
        return WarmStatus(
            ready=sum(len(procs) for procs in self._ready.values()),
            starting=sum(len(tasks) for tasks in self._starting.values()),
            busy=self.busy,
        )

    async def close(self) -> None:
        """Stop every process the pool started and is holding (taken ones are their
        request's to stop)."""
        self._closed = True
        tasks = [task for tasks in self._starting.values() for task in tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for watcher in self._watchers.values():
            watcher.cancel()
        procs = [proc for procs in self._ready.values() for proc in procs]
        self._ready.clear()
        await asyncio.gather(*(proc.close() for proc in procs), return_exceptions=True)
        await asyncio.gather(*self._stopping, return_exceptions=True)

    # -- inside -----------------------------------------------------------------------------

    def _remember(self, launch: Launch) -> None:
        """Keep ``launch`` among the last ``launches`` asked for; the oldest one's ready
        processes are stopped."""
        self._ready.setdefault(launch, [])
        self._ready.move_to_end(launch)
        while len(self._ready) > self.launches:
            _, procs = self._ready.popitem(last=False)
            for proc in procs:
                self._unwatch(proc)
                self._discard(proc)

    async def _start(self, launch: Launch) -> None:
        proc = self._make(launch)
        try:
            await proc.start()
            async with asyncio.timeout(self.warm_up_timeout):
                await self._warm_up(proc)
        except (BackendError, TimeoutError) as exc:
            error = str(exc) or f"no handshake within {self.warm_up_timeout} s"
            log.warning("warm_process_failed", cli=proc.name, error=error)
            await proc.close()
            current = asyncio.current_task()
            if current is not None:  # no longer starting: its replacement may start
                self._starting.get(launch, set()).discard(current)
            self._failed(launch)
            return
        except BaseException:
            await proc.close()
            raise
        procs = self._ready.get(launch)
        if procs is None or self._closed:
            await proc.close()  # the launch was forgotten meanwhile
            return
        procs.append(proc)
        self._watchers[proc] = asyncio.create_task(self._watch(launch, proc))

    async def _watch(self, launch: Launch, proc: CliProcess) -> None:
        """A ready process that exits is removed and replaced."""
        await proc.exited()
        self._watchers.pop(proc, None)
        procs = self._ready.get(launch)
        if procs is not None and proc in procs:
            procs.remove(proc)
            log.warning("warm_process_exited", cli=proc.name, stderr=proc.stderr_tail(300))
            self.replaced += 1
            self._discard(proc)
            self._failed(launch)

    def _failed(self, launch: Launch) -> None:
        failures = self._failures.get(launch, 0) + 1
        self._failures[launch] = failures
        if failures < MAX_FAILURES and launch in self._ready:
            self.fill(launch)

    def _unwatch(self, proc: CliProcess) -> None:
        watcher = self._watchers.pop(proc, None)
        if watcher is not None:
            watcher.cancel()

    def _discard(self, proc: CliProcess) -> None:
        task = asyncio.create_task(proc.close())
        self._stopping.add(task)
        task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        self._stopping.discard(task)
        with suppress(asyncio.CancelledError, Exception):
            task.result()
