"""Tests for perf.stats.percentiles: point estimates, order-statistic bounds and summaries."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import binom, norm

from perf.stats.percentiles import (
    LatencySummary,
    PercentileEstimate,
    lower_bound,
    min_samples_for_lower_bound,
    min_samples_for_upper_bound,
    percentile_estimate,
    upper_bound,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

latencies = arrays(
    np.float64,
    st.integers(min_value=1, max_value=300),
    elements=st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False),
)
quantiles = st.floats(min_value=0.001, max_value=0.999)
confidences = st.floats(min_value=0.6, max_value=0.999)


def _rank_of(sorted_xs: np.ndarray, value: float) -> int:
    """1-based rank of a sample value in a tie-free sorted sample."""
    return int(np.searchsorted(sorted_xs, value)) + 1


def _exponential(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.exponential(scale=20.0, size=shape)


def _lognormal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.lognormal(mean=math.log(50.0), sigma=0.4, size=shape)


TRUE_QUANTILE: dict[str, Callable[[float], float]] = {
    "exponential": lambda q: -20.0 * math.log1p(-q),
    "lognormal": lambda q: math.exp(math.log(50.0) + 0.4 * float(norm.ppf(q))),
}
DRAW = {"exponential": _exponential, "lognormal": _lognormal}


# --- point estimate ---------------------------------------------------------------------------


@pytest.mark.parametrize(("q", "expected"), [(0.05, 1.0), (0.5, 5.0), (0.9, 9.0), (0.91, 10.0)])
def test_value_is_inverted_cdf_order_statistic(q: float, expected: float) -> None:
    samples = np.arange(10.0, 0.0, -1.0)  # 10..1, unsorted on purpose
    assert percentile_estimate(samples, q).value == expected


def test_single_sample_has_value_but_no_bounds() -> None:
    est = percentile_estimate([7.5], 0.5)
    assert (est.value, est.low, est.high, est.n) == (7.5, None, None, 1)


# --- formatting and serialisation -------------------------------------------------------------


def test_format_with_both_bounds() -> None:
    est = PercentileEstimate(q=0.99, value=412.34, low=398.0, high=431.94, confidence=0.95, n=300)
    assert est.format() == "412.3 ms [398.0, 431.9]"
    assert est.format(unit="us", precision=2) == "412.34 us [398.00, 431.94]"


def test_format_marks_missing_bounds() -> None:
    est = PercentileEstimate(q=0.99, value=412.34, low=None, high=431.94, confidence=0.95, n=3)
    assert est.format() == "412.3 ms [n/a, 431.9]"
    assert est.format().endswith("[n/a, 431.9]")


@pytest.mark.parametrize(("q", "label"), [(0.5, "P50"), (0.99, "P99"), (0.999, "P99.9")])
def test_label(q: float, label: str) -> None:
    assert PercentileEstimate(q, 1.0, None, None, 0.95, 1).label == label


def test_estimate_to_dict_is_plain() -> None:
    est = percentile_estimate(np.arange(1.0, 101.0), 0.9)
    d = est.to_dict()
    assert set(d) == {"q", "value", "low", "high", "confidence", "n"}
    assert all(type(d[k]) is float for k in ("q", "value", "low", "high", "confidence"))
    assert type(d["n"]) is int
    json.dumps(d, allow_nan=False)


# --- sample-size thresholds --------------------------------------------------------------------


def test_min_samples_for_p99_upper_bound_is_299() -> None:
    assert min_samples_for_upper_bound(0.99) == 299
    samples = np.linspace(1.0, 2.0, 299)
    assert upper_bound(samples[:298], 0.99) is None
    assert upper_bound(samples, 0.99) == samples.max()


@pytest.mark.parametrize(
    ("q", "confidence"), [(0.5, 0.95), (0.9, 0.99), (0.99, 0.99), (0.999, 0.95), (0.95, 0.5)]
)
def test_min_samples_matches_closed_form(q: float, confidence: float) -> None:
    n = min_samples_for_upper_bound(q, confidence)
    assert 1 - q**n >= confidence > 1 - q ** (n - 1)
    samples = np.arange(1.0, n + 1.0)
    assert upper_bound(samples[:-1], q, confidence) is None
    assert upper_bound(samples, q, confidence) == samples[-1]


def test_min_samples_matches_loadgen_zero_overlatency_case() -> None:
    # LoadGen's P90 at 99% with t=0 over-latency queries: ceil(log(0.01) / log(0.9)) = 44.
    assert min_samples_for_upper_bound(0.9, 0.99) == 44


def test_min_samples_for_lower_bound() -> None:
    n = min_samples_for_lower_bound(0.5, 0.95)
    assert n == 5
    samples = np.arange(1.0, n + 1.0)
    assert lower_bound(samples[:-1], 0.5) is None
    assert lower_bound(samples, 0.5) == samples[0]


# --- coverage against known distributions -------------------------------------------------------


@pytest.mark.parametrize("dist", ["exponential", "lognormal"])
@pytest.mark.parametrize(("q", "n"), [(0.5, 200), (0.9, 200), (0.99, 1000)])
def test_two_sided_interval_covers_at_nominal_rate(dist: str, q: float, n: int) -> None:
    trials, confidence = 600, 0.95
    rng = np.random.default_rng([17, n, int(q * 1000), len(dist)])
    truth = TRUE_QUANTILE[dist](q)
    estimates = [percentile_estimate(row, q, confidence) for row in DRAW[dist](rng, (trials, n))]
    assert all(e.low is not None and e.high is not None for e in estimates)
    covered = np.mean([e.low <= truth <= e.high for e in estimates])
    # The ranks are fixed by (n, q, confidence), so the exact coverage follows from them.
    first = np.sort(DRAW[dist](np.random.default_rng(0), (1, n))[0])
    ref = percentile_estimate(first, q, confidence)
    lo, hi = _rank_of(first, ref.low), _rank_of(first, ref.high)
    exact = binom.cdf(hi - 1, n, q) - binom.cdf(lo - 1, n, q)
    assert confidence <= exact < confidence + 0.03  # valid and not wastefully wide
    se = math.sqrt(exact * (1 - exact) / trials)
    assert abs(covered - exact) < 4 * se


@pytest.mark.parametrize("dist", ["exponential", "lognormal"])
def test_one_sided_bounds_cover_at_nominal_rate(dist: str) -> None:
    trials, n, q, confidence = 600, 400, 0.99, 0.95
    rng = np.random.default_rng([23, len(dist)])
    truth = TRUE_QUANTILE[dist](q)
    rows = DRAW[dist](rng, (trials, n))
    uppers = np.array([upper_bound(row, q, confidence) for row in rows])
    lowers = np.array([lower_bound(row, q, confidence) for row in rows])
    tolerance = 4 * math.sqrt(confidence * (1 - confidence) / trials)
    assert np.mean(uppers >= truth) > confidence - tolerance
    assert np.mean(lowers <= truth) > confidence - tolerance


# --- properties --------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(samples=latencies, q=quantiles, confidence=confidences)
def test_interval_brackets_estimate_with_sample_values(
    samples: np.ndarray, q: float, confidence: float
) -> None:
    est = percentile_estimate(samples, q, confidence)
    observed = set(samples.tolist())
    assert est.value in observed
    assert est.n == len(samples)
    if est.low is not None:
        assert est.low <= est.value
        assert est.low in observed
    if est.high is not None:
        assert est.value <= est.high
        assert est.high in observed


@PROPERTY_SETTINGS
@given(samples=latencies, q=quantiles, confidence=confidences)
def test_interval_ends_are_one_sided_bounds_at_half_the_risk(
    samples: np.ndarray, q: float, confidence: float
) -> None:
    est = percentile_estimate(samples, q, confidence)
    per_side = (1 + confidence) / 2
    assert est.low == lower_bound(samples, q, per_side)
    assert est.high == upper_bound(samples, q, per_side)


@PROPERTY_SETTINGS
@given(samples=latencies, q=quantiles, confidence=confidences)
def test_one_sided_bounds_bracket_estimate(
    samples: np.ndarray, q: float, confidence: float
) -> None:
    value = percentile_estimate(samples, q, confidence).value
    low, high = lower_bound(samples, q, confidence), upper_bound(samples, q, confidence)
    assert low is None or low <= value
    assert high is None or value <= high


@PROPERTY_SETTINGS
@given(samples=latencies, qs=st.lists(quantiles, min_size=2, max_size=2), confidence=confidences)
def test_monotone_in_q(samples: np.ndarray, qs: list[float], confidence: float) -> None:
    a, b = (percentile_estimate(samples, q, confidence) for q in sorted(qs))
    assert a.value <= b.value
    if a.low is not None and b.low is not None:
        assert a.low <= b.low
    if a.high is not None and b.high is not None:
        assert a.high <= b.high


@PROPERTY_SETTINGS
@given(samples=latencies, q=quantiles, confidence=confidences, seed=st.integers(0, 2**32 - 1))
def test_invariant_under_permutation(
    samples: np.ndarray, q: float, confidence: float, seed: int
) -> None:
    shuffled = np.random.default_rng(seed).permutation(samples)
    assert percentile_estimate(shuffled, q, confidence) == percentile_estimate(
        samples, q, confidence
    )


@PROPERTY_SETTINGS
@given(
    samples=latencies,
    q=quantiles,
    confidence=confidences,
    factor=st.floats(min_value=1e-3, max_value=1e3),
)
def test_scaling_samples_scales_estimate(
    samples: np.ndarray, q: float, confidence: float, factor: float
) -> None:
    base = percentile_estimate(samples, q, confidence)
    scaled = percentile_estimate(samples * factor, q, confidence)
    assert scaled.value == pytest.approx(base.value * factor, rel=1e-12)
    for got, ref in ((scaled.low, base.low), (scaled.high, base.high)):
        assert (got is None) == (ref is None)
        if ref is not None:
            assert got == pytest.approx(ref * factor, rel=1e-12)


@PROPERTY_SETTINGS
@given(samples=latencies, q=quantiles, confidences=st.lists(confidences, min_size=2, max_size=2))
def test_higher_confidence_never_narrows(
    samples: np.ndarray, q: float, confidences: list[float]
) -> None:
    loose, strict = (percentile_estimate(samples, q, c) for c in sorted(confidences))
    if strict.low is not None:
        assert loose.low is not None and loose.low >= strict.low
    if strict.high is not None:
        assert loose.high is not None and loose.high <= strict.high


# --- summary -----------------------------------------------------------------------------------


def test_summary_statistics() -> None:
    samples = np.random.default_rng(5).lognormal(math.log(40.0), 0.3, size=500)
    summary = LatencySummary.from_samples(samples)
    assert summary.n == 500
    assert summary.mean == pytest.approx(samples.mean())
    assert summary.stdev == pytest.approx(samples.std(ddof=1))
    assert (summary.min, summary.max) == (samples.min(), samples.max())
    assert summary.throughput_per_s == pytest.approx(1000.0 / samples.mean())
    assert summary.percentiles["p99"] == percentile_estimate(samples, 0.99)


def test_summary_omits_p999_until_its_upper_bound_exists() -> None:
    needed = min_samples_for_upper_bound(0.999, 0.975)
    assert needed == 3688
    samples = np.random.default_rng(9).exponential(10.0, size=needed)
    short = LatencySummary.from_samples(samples[:-1])
    full = LatencySummary.from_samples(samples)
    assert list(short.percentiles) == ["p50", "p90", "p95", "p99"]
    assert list(full.percentiles) == ["p50", "p90", "p95", "p99", "p99.9"]
    assert full.percentiles["p99.9"].high is not None


def test_summary_keeps_unboundable_percentiles_with_missing_bounds() -> None:
    summary = LatencySummary.from_samples(np.arange(1.0, 51.0))
    assert list(summary.percentiles) == ["p50", "p90", "p95", "p99"]
    assert summary.percentiles["p99"].high is None
    assert summary.percentiles["p50"].high is not None


def test_summary_to_dict_is_json_serialisable_plain_floats() -> None:
    d = LatencySummary.from_samples(np.arange(1, 401)).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d
    assert all(type(d[k]) is float for k in ("mean", "stdev", "min", "max", "throughput_per_s"))
    assert d["percentiles"]["p99"]["n"] == 400


def test_summary_degenerate_samples() -> None:
    one = LatencySummary.from_samples([12.0])
    assert (one.stdev, one.throughput_per_s) == (0.0, pytest.approx(1000.0 / 12.0))
    zeros = LatencySummary.from_samples([0.0, 0.0])
    assert zeros.throughput_per_s == math.inf
    assert zeros.to_dict()["throughput_per_s"] is None


# --- input validation --------------------------------------------------------------------------

SAMPLE_FUNCTIONS: list[Callable[[object], object]] = [
    lambda s: percentile_estimate(s, 0.5),
    lambda s: upper_bound(s, 0.5),
    lambda s: lower_bound(s, 0.5),
    LatencySummary.from_samples,
]


@pytest.mark.parametrize("call", SAMPLE_FUNCTIONS)
@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "empty"),
        ([1.0, float("nan")], "NaN"),
        ([1.0, -0.5], "negative"),
        ([1.0, float("inf")], "infinite"),
        ([[1.0, 2.0]], "one-dimensional"),
    ],
)
def test_bad_samples_rejected(
    call: Callable[[object], object], samples: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(samples)


@pytest.mark.parametrize("q", [0.0, 1.0, 99.0, -0.1, float("nan")])
@pytest.mark.parametrize("func", [percentile_estimate, upper_bound, lower_bound])
def test_bad_q_rejected(func: Callable[..., object], q: float) -> None:
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        func([1.0, 2.0], q)


@pytest.mark.parametrize("q", [0.0, 1.0, 99.0])
def test_min_samples_bad_q_rejected(q: float) -> None:
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        min_samples_for_upper_bound(q)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95.0, float("nan")])
def test_bad_confidence_rejected(confidence: float) -> None:
    for call in (
        lambda: percentile_estimate([1.0], 0.5, confidence),
        lambda: upper_bound([1.0], 0.5, confidence),
        lambda: lower_bound([1.0], 0.5, confidence),
        lambda: min_samples_for_upper_bound(0.5, confidence),
        lambda: LatencySummary.from_samples([1.0], confidence),
    ):
        with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
            call()
