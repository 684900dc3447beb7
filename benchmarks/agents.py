"""``python -m benchmarks --sections agents``: what the CLI backends add to a request.

Claude Code, Codex and Gemini CLI (installed into tests/agent_clis, as the tests use them) run
against the mock model API (tests/model_api.py), which answers at once: the wall time of a
request is all the backend's and its CLI's. Per backend:

- ``cold``: one CLI start per request (``warm = false``: how every request ran before the
  warm pool);
- ``warm``: the backend started as the agent starts it, each request sent once its process
  is ready (an editor's pace: the pool refills between requests);
- each with and without one editor tool offered (the model answers in text);
- ``tool_loop``: a 10-step agent-mode loop end to end: the model calls the editor's tool ten
  times (each call handed over, the result sent back in the next request), then answers; for a
  backend that holds its turns, also in alternating rounds held and not held
  (``tool_result_timeout = 0``), medians of the rounds.

Requests are sent straight to the backend (the daemon's relay adds well under a millisecond,
see the other sections). Skipped, with the reason, when node or npm is missing.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.backends.cli import CliBackend
from mcp_local_provider.agent.events import Finish, InvokeRequest, ToolCallDelta
from tests import real_clis
from tests.model_api import ModelApi, Reply, model_api

NAMES = real_clis.NAMES
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PREFIX = {"claude": "mcp__editor__", "codex": "mcp__editor.", "gemini": "mcp_editor_"}
LOOP_STEPS = 10
#: Alternating rounds of the held and the not-held tool loop.
LOOP_ROUNDS = 3


def request(messages: list[dict[str, Any]], tools: bool) -> InvokeRequest:
    parameters: dict[str, Any] = {"stream": True}
    if tools:
        parameters["tools"] = [WEATHER]
    return InvokeRequest(
        id="bench", kind="chat", model="m", messages=messages, parameters=parameters
    )


async def answer(backend: CliBackend, req: InvokeRequest, ids: list[str] | None = None) -> Finish:
    """The answer's finish; the ids of its tool calls are added to ``ids``."""
    finish: Finish | None = None
    async for event in backend.serve(req):
        if isinstance(event, Finish):
            finish = event
        elif isinstance(event, ToolCallDelta) and event.id and ids is not None:
            ids.append(event.id)
    if finish is None:
        raise RuntimeError(f"{backend.name}: no finish")
    return finish


async def ready(backend: CliBackend, limit: float = 60) -> None:
    """Wait (outside the measured time) until the pool has a process ready, as an idle agent's
    has."""
    end = time.monotonic() + limit
    while (status := backend.pool_status()) is not None and (
        status["starting"] or not status["ready"]
    ):
        if time.monotonic() > end:
            raise RuntimeError(f"{backend.name}: no process ready within {limit} s")
        await asyncio.sleep(0.01)


async def timed(backend: CliBackend, req: InvokeRequest) -> float:
    await ready(backend)
    started = time.perf_counter()
    await answer(backend, req)
    return time.perf_counter() - started


