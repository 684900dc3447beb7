"""Relay benchmark: request latency and stream throughput through a real daemon and agent.

Runs the daemon and an echo agent in this process on a loopback port and drives them with a
plain aiohttp client, so the figures are what the daemon and the agent socket add, not an SDK.

    python benchmarks/relay.py [--requests 500] [--words 2000]

It also times the autocomplete path, a streamed ``/api/generate`` with a suffix (NDJSON).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from mcp_local_provider.agent import AgentClient
from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.core.config import Config
from mcp_local_provider.http.app import create_app

TOKEN = "benchmark-token"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(requests: int, words: int, concurrency: int) -> None:
    state_dir = Path(tempfile.mkdtemp())
    # No rate limits: the benchmark sends far more than a session's requests per minute.
    config = Config(
        state_dir=state_dir,
        max_concurrency=max(4, concurrency),
        max_requests=10**9,
        requests_per_minute=0,
        tokens_per_minute=0,
    )
    app = create_app(config, bridge_token=TOKEN, approval="auto")
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    agent = AgentClient(
        f"ws://127.0.0.1:{port}/agent", TOKEN, EchoBackend(), max_concurrency=concurrency
    )
    agent_task = asyncio.create_task(agent.run())
    await agent.wait_ready()
    chat = url + "/v1/chat/completions"
    short = {"model": "echo", "messages": [{"role": "user", "content": "hello world"}]}
    long_text = " ".join(f"w{i}" for i in range(words))
    long = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": long_text}]}

    async with aiohttp.ClientSession() as http:
        for _ in range(20):  # warm up
            async with http.post(chat, json=short) as r:
                await r.read()

        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            async with http.post(chat, json=short) as r:
                await r.read()
            latencies.append((time.perf_counter() - started) * 1000)

        async def one() -> None:
            async with http.post(chat, json=short) as r:
                await r.read()

        started = time.perf_counter()
        for _ in range(requests // concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))
        parallel = (requests // concurrency) * concurrency / (time.perf_counter() - started)

        started = time.perf_counter()
        first = None
        events = 0
        async with http.post(chat, json=long) as r:
            async for line in r.content:
                if line.startswith(b"data: "):
                    events += 1
                    if first is None:
                        first = time.perf_counter() - started
        stream_seconds = time.perf_counter() - started

        # The autocomplete path: Ollama's /api/generate with a suffix, streamed as NDJSON.
        generate = {"model": "echo", "prompt": long_text, "suffix": "end", "raw": True}
        started = time.perf_counter()
        ndjson_first = None
        lines = 0
        async with http.post(url + "/api/generate", json=generate) as r:
            async for _ in r.content:
                lines += 1
                if ndjson_first is None:
                    ndjson_first = time.perf_counter() - started
        ndjson_seconds = time.perf_counter() - started

    print(f"sequential non-streaming chat, {requests} requests:")
    print(f"  p50 {statistics.median(latencies):.2f} ms   p99 {percentile(latencies, 0.99):.2f} ms")
    print(f"concurrent ({concurrency} at a time): {parallel:.0f} requests/s")
    print(f"one stream of {words} words: {events} SSE events in {stream_seconds * 1000:.0f} ms")
    print(f"  {events / stream_seconds:.0f} events/s, first event after {first * 1000:.2f} ms")
    print(f"one /api/generate stream: {lines} NDJSON lines in {ndjson_seconds * 1000:.0f} ms")
    print(f"  {lines / ndjson_seconds:.0f} lines/s, first line after {ndjson_first * 1000:.2f} ms")

    await agent.stop()
    await agent_task
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.words, args.concurrency))
