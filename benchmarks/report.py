"""Figures from samples, the goals they are held to, and the table printed at the end."""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]
#: A server below this share of one core while driven was held back by its load generator.
BUSY_SHARE = 0.9


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def latency_figures(samples: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": ms(statistics.median(samples)), "p99_ms": ms(percentile(samples, 0.99))}


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    #: The figure from the results, or None when the run did not measure it.
    value: Callable[[Results], float | None]
    met: Callable[[float], bool]
    unit: str = ""
    #: Why the figure cannot be trusted in this run, if it cannot.
    doubt: Callable[[Results], str | None] = lambda _: None


def _get(results: Results, *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ratio(results: Results, arm: str, base: str) -> float | None:
    a = _get(results, "throughput", arm, "per_second")
    b = _get(results, "throughput", base, "per_second")
    return None if a is None or b is None else round(float(a / b), 3)


def _session_growth(results: Results) -> float | None:
    sweep = results.get("sessions") or {}
    if len(sweep) < 2:
        return None
    counts = sorted(sweep, key=int)
    return round(float(sweep[counts[-1]]["added_p50_ms"] - sweep[counts[0]]["added_p50_ms"]), 3)


def _client_behind(results: Results) -> str | None:
    """The plain arm's own gaps show whether the load generator kept the pace."""
    plain = _get(results, "paced", "1000", "plain", "gap_p99_ms")
    if plain is not None and plain > 1.5 * results["pace_ms"]:
        return f"the load generator fell behind (plain gap p99 {plain} ms)"
    return None


def _load_bound(results: Results) -> str | None:
    """A plain server short of a busy core was held back by the load generator."""
    plain = _get(results, "throughput", "plain")
    if plain is not None and plain.get("busy_share", 1.0) < BUSY_SHARE:
        return (f"the load generator ({plain.get('driver')}) limited the plain server "
                f"({plain['busy_share']:.0%} of its core)")  # fmt: skip
    return None


def _paced(results: Results, key: str) -> float | None:
    value = _get(results, "paced", "1000", "relay", key)
    return None if value is None else float(value)


GOALS = (
    Goal("relay: added latency p50, 1 client", "<= 0.25 ms",
         lambda r: _get(r, "latency", "relay", "added_p50_ms"), lambda v: v <= 0.25, " ms"),
    Goal("relay: added latency p99, 1 client", "<= 0.5 ms",
         lambda r: _get(r, "latency", "relay", "added_p99_ms"), lambda v: v <= 0.5, " ms"),
    Goal("relay: throughput at 32 connections / plain", ">= 0.3x",
         lambda r: _ratio(r, "relay", "plain"), lambda v: v >= 0.3, "x", _load_bound),
    Goal("relay: CPU per request / plain's", "<= 4x",
         lambda r: _get(r, "throughput", "relay", "cpu_ratio_to_plain"), lambda v: v <= 4, "x",
         _load_bound),
    Goal("relay: added time to first token", "<= 0.3 ms",
         lambda r: _get(r, "stream", "relay", "added_first_chunk_ms"), lambda v: v <= 0.3, " ms"),
    Goal("openai backend: added latency p50, 1 client", "<= 1 ms",
         lambda r: _get(r, "latency", "openai", "added_p50_ms"), lambda v: v <= 1.0, " ms"),
    Goal("openai backend: throughput / LiteLLM", ">= 20x",
         lambda r: _ratio(r, "openai", "litellm"), lambda v: v >= 20, "x"),
    Goal("1000 paced streams: added gap p99", "<= 1 ms",
         lambda r: _paced(r, "added_gap_p99_ms"), lambda v: v <= 1.0, " ms", _client_behind),
    Goal("1000 paced streams: daemon RSS per open stream", "<= 50 KiB",
         lambda r: _paced(r, "rss_per_stream_kib"), lambda v: v <= 50, " KiB"),
    Goal("sessions: added p50 at most sessions minus at 1", "<= 0.05 ms",
         _session_growth, lambda v: v <= 0.05, " ms"),
)  # fmt: skip


def check_goals(results: Results) -> list[dict[str, Any]]:
    checked = []
    for goal in GOALS:
        value = goal.value(results)
        doubt = goal.doubt(results)
        if value is None:
            verdict = "not measured"
        elif doubt is not None:
            verdict = f"unreliable: {doubt}"
        else:
            verdict = "met" if goal.met(value) else "missed"
        checked.append({"goal": goal.name, "target": goal.target, "value": value,
                        "unit": goal.unit, "verdict": verdict})  # fmt: skip
    return checked


def _row(cells: Sequence[object], widths: Sequence[int]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True)))  # fmt: skip


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: Results) -> str:
    arms: list[str] = results["arms"]
    out: list[str] = []
    widths = [52, *([12] * len(arms))]
    out.append(_row(["", *arms], widths))

    def line(label: str, section: str, key: str, digits: int = 2) -> None:
        out.append(_row([label, *(_fmt(_get(results, section, a, key), digits) for a in arms)],
                        widths))  # fmt: skip

    line("non-stream 1 client p50 (ms)", "latency", "p50_ms", 3)
    line("non-stream 1 client p99 (ms)", "latency", "p99_ms", 3)
    line("  added p50 (ms)", "latency", "added_p50_ms", 3)
    line("  added p99 (ms)", "latency", "added_p99_ms", 3)
    driver = _get(results, "throughput", "plain", "driver") or "-"
    line(f"throughput, 32 connections (req/s, {driver})", "throughput", "per_second", 0)
    line("  / plain", "throughput", "ratio_to_plain", 3)
    line("  CPU per request, serving side (us)", "throughput", "cpu_us_per_request", 0)
    line("  CPU per request / plain", "throughput", "cpu_ratio_to_plain", 2)
    line("  serving side busy (share of a core)", "throughput", "busy_share", 2)
    line("stream: first chunk p50 (ms)", "stream", "first_chunk_p50_ms", 3)
    line("  added (ms)", "stream", "added_first_chunk_ms", 3)
    line("stream: chunks per second (1 client)", "stream", "chunks_per_second", 0)
    for count, by_arm in (results.get("paced") or {}).items():
        out.append(f"{count} streams paced at {results['pace_ms']:g} ms:")
        for key, label, digits in (
            ("gap_p99_ms", "gap p99 (ms)", 2),
            ("added_gap_p99_ms", "added gap p99 (ms)", 2),
            ("first_chunk_p99_ms", "first chunk p99 (ms)", 2),
            ("rss_per_stream_kib", "daemon RSS per stream (KiB)", 1),
        ):
            out.append(_row([f"  {label}", *(_fmt((by_arm.get(a) or {}).get(key), digits)
                                                for a in arms)], widths))  # fmt: skip
    if results.get("sessions"):
        out.append("connected agent sessions (relay):")
        for count, row in results["sessions"].items():
            out.append(f"  {count:>5} sessions: added p50 {row['added_p50_ms']:.3f} ms, "
                       f"p99 {row['added_p99_ms']:.3f} ms")  # fmt: skip
    if results.get("body"):
        out.append("body size, request and answer (relay):")
        for size, row in results["body"].items():
            out.append(f"  {int(size) // 1024:>5} KiB: added p50 {row['added_p50_ms']:.3f} ms, "
                       f"daemon CPU {row['cpu_us_per_request']:.0f} us/request")  # fmt: skip
    out.append("")
    out.append("goals:")
    for goal in results["goals"]:
        value = "-" if goal["value"] is None else f"{goal['value']}{goal['unit']}"
        verdict, _, doubt = goal["verdict"].partition(": ")
        text = f"  [{verdict:>12}] {goal['goal']}: {value} (goal {goal['target']})"
        out.append(text + (f"; {doubt}" if doubt else ""))
    return "\n".join(out)


