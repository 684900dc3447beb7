"""The benchmark harness runs end to end (its smoke plan) and refuses wrong answers."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from benchmarks.answers import Spec, StreamCheck, WrongAnswer, check_whole, completion
from benchmarks.litellm_arm import LiteLLM, LiteLLMMissing
from benchmarks.load import ArmFailed, latencies
from benchmarks.processes import Cores, free_port
from benchmarks.report import check_goals
from benchmarks.run import ANSWER, Bench, find_litellm

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run_measures_every_arm_and_checks_every_answer(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    for arm in ("plain", "relay", "openai"):
        assert results["verified_answers"][arm] > 0
        assert results["throughput"][arm]["per_second"] > 0
    assert set(results["latency"]["relay"]) >= {"p50_ms", "p99_ms", "added_p50_ms"}
    for arm in ("plain", "relay", "openai"):
        assert set(results["paced"]["4"][arm]) >= {"gap_p99_ms", "first_chunk_p99_ms"}
    assert "goals:" in done.stdout
    verdicts = {goal["verdict"].partition(":")[0] for goal in results["goals"]}
    assert verdicts <= {"met", "missed", "not measured", "unreliable"}


def throughput_run(tmp_path: Path, load_generator: str) -> dict[str, Any]:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--sections", "throughput",
         "--load-generator", load_generator, "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads(out.read_text())
    return results


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_drives_the_throughput_runs_with_answers_sampled(tmp_path: Path) -> None:
    results = throughput_run(tmp_path, "wrk")
    for arm in ("plain", "relay", "openai"):
        row = results["throughput"][arm]
        assert row["driver"] == "wrk"
        assert row["per_second"] > 0 and row["cpu_us_per_request"] > 0
        # Answers checked through the Python client before and after each wrk run.
        assert results["verified_answers"][arm] >= 2 * 3
    assert results["throughput"]["plain"]["cpu_ratio_to_plain"] == 1.0


def test_load_processes_drive_the_throughput_runs_without_wrk(tmp_path: Path) -> None:
    results = throughput_run(tmp_path, "processes")
    for arm in ("plain", "relay", "openai"):
        row = results["throughput"][arm]
        assert row["driver"] == "4 load processes"
        assert row["per_second"] > 0 and row["busy_share"] > 0


def test_a_load_bound_plain_figure_makes_the_throughput_goals_unreliable() -> None:
    results: dict[str, Any] = {
        "pace_ms": 20.0,
        "throughput": {
            "plain": {"per_second": 1000, "busy_share": 0.5, "driver": "wrk",
                      "cpu_ratio_to_plain": 1.0},
            "relay": {"per_second": 500, "busy_share": 1.0, "driver": "wrk",
                      "cpu_ratio_to_plain": 3.0},
        },
    }  # fmt: skip
    verdicts = {g["goal"]: g["verdict"] for g in check_goals(results)}
    assert verdicts["relay: throughput at 32 connections / plain"].startswith("unreliable")
    results["throughput"]["plain"]["busy_share"] = 0.95
    verdicts = {g["goal"]: g["verdict"] for g in check_goals(results)}
    assert verdicts["relay: throughput at 32 connections / plain"] == "met"
    assert verdicts["relay: CPU per request / plain's"] == "met"


def test_a_whole_answer_with_other_text_is_refused() -> None:
    spec = Spec(chunks=4, size=8)
    check_whole(json.dumps(completion("bench", spec)).encode(), spec)
    with pytest.raises(WrongAnswer):
        check_whole(json.dumps(completion("bench", Spec(chunks=3, size=8))).encode(), spec)


def test_a_stream_without_done_or_with_other_text_is_refused() -> None:
    spec = Spec(chunks=2, size=8)

    def stream(*texts: str, done: bool = True) -> StreamCheck:
        check = StreamCheck(spec, time.perf_counter())
        for text in texts:
            chunk = {"choices": [{"delta": {"content": text}, "finish_reason": None}]}
            check.read(b"data: " + json.dumps(chunk).encode() + b"\n\n", time.perf_counter())
        last = {"choices": [{"delta": {}, "finish_reason": "stop"}]}
        check.read(b"data: " + json.dumps(last).encode() + b"\n\n", time.perf_counter())
        if done:
            check.read(b"data: [DONE]\n\n", time.perf_counter())
        return check

    stream(spec.chunk(0), spec.chunk(1)).verify()
    with pytest.raises(WrongAnswer):
        stream(spec.chunk(0), spec.chunk(1), done=False).verify()
    with pytest.raises(WrongAnswer):
        stream(spec.chunk(0), "<9>xxxxx").verify()


def sse(*chunks: object) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


def test_litellm_shaped_answers_pass_on_their_text_alone() -> None:
    """LiteLLM adds fields of its own (provider_specific_fields, the role in the first delta,
    a usage chunk with no choices); only the text relayed is checked."""
    spec = Spec(chunks=2, size=8)
    whole = {"id": "chatcmpl-bench", "object": "chat.completion", "model": "openai/bench",
             "choices": [{"finish_reason": "stop", "index": 0, "provider_specific_fields": {},
                          "message": {"content": spec.text(), "role": "assistant"}}],
             "usage": {"completion_tokens": 2, "prompt_tokens": 8, "total_tokens": 10}}  # fmt: skip
    check_whole(json.dumps(whole).encode(), spec)

    def stream(second: str) -> StreamCheck:
        check = StreamCheck(spec, time.perf_counter())
        data = sse(
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": spec.chunk(0)}}]},
            {"choices": [{"index": 0, "delta": {"content": second},
                          "provider_specific_fields": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 8}},
        )  # fmt: skip
        check.read(data + b"data: [DONE]\n\n", time.perf_counter())
        return check

    stream(spec.chunk(1)).verify()
    with pytest.raises(WrongAnswer):
        stream("<9>xxxxx").verify()


async def test_a_failing_litellm_arm_is_noted_and_left_out_but_another_arm_ends_the_run(
    tmp_path: Path,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with AsyncExitStack() as stack:
        bench = Bench(stack, tmp_path, Cores(None, None), None)
        litellm, relay = bench.arm("litellm", nobody, "m", ()), bench.arm("relay", nobody, "m", ())
        for arm in bench.arms:
            await arm.open()
            stack.push_async_callback(arm.close)
        assert await bench.attempt(litellm, "latency", latencies([litellm], ANSWER, 1)) is None
        assert bench.notes[0].startswith("LiteLLM arm: latency failed (litellm: ")
        assert bench.live(bench.arms) == [relay]
        # Left out from then on: not even tried again.
        assert await bench.attempt(litellm, "stream", latencies([litellm], ANSWER, 1)) is None
        assert len(bench.notes) == 1
        with pytest.raises(ArmFailed, match=r"^relay: "):
            await bench.attempt(relay, "latency", latencies([relay], ANSWER, 1))


def test_a_litellm_interpreter_that_cannot_run_the_proxy_stops_the_run_before_it_starts(
    tmp_path: Path,
) -> None:
    with pytest.raises(LiteLLMMissing, match="cannot be run"):
        LiteLLM.find(str(tmp_path / "no-python"))
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out),
         "--litellm", str(tmp_path / "no-python")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "--litellm:" in done.stderr
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("litellm") is not None, reason="litellm installed")
def test_without_litellm_the_arm_is_skipped_with_a_note_saying_how_to_add_it() -> None:
    litellm, note = find_litellm(None)
    assert litellm is None
    assert note is not None and "--litellm" in note and "litellm[proxy]" in note
