"""Since when: change points in a benchmark's run history (one P50 per run, oldest first).

Binary segmentation on log P50 with a permutation test of the best split:

* every split leaving at least ``min_runs`` runs on each side gets a Welch-type t statistic of
  the difference of mean log P50, its spread never taken below the machine's drift between runs
  (``DRIFT_FLOOR``, the stored-run gate's floor: perf.stats.compare) so that a quiet stretch
  cannot make a 2% wobble significant;
* the largest |t| over all splits is compared with the largest |t| of ``permutations`` shuffles
  of the same runs (the max-statistic permutation test): under "nothing changed" every order is
  equally likely, so the p-value holds whatever the series' length and however many splits were
  tried, which a t-test of the best split alone does not; it says the order matters, not that
  the step is larger than the machine's drift, hence the interval rule next;
* a split is a change point when its interval (with the floor) excludes no change, and
  p <= ``alpha`` (default 0.01: a history holds many series, and each false
  alarm costs someone an investigation) is a change point; each side is searched again, with
  ``alpha`` halved per level (a Bonferroni-style spend, so the whole search keeps its false
  rate).

Each change point has its commit (the first run after it), the ratio of geometric means with a
t interval, the p-value and the runs on each side. Why not a library: ruptures finds splits by a
penalised cost with no false-change-point rate to state; Apache Otava (E-divisive means + t-test)
pins numpy 2.2 and scipy < 1.17; MongoDB's signal-processing-algorithms needs numpy < 2. The
method here is small, uses numpy and scipy.stats only, and its false rate is measured (tests and
README) on series of unchanged runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

DRIFT_FLOOR = 0.05  # log sd between runs of one artifact on these VMs (perf.stats.compare)
MIN_RUNS = 3
PERMUTATIONS = 999


@dataclasses.dataclass(frozen=True)
class ChangePoint:
    index: int  # the first run after the change
    ratio: float  # geometric mean after / before
    low: float
    high: float
    p_value: float
    before: int  # runs on each side, within the segment searched
    after: int

    def describe(self, label: str = "") -> str:
        where = f" at {label}" if label else f" before run {self.index + 1}"
        return (
            f"change{where}: P50 x{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}], "
            f"p={self.p_value:.3f} (max-t permutation test), {self.before} runs before, "
            f"{self.after} after"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def change_points(
    p50_ms: Sequence[float],
    alpha: float = 0.01,
    min_runs: int = MIN_RUNS,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> list[ChangePoint]:
    """The change points of a series of run P50s (ms, oldest first), in order."""
    values = np.log(np.asarray(p50_ms, dtype=float))
    if not np.all(np.isfinite(values)):
        raise ValueError("P50s must be positive and finite")
    rng = np.random.default_rng(seed)
    found: list[ChangePoint] = []
    _search(values, 0, alpha, min_runs, permutations, rng, found)
    return sorted(found, key=lambda c: c.index)


def _search(
    values: np.ndarray, offset: int, alpha: float, min_runs: int, permutations: int,
    rng: np.random.Generator, found: list[ChangePoint],
) -> None:  # fmt: skip
    if len(values) < 2 * min_runs:
        return
    split, statistic = _best_split(values, min_runs)
    shuffled = [_best_split(rng.permutation(values), min_runs)[1] for _ in range(permutations)]
    p_value = (1 + sum(s >= statistic for s in shuffled)) / (permutations + 1)
    change = _change(values, split, offset, p_value)
    # The permutation test asks only whether the order matters: a clean 3% step in runs 0.2%
    # apart is "ordered". Its size must also stand out of the drift between runs (the floor).
    if p_value > alpha or change.low <= 1 <= change.high:
        return
    found.append(change)
    _search(values[:split], offset, alpha / 2, min_runs, permutations, rng, found)
    _search(values[split:], offset + split, alpha / 2, min_runs, permutations, rng, found)


def _best_split(values: np.ndarray, min_runs: int) -> tuple[int, float]:
    """The split with the largest |t| (runs before it: ``values[:split]``), and that |t|;
    every split at once, from running sums."""
    n = len(values)
    splits = np.arange(min_runs, n - min_runs + 1)
    sums, squares = np.cumsum(values), np.cumsum(values**2)
    before_n, after_n = splits, n - splits
    before_sum, after_sum = sums[splits - 1], sums[-1] - sums[splits - 1]
    before_sq, after_sq = squares[splits - 1], squares[-1] - squares[splits - 1]
    before_mean, after_mean = before_sum / before_n, after_sum / after_n
    before_var = (before_sq - before_n * before_mean**2) / (before_n - 1)
    after_var = (after_sq - after_n * after_mean**2) / (after_n - 1)
    floor = DRIFT_FLOOR**2
    spread = np.sqrt(np.maximum(before_var, floor) / before_n +
                     np.maximum(after_var, floor) / after_n)  # fmt: skip
    t = np.abs(after_mean - before_mean) / spread
    best = int(np.argmax(t))
    return int(splits[best]), float(t[best])


def _spread(before: np.ndarray, after: np.ndarray) -> float:
    """The standard error of the difference of means, with each side's sd at least the floor."""
    sd_a = max(float(np.std(before, ddof=1)), DRIFT_FLOOR)
    sd_b = max(float(np.std(after, ddof=1)), DRIFT_FLOOR)
    return math.sqrt(sd_a**2 / len(before) + sd_b**2 / len(after))


def _change(values: np.ndarray, split: int, offset: int, p_value: float) -> ChangePoint:
    before, after = values[:split], values[split:]
    difference = float(np.mean(after) - np.mean(before))
    dof = len(before) + len(after) - 2
    half = float(stats.t.ppf(0.975, dof)) * _spread(before, after)
    return ChangePoint(
        offset + split, math.exp(difference), math.exp(difference - half),
        math.exp(difference + half), p_value, len(before), len(after),
    )  # fmt: skip