def figures(samples: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "min_ms": round(min(samples) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
        "n": len(samples),
    }


async def backend_for(
    name: str, api: ModelApi, home: Path, warm: bool, **fields: Any
) -> CliBackend:
    settings = real_clis.settings(name, api, home, warm=warm, **fields)
    backend = create(name, settings=settings)
    assert isinstance(backend, CliBackend)
    await backend.start()
    return backend


async def measure_backend(name: str, home: Path, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hello = [{"role": "user", "content": "Say hello."}]
    for mode in ("cold", "warm"):
        async with model_api() as api:
            backend = await backend_for(name, api, home / mode, warm=mode == "warm")
            try:
                for tools in (False, True):
                    req = request(hello, tools)
                    await timed(backend, req)  # not counted: first start of caches
                    samples = [await timed(backend, req) for _ in range(count)]
                    out[f"{mode}{'_tools' if tools else ''}"] = figures(samples)
                out[f"{mode}_tool_loop"] = await tool_loop(name, backend, api)
            finally:
                await backend.close()
    if getattr(create(name), "holds_turns", False):
        out |= await held_and_unheld(name, home)
    return out


async def held_and_unheld(name: str, home: Path) -> dict[str, Any]:
    """The warm loop with its turns held, and with each result served by a fresh process
    (``tool_result_timeout = 0``), in alternating rounds so that both see the same machine."""
    loops: dict[str, list[dict[str, Any]]] = {"held_tool_loop": [], "unheld_tool_loop": []}
    for round_ in range(LOOP_ROUNDS):
        for key, wait in (("held_tool_loop", 120), ("unheld_tool_loop", 0)):
            async with model_api() as api:
                backend = await backend_for(
                    name, api, home / f"{key}-{round_}", warm=True, tool_result_timeout=wait
                )
                try:
                    loops[key].append(await tool_loop(name, backend, api))
                finally:
                    await backend.close()
    return {
        key: {
            "per_round_trip_ms": statistics.median(r["per_round_trip_ms"] for r in runs),
            "per_round_trip_ms_all": [r["per_round_trip_ms"] for r in runs],
            "total_ms": statistics.median(r["total_ms"] for r in runs),
        }
        for key, runs in loops.items()
    }


async def tool_loop(name: str, backend: CliBackend, api: ModelApi) -> dict[str, Any]:
    """Ten tool round trips then the answer, each step a request with the history so far. Each
    call asks for another city: Gemini CLI ends a turn that repeats one call five times."""
    cities = [f"City {step}" for step in range(LOOP_STEPS)]
    calls = [Reply(tool_call=(PREFIX[name] + "get_weather", {"city": c})) for c in cities]
    api.script(*calls, Reply.text("Sunny all week."))
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather, ten times?"}]
    started = time.perf_counter()
    await ready(backend)
    for step in range(LOOP_STEPS + 1):  # each request sent at once, as an editor does
        ids: list[str] = []
        finish = await answer(backend, request(messages, tools=True), ids)
        if step == LOOP_STEPS:
            break
        if finish.reason != "tool_calls":
            raise RuntimeError(f"{name}: step {step} ended with {finish.reason}")
        call_id = ids[0]  # the editor answers the call it was given
        messages += [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": json.dumps({"city": cities[step]}),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "sunny, 24 C"},
        ]
    total = time.perf_counter() - started
    return {"total_ms": round(total * 1000), "per_round_trip_ms": round(total * 1000 / 11)}


async def measure_agents(count: int) -> dict[str, Any]:
    reason = await asyncio.to_thread(real_clis.install)
    if reason is not None:
        return {"skipped": reason}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mcp-local-provider-bench-agents-") as root:
        for name in NAMES:
            results[name] = await measure_backend(name, Path(root) / name, count)
    return results


def table(results: dict[str, Any]) -> str:
    if "skipped" in results:
        return f"agents: skipped ({results['skipped']})"
    rows = [
        "| backend | cold | cold + tool | warm | warm + tool "
        "| 10-step tool loop, per round trip: cold / warm |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in results.items():
        cold, warm = f["cold_tool_loop"], f["warm_tool_loop"]
        loop = f"{cold['per_round_trip_ms']} / {warm['per_round_trip_ms']} ms"
        if "unheld_tool_loop" in f:
            held, unheld = f["held_tool_loop"], f["unheld_tool_loop"]
            loop += (
                f" (warm, {LOOP_ROUNDS} alternating rounds: held {held['per_round_trip_ms']}, "
                f"not held {unheld['per_round_trip_ms']} ms)"
            )
        rows.append(
            f"| {name} | {f['cold']['p50_ms']} | {f['cold_tools']['p50_ms']} | "
            f"{f['warm']['p50_ms']} | {f['warm_tools']['p50_ms']} | {loop} |"
        )
    return "added ms per request, p50\n" + "\n".join(rows)


def main(count: int = 5, out: Path | None = None) -> dict[str, Any]:
    results = asyncio.run(measure_agents(count))
    print(table(results))
    if out is not None:
        out.write_text(json.dumps({"agents": results}, indent=2) + "\n")
    return results
