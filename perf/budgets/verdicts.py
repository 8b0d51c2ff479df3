"""Pass/fail verdicts for a latency budget on a quantile, decided with confidence."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from numpy.typing import ArrayLike

from perf.stats.outcome import Outcome
from perf.stats.percentiles import (
    PercentileEstimate,
    lower_bound,
    min_samples_for_lower_bound,
    min_samples_for_upper_bound,
    percentile_estimate,
    upper_bound,
)


@dataclass(frozen=True)
class BudgetDecision:
    """A verdict, the estimate behind it and a human-readable reason."""

    verdict: Outcome
    estimate: PercentileEstimate
    budget_ms: float
    reason: str
    decided_by_point_estimate: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return {
            "verdict": self.verdict.value,
            "estimate": self.estimate.to_dict(),
            "budget_ms": float(self.budget_ms),
            "reason": self.reason,
            "decided_by_point_estimate": self.decided_by_point_estimate,
        }


def judge_budget(
    samples_ms: ArrayLike, q: float, budget_ms: float, confidence: float = 0.95
) -> BudgetDecision:
    """Judge whether the true q-quantile of the latencies (ms) meets ``budget_ms``.

    PASS when the one-sided upper ``confidence`` bound is at or below the budget, FAIL when
    the one-sided lower bound is above it, UNDECIDED otherwise (also when ``n`` is too small
    for the bound that would decide). The reason shows the two-sided interval.
    """
    _check_budget(budget_ms)
    _check_confidence(confidence)
    estimate = percentile_estimate(samples_ms, q, confidence)
    upper = upper_bound(samples_ms, q, confidence)
    lower = lower_bound(samples_ms, q, confidence)
    head = f"{estimate.label} {estimate.format()} is"
    tail = f"the {budget_ms:g} ms budget with {_pct(confidence)} confidence (n={estimate.n}"
    if upper is not None and upper <= budget_ms:
        reason = f"{head} below {tail}, one-sided upper bound {upper:.1f} ms)"
        return BudgetDecision(Outcome.PASS, estimate, budget_ms, reason)
    if lower is not None and lower > budget_ms:
        reason = f"{head} above {tail}, one-sided lower bound {lower:.1f} ms)"
        return BudgetDecision(Outcome.FAIL, estimate, budget_ms, reason)
    return BudgetDecision(
        Outcome.UNDECIDED, estimate, budget_ms, _undecided_reason(estimate, budget_ms, upper, lower)
    )


def final_decision(decision: BudgetDecision) -> BudgetDecision:
    """Force a verdict at the sampling cap from the point estimate; decided inputs pass through."""
    if decision.verdict is not Outcome.UNDECIDED:
        return decision
    estimate = decision.estimate
    above = estimate.value > decision.budget_ms
    reason = (
        f"{estimate.label} {estimate.format()} is {'above' if above else 'within'} the "
        f"{decision.budget_ms:g} ms budget by point estimate only: still undecided with "
        f"{_pct(estimate.confidence)} confidence at the sampling cap (n={estimate.n})"
    )
    return dataclasses.replace(
        decision,
        verdict=Outcome.FAIL if above else Outcome.PASS,
        reason=reason,
        decided_by_point_estimate=True,
    )


def should_sample_more(decision: BudgetDecision) -> bool:
    """True while the verdict is UNDECIDED."""
    return decision.verdict is Outcome.UNDECIDED


def _undecided_reason(
    estimate: PercentileEstimate, budget_ms: float, upper: float | None, lower: float | None
) -> str:
    head = f"{estimate.label} {estimate.format()}"
    conf = _pct(estimate.confidence)
    budget = f"{budget_ms:g} ms budget"
    if estimate.value <= budget_ms and upper is None:
        need = min_samples_for_upper_bound(estimate.q, estimate.confidence)
        return (
            f"{head} cannot be shown within the {budget} with {conf} confidence: "
            f"n={estimate.n} is too few for an upper bound (need n >= {need})"
        )
    if estimate.value > budget_ms and lower is None:
        need = min_samples_for_lower_bound(estimate.q, estimate.confidence)
        return (
            f"{head} cannot be shown above the {budget} with {conf} confidence: "
            f"n={estimate.n} is too few for a lower bound (need n >= {need})"
        )
    return f"{head} is too close to the {budget} to call with {conf} confidence (n={estimate.n})"


def _check_budget(budget_ms: float) -> None:
    if not (math.isfinite(budget_ms) and budget_ms > 0):
        raise ValueError(f"budget_ms must be a positive finite number of ms, got {budget_ms!r}")


def _check_confidence(confidence: float) -> None:
    # Below 0.5 the one-sided bounds can cross, and PASS and FAIL could both hold.
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence for a verdict must be in [0.5, 1), got {confidence!r}")


def _pct(confidence: float) -> str:
    return f"{confidence * 100:g}%"
