"""Soak: mixed load on a live ``serve`` process for a long while, sampled over time.

    python -m tests.faults.soak --minutes 30 --out soak-results

Starts the daemon (auto-approving, on a free loopback port, its state in a temporary folder),
a few echo agents, and editors that keep sending a mix of requests: streaming and whole chat
on both API families, embeddings, model lists, and editors that hang up mid-stream. Meanwhile
agents are knocked off their connection (they resume with their token) and replaced (a goodbye,
then a new approval). Every ``--interval`` seconds it records requests, outcomes, the daemon's
RSS, open fds, asyncio tasks and calls in flight to ``<out>/samples.csv``; at the end it
writes ``<out>/summary.json`` and ``<out>/samples.svg`` (request rate, RSS, fds and tasks over
time). Run by hand; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import platform
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import structlog

from mcp_local_provider.agent import AgentClient
from tests.faults.live import (
    CHAT,
    LOAD,
    audit_requests,
    chat,
    echo_agents,
    metrics,
    open_fds,
    reset,
    rss_bytes,
    stop_agents,
    tasks,
    total,
)
from tests.security.helpers import DaemonProcess, free_port

#: How each soak agent asks to serve.
AGENT: dict[str, Any] = {"max_concurrency": 16, "scopes": ("inference", "embeddings")}
FIELDS = [
    "t_s",
    "requests",
    "ok",
    "errors",
    "hangups",
    "rate_per_s",
    "rss_mb",
    "fds",
    "tasks",
    "calls_in_flight",
    "agents_connected",
    "agent_drops",
    "agent_replacements",
]


class Soak:
    def __init__(self, base: str, concurrency: int) -> None:
        self.base = base
        self.concurrency = concurrency
        self.outcomes: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.requests = 0
        self.drops = 0
        self.replacements = 0
        self.stopping = asyncio.Event()

    # -- editors ---------------------------------------------------------------------------

    async def editor(self, http: aiohttp.ClientSession, seed: int) -> None:
        rnd = random.Random(seed)
        while not self.stopping.is_set():
            kind = rnd.choices(
                ["stream", "whole", "ollama", "embed", "hangup", "models"],
                weights=[50, 15, 10, 10, 10, 5],
            )[0]
            words = " ".join(f"w{i}" for i in range(rnd.randint(1, 30)))
            self.requests += 1
            self.kinds[kind] += 1
            try:
                async with asyncio.timeout(60):
                    outcome = await getattr(self, kind)(http, words)
            except TimeoutError:
                outcome = "timeout"
            except (aiohttp.ClientError, ConnectionError) as exc:
                outcome = type(exc).__name__
            self.outcomes[outcome] += 1
            await asyncio.sleep(rnd.random() * 0.02)

    async def stream(self, http: aiohttp.ClientSession, words: str) -> str:
        async with http.post(self.base + CHAT, json=chat(text=words)) as r:
            text = (await r.read()).decode()
        if r.status != 200:
            return f"http_{r.status}"
        return "ok" if text.rstrip().endswith("[DONE]") and '"error"' not in text else "error"

    async def whole(self, http: aiohttp.ClientSession, words: str) -> str:
        async with http.post(self.base + CHAT, json=chat(text=words, stream=False)) as r:
            body = await r.json()
        ok = r.status == 200 and body["choices"][0]["message"]["content"] == words
        return "ok" if ok else f"http_{r.status}"

    async def ollama(self, http: aiohttp.ClientSession, words: str) -> str:
        body = {"model": "echo", "messages": [{"role": "user", "content": words}]}
        async with http.post(self.base + "/api/chat", json=body) as r:
            lines = (await r.read()).decode().splitlines()
        ok = r.status == 200 and json.loads(lines[-1]).get("done") is True
        return "ok" if ok else f"http_{r.status}"

    async def embed(self, http: aiohttp.ClientSession, words: str) -> str:
        body = {"model": "echo", "input": words.split()}
        async with http.post(self.base + "/v1/embeddings", json=body) as r:
            await r.read()
        return "ok" if r.status == 200 else f"http_{r.status}"

    async def hangup(self, http: aiohttp.ClientSession, words: str) -> str:
        async with http.post(self.base + CHAT, json=chat(text=words + " " + words)) as r:
            if r.status != 200:
                return f"http_{r.status}"
            await r.content.readuntil(b"\n\n")
            r.close()  # the editor leaves mid-stream
        return "hangup"

    async def models(self, http: aiohttp.ClientSession, _: str) -> str:
        async with http.get(self.base + "/v1/models") as r:
            await r.read()
        return "ok" if r.status == 200 else f"http_{r.status}"

    # -- agents ----------------------------------------------------------------------------

    async def chaos(
        self, agents: list[tuple[AgentClient, asyncio.Task[str]]], drop_every: float
    ) -> None:
        """Knock an agent off every ``drop_every`` s; replace one every third time."""
        rnd = random.Random(7)
        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(drop_every):
                    await self.stopping.wait()
            except TimeoutError:
                pass
            if self.stopping.is_set():
                return
            index = rnd.randrange(len(agents))
            client, _ = agents[index]
            if self.drops % 3 == 2:
                await stop_agents([agents[index]])
                agents[index] = (await echo_agents(self.base, 1, **AGENT))[0]
                self.replacements += 1
            elif client._ws is not None:
                reset(client._ws)  # it resumes the same session with its token
            self.drops += 1


async def sample(
    http: aiohttp.ClientSession, soak: Soak, pid: int, started: float, last: list[float]
) -> dict[str, Any]:
    samples = await metrics(http, soak.base)
    now = time.monotonic()
    ok = soak.outcomes["ok"]
    hangups = soak.outcomes["hangup"]
    row = {
        "t_s": round(now - started, 1),
        "requests": soak.requests,
        "ok": ok,
        "errors": sum(soak.outcomes.values()) - ok - hangups,
        "hangups": hangups,
        "rate_per_s": round((soak.requests - last[1]) / max(1e-9, now - last[0]), 1),
        "rss_mb": round(rss_bytes(pid) / 2**20, 1),
        "fds": open_fds(pid),
        "tasks": await tasks(http, soak.base),
        "calls_in_flight": int(total(samples, "relay_calls_in_flight")),
        "agents_connected": int(total(samples, "agents_connected")),
        "agent_drops": soak.drops,
        "agent_replacements": soak.replacements,
    }
    last[:] = [now, soak.requests]
    return row


async def run(args: argparse.Namespace, handle: TextIO) -> dict[str, Any]:
    """Run the soak, writing a CSV row to ``handle`` per sample; returns the summary."""
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    env = {f"MCP_LOCAL_PROVIDER_{k.upper()}": str(v) for k, v in LOAD.items()}
    env["MCP_LOCAL_PROVIDER_MAX_CONCURRENCY"] = "16"
    env["MCP_LOCAL_PROVIDER_LOG_LEVEL"] = "info"
    env["MCP_LOCAL_PROVIDER_ACCESS_LOG"] = "false"
    daemon = DaemonProcess(workdir, free_port(), env, [])
    await daemon.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    soak = Soak(daemon.url, args.concurrency)
    agents = await echo_agents(daemon.url, args.agents, **AGENT)
    for client, _ in agents:
        client.backend.delay = 0.002  # type: ignore[attr-defined]
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        last = [started, 0.0]
        rows.append(await sample(http, soak, pid, started, last))
        editors = [asyncio.create_task(soak.editor(http, i)) for i in range(args.concurrency)]
        chaos = asyncio.create_task(soak.chaos(agents, args.drop_every))
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerow(rows[0])
        end = started + args.minutes * 60
        while time.monotonic() < end:
            await asyncio.sleep(min(args.interval, max(0.0, end - time.monotonic())))
            rows.append(await sample(http, soak, pid, started, last))
            writer.writerow(rows[-1])
            handle.flush()
            print(json.dumps(rows[-1]), flush=True)
        soak.stopping.set()
        await asyncio.gather(*editors, chaos)
        await asyncio.sleep(1.0)  # let the daemon settle before the closing sample
        rows.append(await sample(http, soak, pid, started, last))
        writer.writerow(rows[-1])
        samples = await metrics(http, daemon.url)
    await stop_agents(agents)
    code = await daemon.stop()
    audit = audit_requests(daemon.state_dir)
    summary = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "agents": args.agents,
        "requests": soak.requests,
        "by_kind": dict(soak.kinds),
        "outcomes": dict(soak.outcomes),
        "agent_drops": soak.drops,
        "agent_replacements": soak.replacements,
        "audit_request_lines": len(audit),
        "audit_outcomes": dict(Counter(line["outcome"] for line in audit)),
        "metrics_relay_calls": dict(
            (outcome, int(total(samples, "relay_calls_total", outcome=outcome)))
            for outcome in sorted({line["outcome"] for line in audit} | {"ok"})
        ),
        "rss_mb": {
            "first": rows[1]["rss_mb"] if len(rows) > 1 else rows[0]["rss_mb"],
            "max": max(r["rss_mb"] for r in rows),
            "last": rows[-1]["rss_mb"],
        },
        "fds": {
            "first": rows[0]["fds"],
            "max": max(r["fds"] for r in rows),
            "last": rows[-1]["fds"],
        },
        "tasks": {
            "first": rows[0]["tasks"],
            "max": max(r["tasks"] for r in rows),
            "last": rows[-1]["tasks"],
        },
        "exit_code": code,
    }
    return summary


PANELS = (
    ("rate_per_s", "requests/s"),
    ("rss_mb", "RSS (MiB)"),
    ("fds", "open fds"),
    ("tasks", "asyncio tasks"),
)


def plot(rows: list[dict[str, Any]]) -> str:
    """An SVG with one small chart per panel over time (no plotting library needed)."""
    width, height, pad = 640, 150, 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height * len(PANELS)}" font-family="sans-serif" font-size="11">'
    ]
    t_max = max(float(r["t_s"]) for r in rows) or 1.0
    for n, (key, title) in enumerate(PANELS):
        top = n * height
        values = [float(r[key]) for r in rows]
        low, high = min(0.0, *values), max(values) or 1.0
        points = " ".join(
            f"{pad + (width - 2 * pad) * float(r['t_s']) / t_max:.1f},"
            f"{top + height - pad / 2 - (height - pad) * (v - low) / (high - low):.1f}"
            for r, v in zip(rows, values, strict=True)
        )
        parts += [
            f'<text x="{pad}" y="{top + 14}">{title}: first {values[0]:g}, '
            f"max {max(values):g}, last {values[-1]:g} (over {t_max:.0f} s)</text>",
            f'<line x1="{pad}" y1="{top + height - pad / 2}" x2="{width - pad}" '
            f'y2="{top + height - pad / 2}" stroke="#999"/>',
            f'<text x="4" y="{top + pad}">{high:g}</text>',
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=10, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=16, help="editors sending at once")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--drop-every", type=float, default=20, help="seconds between faults")
    parser.add_argument("--out", default="soak-results", help="folder for the CSV and summary")
    args = parser.parse_args()
    # The agents run in this process: only their warnings, not a line per request.
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.csv", "w", newline="") as handle:
        summary = asyncio.run(run(args, handle))
    with open(out / "samples.csv", newline="") as handle:
        (out / "samples.svg").write_text(plot(list(csv.DictReader(handle))))
    text = json.dumps(summary, indent=2)
    (out / "summary.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
