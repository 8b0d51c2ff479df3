"""Did my change make it slower? Compare a run with the stored runs of the same benchmark.

The unit of replication is a whole *run*, not a call. These machines' speed drifts 5-10% for
seconds to minutes as a whole, and two sessions of one model file differ by a few percent
(measured on the 2-vCPU EPYC VMs, both ISA classes): calls of one run share the run's drift
and sessions, so an interval built from calls, or from stretches of one run, measures how
steady the run was, not how far the next run may land. An earlier version of this module (a
per-call bootstrap with Mann-Whitney tests) called 3 of 5 quiet A/A runs significantly
"faster" on an AVX2 runner. Batching a run into 20 s stretches, tried next, still gave 12% false
verdicts in simulation with drift lasting ~30 s (tests/test_compare.py keeps both as evidence):
within-run spread cannot see drift slower than the run. So, as pyperf does with its processes:

* a baseline holds several runs, recorded at different times (``--perf-save-baseline`` adds
  one; the last ``MAX_BASELINE_RUNS`` are kept), each summarised by its quantiles;
* per quantile ``q``, with ``v_1..v_K`` the logs of the baseline runs' ``q``-quantiles and ``c``
  the current run's: ``d = c - mean(v)``, and the interval is the t *prediction* interval of a
  new run, ``d +- t(K-1) * sd(v) * sqrt(1 + 1/K)``: the current run has its own run-level
  deviation, which only the spread between stored runs shows.

Runs must be alike for that spread to apply: a comparison needs the same sampling cap (runs
that compare or save sample to the cap) and, inside each run, sessions recreated every few
seconds (perf.measure.sampling), so that one session's luck is not a run's.

With ``e`` a quantile's minimum effect and ``[low, high]`` its interval, the rules are those of
``perf.stats.paired``:

* SLOWER: ``low > 1`` and the ratio is at least ``1 + e``;
* FASTER: ``high < 1`` and the ratio is at most ``1 / (1 + e)``;
* SAME: the whole interval lies inside ``[1 / (1 + e), 1 + e]``;
* UNDECIDED: anything else, and always with fewer than ``MIN_BASELINE_RUNS`` (3) stored runs:
  the reason says what to record.

Quantiles (``DEFAULT_GATES``): P50 is gated, with a 5% minimum effect at 95%; P95 and P99 are
reported with their intervals (10% at 99%) but do not decide the verdict. On the calibration
VMs a few seconds of another process's work doubled a run's P95/P99 (x1.9-2.2) while its
average load stayed under the contention flag; no spread floor short of "never" kept those
from being called slower (baselines/calibration/, ``baseline-w2v2-base-int8-20s``). Tails are
gated by budgets; ``--perf-against`` reports them the same way (perf.stats.paired).

Stored runs recorded back to back see only one sitting's spread. The machine then drifts:
on the 2-vCPU calibration VMs an unchanged model's P50 moved -12% to +15% against five runs
recorded minutes earlier, whose own spread was 1-2% (root mean square of those A/A log ratios
0.04-0.08 across four series; ``python -m perf.calibration spread baselines/calibration``).
So a gate's spread is never taken below ``spread_floor`` (a log standard deviation: 0.05 for
P50): with 5 stored runs a P50 change must exceed about 16% to be called, with 10 about 12%.
A smaller change on these VMs is ``undecided`` against stored runs; when the model changed and
the stored one is still cached, the baseline gate measures both side by side instead
(perf.baselines.gate), which resolves 5-10%.

The verdict is SLOWER if any gated quantile is SLOWER, else UNDECIDED if any is, else FASTER if
any is, else SAME. Everything is decided on log ratios: scaling every latency changes nothing.

What this needs from the machine: run-to-run variation well under the effect to be caught. On
VMs whose runs minutes apart differ by 10% (an unchanged model measured x1.13 on a Zen 4 VM),
an honest answer is ``undecided``; for a pull request, ``--perf-against`` measures both sides
interleaved and needs no stored run.

``python -m perf.stats.compare OLD.json [OLD.json ...] NEW.json`` compares pytest-benchmark JSON
files of this suite (per-call samples in ``extra_info["samples_ms"]``): the last is the current
run, the others the baseline runs. Exit 1 when any benchmark is SLOWER, 2 on unusable input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from perf.stats.outcome import Outcome
from perf.stats.percentiles import QUANTILE_METHOD

MIN_BASELINE_RUNS = 3
MAX_BASELINE_RUNS = 10


def decide(log_ratio: float, log_low: float, log_high: float, log_effect: float) -> Outcome:
    """The verdict rule shared with perf.stats.paired (see the module docstring)."""
    if log_low > 0.0 and log_ratio >= log_effect:
        return Outcome.SLOWER
    if log_high < 0.0 and log_ratio <= -log_effect:
        return Outcome.FASTER
    if -log_effect <= log_low and log_high <= log_effect:
        return Outcome.SAME
    return Outcome.UNDECIDED


@dataclass(frozen=True)
class QuantileGate:
    quantile: float
    min_effect: float  # 0.05: changes under 5% are "same"
    confidence: float  # two-sided level of the interval
    spread_floor: float = 0.0  # least log sd between runs assumed: drift between sittings
    gated: bool = True  # False: reported with its interval, never the verdict


# The drift between sittings on the 2-vCPU calibration VMs (module docstring).
P50_SPREAD_FLOOR = 0.05
TAIL_SPREAD_FLOOR = 0.10

DEFAULT_GATES = (
    QuantileGate(0.5, 0.05, 0.95, P50_SPREAD_FLOOR),
    QuantileGate(0.95, 0.10, 0.99, TAIL_SPREAD_FLOOR, gated=False),
    QuantileGate(0.99, 0.10, 0.99, TAIL_SPREAD_FLOOR, gated=False),
)


@dataclass(frozen=True)
class Segment:
    """Consecutive calls on one session: how many, and the seconds they took."""

    calls: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "seconds": self.seconds}


@dataclass(frozen=True)
class RunSummary:
    """One run as a comparison sees it: quantiles of its calls (ms), its length, when."""

    quantiles_ms: dict[float, float]
    calls: int
    seconds: float
    recorded_at: str = ""

    def __post_init__(self) -> None:
        if not self.quantiles_ms or not all(
            0.0 < q < 1.0 and math.isfinite(v) and v > 0 for q, v in self.quantiles_ms.items()
        ):
            raise ValueError(
                f"quantiles_ms must map quantiles in (0, 1) to positive ms, got "
                f"{self.quantiles_ms!r}"
            )
        object.__setattr__(
            self, "quantiles_ms", {float(q): float(v) for q, v in self.quantiles_ms.items()}
        )

    @classmethod
    def of(
        cls,
        samples_ms: Sequence[float],
        seconds: float,
        recorded_at: str = "",
        quantiles: Sequence[float] = tuple(g.quantile for g in DEFAULT_GATES),
    ) -> RunSummary:
        values = np.asarray(samples_ms, dtype=float)
        if values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError("samples_ms must be a non-empty list of positive finite latencies")
        found = np.quantile(values, list(quantiles), method=QUANTILE_METHOD)
        return cls(dict(zip(quantiles, map(float, found), strict=True)), values.size, seconds,
                   recorded_at)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantiles_ms": {f"{q:g}": v for q, v in self.quantiles_ms.items()},
            "calls": self.calls,
            "seconds": self.seconds,
            "recorded_at": self.recorded_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        quantiles = {float(q): float(v) for q, v in data["quantiles_ms"].items()}
        return cls(quantiles, int(data["calls"]), float(data["seconds"]), str(data["recorded_at"]))


@dataclass(frozen=True)
class QuantileChange:
    """How one quantile moved from baseline to current, with the ratio's interval."""

    label: str
    baseline: float  # geometric mean of the baseline runs' quantiles, ms
    current: float
    ratio: float
    ratio_low: float
    ratio_high: float
    gate: QuantileGate
    change: Outcome

    def format(self) -> str:
        """Render as ``"P99 412.3 -> 455.0 (x1.10 [1.07, 1.14]) slower"``."""
        values = f"{_num(self.baseline)} -> {_num(self.current)}"
        reported = "" if self.gate.gated else " (reported, not gated)"
        return f"{self.label} {values} ({_ratio_ci(self)}) {self.change}{reported}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantile": self.gate.quantile,
            "label": self.label,
            "baseline": _finite_or_none(self.baseline),
            "current": _finite_or_none(self.current),
            "ratio": _finite_or_none(self.ratio),
            "ratio_low": _finite_or_none(self.ratio_low),
            "ratio_high": _finite_or_none(self.ratio_high),
            "min_effect": self.gate.min_effect,
            "confidence": self.gate.confidence,
            "spread_floor": self.gate.spread_floor,
            "gated": self.gate.gated,
            "change": self.change.value,
        }


