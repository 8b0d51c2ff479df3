"""The end-of-run table, like the seed's summary but measured: one row per benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from perf.measure.efficiency import efficiency_text
from perf.measurement import LatencyResult

HEADERS = (
    "configuration", "size", "load", "P50", "P95", "P99 [95% CI]", "work", "budget", "verdict",
)  # fmt: skip


def _size(result: LatencyResult) -> str:
    return "-" if result.size_bytes is None else f"{result.size_bytes / 1e6:.0f} MB"


def _verdict(result: LatencyResult) -> str:
    text = result.verdict
    if result.decided_by_point_estimate:
        text += " (undecided at cap)"
    if result.samples.contention.contaminated():
        text += " [contended]"
    if result.samples.gpu and result.samples.gpu.flagged():
        text += " [GPU unsteady]"
    return text


def row(result: LatencyResult) -> tuple[str, ...]:
    pct = result.summary.percentiles
    budget = "-" if result.budget is None else f"P99 < {result.budget.p99_ms:g} ms"
    return (
        result.case.id,
        _size(result),
        f"{result.load_ms / 1e3:.2f} s",
        f"{pct['p50'].value:.1f} ms",
        f"{pct['p95'].value:.1f} ms",
        pct["p99"].format(),
        efficiency_text(result.work),
        budget,
        _verdict(result),
    )


def format_table(rows: Sequence[tuple[str, ...]], headers: Sequence[str] = HEADERS) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def summary_table(results: Sequence[LatencyResult]) -> str:
    return format_table([row(r) for r in results])
