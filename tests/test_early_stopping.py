"""LoadGen's early-stopping rule, against the figures LoadGen itself prints, and as a claim."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from perf.stats.early_stopping import claim_holds, min_passing, percentile_upper_bound


def test_requests_needed_with_none_over_the_bound() -> None:
    # 0.99^459 < 1% <= 0.99^458; 0.99^299 < 5% <= 0.99^298.
    assert min_passing(0, 0.99, 0.99) == 459
    assert min_passing(0, 0.99, 0.95) == 299


def test_loadgen_single_stream_figures() -> None:
    # LoadGen's summaries for a 90th-percentile run: "Processed at least 64 queries", and of
    # 2048 (2116) queries "Would discard 172 (178) highest latency queries", so the estimate is
    # the latency 173 (179) places from the top.
    assert min_passing(1, 0.90, 0.99) + 1 == 64
    for n, discarded in ((2048, 172), (2116, 178)):
        latencies = np.arange(1.0, n + 1.0)
        assert percentile_upper_bound(latencies, 0.90, 0.99) == n - discarded
    assert percentile_upper_bound(np.arange(63.0), 0.90, 0.99) is None


@settings(max_examples=40, deadline=None)
@given(t=st.integers(0, 30), percentile=st.sampled_from([0.9, 0.95, 0.99]))
def test_min_passing_is_the_least_count_whose_binomial_tail_is_small(
    t: int, percentile: float
) -> None:
    h = min_passing(t, percentile, 0.95)
    assert stats.binom.cdf(t, h + t, 1 - percentile) <= 0.05
    assert h == 0 or stats.binom.cdf(t, h - 1 + t, 1 - percentile) > 0.05


def test_a_claim_needs_more_requests_for_each_one_over_the_bound() -> None:
    quick = [10.0] * 299
    assert claim_holds(quick, 50.0, 0.99, 0.95).holds
    one_slow = [*quick[:-1], 80.0]
    claim = claim_holds(one_slow, 50.0, 0.99, 0.95)
    assert not claim.holds and claim.over_bound == 1
    assert claim.needed == min_passing(1, 0.99, 0.95) + 1 > 299
    assert "not proven at 95%" in claim.line(0.99, 0.95, 50.0)


def test_claims_at_a_true_p99_over_the_bound_are_rarely_proven() -> None:
    # Latencies whose true P99 is 10% over the bound: the claim must hold at most ~5% of runs.
    rng = np.random.default_rng(3)
    bound = float(stats.expon.ppf(0.99)) / 1.1
    proven = sum(claim_holds(rng.exponential(size=600), bound, 0.99, 0.95).holds
                 for _ in range(400))  # fmt: skip
    assert proven <= 0.05 * 400


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5])
def test_levels_outside_zero_one_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="must be in"):
        min_passing(0, bad, 0.95)
    with pytest.raises(ValueError, match="must be in"):
        min_passing(0, 0.99, bad)
