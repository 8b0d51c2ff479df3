"""Since when: change points in a run history, on series of known answer (seeded, no clock)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perf.stats.change_points import change_points


def _runs(n: int, seed: int, steps: dict[int, float] | None = None, sd: float = 0.05) -> list:
    """Run P50s (ms) with lognormal between-run drift, times ``factor`` from each step on."""
    p50 = 100.0 * np.exp(np.random.default_rng(seed).normal(0.0, sd, n))
    for index, factor in (steps or {}).items():
        p50[index:] *= factor
    return list(p50)


def test_a_fifteen_percent_step_is_found_at_its_run() -> None:
    found = [change_points(_runs(24, seed, {12: 1.15}), permutations=199) for seed in range(20)]
    at = [[c.index for c in f] for f in found]
    assert sum(a == [12] for a in at) >= 12, at  # at the run, alone, in most series
    assert sum(len(a) == 1 and abs(a[0] - 12) <= 1 for a in at) >= 16, at
    assert sum(bool(a) for a in at) >= 19
    first = found[1][0]  # a series where it landed at run 12
    assert first.index == 12 and first.before == 12 and first.after == 12
    assert first.low < 1.15 < first.high and first.p_value <= 0.01


def test_two_steps_are_both_found() -> None:
    (first, second) = change_points(_runs(36, 3, {12: 1.25, 24: 1.25}), permutations=199)
    assert (first.index, second.index) == (12, 24)
    assert first.ratio > 1.1 and second.ratio > 1.1


def test_unchanged_series_rarely_have_a_change_point() -> None:
    # alpha 0.01 per series: measured 5 of 400 iid series of 20 runs (1.25%); here 200 series
    false = sum(bool(change_points(_runs(20, 5000 + s), permutations=199)) for s in range(200))
    assert false <= 8, false


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 40))
def test_a_change_point_always_leaves_enough_runs_on_each_side(seed: int, n: int) -> None:
    for change in change_points(_runs(n, seed, {n // 2: 1.3}), permutations=49):
        assert 3 <= change.index <= n - 3
        assert change.low <= change.ratio <= change.high


def test_a_quiet_stretch_does_not_make_a_small_wobble_significant() -> None:
    # Runs 0.2% apart, then a 3% step: inside the machine's drift between runs (the floor)
    p50 = [100.0 + 0.2 * (i % 2) for i in range(10)] + [103.0 + 0.2 * (i % 2) for i in range(10)]
    assert change_points(p50, permutations=199) == []


def test_p50s_that_are_not_positive_are_refused() -> None:
    with pytest.raises(ValueError, match="positive and finite"):
        change_points([1.0, 0.0, 2.0])
