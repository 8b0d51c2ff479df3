"""Did my change make it slower? Compare two sets of per-call latency samples.

``compare_samples(baseline, current)`` judges each quantile in ``min_effects`` (P50, P95
and P99 by default) with two gates, as asv's ``compare`` and careful CI systems do: a
significance gate, so that noise is not reported as a change, and an effect-size gate, so
that a real but negligible change is not reported either.

* Effect size: the ratio ``current / baseline`` of the quantiles (numpy ``inverted_cdf``,
  as in ``perf.stats.percentiles``) with a percentile-bootstrap ``confidence`` interval,
  resampling the two samples independently (``scipy.stats.bootstrap``, seeded).
* Significance: one-sided Mann-Whitney U tests of current against baseline
  (``scipy.stats.mannwhitneyu``). They test a shift of the whole distribution, not of one
  quantile, so a change confined to the tail (a few percent of calls slower) reaches
  ``alpha`` only with many samples; until then it comes out UNDECIDED, not SAME.

With ``e`` the quantile's minimum effect, the rules per quantile are:

* SLOWER: the whole ratio interval is above 1, the ratio is above ``1 + e`` and the
  Mann-Whitney p-value for "slower" is below ``alpha``.
* FASTER: the mirror image: interval below 1, ratio below ``1 / (1 + e)``, p for
  "faster" below ``alpha``.
* SAME: the interval lies inside ``[1 / (1 + e), 1 + e]``, or the ratio does and the
  change is not significant (not both significance conditions hold in its direction).
* UNDECIDED: anything else, e.g. a ratio beyond the minimum effect that is not
  significant, or a significant change whose interval straddles ``1 + e``. Measure again
  before failing, preferably adding samples: a re-run of the same size can stay UNDECIDED.

The verdict is SLOWER if any quantile is SLOWER, else UNDECIDED if any is, else FASTER if
any is, else SAME. All decisions are taken on log ratios, so swapping baseline and current
mirrors the result exactly (SLOWER <-> FASTER).

Both tests assume independent samples from one distribution per run. A whole machine that
drifts between runs (shared/DESIGN.md: 5-10% for tens of seconds) is a real shift of the run
and will be called significant; pass probe-normalised samples (call / machine-speed probe)
and keep the minimum effects above the drift that remains.

``python -m perf.stats.compare OLD.json NEW.json`` compares two pytest-benchmark JSON files of this
suite (per-call samples in ``extra_info["samples_ms"]``, probe times in ``"probe_ms"``) and
exits 1 when any benchmark is SLOWER, 2 on unusable input, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import bootstrap, mannwhitneyu

from perf.stats.percentiles import QUANTILE_METHOD

MIN_SAMPLES = 20
DEFAULT_MIN_EFFECTS: Mapping[float, float] = MappingProxyType({0.5: 0.05, 0.95: 0.10, 0.99: 0.10})
# Resampled values held at once by the bootstrap (two float64 arrays of batch x n).
_BOOTSTRAP_CELLS = 4_000_000


class Change(StrEnum):
    """Outcome for one quantile, and overall."""

    SLOWER = "slower"
    FASTER = "faster"
    SAME = "same"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class QuantileChange:
    """How one quantile moved from baseline to current, with the ratio's interval."""

    quantile: float
    label: str
    baseline: float
    current: float
    ratio: float
    ratio_low: float
    ratio_high: float
    min_effect: float
    change: Change

    def format(self) -> str:
        """Render as ``"P99 412.3 -> 455.0 (x1.10 [1.07, 1.14]) slower"``."""
        return (
            f"{self.label} {_num(self.baseline)} -> {_num(self.current)} "
            f"({_ratio_ci(self)}) {self.change}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return {
            "quantile": float(self.quantile),
            "label": self.label,
            "baseline": float(self.baseline),
            "current": float(self.current),
            "ratio": float(self.ratio),
            "ratio_low": float(self.ratio_low),
            "ratio_high": float(self.ratio_high),
            "min_effect": float(self.min_effect),
            "change": self.change.value,
        }


