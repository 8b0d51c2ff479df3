"""PNG plots of latency results: one benchmark's distribution, and an overview of all of them.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global
backend switch), so plotting works on headless runners and from any thread. Every latency is
in milliseconds per call.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from perf.files import atomic_write_bytes
from perf.measurement import LatencyResult

MAX_OVERVIEW_ROWS = 60
MAX_HISTOGRAM_BINS = 80
DPI = 110
PROVIDER_COLORS = ("#4C72B0", "#55A868", "#8172B2", "#CCB974", "#64B5CD", "#DD8452")
P50_COLOR = "#2F4F4F"
P99_COLOR = "#C44E52"
BUDGET_COLOR = "#D62728"
FAIL = "fail"


def plot_distribution(result: LatencyResult, path: Path) -> Path:
    """Histogram and tail (fraction of calls slower than x) of one benchmark's samples."""
    xs = np.sort(np.asarray(result.samples.samples_ms, dtype=float))
    fig = _figure(9.0, 6.5)
    hist_ax, tail_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    _histogram(hist_ax, xs)
    _tail(tail_ax, xs)
    for ax in (hist_ax, tail_ax):
        _markers(ax, result)
    hist_ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    hist_ax.set_xlim(*_x_range(xs, result))
    fig.suptitle(_distribution_title(result), fontsize=11)
    return save_png(fig, path)


def plot_overview(results: Sequence[LatencyResult], path: Path) -> Path:
    """P50 bars with P99 markers (95% CI as whiskers) and budget ticks, grouped by provider."""
    shown = _overview_rows(results)
    fig = _figure(10.0, 1.6 + 0.32 * max(len(shown), 1))
    ax = fig.subplots()
    colors = _provider_colors(shown)
    rows = np.arange(len(shown))
    for y, result in zip(rows, shown, strict=True):
        _overview_row(ax, y, result, colors[result.case.provider])
    _overview_axes(ax, shown, colors)
    title = "Latency per call by configuration: bar = P50, diamond = P99 with 95% CI"
    if len(shown) < len(results):
        title += f"\n({len(shown)} of {len(results)} benchmarks shown, failures first)"
    ax.set_title(title, fontsize=11)
    return save_png(fig, path)


def plot_load(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Latency versus offered load (the hockey stick): P50 and P99 per configuration, from the
    server scenario's rows (ServerResult.to_dict())."""
    fig = _figure(9.0, 5.5)
    ax = fig.subplots()
    ids = list(dict.fromkeys(row["id"] for row in rows))
    for color, case_id in zip(PROVIDER_COLORS * len(ids), ids, strict=False):
        mine = sorted((r for r in rows if r["id"] == case_id), key=lambda r: r["rate_rps"])
        rates = [r["rate_rps"] for r in mine]
        ax.plot(rates, [r["p50_ms"] for r in mine], "o-", color=color, label=f"{case_id} P50")
        ax.plot(rates, [r["p99_ms"] for r in mine], "D--", color=color, label=f"{case_id} P99")
    ax.set_xlabel("offered load, requests per second (Poisson arrivals)")
    ax.set_ylabel("latency from scheduled arrival, ms")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, framealpha=0.9)
    ax.set_title("Latency under load: P50 (solid) and P99 (dashed)", fontsize=11)
    return save_png(fig, path)


def plot_cdf(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """The latency CDF of each server-scenario run (one line per configuration and rate), from
    the rows' ``cdf_ms``: where the tail starts, which a P99 alone does not show."""
    fig = _figure(9.0, 5.5)
    ax = fig.subplots()
    for row in rows:
        cdf = row["cdf_ms"]
        ax.plot(cdf["ms"], cdf["quantile"], "-", label=f"{row['id']} at {row['rate_rps']:g} req/s")
    ax.set_xscale("log")
    ax.set_xlabel("latency from scheduled arrival, ms (log scale)")
    ax.set_ylabel("fraction of requests at or under it")
    ax.axhline(0.99, color="grey", linewidth=0.8, linestyle=":")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, framealpha=0.9)
    ax.set_title("Latency CDF per server run (dotted: P99)", fontsize=11)
    return save_png(fig, path)


