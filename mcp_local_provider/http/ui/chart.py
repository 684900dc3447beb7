"""The usage chart: tokens per day, one bar per day stacked by model, as SVG written on the
server (no script, no inline style: CSP allows neither). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from mcp_local_provider.http.ui.usage import UsageRowLike

WIDTH, HEIGHT = 640, 220
_LEFT, _BOTTOM, _TOP = 56, 28, 12
#: Colours told apart by most kinds of colour blindness (Okabe and Ito).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000")


def usage_chart(rows: Sequence[UsageRowLike]) -> str:
    """An SVG bar chart of input plus output tokens per day, stacked by model."""
    days = sorted({row.day for row in rows})
    models = sorted({row.model for row in rows})
    totals: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row.day, row.model)
        totals[key] = totals.get(key, 0) + row.input_tokens + row.output_tokens
    peak = max((sum(totals.get((d, m), 0) for m in models) for d in days), default=0) or 1
    plot_w, plot_h = WIDTH - _LEFT - 8, HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(1, len(days))
    bar = max(4.0, slot * 0.6)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT + 20 * len(models)}" '
        f'width="{WIDTH}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>Tokens per day, by model (peak {peak:,})</title>",
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - 8}" y2="{_TOP + plot_h}" '
        'stroke="#888"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end" font-size="11">'
        f"{_short(peak)}</text>",
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, day in enumerate(days):
        x = _LEFT + i * slot + (slot - bar) / 2
        y = float(_TOP + plot_h)
        for j, model in enumerate(models):
            value = totals.get((day, model), 0)
            if not value:
                continue
            h = value / peak * plot_h
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(day)} {escape(model)}: '
                f"{value:,} tokens</title></rect>"
            )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" '
            f'font-size="11">{escape(day[5:])}</text>'
        )
    for j, model in enumerate(models):
        y = HEIGHT + 20 * j + 4
        parts.append(
            f'<rect x="{_LEFT}" y="{y}" width="12" height="12" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{_LEFT + 18}" y="{y + 11}" font-size="12">{escape(model)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _short(value: int) -> str:
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)
