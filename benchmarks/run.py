"""Start the daemon, the agents and a plain server as separate processes, drive them all in one
run, check every answer, and print the table (``python -m benchmarks --help``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from mcp_local_provider.cli.serve import loop_factory

from . import agents, report
from .answers import Spec
from .litellm_arm import HOW_TO, LiteLLM, LiteLLMMissing
from .litellm_arm import MODEL as LITELLM_MODEL
from .load import (
    Arm,
    ArmFailed,
    chunk_rate,
    first_chunks,
    latencies,
    paced_streams,
    rotated,
)
from .processes import (
    Child,
    Cores,
    DaemonFiles,
    free_port,
    python,
    start,
    wait_http,
    wait_model,
    write_daemon_config,
)
from .report import BUSY_SHARE, Results, latency_figures, ms
from .wrk import Driven, with_processes, with_wrk, wrk_path

REPO = Path(__file__).resolve().parent.parent
#: Connections, requests in flight and per-session concurrency the daemon is allowed.
CONNECTIONS = 4096
CONNECTIONS_FOR_THROUGHPUT = 32
#: Python load processes that drive the throughput runs where wrk is not installed.
LOAD_PROCESSES = 4
PACE_MS = 20.0
#: The answer every arm gives unless a section says otherwise: 64 chunks of 16 bytes.
ANSWER = Spec(chunks=64, size=16)
IDLE_MODEL = "bench-idle"
#: Before each measurement, the processes are idle when in SETTLE_PERIOD seconds they used
#: less than IDLE_SHARE of one core between them.
SETTLE_PERIOD = 0.1
IDLE_SHARE = 0.05
#: How long LiteLLM's proxy may take to start (importing it takes tens of seconds on a busy
#: core).
LITELLM_START_SECONDS = 180.0
#: The arms forwarding to the mock upstream: the openai backend agent's and LiteLLM's.
UPSTREAM_ARMS = ("openai", "litellm")
#: LiteLLM's server (uvicorn) closes a connection idle for 5 s; the client lets go sooner, so
#: that a request never goes out on a connection the server is closing.
LITELLM_CLIENT_KEEPALIVE = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How much of each measurement a run makes."""

    rounds: int
    latency_requests: int
    throughput_seconds: float
    first_chunk_streams: int
    long_stream_chunks: int
    paced_counts: tuple[int, ...]
    paced_chunks: int
    #: The arms forwarding to the upstream (openai, litellm) join the paced runs up to this
    #: many streams.
    paced_upstream_max: int
    session_counts: tuple[int, ...]
    session_requests: int
    body_sizes: tuple[int, ...]
    body_requests: int


KIB = 1024
PLANS = {
    "full": Plan(rounds=3, latency_requests=1000, throughput_seconds=3.0,
                 first_chunk_streams=200, long_stream_chunks=2000,
                 paced_counts=(32, 256, 1000), paced_chunks=50, paced_upstream_max=256,
                 session_counts=(1, 100, 1000), session_requests=500,
                 body_sizes=(KIB, 16 * KIB, 256 * KIB, 1024 * KIB), body_requests=50),
    "quick": Plan(rounds=1, latency_requests=300, throughput_seconds=1.5,
                  first_chunk_streams=60, long_stream_chunks=1000,
                  paced_counts=(32, 256), paced_chunks=25, paced_upstream_max=32,
                  session_counts=(1, 100), session_requests=200,
                  body_sizes=(KIB, 64 * KIB, 1024 * KIB), body_requests=10),
    "smoke": Plan(rounds=1, latency_requests=5, throughput_seconds=0.3,
                  first_chunk_streams=3, long_stream_chunks=50,
                  paced_counts=(4,), paced_chunks=5, paced_upstream_max=4,
                  session_counts=(1, 3), session_requests=5,
                  body_sizes=(KIB, 64 * KIB), body_requests=2),
}  # fmt: skip


def machine(cores: Cores) -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")),
                         model)  # fmt: skip
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "daemon_loop": "asyncio" if loop_factory() is None else "uvloop",
            "pinning": cores.describe(), "load_average": os.getloadavg()[0]}  # fmt: skip


