"""Driving and measuring a live daemon: agents of the library and raw WebSocket peers, editors
sending streams, and readings of the daemon's process (RSS, open fds, asyncio tasks, metrics).

Shared by the fault tests and the soak run (``python -m tests.faults.soak``)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mcp_local_provider.agent import AgentClient
from mcp_local_provider.agent.backends.echo import EchoBackend
from tests.fakes import BRIDGE_TOKEN, RawAgent, wait_for

P = "mcp_local_provider_"
#: Settings for a daemon under load: many agents at once, many requests each.
LOAD = {
    "max_pending_per_token": 64,
    "max_pending": 64,
    "max_connections": 4096,
    "max_in_flight": 4096,
    "requests_per_minute": 0,
    "max_queued_requests": 1000,
}
CHAT = "/v1/chat/completions"


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/agent"


def chat(model: str = "echo", text: str = "hi", stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}


# -- agents ----------------------------------------------------------------------------------


async def echo_agents(
    base: str, count: int, *, models: Iterable[str] = ("echo",), **options: Any
) -> list[tuple[AgentClient, asyncio.Task[str]]]:
    """``count`` library agents with echo backends, each granted its own session."""
    started = []
    for i in range(count):
        options.setdefault("backoff_initial", 0.05)
        client = AgentClient(
            ws_url(base),
            BRIDGE_TOKEN,
            EchoBackend(list(models)),
            agent_id=f"echo-{i}",
            **options,
        )
        started.append((client, asyncio.create_task(client.run())))
    for client, task in started:
        await wait_for(client.wait_ready(), task, timeout=30)
    return started


async def stop_agents(agents: list[tuple[AgentClient, asyncio.Task[str]]]) -> None:
    for client, task in agents:
        await client.stop()
        task.cancel()
    await asyncio.gather(*(task for _, task in agents), return_exceptions=True)


async def raw_agent_at(
    http: aiohttp.ClientSession, base: str, model: str = "raw", **hello: Any
) -> tuple[RawAgent, dict[str, Any]]:
    """A hand-driven agent, granted (the daemon must auto-approve): (agent, granted frame)."""
    ws = await http.ws_connect(ws_url(base), headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    agent = RawAgent(ws)
    frame = await agent.hello(models=[model], **hello)
    if frame["type"] == "session_pending":
        frame = await agent.recv()
    assert frame["type"] == "session_granted", frame
    return agent, frame


async def next_of(agent: RawAgent, kind: str, timeout: float = 5) -> dict[str, Any]:
    """The next frame of type ``kind``, skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await agent.recv(timeout=timeout)
            if frame["type"] == kind:
                return frame


def chunk(request_id: str, text: str, index: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {
        "type": "model_stream_chunk",
        "id": request_id,
        "chunk_index": index,
        "delta": {"content": text} if text else {},
        "finish_reason": finish,
    }


def reset(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop the connection with a TCP reset: no close frame, no FIN."""
    transport = ws._conn.transport if ws._conn is not None else None
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# -- editors ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """How the requests an editor load sent ended."""

    sent: int = 0
    completed: int = 0
    errored: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str) -> None:
        self.statuses[outcome] += 1
        if outcome == "ok":
            self.completed += 1
        else:
            self.errored += 1


async def stream_once(
    http: aiohttp.ClientSession, base: str, body: dict[str, Any], tally: Tally, timeout: float = 60
) -> str:
    """One streaming chat: ``ok`` (ended with ``[DONE]``), ``http_<status>``, ``error_event``
    (an in-band error), ``cut`` (the stream ended without either) or ``conn_error``."""
    tally.sent += 1
    outcome = "conn_error"
    try:
        async with asyncio.timeout(timeout):
            async with http.post(base + CHAT, json=body) as response:
                if response.status != 200:
                    outcome = f"http_{response.status}"
                    await response.read()
                else:
                    text = (await response.read()).decode()
                    if '"error"' in text:
                        outcome = "error_event"
                    elif text.rstrip().endswith("data: [DONE]"):
                        outcome = "ok"
                    else:
                        outcome = "cut"
    except TimeoutError:
        outcome = "timeout"
    except aiohttp.ClientPayloadError:
        outcome = "cut"
    except (aiohttp.ClientError, ConnectionError):
        outcome = "conn_error"
    tally.add(outcome)
    return outcome


# -- the daemon's process --------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def tasks(http: aiohttp.ClientSession, base: str) -> int:
    """asyncio tasks alive in the daemon (one of them answers this very request)."""
    async with http.get(base + "/health/deep") as response:
        body = await response.json()
    return int(body["components"]["event_loop"]["tasks"])


async def metrics(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, str], float]:
    """Every sample of ``/metrics`` by (name without prefix, sorted labels as JSON)."""
    async with http.get(base + "/metrics") as response:
        text = await response.text()
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix(P)
            samples[(name, json.dumps(sample.labels, sort_keys=True))] = sample.value
    return samples


def total(samples: dict[tuple[str, str], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    found = 0.0
    for (sample, raw), value in samples.items():
        if sample != name:
            continue
        have = json.loads(raw)
        if all(have.get(k) == v for k, v in labels.items()):
            found += value
    return found


def audit_requests(state_dir: Path) -> list[dict[str, Any]]:
    """The request lines of the daemon's audit log."""
    lines: list[dict[str, Any]] = []
    for path in sorted(state_dir.glob("audit.jsonl*")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("event") == "request":
                lines.append(entry)
    return lines


async def start_stream(
    http: aiohttp.ClientSession, base: str, agent: RawAgent, text: str = "partial"
) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
    """A streaming chat to ``agent`` that has sent its first chunk: (invoke, response)."""
    request = asyncio.create_task(http.post(base + CHAT, json=chat("raw", text)))
    invoke = await next_of(agent, "model_invoke")
    await agent.send(chunk(invoke["id"], text))
    response = await request
    assert response.status == 200
    await response.content.readuntil(b"\n\n")
    return invoke, response


async def rest_of(response: aiohttp.ClientResponse, timeout: float = 5) -> list[str]:
    """The remaining SSE events of ``response``, read to its end."""
    async with asyncio.timeout(timeout):
        text = (await response.read()).decode()
    response.release()
    return [block for block in text.split("\n\n") if block]