@dataclass(frozen=True)
class Comparison:
    """Per-quantile changes, the significance tests behind them and the overall verdict."""

    changes: tuple[QuantileChange, ...]
    mann_whitney_p_slower: float
    mann_whitney_p_faster: float
    alpha: float
    confidence: float
    n_baseline: int
    n_current: int
    verdict: Change

    @property
    def regressed(self) -> bool:
        """True when some quantile is SLOWER."""
        return self.verdict is Change.SLOWER

    def change_at(self, quantile: float) -> QuantileChange | None:
        """The change for ``quantile``, or ``None`` when it was not compared."""
        return next((c for c in self.changes if c.quantile == quantile), None)

    def format(self) -> str:
        """Multi-line text: the verdict and tests, then one line per quantile."""
        head = (
            f"{self.verdict}: n={self.n_baseline} -> {self.n_current}, Mann-Whitney "
            f"p(slower)={self.mann_whitney_p_slower:.2g} p(faster)={self.mann_whitney_p_faster:.2g}"
            f" (alpha {self.alpha:g}), {self.confidence * 100:g}% bootstrap intervals"
        )
        lines = [f"  {c.format()} (min effect {c.min_effect * 100:g}%)" for c in self.changes]
        return "\n".join([head, *lines])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return {
            "verdict": self.verdict.value,
            "regressed": self.regressed,
            "changes": [c.to_dict() for c in self.changes],
            "mann_whitney_p_slower": float(self.mann_whitney_p_slower),
            "mann_whitney_p_faster": float(self.mann_whitney_p_faster),
            "alpha": float(self.alpha),
            "confidence": float(self.confidence),
            "n_baseline": int(self.n_baseline),
            "n_current": int(self.n_current),
        }