def raise_file_limit() -> None:
    """Thousands of open streams need as many descriptors; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Bench:
    """The running processes and the arms that reach them."""

    def __init__(
        self, stack: AsyncExitStack, directory: Path, cores: Cores, litellm: LiteLLM | None
    ) -> None:
        self.stack = stack
        self.directory = directory
        self.cores = cores
        self.litellm = litellm
        self.children: list[Child] = []
        self.arms: list[Arm] = []
        self.daemon: Child | None = None
        self.files: DaemonFiles | None = None
        self.notes: list[str] = []
        #: The cores each pinned server's threads may run on, as read back after it started.
        self.pinned: dict[str, list[int]] = {}
        #: Arms left out of the sections still to run, after one of their measurements failed.
        self.dropped: set[str] = set()
        #: Agent sessions connected (the bench agent's and the openai backend agent's are not
        #: counted apart: one serves the relay arm, the other another model).
        self.sessions = 1
        #: What drives the throughput runs: ``wrk``, ``processes`` or ``auto`` (wrk if
        #: installed).
        self.load_generator = "auto"

    async def child(self, name: str, argv: list[str], cores: frozenset[int] | None) -> Child:
        # The children run the benchmarks package from this checkout.
        child = await start(name, argv, cores, self.directory, cwd=REPO)
        self.children.append(child)
        return child

    async def stop_child(self, child: Child) -> None:
        await child.stop()
        self.children.remove(child)

    def arm(
        self,
        name: str,
        base_url: str,
        model: str,
        costs: tuple[Child, ...],
        headers: dict[str, str] | None = None,
    ) -> Arm:
        arm = Arm(name, base_url, model, costs)
        if headers is not None:
            arm.headers = headers
        self.arms.append(arm)
        return arm

    def live(self, arms: Sequence[Arm]) -> list[Arm]:
        return [arm for arm in arms if arm.name not in self.dropped]

    async def attempt(self, arm: Arm, what: str, run: Coroutine[Any, Any, T]) -> T | None:
        """One measurement of ``arm`` (with the plain server's beside it, for some). Should
        LiteLLM fail it (an error, a wrong answer, a dropped connection), the failure is noted,
        that figure stays empty and LiteLLM sits out the rest of the run; any other arm's
        failure ends the run."""
        if arm.name in self.dropped:
            run.close()
            return None
        await self.settle()
        try:
            return await run
        except ArmFailed as exc:
            if exc.arm != "litellm":
                raise
            self.notes.append(f"LiteLLM arm: {what} failed ({str(exc)[:300]}); "
                              "the sections after it leave LiteLLM out")  # fmt: skip
            self.dropped.add(arm.name)
            return None

    async def settle(self, limit: float = 10.0) -> None:
        """Wait (``limit`` seconds at most) until every process is idle, so that work one arm
        leaves behind (LiteLLM's logging after its answers, on the daemon's core) is not
        charged to the next measurement."""
        started = time.perf_counter()
        before = sum(child.cpu_seconds() for child in self.children)
        while time.perf_counter() - started < limit:
            await asyncio.sleep(SETTLE_PERIOD)
            now = sum(child.cpu_seconds() for child in self.children)
            busy, before = now - before, now
            if busy < SETTLE_PERIOD * IDLE_SHARE:
                return

    async def setup(self) -> None:
        others = self.cores.others
        plain_url = f"http://127.0.0.1:{free_port()}"
        plain = await self.child(
            "plain", python("benchmarks.plain_server", plain_url.rsplit(":", 1)[1]), others
        )
        await plain.ready_line(30)
        files = self.files = write_daemon_config(self.directory, CONNECTIONS)
        daemon = self.daemon = await self.child(
            "daemon", python("mcp_local_provider", "serve", "--config", str(files.config)),
            self.cores.daemon,
        )  # fmt: skip
        await wait_http(files.url + "/health", 30, daemon)
        self.pinned["daemon"] = sorted(daemon.pin(self.cores.daemon))
        agent = await self.child(
            "bench-agent",
            python("benchmarks.bench_agent", files.agent_url, str(files.token_file)),
            others,
        )
        await agent.ready_line(30)
        upstream_agent = await self.child(
            "openai-agent",
            python("mcp_local_provider", "agent", "--config", str(files.config),
                   "--backend", "openai", "--base-url", plain_url + "/v1",
                   "--url", files.agent_url, "--model", "bench-upstream",
                   "--agent-id", "bench-openai", "--max-concurrency", str(CONNECTIONS)),
            others,
        )  # fmt: skip
        await wait_model(files.url, "bench-upstream", 30)
        self.arm("plain", plain_url, "bench", (plain,))
        self.arm("relay", files.url, "bench", (daemon,))
        self.arm("openai", files.url, "bench-upstream", (daemon, upstream_agent))
        await self.setup_litellm(plain_url)
        for arm in self.arms:
            await arm.open()
            self.stack.push_async_callback(arm.close)

    async def setup_litellm(self, upstream: str) -> None:
        """LiteLLM's proxy, one worker, on the daemon's core (the two are measured in turn)."""
        if self.litellm is None:
            return
        port = free_port()
        # It runs from the scratch directory, so that nothing of the checkout is on its path.
        # It logs a line per request: its stdout goes to its log, not to a pipe nobody reads.
        proxy = await start(
            "litellm", self.litellm.argv(upstream + "/v1", port), self.cores.daemon,
            self.directory, cwd=self.directory, env=self.litellm.environment(),
            ready_line=False,
        )  # fmt: skip
        self.children.append(proxy)
        try:
            await wait_http(
                f"http://127.0.0.1:{port}/health/liveliness", LITELLM_START_SECONDS, proxy
            )
        except (RuntimeError, TimeoutError) as exc:
            reason = str(exc) or f"not answering after {LITELLM_START_SECONDS:g} s"
            last = (self.directory / "litellm.log").read_text(errors="replace").strip()
            last_line = last.splitlines()[-1] if last else "its log is empty"
            self.notes.append(f"LiteLLM arm skipped: the proxy did not start ({reason}; "
                              f"its last line: {last_line[:300]})")  # fmt: skip
            await self.stop_child(proxy)
            return
        self.pinned["litellm"] = sorted(proxy.pin(self.cores.daemon))
        arm = self.arm("litellm", f"http://127.0.0.1:{port}", LITELLM_MODEL, (proxy,),
                       self.litellm.headers())  # fmt: skip
        arm.keepalive_seconds = LITELLM_CLIENT_KEEPALIVE

    async def connect_sessions(self, count: int) -> None:
        """Bring the agent sessions connected to ``count``: the bench agent's and idle ones
        serving another model (so that requests still go to the bench agent)."""
        assert self.files is not None
        if count <= self.sessions:
            return
        idle = await self.child(
            f"idle-agents-{count}",
            python("benchmarks.bench_agent", self.files.agent_url, str(self.files.token_file),
                   "--model", IDLE_MODEL, "--sessions", str(count - self.sessions)),
            self.cores.others,
        )  # fmt: skip
        await idle.ready_line(300)
        self.sessions = count

    def get(self, name: str) -> Arm:
        return next(arm for arm in self.arms if arm.name == name)

    def log_tails(self) -> str:
        tails = []
        for path in sorted(self.directory.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            if lines:
                tails.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(tails)


@asynccontextmanager
async def running(cores: Cores, litellm: LiteLLM | None) -> AsyncIterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="mlp-bench-") as tmp:
        async with AsyncExitStack() as stack:
            bench = Bench(stack, Path(tmp), cores, litellm)
            try:
                await bench.setup()
                yield bench
            except BaseException:
                print(bench.log_tails(), file=sys.stderr)
                raise
            finally:
                for child in reversed(bench.children):
                    await child.stop()


def added(figures: dict[str, dict[str, Any]], key: str, base: str = "plain") -> None:
    """Put ``added_<key>`` (arm minus plain) next to each arm's ``key``."""
    for name, row in figures.items():
        if name != base and key in row and key in figures.get(base, {}):
            row[f"added_{key}"] = round(row[key] - figures[base][key], 3)


class Paired:
    """Samples of each relay arm and of the plain server interleaved with it."""

    def __init__(self, relays: Sequence[Arm]) -> None:
        self._samples: dict[str, tuple[list[float], list[float]]] = {
            arm.name: ([], []) for arm in relays
        }
        self.plain: list[float] = []

    def add(self, arm: Arm, samples: dict[str, list[float]]) -> None:
        own, base = self._samples[arm.name]
        own += samples[arm.name]
        base += samples["plain"]
        self.plain += samples["plain"]

    def by_arm(self) -> dict[str, tuple[list[float], list[float]]]:
        return self._samples


def relays_of(bench: Bench) -> tuple[Arm, list[Arm]]:
    plain = bench.get("plain")
    return plain, [arm for arm in bench.arms if arm is not plain]


# Each relay arm is interleaved request by request with the plain server, which answers in
# about the same time; interleaving two relays would charge one with the other's tail work.


async def measure_latency(bench: Bench, plan: Plan) -> dict[str, Any]:
    plain, relays = relays_of(bench)
    paired = Paired(relays)
    for turn in range(plan.rounds):
        for arm in rotated(bench.live(relays), turn):
            samples = await bench.attempt(
                arm, "latency", latencies([plain, arm], ANSWER, plan.latency_requests)
            )
            if samples is not None:
                paired.add(arm, samples)
    figures: dict[str, Any] = {"plain": latency_figures(paired.plain)}
    for name, (own, base) in paired.by_arm().items():
        if not own:
            continue
        row = figures[name] = latency_figures(own)
        plain_row = latency_figures(base)
        row["added_p50_ms"] = round(row["p50_ms"] - plain_row["p50_ms"], 3)
        row["added_p99_ms"] = round(row["p99_ms"] - plain_row["p99_ms"], 3)
    return figures


async def drive(bench: Bench, arm: Arm, plan: Plan, driver: str | None) -> Driven:
    """One throughput run of ``arm``: ``wrk`` when installed (``driver`` None), else
    ``LOAD_PROCESSES`` Python load processes. The server being driven runs alone on the
    daemon's core: the plain server moves there for its own run (it sits beside the agents
    otherwise, as the mock upstream), so that both sides get one core each."""
    plain = bench.get("plain").costs[0]
    if arm.name == "plain":
        plain.pin(bench.cores.daemon)
    try:
        if driver is None:
            run = with_wrk(arm, ANSWER, CONNECTIONS_FOR_THROUGHPUT, plan.throughput_seconds,
                           bench.directory, bench.cores.others)  # fmt: skip
        else:
            run = with_processes(arm, ANSWER, CONNECTIONS_FOR_THROUGHPUT,
                                 plan.throughput_seconds, bench.directory, bench.cores.others,
                                 LOAD_PROCESSES)  # fmt: skip
        return await run
    finally:
        if arm.name == "plain":
            plain.pin(bench.cores.others)


async def measure_throughput(bench: Bench, plan: Plan) -> dict[str, Any]:
    use_wrk = bench.load_generator == "wrk" or (
        bench.load_generator == "auto" and wrk_path() is not None
    )
    driver = None if use_wrk else f"{LOAD_PROCESSES} load processes"
    runs: dict[str, list[Driven]] = {a.name: [] for a in bench.arms}
    for turn in range(plan.rounds):
        for arm in rotated(bench.live(bench.arms), turn):
            done = await bench.attempt(arm, "throughput", drive(bench, arm, plan, driver))
            if done is not None:
                runs[arm.name].append(done)
    if driver is not None and bench.load_generator == "auto":
        bench.notes.append(f"throughput: wrk is not installed, so {driver} drove it "
                           "(install wrk for figures a Python client cannot limit)")  # fmt: skip
    figures: dict[str, dict[str, Any]] = {
        name: {
            "per_second": round(statistics.median(r.per_second for r in done)),
            "cpu_us_per_request": round(statistics.median(r.cpu_per_request for r in done) * 1e6),
            "busy_share": round(statistics.median(r.busy_share for r in done), 3),
            "driver": done[0].driver,
        }
        for name, done in runs.items()
        if done
    }
    plain = figures["plain"]
    for row in figures.values():
        row["ratio_to_plain"] = round(row["per_second"] / plain["per_second"], 3)
        row["cpu_ratio_to_plain"] = round(
            row["cpu_us_per_request"] / plain["cpu_us_per_request"], 2
        )
    if plain["busy_share"] < BUSY_SHARE:
        bench.notes.append(
            f"throughput: the plain server used {plain['busy_share']:.0%} of its core, so the "
            f"load generator ({plain['driver']}), not the server, limited the plain figure and "
            "every ratio to it"
        )
    return figures


async def measure_stream(bench: Bench, plan: Plan) -> dict[str, Any]:
    plain, relays = relays_of(bench)
    firsts = Paired(relays)
    rates: dict[str, list[float]] = {a.name: [] for a in bench.arms}
    long = Spec(chunks=plan.long_stream_chunks, size=16)
    for turn in range(plan.rounds):
        for arm in rotated(bench.live(relays), turn):
            samples = await bench.attempt(
                arm, "first chunk", first_chunks([plain, arm], ANSWER, plan.first_chunk_streams)
            )
            if samples is not None:
                firsts.add(arm, samples)
        for arm in rotated(bench.live(bench.arms), turn):
            rate = await bench.attempt(arm, "chunk rate", chunk_rate(arm, long))
            if rate is not None:
                rates[arm.name].append(rate)
    figures: dict[str, Any] = {
        name: {"chunks_per_second": round(statistics.median(r))} if r else {}
        for name, r in rates.items()
    }
    figures["plain"]["first_chunk_p50_ms"] = ms(statistics.median(firsts.plain))
    for name, (own, base) in firsts.by_arm().items():
        if not own:
            continue
        figures[name]["first_chunk_p50_ms"] = ms(statistics.median(own))
        figures[name]["added_first_chunk_ms"] = ms(statistics.median(own) - statistics.median(base))
    return figures


async def measure_paced(bench: Bench, plan: Plan) -> dict[str, dict[str, Any]]:
    spec = Spec(chunks=plan.paced_chunks, size=16, pace_ms=PACE_MS)
    paced: dict[str, dict[str, Any]] = {}
    for count in plan.paced_counts:
        row: dict[str, Any] = {}
        for arm in bench.live(bench.arms):
            if arm.name in UPSTREAM_ARMS and count > plan.paced_upstream_max:
                continue
            watch = bench.daemon if arm.name in ("relay", "openai") else None
            run = await bench.attempt(
                arm, f"{count} paced streams", paced_streams(arm, spec, count, watch)
            )
            if run is None:
                continue
            row[arm.name] = {
                "gap_p99_ms": ms(report.percentile(run.gaps, 0.99)),
                "first_chunk_p99_ms": ms(report.percentile(run.firsts, 0.99)),
            }
            if watch is not None:
                row[arm.name]["rss_per_stream_kib"] = round(
                    max(0, run.rss_peak - run.rss_before) / count / 1024, 1
                )
        added(row, "gap_p99_ms")
        paced[str(count)] = row
    return paced


async def measure_body(bench: Bench, plan: Plan) -> dict[str, Any]:
    """Latency and daemon CPU per request with a request and an answer of each size."""
    assert bench.daemon is not None
    plain, relay, daemon = bench.get("plain"), bench.get("relay"), bench.daemon
    body: dict[str, Any] = {}
    for size in plan.body_sizes:
        spec = Spec(chunks=1, size=size)
        before = daemon.cpu_seconds()
        await bench.settle()
        samples = await latencies([plain, relay], spec, plan.body_requests, padding=size)
        spent = daemon.cpu_seconds() - before
        p50 = {name: statistics.median(s) for name, s in samples.items()}
        body[str(size)] = {
            "p50_ms": ms(p50["relay"]),
            "added_p50_ms": ms(p50["relay"] - p50["plain"]),
            "cpu_us_per_request": round(spent / plan.body_requests * 1e6),
        }
    return body


async def measure_sessions(bench: Bench, plan: Plan) -> dict[str, Any]:
    """Added latency as idle agent sessions (serving another model) join the one answering."""
    assert bench.files is not None and bench.daemon is not None
    plain, relay = bench.get("plain"), bench.get("relay")
    sweep: dict[str, Any] = {}
    for count in plan.session_counts:
        await bench.connect_sessions(count)
        before = bench.daemon.cpu_seconds()
        await bench.settle()
        samples = await latencies([plain, relay], ANSWER, plan.session_requests)
        spent = bench.daemon.cpu_seconds() - before
        figures = {name: latency_figures(s) for name, s in samples.items()}
        sweep[str(count)] = {
            "added_p50_ms": round(figures["relay"]["p50_ms"] - figures["plain"]["p50_ms"], 3),
            "added_p99_ms": round(figures["relay"]["p99_ms"] - figures["plain"]["p99_ms"], 3),
            "cpu_us_per_request": round(spent / plan.session_requests * 1e6),
        }
    return sweep


#: Every section, in the order they run: the sessions sweep goes last, as the sessions it
#: connects stay connected.
SECTIONS: dict[str, Callable[[Bench, Plan], Awaitable[dict[str, Any]]]] = {
    "latency": measure_latency,
    "throughput": measure_throughput,
    "stream": measure_stream,
    "paced": measure_paced,
    "body": measure_body,
    "sessions": measure_sessions,
}


async def measure(bench: Bench, plan: Plan, sections: Sequence[str]) -> Results:
    for arm in bench.arms:  # warm up every path
        await bench.attempt(arm, "warm-up", latencies([arm], ANSWER, 20))
        await bench.attempt(arm, "warm-up", first_chunks([arm], ANSWER, 5))
    results = {name: await run(bench, plan) for name, run in SECTIONS.items() if name in sections}
    upstream = [arm.name for arm in bench.arms if arm.name in UPSTREAM_ARMS]
    if "paced" in sections and max(plan.paced_counts) > plan.paced_upstream_max:
        bench.notes.append(f"paced streams: {' and '.join(upstream)} join only the runs of up "
                           f"to {plan.paced_upstream_max} streams")  # fmt: skip
    return results


async def profile_daemon(bench: Bench, output: Path, seconds: float, sessions: int) -> str:
    """Record the daemon with py-spy while one client sends non-streamed requests."""
    spy = shutil.which("py-spy")
    if spy is None:
        return "--py-spy: py-spy is not installed (pip install py-spy); no profile recorded"
    assert bench.daemon is not None
    await bench.connect_sessions(sessions)
    relay = bench.get("relay")
    await latencies([relay], ANSWER, 50)
    fmt = (
        "speedscope"
        if output.suffix == ".json"
        else "raw"
        if output.suffix == ".txt"
        else "flamegraph"
    )
    recorder = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(bench.daemon.pid), "--rate", "200", "--format", fmt,
        "--duration", str(int(seconds)), "--output", str(output), "--nonblocking",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    requests = 0
    started = time.perf_counter()
    while recorder.returncode is None and time.perf_counter() - started < seconds + 30:
        await latencies([relay], ANSWER, 50)
        requests += 50
        if recorder.returncode is None:
            await asyncio.sleep(0)
    _, err = await recorder.communicate()
    if recorder.returncode != 0:
        return f"--py-spy: py-spy failed: {err.decode(errors='replace').strip()[-500:]}"
    return f"daemon profile ({fmt}, {requests} requests at 1 client) written to {output}"


def find_litellm(python: str | None) -> tuple[LiteLLM | None, str | None]:
    """LiteLLM's proxy from ``--litellm PYTHON``, or from this interpreter when it has it; else
    a note saying the arm is skipped and how to add it. A ``--litellm`` that cannot run the
    proxy ends the run before anything starts."""
    try:
        return LiteLLM.find(python), None
    except LiteLLMMissing as exc:
        if python is not None:
            raise SystemExit(f"--litellm: {exc}") from None
        return None, f"LiteLLM arm skipped: {exc}; {HOW_TO}"


async def main_async(args: argparse.Namespace) -> int:
    if args.load_generator == "wrk" and wrk_path() is None:
        print("--load-generator wrk: wrk is not on PATH (Debian and Ubuntu: apt-get install "
              "wrk)", file=sys.stderr)  # fmt: skip
        return 2
    plan_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = PLANS[plan_name]
    # A profile of the daemon needs no LiteLLM, which takes seconds to start.
    litellm, skipped = (None, None) if args.py_spy is not None else find_litellm(args.litellm)
    cores = Cores.split()
    raise_file_limit()
    if cores.others is not None:
        os.sched_setaffinity(0, cores.others)  # the load generator runs beside the agents
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    async with running(cores, litellm) as bench:
        if skipped is not None:
            bench.notes.insert(0, skipped)
        bench.load_generator = args.load_generator
        if args.py_spy is not None:
            print(await profile_daemon(bench, args.py_spy, args.py_spy_seconds, args.sessions))
            return 0
        results = await measure(bench, plan, args.sections)
        results["arms"] = [arm.name for arm in bench.arms]
        results["verified_answers"] = {arm.name: arm.verified for arm in bench.arms}
        notes = bench.notes
        pinned = bench.pinned
    results.update(
        plan=plan_name, plan_settings=asdict(plan), pace_ms=PACE_MS, answer=asdict(ANSWER),
        machine=machine(cores), seconds=round(time.perf_counter() - started, 1), notes=notes,
    )  # fmt: skip
    if litellm is not None:
        results["litellm"] = {"version": litellm.version, "python": litellm.python}
    results["machine"]["load_average"] = [load_before, results["machine"]["load_average"]]
    results["machine"]["pinned"] = pinned
    results["goals"] = report.check_goals(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']['cpus']} x {results['machine']['cpu_model']}, "
          f"{results['machine']['pinning']}; "
          f"the daemon's event loop: {results['machine']['daemon_loop']}; "
          f"plan {plan_name}, {results['seconds']} s; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
    if litellm is not None:
        where = pinned.get("litellm", "-")
        print(f"LiteLLM {litellm.version} ({litellm.python}), 1 worker, on cores {where}; "
              f"the daemon on {pinned.get('daemon', '-')}")  # fmt: skip
    for note in notes:
        print(note)
    print(report.table(results))
    print(f"every answer checked: {results['verified_answers']}; results in {args.out}")
    if args.plot is not None:
        print(report.plot(results, args.plot))
    return 0


#: Sections run on their own, without the daemon's arms (benchmarks/agents.py).
SEPARATE = ("agents",)


def sections(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = set(chosen) - set(SECTIONS) - set(SEPARATE)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown sections: {', '.join(sorted(unknown))}")
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure what the daemon adds: the daemon, a bench agent, the openai backend "
        "agent and a plain aiohttp server run as separate processes, driven in one run.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer requests (under a minute)")
    size.add_argument("--smoke", action="store_true", help="a few requests per arm (seconds)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results.json"),
                        help="where the JSON results go (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--plot",
        type=Path,
        nargs="?",
        const=Path("benchmark.png"),
        help="draw the curves to a PNG (needs matplotlib; default benchmark.png)",
    )
    parser.add_argument(
        "--sections",
        type=sections,
        default=list(SECTIONS),
        help=f"run only these, comma-separated (default: all of {','.join(SECTIONS)}); "
        "`agents` (not in the default) measures the CLI backends with the real CLIs",
    )
    parser.add_argument(
        "--litellm",
        metavar="PYTHON",
        help="the interpreter of an environment with litellm[proxy] installed, to add the "
        "LiteLLM proxy arm (default: this interpreter if it has litellm, else no LiteLLM arm)",
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "processes"),
        default="auto",
        help="what drives the throughput runs: wrk (a C load generator that a Python client "
        "cannot match), several Python load processes, or wrk when installed (default: auto)",
    )
    parser.add_argument("--py-spy", type=Path, metavar="FILE",
                        help="instead of the benchmark, record the daemon with py-spy under "
                        "one client's non-streamed requests (.json: speedscope, .txt: collapsed "
                        "stacks, else an SVG flame graph)")  # fmt: skip
    parser.add_argument("--py-spy-seconds", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument(
        "--sessions",
        type=int,
        default=1,
        metavar="N",
        help="with --py-spy: agent sessions connected while recording",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if "agents" in args.sections:
        count = 2 if args.smoke else 5
        out = args.out.with_name(args.out.stem + "-agents" + args.out.suffix)
        agents.main(count, out)
        print(f"results in {out}")
        args.sections = [name for name in args.sections if name != "agents"]
        if not args.sections:
            return 0
    return asyncio.run(main_async(args))
