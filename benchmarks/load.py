"""The load generator: one aiohttp client per arm, every answer checked against its spec."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .answers import Spec, StreamCheck, WrongAnswer, check_whole, request_body
from .processes import Child

JSON = {"Content-Type": "application/json"}


class ArmFailed(RuntimeError):
    """A request through ``arm`` got an error status, a wrong answer or no answer."""

    def __init__(self, arm: str, message: str) -> None:
        super().__init__(f"{arm}: {message}")
        self.arm = arm


@dataclass
class Arm:
    """One way of getting an answer: straight from the plain server, or through a relay."""

    name: str
    base_url: str
    model: str
    #: Processes whose CPU time is this arm's cost (empty for the plain server's own).
    costs: tuple[Child, ...]
    #: Headers of every request (LiteLLM's proxy wants its key).
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    #: How long an idle connection is kept for reuse (None: aiohttp's default, 15 s). Below
    #: the server's own idle limit, or a reused connection can meet the server closing it.
    keepalive_seconds: float | None = None
    http: aiohttp.ClientSession = field(init=False)
    verified: int = 0

    async def open(self) -> None:
        # No connection limit: the paced-stream runs hold a thousand streams open at once.
        if self.keepalive_seconds is None:
            connector = aiohttp.TCPConnector(limit=0, force_close=False)
        else:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=self.keepalive_seconds)
        timeout = aiohttp.ClientTimeout(total=300)
        self.http = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def close(self) -> None:
        await self.http.close()

    @property
    def url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    def cpu_seconds(self) -> float:
        return sum(child.cpu_seconds() for child in self.costs)

    async def whole(self, body: bytes, spec: Spec) -> float:
        """One non-streamed request; its latency in seconds."""
        started = time.perf_counter()
        try:
            async with self.http.post(self.url, data=body, headers=self.headers) as response:
                answer = await response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise ArmFailed(self.name, f"HTTP {response.status}: {answer[:300]!r}")
            check_whole(answer, spec)
        except (aiohttp.ClientError, TimeoutError, WrongAnswer) as exc:
            raise ArmFailed(self.name, str(exc) or type(exc).__name__) from exc
        self.verified += 1
        return elapsed

    async def stream(self, body: bytes, spec: Spec) -> StreamCheck:
        """One streamed request, read line by line; the check holds each chunk's arrival."""
        check = StreamCheck(spec, time.perf_counter())
        try:
            async with self.http.post(self.url, data=body, headers=self.headers) as response:
                if response.status != 200:
                    text = await response.read()
                    raise ArmFailed(self.name, f"HTTP {response.status}: {text[:300]!r}")
                async for data in response.content.iter_any():
                    check.read(data, time.perf_counter())
            check.verify()
        except (aiohttp.ClientError, TimeoutError, WrongAnswer) as exc:
            raise ArmFailed(self.name, str(exc) or type(exc).__name__) from exc
        self.verified += 1
        return check


async def gather_all(runs: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run them all to their end, then raise the first failure, if any."""
    raise_first(await asyncio.gather(*runs, return_exceptions=True))


def raise_first(outcomes: Iterable[object]) -> None:
    failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
    if failure is not None:
        raise failure


def rotated(arms: Sequence[Arm], turn: int) -> list[Arm]:
    """The arms starting at a different one each turn, so none always goes first."""
    shift = turn % len(arms)
    return [*arms[shift:], *arms[:shift]]


async def latencies(
    arms: Sequence[Arm], spec: Spec, n: int, padding: int = 0
) -> dict[str, list[float]]:
    """``n`` non-streamed requests per arm from one client, the arms interleaved request by
    request; seconds per request, by arm."""
    bodies = {
        arm.name: request_body(arm.model, spec, stream=False, padding=padding) for arm in arms
    }
    samples: dict[str, list[float]] = {arm.name: [] for arm in arms}
    for turn in range(n):
        for arm in rotated(arms, turn):
            samples[arm.name].append(await arm.whole(bodies[arm.name], spec))
    return samples


@dataclass(frozen=True)
class Throughput:
    requests: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_seconds / self.requests


async def first_chunks(arms: Sequence[Arm], spec: Spec, n: int) -> dict[str, list[float]]:
    """Time to the first content chunk of ``n`` streams per arm, interleaved; seconds."""
    bodies = {arm.name: request_body(arm.model, spec, stream=True) for arm in arms}
    samples: dict[str, list[float]] = {arm.name: [] for arm in arms}
    for turn in range(n):
        for arm in rotated(arms, turn):
            check = await arm.stream(bodies[arm.name], spec)
            samples[arm.name].append(check.first_chunk_s)
    return samples


async def chunk_rate(arm: Arm, spec: Spec) -> float:
    """Content chunks per second in one unpaced stream."""
    check = await arm.stream(request_body(arm.model, spec, stream=True), spec)
    return len(check.arrivals) / (check.arrivals[-1] - check.started)


@dataclass(frozen=True)
class Paced:
    gaps: list[float]
    #: Each stream's time to its first chunk: a server that falls behind can hold a whole
    #: stream back and then send its chunks in a burst, with short gaps.
    firsts: list[float]
    #: The daemon's resident memory before the streams opened and at its highest while open.
    rss_before: int
    rss_peak: int


async def paced_streams(arm: Arm, spec: Spec, streams: int, watch: Child | None) -> Paced:
    """``streams`` streams at once, each paced by its server; the gaps between chunks as the
    client saw them, and the memory of ``watch`` (the daemon) while they were open."""
    body = request_body(arm.model, spec, stream=True)
    pace = spec.pace_ms / 1000
    checks: list[StreamCheck] = []

    async def one() -> None:
        await asyncio.sleep(random.random() * pace)  # streams start spread over one pace
        checks.append(await arm.stream(body, spec))

    rss_before = watch.rss_bytes() if watch is not None else 0
    rss_peak = rss_before
    running = asyncio.gather(*(one() for _ in range(streams)), return_exceptions=True)
    while not running.done():
        await asyncio.wait([running], timeout=0.1)
        if watch is not None:
            rss_peak = max(rss_peak, watch.rss_bytes())
    raise_first(running.result())
    gaps = [gap for check in checks for gap in check.gaps()]
    return Paced(gaps, [check.first_chunk_s for check in checks], rss_before, rss_peak)