def compare_samples(
    baseline: ArrayLike,
    current: ArrayLike,
    min_effects: Mapping[float, float] = DEFAULT_MIN_EFFECTS,
    alpha: float = 0.01,
    confidence: float = 0.99,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare latency samples (any positive unit) quantile by quantile; see the module doc.

    ``min_effects`` maps each quantile to compare to its minimum relative effect (0.05: 5%).
    """
    base = _checked_samples(baseline, "baseline")
    cur = _checked_samples(current, "current")
    _check_min_effects(min_effects)
    _check_unit_interval(alpha, "alpha", "0.01")
    _check_unit_interval(confidence, "confidence", "0.99")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")

    qs = tuple(sorted(min_effects))
    base_q = np.quantile(base, qs, method=QUANTILE_METHOD)
    cur_q = np.quantile(cur, qs, method=QUANTILE_METHOD)
    log_ratio = np.log(cur_q) - np.log(base_q)
    log_low, log_high = _log_ratio_interval(base, cur, qs, confidence, n_resamples, seed)
    p_slower = _mann_whitney_p(cur, base, "greater")
    p_faster = _mann_whitney_p(cur, base, "less")

    changes = tuple(
        QuantileChange(
            quantile=float(q),
            label=f"P{q * 100:g}",
            baseline=float(base_q[i]),
            current=float(cur_q[i]),
            ratio=float(cur_q[i] / base_q[i]),
            ratio_low=float(np.exp(log_low[i])),
            ratio_high=float(np.exp(log_high[i])),
            min_effect=float(min_effects[q]),
            change=_classify(
                log_ratio[i],
                log_low[i],
                log_high[i],
                math.log1p(min_effects[q]),
                slower_significant=p_slower < alpha,
                faster_significant=p_faster < alpha,
            ),
        )
        for i, q in enumerate(qs)
    )
    return Comparison(
        changes=changes,
        mann_whitney_p_slower=p_slower,
        mann_whitney_p_faster=p_faster,
        alpha=float(alpha),
        confidence=float(confidence),
        n_baseline=base.size,
        n_current=cur.size,
        verdict=_overall([c.change for c in changes]),
    )


def format_comparison_table(rows: Sequence[tuple[str, Comparison]]) -> str:
    """Fixed-width table: benchmark, P50 and P99 baseline -> current with ratio [CI], verdict."""
    header = (
        "benchmark",
        "P50 base",
        "P50 now",
        "P50 change [CI]",
        "P99 base",
        "P99 now",
        "P99 change [CI]",
        "verdict",
    )
    body = [
        (name, *_table_cells(c, 0.5), *_table_cells(c, 0.99), str(c.verdict)) for name, c in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    # Names and verdicts read best left-aligned, numbers right-aligned.
    left = {0, len(header) - 1}

    def line(row: Sequence[str]) -> str:
        cells = (
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perf.stats.compare OLD.json NEW.json``: 1 if any is SLOWER, 2 on errors."""
    args = _parse_args(argv)
    try:
        old = _load_benchmarks(args.old)
        new = _load_benchmarks(args.new)
        rows, raw = _compare_files(args, old, new)
    except _InputError as exc:
        print(f"perf.stats.compare: error: {exc}", file=sys.stderr)
        return 2
    print(f"baseline {args.old} -> current {args.new}")
    if rows:
        print(format_comparison_table(rows))
        print(_basis_note(rows, raw, args))
    for name, comparison in rows:
        if comparison.verdict is not Change.SAME:
            print(f"\n{name}\n{comparison.format()}")
    for path, only in ((args.old, old.keys() - new.keys()), (args.new, new.keys() - old.keys())):
        if only:
            print(f"\nonly in {path}: " + ", ".join(sorted(only)))
    verdicts = [c.verdict for _, c in rows]
    print("\n" + ", ".join(f"{verdicts.count(v)} {v}" for v in Change))
    return 1 if Change.SLOWER in verdicts else 0


def _classify(
    log_ratio: float,
    log_low: float,
    log_high: float,
    log_effect: float,
    *,
    slower_significant: bool,
    faster_significant: bool,
) -> Change:
    slower = log_low > 0 and slower_significant
    faster = log_high < 0 and faster_significant
    if slower and log_ratio > log_effect:
        return Change.SLOWER
    if faster and log_ratio < -log_effect:
        return Change.FASTER
    if -log_effect <= log_low and log_high <= log_effect:
        return Change.SAME
    if abs(log_ratio) <= log_effect and not (slower or faster):
        return Change.SAME
    return Change.UNDECIDED


def _overall(changes: Sequence[Change]) -> Change:
    for verdict in (Change.SLOWER, Change.UNDECIDED, Change.FASTER):
        if verdict in changes:
            return verdict
    return Change.SAME


def _log_ratio_interval(
    base: np.ndarray,
    cur: np.ndarray,
    qs: tuple[float, ...],
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of log(current quantile / baseline quantile), per quantile."""
    # scipy draws the resamples sample by sample in the order given. Ordering by a key that
    # ignores the roles (and, before the last resort, the scale) makes swapping baseline and
    # current mirror the interval, and scaling one scale it, unless they are equal up to scale.
    base_first = _resample_key(base) <= _resample_key(cur)
    first, second = (base, cur) if base_first else (cur, base)
    sign = 1.0 if base_first else -1.0

    def log_ratio(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        log_x = np.log(np.quantile(x, qs, axis=axis, method=QUANTILE_METHOD))
        log_y = np.log(np.quantile(y, qs, axis=axis, method=QUANTILE_METHOD))
        return sign * (log_y - log_x)

    result = bootstrap(
        (first, second),
        log_ratio,
        n_resamples=n_resamples,
        batch=max(1, _BOOTSTRAP_CELLS // (base.size + cur.size)),
        vectorized=True,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return np.atleast_1d(interval.low), np.atleast_1d(interval.high)


def _resample_key(xs: np.ndarray) -> tuple[int, list[int], list[float], list[float]]:
    return xs.size, np.argsort(xs, kind="stable").tolist(), (xs / xs.max()).tolist(), xs.tolist()


def _mann_whitney_p(current: np.ndarray, baseline: np.ndarray, alternative: str) -> float:
    p = float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)
    return p if math.isfinite(p) else 1.0


def _checked_samples(samples: ArrayLike, name: str) -> np.ndarray:
    xs = np.asarray(samples, dtype=float)
    if xs.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {xs.shape}")
    if xs.size < MIN_SAMPLES:
        raise ValueError(f"{name} has {xs.size} samples; need at least {MIN_SAMPLES}")
    bad = int(np.count_nonzero(~(np.isfinite(xs) & (xs > 0))))
    if bad:
        raise ValueError(f"{name} has {bad} value(s) that are not positive finite numbers")
    return xs


def _check_min_effects(min_effects: Mapping[float, float]) -> None:
    if not min_effects:
        raise ValueError("min_effects is empty; map each quantile to compare to its minimum effect")
    for q, effect in min_effects.items():
        if not 0.0 < q < 1.0:
            raise ValueError(f"min_effects quantiles must be in (0, 1) (0.99 for P99), got {q!r}")
        if not 0.0 < effect < 1.0:
            raise ValueError(f"min_effects[{q!r}] must be in (0, 1) (0.05 for 5%), got {effect!r}")


def _check_unit_interval(value: float, name: str, example: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1) (e.g. {example}), got {value!r}")


def _num(x: float) -> str:
    """Four significant digits without an exponent: 412.3, 61.23, 0.01234, 12345."""
    digits = 3 - math.floor(math.log10(abs(x))) if x else 3
    return f"{x:.{max(0, digits)}f}"


def _ratio_ci(change: QuantileChange) -> str:
    return f"x{change.ratio:.2f} [{change.ratio_low:.2f}, {change.ratio_high:.2f}]"


def _table_cells(comparison: Comparison, quantile: float) -> tuple[str, str, str]:
    change = comparison.change_at(quantile)
    if change is None:
        return "-", "-", "-"
    return _num(change.baseline), _num(change.current), _ratio_ci(change)


# --- command line ------------------------------------------------------------------------


class _InputError(Exception):
    """Unusable input: the message names the file and, where known, the benchmark."""


@dataclass(frozen=True)
class _Benchmark:
    samples_ms: np.ndarray
    probe_ms: np.ndarray | None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m perf.stats.compare",
        description="Compare per-call latencies of two saved pytest-benchmark JSON files.",
    )
    parser.add_argument("old", type=Path, help="baseline JSON (e.g. .benchmarks/.../0001_x.json)")
    parser.add_argument("new", type=Path, help="current JSON")
    parser.add_argument("--alpha", type=float, default=0.01, help="significance level")
    parser.add_argument("--confidence", type=float, default=0.99, help="bootstrap CI level")
    parser.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    for name in ("alpha", "confidence"):
        if not 0.0 < getattr(args, name) < 1.0:
            parser.error(f"--{name} must be in (0, 1), got {getattr(args, name)!r}")
    if args.n_resamples < 1:
        parser.error(f"--n-resamples must be positive, got {args.n_resamples}")
    return args


def _load_benchmarks(path: Path) -> dict[str, _Benchmark]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _InputError(f"cannot read {path}: {exc}") from exc
    entries = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise _InputError(f"{path} is not pytest-benchmark JSON: no 'benchmarks' list")
    benchmarks: dict[str, _Benchmark] = {}
    for entry in entries:
        name = entry.get("fullname") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise _InputError(f"{path}: a benchmark has no 'fullname'")
        extra = entry.get("extra_info")
        extra = extra if isinstance(extra, dict) else {}
        samples = _number_list(extra.get("samples_ms"))
        if samples is None:
            raise _InputError(
                f"{path}: benchmark {name} has no extra_info['samples_ms'] list of numbers "
                "(saved by another suite, or run with --benchmark-disable?)"
            )
        probe = _number_list(extra.get("probe_ms"))
        if probe is not None and probe.size != samples.size:
            raise _InputError(
                f"{path}: benchmark {name} has {probe.size} probe_ms for {samples.size} samples_ms"
            )
        benchmarks[name] = _Benchmark(samples, probe)
    return benchmarks


def _number_list(value: Any) -> np.ndarray | None:
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    return np.asarray(value, dtype=float)


def _compare_files(
    args: argparse.Namespace, old: dict[str, _Benchmark], new: dict[str, _Benchmark]
) -> tuple[list[tuple[str, Comparison]], set[str]]:
    """Rows for the benchmarks in both files, and the names compared in raw ms (no probe)."""
    rows: list[tuple[str, Comparison]] = []
    raw: set[str] = set()
    for name in sorted(old.keys() & new.keys()):
        before, after = old[name], new[name]
        if before.probe_ms is None or after.probe_ms is None:
            raw.add(name)
            baseline, current = before.samples_ms, after.samples_ms
        else:
            baseline = before.samples_ms / before.probe_ms
            current = after.samples_ms / after.probe_ms
        try:
            comparison = compare_samples(
                baseline,
                current,
                alpha=args.alpha,
                confidence=args.confidence,
                n_resamples=args.n_resamples,
            )
        except ValueError as exc:
            raise _InputError(f"benchmark {name} ({args.old} -> {args.new}): {exc}") from exc
        rows.append((name, comparison))
    return rows, raw


def _basis_note(
    rows: Sequence[tuple[str, Comparison]], raw: set[str], args: argparse.Namespace
) -> str:
    if not raw:
        return "values: call time / machine-speed probe time (probe_ms in both files)"
    if len(raw) == len(rows):
        return "values: ms per call (no probe normalisation: probe_ms not in both files)"
    return (
        "values: call time / machine-speed probe time, except in ms per call for "
        + ", ".join(sorted(raw))
        + f" (probe_ms missing from {args.old} or {args.new})"
    )


if __name__ == "__main__":
    sys.exit(main())
