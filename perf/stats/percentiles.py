"""Latency percentiles with distribution-free confidence bounds from order statistics.

Point estimates use the inverted empirical CDF (Hyndman & Fan type 1, numpy
``method="inverted_cdf"``): the smallest sample ``x`` with ``F_n(x) >= q``, i.e. the
order statistic ``X_(ceil(n*q))``. Unlike numpy's default ``"linear"`` it is always an
observed latency and always lies inside the order-statistic interval below.

Bounds rest on one fact: with ``B ~ Binomial(n, q)`` counting samples below the true
quantile ``xi_q``, ``P(X_(k) >= xi_q) = P(B <= k - 1)`` and ``P(X_(k) <= xi_q) = P(B >= k)``.
This is exact for continuous distributions and conservative otherwise; it assumes
independent samples (the same construction as asv's ``quantile_ci`` and MLPerf LoadGen's
early stopping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binom

QUANTILE_METHOD = "inverted_cdf"
SUMMARY_QUANTILES: dict[str, float] = {
    "p50": 0.5,
    "p90": 0.9,
    "p95": 0.95,
    "p99": 0.99,
    "p99.9": 0.999,
}


@dataclass(frozen=True)
class PercentileEstimate:
    """A q-quantile estimate with a two-sided interval; ``None`` marks an unboundable side."""

    q: float
    value: float
    low: float | None
    high: float | None
    confidence: float
    n: int

    @property
    def label(self) -> str:
        """Short name such as ``"P99"`` or ``"P99.9"``."""
        return f"P{self.q * 100:g}"

    def format(self, unit: str = "ms", precision: int = 1) -> str:
        """Render as ``"412.3 ms [398.0, 431.9]"``; a missing bound shows as ``n/a``."""
        low, high = (_fmt(b, precision) for b in (self.low, self.high))
        return f"{self.value:.{precision}f} {unit} [{low}, {high}]"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return {
            "q": float(self.q),
            "value": float(self.value),
            "low": _float_or_none(self.low),
            "high": _float_or_none(self.high),
            "confidence": float(self.confidence),
            "n": int(self.n),
        }


def percentile_estimate(
    samples: ArrayLike, q: float, confidence: float = 0.95
) -> PercentileEstimate:
    """Estimate the q-quantile with an equal-tailed two-sided ``confidence`` interval."""
    _check_q(q)
    _check_confidence(confidence)
    return _estimate_sorted(_sorted_samples(samples), q, confidence)


def upper_bound(samples: ArrayLike, q: float, confidence: float = 0.95) -> float | None:
    """Order statistic that is >= the true q-quantile with probability >= ``confidence``.

    ``None`` when even the sample maximum does not suffice, i.e. ``n`` is below
    ``min_samples_for_upper_bound(q, confidence)``.
    """
    _check_q(q)
    _check_confidence(confidence)
    xs = _sorted_samples(samples)
    return _order_stat(xs, _upper_rank(len(xs), q, confidence))


def lower_bound(samples: ArrayLike, q: float, confidence: float = 0.95) -> float | None:
    """Order statistic that is <= the true q-quantile with probability >= ``confidence``.

    ``None`` when even the sample minimum does not suffice.
    """
    _check_q(q)
    _check_confidence(confidence)
    xs = _sorted_samples(samples)
    return _order_stat(xs, _lower_rank(len(xs), q, confidence))


def min_samples_for_upper_bound(q: float, confidence: float = 0.95) -> int:
    """Smallest ``n`` for which ``upper_bound`` exists: ``1 - q**n >= confidence``.

    At that ``n`` the bound is the sample maximum, so every sample must lie below it.
    This is MLPerf LoadGen's early-stopping rule (``MinPassingQueriesFinder``) with zero
    over-latency queries and zero tolerance: 299 for P99 at 95%, 44 for P90 at 99%.
    LoadGen itself demands room for one over-latency query (64 queries for P90 at 99%).
    """
    _check_q(q)
    _check_confidence(confidence)
    n = max(1, math.ceil(math.log1p(-confidence) / math.log(q)))
    # The closed form can be off by one through rounding; settle on the exact predicate.
    while n > 1 and _upper_exists(n - 1, q, confidence):
        n -= 1
    while not _upper_exists(n, q, confidence):
        n += 1
    return n


def min_samples_for_lower_bound(q: float, confidence: float = 0.95) -> int:
    """Smallest ``n`` for which ``lower_bound`` exists: ``1 - (1 - q)**n >= confidence``."""
    return min_samples_for_upper_bound(1.0 - q, confidence)


@dataclass(frozen=True)
class LatencySummary:
    """Summary of latency samples in milliseconds.

    ``percentiles`` holds p50, p90, p95 and p99 always (bounds ``None`` where ``n`` is
    too small) and p99.9 only once its interval has an upper end.
    """

    n: int
    mean: float
    stdev: float
    min: float
    max: float
    percentiles: dict[str, PercentileEstimate]

    @classmethod
    def from_samples(cls, samples_ms: ArrayLike, confidence: float = 0.95) -> LatencySummary:
        """Summarise latencies given in milliseconds."""
        _check_confidence(confidence)
        xs = _sorted_samples(samples_ms)
        n = len(xs)
        estimates = {
            key: _estimate_sorted(xs, q, confidence)
            for key, q in SUMMARY_QUANTILES.items()
            if key != "p99.9" or n >= min_samples_for_upper_bound(q, _two_sided(confidence))
        }
        return cls(
            n=n,
            mean=float(xs.mean()),
            stdev=float(xs.std(ddof=1)) if n > 1 else 0.0,
            min=float(xs[0]),
            max=float(xs[-1]),
            percentiles=estimates,
        )

    @property
    def throughput_per_s(self) -> float:
        """Sequential requests per second, ``1000 / mean`` (samples are in ms)."""
        return 1000.0 / self.mean if self.mean > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict; throughput is ``None`` when the mean is zero."""
        throughput = self.throughput_per_s
        return {
            "n": self.n,
            "mean": self.mean,
            "stdev": self.stdev,
            "min": self.min,
            "max": self.max,
            "throughput_per_s": throughput if math.isfinite(throughput) else None,
            "percentiles": {key: est.to_dict() for key, est in self.percentiles.items()},
        }