@dataclass(frozen=True)
class Comparison:
    """Per-quantile changes, the runs behind them and the overall verdict."""

    changes: tuple[QuantileChange, ...]
    baseline_runs: int
    n_current: int
    seconds_current: float
    verdict: Outcome
    reason: str

    @property
    def regressed(self) -> bool:
        return self.verdict is Outcome.SLOWER

    def change_at(self, quantile: float) -> QuantileChange | None:
        return next((c for c in self.changes if c.gate.quantile == quantile), None)

    def format(self) -> str:
        head = (
            f"{self.verdict}: this run ({self.seconds_current:.0f} s, {self.n_current} calls) "
            f"against {self.baseline_runs} stored run(s), t prediction intervals. {self.reason}"
        )
        lines = [
            f"  {c.format()} (min effect {c.gate.min_effect * 100:g}%, "
            f"{c.gate.confidence * 100:g}% interval)"
            for c in self.changes
        ]
        return "\n".join([head, *lines]).replace(". \n", ".\n")

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "regressed": self.regressed,
            "reason": self.reason,
            "changes": [c.to_dict() for c in self.changes],
            "baseline_runs": self.baseline_runs,
            "n_current": self.n_current,
            "seconds_current": self.seconds_current,
        }


def compare_runs(
    baseline: Sequence[RunSummary],
    current: RunSummary,
    gates: Sequence[QuantileGate] = DEFAULT_GATES,
) -> Comparison:
    """Compare a run with stored runs quantile by quantile; see the module docstring."""
    if not gates:
        raise ValueError("gates is empty: name at least one quantile to compare")
    for gate in gates:
        for name in ("quantile", "min_effect", "confidence"):
            if not 0.0 < getattr(gate, name) < 1.0:
                raise ValueError(f"QuantileGate.{name} must be in (0, 1), got {gate!r}")
        if not 0.0 <= gate.spread_floor < 1.0:
            raise ValueError(f"QuantileGate.spread_floor must be in [0, 1), got {gate!r}")
    if not any(gate.gated for gate in gates):
        raise ValueError("no gate decides: mark at least one QuantileGate gated")
    if not baseline:
        raise ValueError("no baseline runs to compare with")
    for run in (*baseline, current):
        missing = [g.quantile for g in gates if g.quantile not in run.quantiles_ms]
        if missing:
            raise ValueError(
                f"a run has no quantile {missing[0]:g} (it has {sorted(run.quantiles_ms)})"
            )
    ordered = sorted(gates, key=lambda g: g.quantile)
    changes = tuple(_quantile_change(gate, baseline, current) for gate in ordered)
    verdict = _overall([c.change for c in changes if c.gate.gated])
    if len(baseline) < MIN_BASELINE_RUNS:
        reason = _too_few_runs_reason(len(baseline))
    else:
        reason = _reason(verdict, changes)
    return Comparison(changes, len(baseline), current.calls, current.seconds, verdict, reason)


