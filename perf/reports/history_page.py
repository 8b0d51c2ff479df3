"""The run history as one self-contained HTML page: every series (machine x benchmark) drawn as
inline SVG with its change points; no script, no CDN, so it opens from a file or a Pages
artifact as it is.

``series`` is perf.history.series()'s table: (machine id, benchmark) -> runs, oldest first, each
with ``when``, ``commit`` (label), ``sha``, ``p50`` and ``p99`` (``{"value", "low", "high"}``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from perf.stats.change_points import MIN_RUNS, ChangePoint, change_points

WIDTH, HEIGHT, MARGIN = 760, 220, 48
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h2 { font-size: 1.05em; margin: 1.6em 0 0.3em; }
p.meta { margin: 0 0 0.4em; color: #555; font-size: 0.9em; }
svg { background: #fafafa; border: 1px solid #ddd; }
.p50 { fill: none; stroke: #1f77b4; stroke-width: 2; }
.p99 { fill: none; stroke: #ff7f0e; stroke-width: 1; stroke-dasharray: 4 3; }
.change { stroke: #d62728; stroke-width: 1.5; stroke-dasharray: 6 4; }
.axis { stroke: #999; } text { font-size: 11px; fill: #444; }
"""


def render_page(
    series: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    commit_url: str | None = None,
    title: str = "Latency history",
) -> str:
    """The page; ``commit_url`` (e.g. ``https://github.com/o/r/commit/{sha}``) links commits."""
    sections = [
        _section(machine, name, rows, commit_url)
        for (machine, name), rows in sorted(series.items())
    ]
    body = "\n".join(sections) or "<p>No run records.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        f'<h1>{html.escape(title)}</h1>\n<p class="meta">P50 per run (solid), P99 (dashed), '
        "change points (red; binary segmentation with a max-t permutation test, p &lt;= 0.01, "
        "perf/stats/change_points.py). Latencies in ms.</p>\n"
        f"{body}\n</body></html>\n"
    )


def _section(
    machine: str, name: str, rows: Sequence[Mapping[str, Any]], commit_url: str | None
) -> str:
    p50 = [float(r["p50"]) for r in rows]
    found = change_points(p50) if len(rows) >= 2 * MIN_RUNS else []
    lines = [
        f'<h2 id="{html.escape(f"{machine}-{name}")}">{html.escape(name)} '
        f"<small>on machine {html.escape(machine)}</small></h2>",
        f'<p class="meta">{len(rows)} run(s); last P50 {p50[-1]:.1f} ms'
        + "".join(f"; {_change_text(c, rows, commit_url)}" for c in found)
        + "</p>",
        _svg(rows, found),
    ]
    return "\n".join(lines)


def _change_text(change: ChangePoint, rows: Sequence[Mapping[str, Any]], url: str | None) -> str:
    row = rows[change.index]
    label = html.escape(str(row["commit"]))
    if url and row.get("sha"):
        label = f'<a href="{html.escape(url.format(sha=row["sha"]))}">{label}</a>'
    return (
        f"change at {label}: P50 x{change.ratio:.3f} [{change.low:.3f}, {change.high:.3f}], "
        f"p={change.p_value:.3f}"
    )


def _svg(rows: Sequence[Mapping[str, Any]], found: Sequence[ChangePoint]) -> str:
    p50 = [float(r["p50"]) for r in rows]
    p99 = [float(r["p99"]["value"]) if r["p99"].get("value") is not None else None for r in rows]
    values = p50 + [v for v in p99 if v is not None]
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def x(i: int) -> float:
        return MARGIN + (WIDTH - 2 * MARGIN) * (i / max(1, len(rows) - 1))

    def y(v: float) -> float:
        return HEIGHT - MARGIN / 2 - (HEIGHT - MARGIN) * (v - low) / span

    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" "
             f"role=\"img\">"]  # fmt: skip
    parts.append(f"<line class=\"axis\" x1=\"{MARGIN}\" y1=\"{HEIGHT - MARGIN / 2}\" "
                 f"x2=\"{WIDTH - MARGIN}\" y2=\"{HEIGHT - MARGIN / 2}\"/>")  # fmt: skip
    parts.append(f'<text x="4" y="{y(high) + 4:.1f}">{high:.1f}</text>')
    parts.append(f'<text x="4" y="{y(low) + 4:.1f}">{low:.1f}</text>')
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(p50))
    parts.append(f'<polyline class="p50" points="{points}"/>')
    tail = [(i, v) for i, v in enumerate(p99) if v is not None]
    if tail:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in tail)
        parts.append(f'<polyline class="p99" points="{points}"/>')
    for i, row in enumerate(rows):
        tip = html.escape(f"{row['commit']} {row['when']}: P50 {p50[i]:.1f} ms")
        parts.append(f"<circle cx=\"{x(i):.1f}\" cy=\"{y(p50[i]):.1f}\" r=\"3\" fill=\"#1f77b4\">"
                     f"<title>{tip}</title></circle>")  # fmt: skip
    for change in found:
        at = (x(change.index - 1) + x(change.index)) / 2
        parts.append(f"<line class=\"change\" x1=\"{at:.1f}\" y1=\"8\" x2=\"{at:.1f}\" "
                     f"y2=\"{HEIGHT - MARGIN / 2}\"/>")  # fmt: skip
        parts.append(f'<text x="{at + 4:.1f}" y="16">x{change.ratio:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
