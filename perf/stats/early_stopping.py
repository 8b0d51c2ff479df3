"""How many requests a percentile claim needs: MLPerf LoadGen's early-stopping rule.

"P99 is under the bound" is a claim about the model, not the run; a run of N requests with t of
them over the bound supports it when, were the model's true over-bound fraction as high as
``1 - percentile``, a run would show t or fewer over-bound requests in N with probability at
most ``1 - confidence``. With h the under-bound requests, that is the binomial tail

    P(X <= t),  X ~ Binomial(h + t, 1 - percentile)  <=  1 - confidence,

and ``min_passing(t)`` is the least h for which it holds (LoadGen's ``MinPassingQueriesFinder``,
loadgen/early_stopping.cc, with tolerance 0). For P99 at 99% a run with none over the bound
needs 459 requests; at 95%, 299.

Two uses, as in LoadGen (loadgen/results.cc):

* **a bound** (server scenario, peak-rate search): ``claim_holds`` says whether a run's
  latencies prove "the percentile is at most the bound";
* **an estimate** (``percentile_upper_bound``): the largest t for which the run is long
  enough, and the latency that many places from the top, a value the true percentile stays
  under at that confidence (LoadGen prints it as the "early stopping percentile estimate").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from scipy import stats


def _check(percentile: float, confidence: float) -> None:
    for name, value in (("percentile", percentile), ("confidence", confidence)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def _passes(h: int, t: int, percentile: float, confidence: float) -> bool:
    return float(stats.binom.cdf(t, h + t, 1.0 - percentile)) <= 1.0 - confidence


def min_passing(t: int, percentile: float, confidence: float) -> int:
    """The least number of under-bound requests that, beside ``t`` over it, proves the claim."""
    _check(percentile, confidence)
    if t < 0:
        raise ValueError(f"over-bound count must be >= 0, got {t}")
    low = max(0, math.ceil(math.log(1.0 - confidence) / math.log(percentile)) - 1)
    high = max(low + 1, 2 * low)
    while not _passes(high, t, percentile, confidence):
        low, high = high, 2 * high
    while low < high:  # the least passing h in (low, high]
        mid = (low + high) // 2
        if _passes(mid, t, percentile, confidence):
            high = mid
        else:
            low = mid + 1
    return high


@dataclasses.dataclass(frozen=True)
class BoundClaim:
    """Whether a run proves "the ``percentile`` of latency is at most ``bound_ms``"."""

    holds: bool
    requests: int
    over_bound: int
    needed: int  # requests that would prove it with this many over the bound

    def line(self, percentile: float, confidence: float, bound_ms: float) -> str:
        label = f"P{percentile * 100:g} <= {bound_ms:g} ms"
        if self.holds:
            return (
                f"{label} proven at {confidence * 100:g}% ({self.over_bound} of "
                f"{self.requests} requests over it)"
            )
        return (
            f"{label} not proven at {confidence * 100:g}%: {self.over_bound} of "
            f"{self.requests} over it; {self.needed} requests would prove it if no more were"
        )


def claim_holds(
    latencies_ms: Sequence[float], bound_ms: float, percentile: float, confidence: float
) -> BoundClaim:
    over = sum(1 for x in latencies_ms if x > bound_ms)
    needed = min_passing(over, percentile, confidence) + over
    return BoundClaim(len(latencies_ms) >= needed, len(latencies_ms), over, needed)


def percentile_upper_bound(
    latencies_ms: Sequence[float], percentile: float, confidence: float
) -> float | None:
    """A latency the true ``percentile`` stays under at ``confidence``; None when the run is
    too short to bound it at all (fewer than ``min_passing(1) + 1`` requests)."""
    ordered = sorted(latencies_ms)
    n = len(ordered)
    if n < min_passing(1, percentile, confidence) + 1:
        return None
    t = 1
    while n >= min_passing(t + 1, percentile, confidence) + t + 1:
        t += 1
    return ordered[n - t]