def prediction_interval(
    stored: np.ndarray, new: float, confidence: float, spread_floor: float = 0.0
) -> tuple[float, float, float]:
    """``new - mean(stored)`` with the t prediction interval of one more draw, the stored
    draws' standard deviation taken as at least ``spread_floor``."""
    k = stored.size
    diff = float(new - np.mean(stored))
    spread = max(float(np.std(stored, ddof=1)), spread_floor)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, k - 1)) * spread * math.sqrt(1.0 + 1.0 / k)
    return diff, diff - half, diff + half


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
        "runs",
        "verdict",
    )
    body = [
        (
            name,
            *_table_cells(c, 0.5),
            *_table_cells(c, 0.99),
            str(c.baseline_runs),
            str(c.verdict),
        )
        for name, c in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    left = {0, len(header) - 1}  # names and verdicts left-aligned, numbers right-aligned

    def line(row: Sequence[str]) -> str:
        cells = (
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perf.stats.compare OLD.json ... NEW.json``: 1 if any is SLOWER, 2 on errors."""
    parser = argparse.ArgumentParser(
        prog="python -m perf.stats.compare",
        description="Compare a saved pytest-benchmark run of this suite with earlier runs.",
    )
    parser.add_argument(
        "files",
        type=Path,
        nargs="+",
        help="baseline runs' JSON (e.g. .benchmarks/.../0001_x.json ...), then the current run's",
    )
    args = parser.parse_args(argv)
    if len(args.files) < 2:
        parser.error("give at least one baseline file and the current file")
    try:
        olds = [_load_runs(path) for path in args.files[:-1]]
        new = _load_runs(args.files[-1])
    except _InputError as exc:
        print(f"perf.stats.compare: error: {exc}", file=sys.stderr)
        return 2
    names = {name for runs in olds for name in runs}
    old = {name: [runs[name] for runs in olds if name in runs] for name in names}
    rows = [(name, compare_runs(old[name], new[name])) for name in sorted(old.keys() & new.keys())]
    args.old = ", ".join(map(str, args.files[:-1]))
    args.new = args.files[-1]
    print(f"baseline {args.old} -> current {args.new}")
    if rows:
        print(format_comparison_table(rows))
    for name, comparison in rows:
        if comparison.verdict is not Outcome.SAME:
            print(f"\n{name}\n{comparison.format()}")
    for path, only in ((args.old, old.keys() - new.keys()), (args.new, new.keys() - old.keys())):
        if only:
            print(f"\nonly in {path}: " + ", ".join(sorted(only)))
    verdicts = [c.verdict for _, c in rows]
    print("\n" + ", ".join(f"{verdicts.count(v)} {v}" for v in Outcome))
    return 1 if Outcome.SLOWER in verdicts else 0


# --- internals ---------------------------------------------------------------------------


def _quantile_change(
    gate: QuantileGate, baseline: Sequence[RunSummary], current: RunSummary
) -> QuantileChange:
    stored = np.log([run.quantiles_ms[gate.quantile] for run in baseline])
    new = math.log(current.quantiles_ms[gate.quantile])
    if stored.size < MIN_BASELINE_RUNS:
        log_ratio, low, high = new - float(np.mean(stored)), math.nan, math.nan
        change = Outcome.UNDECIDED
    else:
        log_ratio, log_low, log_high = prediction_interval(
            stored, new, gate.confidence, gate.spread_floor
        )
        low, high = math.exp(log_low), math.exp(log_high)
        change = decide(log_ratio, log_low, log_high, math.log1p(gate.min_effect))
    return QuantileChange(
        label=f"P{gate.quantile * 100:g}",
        baseline=math.exp(float(np.mean(stored))),
        current=math.exp(new),
        ratio=math.exp(log_ratio),
        ratio_low=low,
        ratio_high=high,
        gate=gate,
        change=change,
    )


def _overall(changes: Sequence[Outcome]) -> Outcome:
    for verdict in (Outcome.SLOWER, Outcome.UNDECIDED, Outcome.FASTER):
        if verdict in changes:
            return verdict
    return Outcome.SAME


def _too_few_runs_reason(runs: int) -> str:
    return (
        f"Undecided: the baseline holds {runs} run(s) of this benchmark; a comparison needs at "
        f"least {MIN_BASELINE_RUNS}, recorded at different times, to know how far whole runs "
        "land apart on this machine (an unchanged model has moved 13% between runs minutes "
        "apart on these VMs). Run `pytest perf/ ... --perf-save-baseline` again (each adds a "
        f"run; the last {MAX_BASELINE_RUNS} are kept), or compare interleaved with "
        "--perf-against REF, which needs no stored run."
    )


def _reason(verdict: Outcome, changes: Sequence[QuantileChange]) -> str:
    if verdict is Outcome.UNDECIDED:
        open_ = ", ".join(
            c.label for c in changes if c.gate.gated and c.change is Outcome.UNDECIDED
        )
        return (
            f"Undecided at {open_}: the interval reaches across a minimum-effect line; more "
            "stored runs, or steadier ones, narrow it; --perf-against REF measures both "
            "sides interleaved."
        )
    return ""


def _num(x: float) -> str:
    """Four significant digits without an exponent: 412.3, 61.23, 0.01234, 12345."""
    if not math.isfinite(x):
        return "n/a"
    digits = 3 - math.floor(math.log10(abs(x))) if x else 3
    return f"{x:.{max(0, digits)}f}"


def _ratio_ci(change: QuantileChange) -> str:
    if not math.isfinite(change.ratio_low):
        return f"x{change.ratio:.2f} [n/a]"
    return f"x{change.ratio:.2f} [{change.ratio_low:.2f}, {change.ratio_high:.2f}]"


def _table_cells(comparison: Comparison, quantile: float) -> tuple[str, str, str]:
    change = comparison.change_at(quantile)
    if change is None:
        return "-", "-", "-"
    return _num(change.baseline), _num(change.current), _ratio_ci(change)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class _InputError(Exception):
    """Unusable input: the message names the file and, where known, the benchmark."""


def _load_runs(path: Path) -> dict[str, RunSummary]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _InputError(f"cannot read {path}: {exc}") from exc
    entries = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise _InputError(f"{path} is not pytest-benchmark JSON: no 'benchmarks' list")
    runs: dict[str, RunSummary] = {}
    for entry in entries:
        name = entry.get("fullname") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise _InputError(f"{path}: a benchmark has no 'fullname'")
        extra = entry.get("extra_info")
        samples = extra.get("samples_ms") if isinstance(extra, dict) else None
        if not isinstance(samples, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in samples
        ):
            raise _InputError(
                f"{path}: benchmark {name} has no extra_info['samples_ms'] list of numbers "
                "(saved by another suite, or run with --benchmark-disable?)"
            )
        try:
            seconds = float(extra.get("perf", {}).get("sampling", {}).get("sampling_seconds", 0))
            runs[name] = RunSummary.of(samples, seconds, str(data.get("datetime", "")))
        except ValueError as exc:
            raise _InputError(f"{path}: benchmark {name}: {exc}") from exc
    return runs


if __name__ == "__main__":
    sys.exit(main())
