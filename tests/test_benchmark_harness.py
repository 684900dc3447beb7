"""The benchmark harness runs end to end (its smoke plan) and refuses wrong answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.answers import Spec, StreamCheck, WrongAnswer, check_whole, completion

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
    assert "goals:" in done.stdout
    verdicts = {goal["verdict"].partition(":")[0] for goal in results["goals"]}
    assert verdicts <= {"met", "missed", "not measured", "unreliable"}


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