def _estimate_sorted(xs: np.ndarray, q: float, confidence: float) -> PercentileEstimate:
    n = len(xs)
    level = _two_sided(confidence)
    return PercentileEstimate(
        q=float(q),
        value=float(np.quantile(xs, q, method=QUANTILE_METHOD)),
        low=_order_stat(xs, _lower_rank(n, q, level)),
        high=_order_stat(xs, _upper_rank(n, q, level)),
        confidence=float(confidence),
        n=n,
    )


def _two_sided(confidence: float) -> float:
    """Per-side level of an equal-tailed interval; the two tails are disjoint events."""
    return (1.0 + confidence) / 2.0


@lru_cache(maxsize=1024)
def _upper_rank(n: int, q: float, confidence: float) -> int | None:
    """Smallest 1-based k with P(B <= k - 1) >= confidence, or None if k would exceed n."""
    cdf = binom.cdf(np.arange(n), n, q)
    k = int(np.count_nonzero(cdf < confidence)) + 1
    return k if k <= n else None


@lru_cache(maxsize=1024)
def _lower_rank(n: int, q: float, confidence: float) -> int | None:
    """Largest 1-based k with P(B >= k) >= confidence, or None if no k >= 1 works."""
    sf = binom.sf(np.arange(n), n, q)  # sf[k - 1] = P(B >= k)
    k = int(np.count_nonzero(sf >= confidence))
    return k if k >= 1 else None


def _upper_exists(n: int, q: float, confidence: float) -> bool:
    return bool(binom.cdf(n - 1, n, q) >= confidence)


def _order_stat(xs: np.ndarray, rank: int | None) -> float | None:
    return None if rank is None else float(xs[rank - 1])


def _sorted_samples(samples: ArrayLike) -> np.ndarray:
    xs = np.asarray(samples, dtype=float)
    if xs.ndim != 1:
        raise ValueError(f"samples must be one-dimensional, got shape {xs.shape}")
    if xs.size == 0:
        raise ValueError("samples are empty; need at least one latency")
    if np.isnan(xs).any():
        raise ValueError(f"samples contain {int(np.isnan(xs).sum())} NaN value(s)")
    if np.isinf(xs).any():
        raise ValueError("samples contain infinite values")
    if (xs < 0).any():
        raise ValueError(f"samples contain negative latencies (min {xs.min():g})")
    return np.sort(xs)


def _check_q(q: float) -> None:
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1) (0.99 for P99), got {q!r}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")


def _fmt(bound: float | None, precision: int) -> str:
    return "n/a" if bound is None else f"{bound:.{precision}f}"


def _float_or_none(x: float | None) -> float | None:
    return None if x is None else float(x)
