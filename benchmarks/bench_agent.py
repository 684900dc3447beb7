"""The bench agent: a minimal agent speaking the WebSocket agent protocol v1 directly.

It does no work of its own (its frames are built and read by the protocol module, as every
agent's are): a request that is not streamed gets its whole answer in one
``model_result``; a streamed one gets the spec's chunks at once or at its fixed pace. Several
sessions may be held by one process (to measure how the daemon's cost grows with them).

    python -m benchmarks.bench_agent URL TOKEN_FILE [--model NAME] [--sessions N]

Prints ``ready N`` on stdout once all N sessions are granted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from functools import partial
from pathlib import Path

import aiohttp

from mcp_local_provider.core.protocol import (
    InvokePayload,
    ModelCancel,
    ModelInvoke,
    SessionGranted,
    SessionPending,
    encode,
    error_result_frame,
    hello_frame,
    parse_daemon_frame,
    result_frame,
    stream_chunk_frame,
)

from .answers import Spec, spec_of_messages


def _chunk_frame(request_id: str, index: int, text: str, finish: str | None) -> str:
    return encode(stream_chunk_frame(request_id, index, {"content": text}, finish))


def _result_frame(request_id: str, spec: Spec) -> str:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": spec.text()},
        "finish_reason": "stop",
    }
    usage = {
        "prompt_tokens": 8,
        "completion_tokens": spec.chunks,
        "total_tokens": 8 + spec.chunks,
    }
    return encode(result_frame(request_id, {"choices": [choice], "usage": usage}))


def _streamed(payload: InvokePayload) -> bool:
    return bool((payload.get("parameters") or {}).get("stream"))


class Session:
    """One agent session on its own WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def serve(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = parse_daemon_frame(msg.data)
            if isinstance(frame, ModelInvoke):
                if not _streamed(frame.payload):
                    # One frame, sent at once from here: no task (and no loop turn) of its own.
                    await self.answer(frame.id, frame.payload)
                    continue
                task = asyncio.create_task(self.answer(frame.id, frame.payload))
                self.tasks[frame.id] = task
                task.add_done_callback(partial(self.forget, frame.id))
            elif isinstance(frame, ModelCancel):
                running = self.tasks.get(frame.id)
                if running is not None:
                    running.cancel()

    def forget(self, request_id: str, _: asyncio.Task[None]) -> None:
        self.tasks.pop(request_id, None)

    async def answer(self, request_id: str, payload: InvokePayload) -> None:
        try:
            spec = spec_of_messages(payload.get("messages"))
        except ValueError as exc:
            await self.ws.send_str(encode(error_result_frame(request_id, "bad_request", str(exc))))
            return
        if not _streamed(payload):
            await self.ws.send_str(_result_frame(request_id, spec))
            return
        pace = spec.pace_ms / 1000
        started = time.monotonic()
        last = spec.chunks - 1
        for index in range(spec.chunks):
            if pace and index:
                await asyncio.sleep(max(0.0, started + index * pace - time.monotonic()))
            finish = "stop" if index == last else None
            await self.ws.send_str(_chunk_frame(request_id, index, spec.chunk(index), finish))


async def open_session(
    http: aiohttp.ClientSession, url: str, token: str, model: str, agent_id: str, concurrency: int
) -> Session:
    ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, heartbeat=None)
    hello = hello_frame(
        agent_id=agent_id,
        label="bench agent",
        models=[{"name": model}],
        requested_scopes=["inference"],
        ttl_seconds=None,
        max_concurrency=concurrency,
        reason="benchmark",
        session_token=None,
    )
    await ws.send_str(encode(hello))
    async for msg in ws:
        frame = parse_daemon_frame(msg.data)
        if isinstance(frame, SessionGranted):
            return Session(ws)
        if not isinstance(frame, SessionPending):
            raise RuntimeError(f"the daemon did not grant a session: {frame}")
    raise RuntimeError(f"the daemon closed the socket ({ws.close_code}) before granting")


async def run(url: str, token: str, model: str, sessions: int, concurrency: int) -> None:
    # No connection limit: each session holds one connection for as long as it lives.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        opened: list[Session] = []
        gate = asyncio.Semaphore(8)  # stay under the daemon's limit on pending approvals

        async def one(index: int) -> None:
            async with gate:
                opened.append(
                    await open_session(http, url, token, model, f"bench-{index}", concurrency)
                )

        await asyncio.gather(*(one(i) for i in range(sessions)))
        print(f"ready {len(opened)}", flush=True)
        await asyncio.gather(*(s.serve() for s in opened))


def main() -> None:
    parser = argparse.ArgumentParser(description="the benchmark's protocol agent")
    parser.add_argument("url", help="the daemon's agent socket, ws://127.0.0.1:PORT/agent")
    parser.add_argument("token_file", type=Path, help="the file holding the bridge token")
    parser.add_argument("--model", default="bench")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--max-concurrency", type=int, default=4096)
    args = parser.parse_args()
    token = args.token_file.read_text().strip()
    asyncio.run(run(args.url, token, args.model, args.sessions, args.max_concurrency))


if __name__ == "__main__":
    main()
