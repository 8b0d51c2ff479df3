"""Tests for perf.budgets.verdicts: budget verdicts from order-statistic bounds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from perf.budgets.verdicts import (
    BudgetDecision,
    final_decision,
    judge_budget,
    should_sample_more,
)
from perf.stats.outcome import Outcome
from perf.stats.percentiles import percentile_estimate, upper_bound

ORDER = {Outcome.FAIL: 0, Outcome.UNDECIDED: 1, Outcome.PASS: 2}


def _lognormal(n: int, seed: int, median_ms: float = 10.0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(median_ms), 0.3, size=n)


def test_clearly_below_budget_passes() -> None:
    decision = judge_budget(_lognormal(1000, seed=1), 0.99, budget_ms=100.0)
    assert decision.verdict is Outcome.PASS
    assert "is below the 100 ms budget with 95% confidence (n=1000" in decision.reason
    assert not decision.decided_by_point_estimate
    assert not should_sample_more(decision)


def test_clearly_above_budget_fails() -> None:
    decision = judge_budget(_lognormal(1000, seed=2), 0.99, budget_ms=5.0)
    assert decision.verdict is Outcome.FAIL
    assert "is above the 5 ms budget with 95% confidence (n=1000" in decision.reason
    assert not should_sample_more(decision)


def test_reason_shows_estimate_interval_budget_confidence_and_n() -> None:
    samples = np.arange(1.0, 301.0)
    decision = judge_budget(samples, 0.99, budget_ms=100.0)
    est = percentile_estimate(samples, 0.99)
    assert decision.estimate == est
    assert decision.reason.startswith(
        f"P99 {est.format()} is above the 100 ms budget with 95% confidence (n=300"
    )


def test_budget_at_point_estimate_is_undecided() -> None:
    samples = _lognormal(1000, seed=3)
    budget = percentile_estimate(samples, 0.99).value
    decision = judge_budget(samples, 0.99, budget_ms=budget)
    assert decision.verdict is Outcome.UNDECIDED
    assert "too close" in decision.reason
    assert should_sample_more(decision)


def test_too_few_samples_for_upper_bound_is_undecided() -> None:
    fast = np.full(298, 1.0)  # far below budget, yet P99 cannot be bounded from 298 samples
    decision = judge_budget(fast, 0.99, budget_ms=100.0)
    assert decision.verdict is Outcome.UNDECIDED
    assert "too few for an upper bound (need n >= 299)" in decision.reason
    assert judge_budget(np.full(299, 1.0), 0.99, budget_ms=100.0).verdict is Outcome.PASS


def test_too_few_samples_for_lower_bound_is_undecided() -> None:
    slow = np.full(4, 1000.0)
    decision = judge_budget(slow, 0.5, budget_ms=1.0)
    assert decision.verdict is Outcome.UNDECIDED
    assert "too few for a lower bound (need n >= 5)" in decision.reason
    assert judge_budget(np.full(5, 1000.0), 0.5, budget_ms=1.0).verdict is Outcome.FAIL


def test_budget_equal_to_upper_bound_passes() -> None:
    samples = _lognormal(400, seed=4)
    bound = upper_bound(samples, 0.99)
    assert bound is not None
    assert judge_budget(samples, 0.99, budget_ms=bound).verdict is Outcome.PASS


@pytest.mark.parametrize(
    ("budget_factor", "expected"), [(0.999, Outcome.FAIL), (1.0, Outcome.PASS)]
)
def test_final_decision_falls_back_to_point_estimate(
    budget_factor: float, expected: Outcome
) -> None:
    samples = _lognormal(1000, seed=3)
    budget = percentile_estimate(samples, 0.99).value * budget_factor
    undecided = judge_budget(samples, 0.99, budget_ms=budget)
    assert undecided.verdict is Outcome.UNDECIDED
    final = final_decision(undecided)
    assert final.verdict is expected
    assert final.decided_by_point_estimate
    assert "undecided" in final.reason and "sampling cap" in final.reason
    assert (final.estimate, final.budget_ms) == (undecided.estimate, undecided.budget_ms)
    assert not should_sample_more(final)


@pytest.mark.parametrize("budget", [5.0, 100.0])
def test_final_decision_returns_decided_input_unchanged(budget: float) -> None:
    decided = judge_budget(_lognormal(1000, seed=1), 0.99, budget_ms=budget)
    assert decided.verdict is not Outcome.UNDECIDED
    assert final_decision(decided) is decided


def test_verdict_is_a_string_enum_and_decision_serialises() -> None:
    assert str(Outcome.PASS) == "pass" and f"{Outcome.FAIL}" == "fail"
    assert Outcome("undecided") is Outcome.UNDECIDED
    decision = judge_budget(np.arange(1.0, 51.0), 0.99, budget_ms=100.0)
    d = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert d["verdict"] == "undecided"
    assert d["estimate"]["high"] is None
    assert isinstance(decision, BudgetDecision)


def test_error_rates_at_the_boundary_stay_within_confidence() -> None:
    # True P99 sits exactly on the budget: each wrong verdict may occur at most ~5% of runs.
    trials, n, q = 400, 500, 0.99
    rng = np.random.default_rng(31)
    budget = -20.0 * math.log1p(-q)
    verdicts = [
        judge_budget(rng.exponential(20.0, size=n), q, budget).verdict for _ in range(trials)
    ]
    tolerance = 4 * math.sqrt(0.05 * 0.95 / trials)
    assert verdicts.count(Outcome.PASS) / trials < 0.05 + tolerance
    assert verdicts.count(Outcome.FAIL) / trials < 0.05 + tolerance


@settings(max_examples=60, deadline=None)
@given(
    samples=arrays(
        np.float64,
        st.integers(min_value=1, max_value=400),
        elements=st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False),
    ),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    budgets=st.lists(st.floats(min_value=0.01, max_value=2e3), min_size=2, max_size=2),
)
def test_verdict_monotone_in_budget(samples: np.ndarray, q: float, budgets: list[float]) -> None:
    tight, loose = (judge_budget(samples, q, b).verdict for b in sorted(budgets))
    assert ORDER[tight] <= ORDER[loose]


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_budget_rejected(budget: float) -> None:
    with pytest.raises(ValueError, match="budget_ms must be a positive finite"):
        judge_budget([1.0, 2.0], 0.5, budget)


@pytest.mark.parametrize("confidence", [0.3, 1.0, 95.0])
def test_bad_confidence_rejected(confidence: float) -> None:
    with pytest.raises(ValueError, match=r"confidence for a verdict must be in \[0.5, 1\)"):
        judge_budget([1.0, 2.0], 0.5, 10.0, confidence)


def test_bad_samples_and_q_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        judge_budget([], 0.5, 10.0)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        judge_budget([1.0], 99, 10.0)
