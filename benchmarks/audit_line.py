"""What one audit line costs, and where: ``python benchmarks/audit_line.py [DIR]``.

Compares writing a line on the event loop (render, digest and ``os.write`` inline) with what
the daemon does (hand the record to the writer thread), and times the writer thread itself.
DIR defaults to a temporary directory; pass a directory on the disk the log will live on.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp_local_provider.policy.audit import AuditLog, render
from mcp_local_provider.policy.digest import PromptDigester

RECORD: dict[str, Any] = {
    "request_id": "req-0123456789abcdef", "session_id": "sess-0123456789abcdef",
    "agent_id": "claude-code-laptop", "route": "POST /v1/chat/completions", "model": "claude",
    "kind": "chat", "stream": True, "status": 200, "outcome": "ok", "error": None,
    "duration_ms": 812.4, "first_chunk_ms": 95.1, "bytes_in": 6120, "bytes_out": 20480,
    "frames": 120, "prompt_tokens": 1500, "completion_tokens": 300, "total_tokens": 1800,
    "client_key": None, "peer": "127.0.0.1",
}  # fmt: skip


def payload(chars: int) -> dict[str, Any]:
    return {"kind": "chat", "messages": [{"role": "user", "content": "x" * chars}]}


def per_call_us(samples: list[float]) -> str:
    samples.sort()
    median = statistics.median(samples) * 1e6
    p99 = samples[int(len(samples) * 0.99)] * 1e6
    return f"median {median:7.1f} us   p99 {p99:7.1f} us"


def inline(directory: Path, digester: PromptDigester, chars: int, n: int) -> list[float]:
    """The alternative: everything on the loop, one os.write per line."""
    fd = os.open(directory / "inline.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    body = payload(chars)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        record = dict(RECORD, ts=time.time(), prompt_digest=digester.digest(body))
        os.write(fd, render(record))
        samples.append(time.perf_counter() - start)
    os.close(fd)
    return samples


async def threaded(
    directory: Path, digester: PromptDigester, chars: int, n: int
) -> tuple[list[float], float]:
    """What the daemon does: the loop only queues; the thread digests, renders and writes."""
    audit = AuditLog(directory / "audit.jsonl", digester, max_bytes=1 << 30, backups=1,
                     retry_interval=1.0)  # fmt: skip
    audit.start()
    body = payload(chars)
    samples = []
    began = time.perf_counter()
    for _ in range(n):
        start = time.perf_counter()
        audit.request(dict(RECORD), body)
        samples.append(time.perf_counter() - start)
    await audit.drain()
    elapsed = time.perf_counter() - began
    await audit.stop()
    return samples, n / elapsed


async def main() -> None:
    digester = PromptDigester(os.urandom(32))
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as tmp:
        directory = Path(tmp)
        for chars, n in ((4_000, 20_000), (1_000_000, 200)):
            print(f"prompt of {chars} characters, {n} lines")
            inline_samples = inline(directory, digester, chars, n)
            print(f"  on the loop, inline write : {per_call_us(inline_samples)}")
            samples, rate = await threaded(directory, digester, chars, n)
            print(f"  on the loop, queued       : {per_call_us(samples)}")
            print(f"  writer thread throughput  : {rate:,.0f} lines/s")


if __name__ == "__main__":
    asyncio.run(main())
