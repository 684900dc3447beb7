"""``mcp-local-provider agent --backend NAME --check``: one tiny prompt through a backend, end to
end and without the daemon, reporting each step, so a user can see that a CLI is installed and
signed in (or an upstream reachable) before connecting it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mcp_local_provider.agent.backend import Backend, BackendError
from mcp_local_provider.agent.backends.cli import CliBackend
from mcp_local_provider.agent.emulation import closing
from mcp_local_provider.agent.events import (
    Finish,
    InvokeRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from mcp_local_provider.core.protocol import WarmStatus

CHECK_PROMPT = "Reply with the single word: pong"


def _describe_usage(usage: dict[str, object] | None) -> str:
    if not usage:
        return "no usage"
    how = "estimated" if usage.get("estimated") else "reported"
    return (
        f"{usage.get('prompt_tokens')} prompt + {usage.get('completion_tokens')} completion "
        f"tokens ({how})"
    )


async def _settled_pool(backend: CliBackend, limit: float = 30.0) -> WarmStatus | None:
    """The warm pool's state once the process for the next request has started (or after
    ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while (pool := backend.pool_status()) is not None and pool["starting"]:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return pool


async def check(backend: Backend, say: Callable[[str], None]) -> bool:
    """Run the check, printing one line per step with ``say``; True if the backend works."""
    say(f"checking the {backend.name} backend")
    try:
        await backend.start()
    except BackendError as exc:
        say(f"  FAIL  start: {exc.message}")
        return False
    path = getattr(backend, "path", None)
    if path:
        say(f"  ok    found {path}")
    names = [m.name for m in backend.models()]
    if not names:
        say("  FAIL  the backend advertises no models")
        return False
    say(f"  ok    models: {', '.join(names)}")
    request = InvokeRequest(
        id="check",
        kind="chat",
        model=names[0],
        messages=[{"role": "user", "content": CHECK_PROMPT}],
        parameters={"max_tokens": 64, "stream": True},
    )
    started = time.monotonic()
    first: float | None = None
    text: list[str] = []
    finish: Finish | None = None
    extras = 0
    try:
        async with closing(backend.serve(request)) as events:
            async for event in events:
                if isinstance(event, TextDelta) and event.text:
                    first = first if first is not None else time.monotonic() - started
                    text.append(event.text)
                elif isinstance(event, ReasoningDelta | ToolCallDelta):
                    extras += 1
                elif isinstance(event, Finish):
                    finish = event
                    break
    except BackendError as exc:
        say(f"  FAIL  prompt: {exc.message} ({exc.code})")
        return False
    took = time.monotonic() - started
    answer = "".join(text).strip()
    if not answer:
        say(f"  FAIL  prompt: no text came back in {took:.1f} s")
        return False
    shown = answer if len(answer) <= 60 else answer[:57] + "..."
    say(f"  ok    answered in {took:.1f} s (first text after {first or 0:.1f} s): {shown!r}")
    if finish is not None:
        say(f"  ok    finish: {finish.reason}; {_describe_usage(finish.usage)}")
    if extras:
        say(f"  ok    also {extras} reasoning or tool-call events")
    pool = await _settled_pool(backend) if isinstance(backend, CliBackend) else None
    if pool is not None:
        say(
            f"  ok    warm processes: {pool['ready']} ready, {pool['starting']} starting, "
            f"{pool['busy']} busy (the next request does not wait for a start-up)"
        )
    skipped = getattr(backend, "malformed_lines", 0)
    if skipped:
        say(f"  warn  {skipped} malformed output lines were skipped")
    say(f"the {backend.name} backend works")
    return True