def plot_attribution(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Per explained A/B (ABOutcome.to_dict() rows with ``explained``): A's and B's call as
    stacked bars of their op types (the six that moved most, the rest, and the time outside
    nodes), ms per profiled call."""
    fig = _figure(9.0, 1.0 + 2.0 * len(rows))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows, strict=True):
        why = row["explained"]
        op_types = [c for c in why["op_types"] if c["kind"] == "op_type"]
        shown = op_types[:6]
        rest_a = sum(c["a_ms"] for c in op_types[6:])
        rest_b = sum(c["b_ms"] for c in op_types[6:])
        parts = [(c["label"], c["a_ms"], c["b_ms"]) for c in shown]
        parts += [("other op types", rest_a, rest_b)]
        parts += [("outside nodes", why["outside"]["a_ms"], why["outside"]["b_ms"])]
        left = np.zeros(2)
        for color, (label, a_ms, b_ms) in zip(_stack_colors(len(parts)), parts, strict=True):
            ax.barh([1, 0], [a_ms, b_ms], left=left, color=color, label=label)
            left += [a_ms, b_ms]
        ax.set_yticks([1, 0], ["A", "B"])
        total = why["total"]
        title = f"{row['id']}: {total['change_ms']:+.2f} ms per profiled call "
        ax.set_title(f"{title}(A {total['a_ms']:.2f} ms, B {total['b_ms']:.2f} ms)", fontsize=10)
        ax.legend(fontsize=7, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    axes[-1].set_xlabel("ms per profiled call, stacked by op type")
    return save_png(fig, path)


def _stack_colors(n: int) -> list[Any]:
    return [colormaps["tab10"](i % 10) for i in range(n)]


def save_png(fig: Figure, path: Path) -> Path:
    """Render in memory, then write atomically: no half-written PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(path, buffer.getvalue())


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _histogram(ax: Axes, xs: np.ndarray) -> None:
    bins = min(MAX_HISTOGRAM_BINS, max(10, int(np.sqrt(len(xs)) * 2)))
    ax.hist(xs, bins=bins, color="#8DA0CB", edgecolor="white", linewidth=0.4, label="calls")
    ax.set_ylabel("calls")
    ax.grid(axis="y", alpha=0.3)


def _tail(ax: Axes, xs: np.ndarray) -> None:
    n = len(xs)
    slower = (n - np.arange(n)) / n  # fraction of calls at or above each sorted sample
    ax.step(xs, slower, where="post", color="#4C72B0", linewidth=1.2)
    ax.set_yscale("log")
    ax.set_ylim(min(0.5 / n, 0.005), 1.05)
    ax.axhline(0.01, color="grey", linewidth=0.6, linestyle=":")
    ax.set_ylabel("fraction of calls\nslower than x (log)")
    ax.set_xlabel("latency per call (ms)")
    ax.grid(alpha=0.3, which="both")


def _markers(ax: Axes, result: LatencyResult) -> None:
    pct = result.summary.percentiles
    p50, p99 = pct["p50"], pct["p99"]
    ax.axvline(p50.value, color=P50_COLOR, linestyle="--", label=f"P50 {p50.value:.1f} ms")
    ax.axvline(p99.value, color=P99_COLOR, label=f"P99 {p99.format()}")
    low = p99.low if p99.low is not None else p99.value
    high = p99.high if p99.high is not None else result.summary.max
    ax.axvspan(low, high, color=P99_COLOR, alpha=0.15, label=_ci_label(p99.low, p99.high))
    if result.budget is not None:
        budget = result.budget.p99_ms
        ax.axvline(budget, color=BUDGET_COLOR, linestyle="-.", linewidth=2, label=_budget(result))


def _ci_label(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "P99 95% CI (open: too few samples for a bound)"
    return "P99 95% CI"


def _budget(result: LatencyResult) -> str:
    assert result.budget is not None
    return f"budget P99 < {result.budget.p99_ms:g} ms ({result.verdict})"


def _x_range(xs: np.ndarray, result: LatencyResult) -> tuple[float, float]:
    high = float(xs[-1])
    if result.budget is not None:
        high = max(high, result.budget.p99_ms)
    low = float(xs[0])
    pad = max((high - low) * 0.04, 0.01 * high, 1e-3)
    return max(low - pad, 0.0), high + pad


def _distribution_title(result: LatencyResult) -> str:
    samples = result.samples
    text = (
        f"{result.case.id}: {result.summary.n} calls, verdict {result.verdict}"
        f"\nprovider {result.case.provider}, {result.case.duration_s:g} s of audio, "
        f"batch {result.case.batch}, stopped: {samples.stopped_because}"
    )
    if samples.disturbance():
        text += " [contended]" if samples.contention.contaminated() else " [GPU unsteady]"
    return text


def _overview_rows(results: Sequence[LatencyResult]) -> list[LatencyResult]:
    ordered = sorted(results, key=lambda r: (r.case.provider, r.case.variant, r.case.duration_s))
    if len(ordered) <= MAX_OVERVIEW_ROWS:
        return ordered
    failing = [i for i, r in enumerate(ordered) if r.verdict == FAIL]
    passing = [i for i, r in enumerate(ordered) if r.verdict != FAIL]
    keep = sorted((failing + passing)[:MAX_OVERVIEW_ROWS])
    return [ordered[i] for i in keep]


def _provider_colors(results: Sequence[LatencyResult]) -> dict[str, str]:
    providers = list(dict.fromkeys(r.case.provider for r in results))
    return {p: PROVIDER_COLORS[i % len(PROVIDER_COLORS)] for i, p in enumerate(providers)}


def _overview_row(ax: Axes, y: float, result: LatencyResult, color: str) -> None:
    pct = result.summary.percentiles
    p50, p99 = pct["p50"].value, pct["p99"]
    ax.barh(y, p50, height=0.6, color=color)
    low = p99.value - (p99.low if p99.low is not None else p99.value)
    high = (p99.high if p99.high is not None else p99.value) - p99.value
    ax.errorbar(p99.value, y, xerr=[[low], [high]], fmt="D", color="black", markersize=5, capsize=3)
    ax.annotate(
        f"P50 {p50:.1f} / P99 {p99.value:.1f} ms",
        (max(p99.value + high, p50), y),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        fontsize=7,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
        zorder=3,
    )
    if result.budget is not None:
        ax.plot(result.budget.p99_ms, y, marker="|", color=BUDGET_COLOR, markersize=16, mew=2.5)


def _overview_axes(ax: Axes, shown: Sequence[LatencyResult], colors: dict[str, str]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ax.set_yticks(np.arange(len(shown)), [r.case.id for r in shown], fontsize=8)
    for label, result in zip(ax.get_yticklabels(), shown, strict=True):
        if result.verdict == FAIL:
            label.set_color(BUDGET_COLOR)
    ax.invert_yaxis()
    _overview_x_axis(ax, shown)
    ax.grid(axis="x", alpha=0.3, which="both")
    handles = [Patch(color=c, label=f"P50, {p}") for p, c in colors.items()]
    handles += [
        Line2D([], [], marker="D", color="black", linestyle="", label="P99 [95% CI]"),
        Line2D(
            [], [], marker="|", color=BUDGET_COLOR, linestyle="", ms=12, mew=2.5, label="P99 budget"
        ),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _overview_x_axis(ax: Axes, shown: Sequence[LatencyResult]) -> None:
    """Log scale when the rows span more than 20x; room on the right for the labels."""
    p50 = [r.summary.percentiles["p50"].value for r in shown] or [1.0]
    right = max(
        [r.summary.percentiles["p99"].high or r.summary.percentiles["p99"].value for r in shown]
        + [r.budget.p99_ms for r in shown if r.budget is not None]
        + [1.0]
    )
    if right > 20 * max(min(p50), 1e-9):
        ax.set_xscale("log")
        ax.set_xlim(min(p50) / 2, right * 4)
        ax.set_xlabel("latency per call (ms), log scale")
    else:
        ax.set_xlim(0, right * 1.35)
        ax.set_xlabel("latency per call (ms)")
