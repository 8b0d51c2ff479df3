"""The peak-rate search on a fake model of known capacity, on a fake clock (no wall time)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from perf.budgets.rules import Budget
from perf.measure.cases import PerfCase
from perf.scenarios.open_loop import OpenLoopRun, Workload, poisson_schedule, run_open_loop
from perf.scenarios.peak import PeakPoint, PeakResult, find_peak, point_requests
from perf.stats.early_stopping import BoundClaim
from perf.stats.outcome import Outcome
from tests.test_open_loop import FakeClock

CASE = PerfCase("fake/fp32", "cpu", 3.0)
SERVICE_S = 0.010  # one request at a time: capacity 100 req/s
SLO_MS = 50.0


def _model(clock: FakeClock, seconds: float = SERVICE_S):
    def call() -> None:
        clock.t += seconds

    return call


def _one_length(clock: FakeClock) -> Workload:
    return Workload((_model(clock),))


def _true_p99_ms(rate: float) -> float:
    """P99 of this M/D/1 queue at ``rate``, from one long run (many times a search point)."""
    clock = FakeClock()
    schedule = poisson_schedule(rate, 100_000, seed=99)
    run = run_open_loop(schedule, lambda _r: _model(clock)(), rate, clock=clock)
    return float(np.quantile(run.values("latency_ms"), 0.99))


def test_the_search_brackets_the_rate_where_p99_reaches_the_slo() -> None:
    clock = FakeClock()
    result = find_peak(CASE, _one_length(clock), SLO_MS, workers=1, max_seconds=600.0, clock=clock)

    assert result.capacity_rps == pytest.approx(100.0)
    assert result.failed_rps is not None and result.proven_rps > 0
    assert result.failed_rps / result.proven_rps <= 1.10 and "within 10%" in result.stopped
    # The proven rate really meets the SLO, the failed one (nearly) does not; and the
    # search is not timid: the proven rate is within 20% of where P99 crosses 50 ms.
    assert _true_p99_ms(result.proven_rps) <= SLO_MS
    assert _true_p99_ms(result.failed_rps * 1.1) > SLO_MS
    assert _true_p99_ms(result.proven_rps * 1.2) > SLO_MS
    assert all(len(p.run.served) == point_requests(0.95) for p in result.points)


def test_the_time_cap_bounds_the_whole_search() -> None:
    clock = FakeClock()
    result = find_peak(CASE, _one_length(clock), SLO_MS, workers=1, max_seconds=15.0, clock=clock)

    assert sum(p.run.seconds for p in result.points) <= 15.0 * 1.1
    assert result.stopped.startswith("time cap")
    assert "at least" in result.line() and "req/s" in result.line()


def test_an_slo_below_one_call_is_met_by_no_rate() -> None:
    clock = FakeClock()
    result = find_peak(CASE, _one_length(clock), 5.0, workers=1, max_seconds=10_000.0, clock=clock)

    assert result.proven_rps == 0.0 and result.stopped == "no rate meets the SLO"
    assert result.to_dict()["peak_rps_interval"][0] == 0.0


def test_a_mix_is_served_by_its_weights_and_its_capacity_weighs_each_length() -> None:
    clock = FakeClock()
    # A quarter of the requests take 40 ms, the rest 10 ms: 17.5 ms on average.
    mix = Workload((_model(clock, 0.010), _model(clock, 0.040)), (3.0, 1.0), ("1s", "4s"))

    result = find_peak(CASE, mix, 200.0, workers=1, max_seconds=600.0, clock=clock)

    assert result.capacity_rps == pytest.approx(1 / 0.0175)
    kinds = [s.request.kind for p in result.points for s in p.run.served]
    assert 0.2 < kinds.count(1) / len(kinds) < 0.3


def _result_with(points: list[tuple[float, bool]], budget: Budget | None) -> PeakResult:
    def point(rate: float, passed: bool) -> PeakPoint:
        run = OpenLoopRun(rate, 1, (), 10.0)
        return PeakPoint(run, BoundClaim(passed, 449, 0 if passed else 9, 299))

    return PeakResult(CASE, SLO_MS, 0.95, 100.0, tuple(point(*p) for p in points), "x", budget)


def test_a_budget_min_rate_passes_fails_or_waits_for_a_rate_near_it() -> None:
    budget = Budget(p99_ms=SLO_MS, p50_ms=None, rule="r", min_rate_rps=40.0)
    assert _result_with([(50.0, True)], budget).verdict is Outcome.PASS
    assert _result_with([(50.0, False), (30.0, False)], budget).verdict is Outcome.FAIL
    assert _result_with([(20.0, True), (60.0, False)], budget).verdict is Outcome.UNDECIDED
    assert _result_with([(50.0, True)], None).verdict is Outcome.NOT_GATED
    other_slo = dataclasses.replace(budget, p99_ms=80.0)
    result = _result_with([(50.0, True)], other_slo)
    assert result.verdict is Outcome.NOT_GATED and "--perf-slo-ms 80" in result.verdict_line()