def plot(results: Results, path: Path) -> str:
    """Draw the curves to ``path``; a sentence saying what happened."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "--plot: matplotlib is not installed (pip install matplotlib); no plot drawn"
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    paced = results.get("paced") or {}
    counts = sorted(paced, key=int)
    for arm in results["arms"]:
        xs = [int(c) for c in counts if arm in paced[c]]
        if xs:
            axes[0][0].plot(xs, [paced[str(x)][arm]["gap_p99_ms"] for x in xs], "o-", label=arm)
        rss = [x for x in xs if "rss_per_stream_kib" in paced[str(x)][arm]]
        if rss:
            axes[0][1].plot(rss, [paced[str(x)][arm]["rss_per_stream_kib"] for x in rss], "o-",
                            label=arm)  # fmt: skip
    axes[0][0].set(xscale="log", xlabel="open streams", ylabel="inter-chunk gap p99 (ms)")
    axes[0][1].set(xscale="log", xlabel="open streams", ylabel="daemon RSS per stream (KiB)")
    sessions = results.get("sessions") or {}
    if sessions:
        xs = sorted(int(c) for c in sessions)
        axes[1][0].plot(xs, [sessions[str(x)]["added_p50_ms"] for x in xs], "o-", label="p50")
        axes[1][0].plot(xs, [sessions[str(x)]["added_p99_ms"] for x in xs], "o-", label="p99")
    axes[1][0].set(xscale="log", xlabel="connected agent sessions", ylabel="added latency (ms)")
    body = results.get("body") or {}
    if body:
        xs = sorted(int(s) for s in body)
        axes[1][1].plot([x / 1024 for x in xs], [body[str(x)]["added_p50_ms"] for x in xs], "o-")
    axes[1][1].set(xscale="log", xlabel="body size (KiB)", ylabel="added latency p50 (ms)")
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return f"curves drawn to {path}"
