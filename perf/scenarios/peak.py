"""``--perf-rate peak --perf-slo-ms B``: the highest arrival rate whose P99 stays under B.

A policy over the open-loop scheduler (perf.scenarios.open_loop), like MLPerf LoadGen's
FindPeakPerformance: a bisection over the offered rate between a rate known to pass (0) and
one expected to fail (the capacity that the warm-up calls' service time implies). Each point is
a seeded Poisson run long enough to *prove* "P99 <= B" by LoadGen's early-stopping rule
(perf.stats.early_stopping: at 95% confidence, 299 requests with none over B); a point that
cannot prove it, because too many requests were over B, or some were never served, fails.

The answer is an interval: the peak rate is at least the highest proven rate and below the
lowest rate that failed. The search stops when that interval is narrower than
``PRECISION`` (10%) or when the next point would not fit in the time cap, which the summary
says; the cap bounds the whole search, so a slow model gets a coarser interval, not a longer
run.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from typing import Any

from perf.budgets.rules import Budget
from perf.measure.cases import PerfCase
from perf.scenarios.open_loop import (
    Clock,
    OpenLoopRun,
    Workload,
    poisson_schedule,
    quantiles_ms,
    run_open_loop,
)
from perf.scenarios.server import DEADLINE_FACTOR
from perf.stats.early_stopping import BoundClaim, claim_holds, min_passing
from perf.stats.outcome import Outcome

PERCENTILE = 0.99
PRECISION = 1.10  # stop when the failing rate is within 10% of the proven one
WARMUP_CALLS = 10
# Points get this many times the requests that prove the claim with none over the bound, so
# that one or two slow requests do not fail a rate that is well within the bound.
REQUEST_MARGIN = 1.5


@dataclasses.dataclass(frozen=True)
class PeakPoint:
    run: OpenLoopRun
    claim: BoundClaim

    @property
    def passed(self) -> bool:
        return self.claim.holds and not self.run.unserved

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.run.to_dict(),
            **quantiles_ms(self.run.values("latency_ms")),
            "passed": self.passed,
            **dataclasses.asdict(self.claim),
        }


@dataclasses.dataclass(frozen=True)
class PeakResult:
    case: PerfCase
    slo_ms: float
    confidence: float
    capacity_rps: float  # workers / the warm-up calls' median service time
    points: tuple[PeakPoint, ...]
    stopped: str  # why the search ended
    budget: Budget | None = None

    @property
    def verdict(self) -> Outcome:
        """Against a budget's ``min_rate_rps`` (for the budget's P99 as SLO): passes when a
        rate at or above it was proven, fails when one at or below it was not, else is
        undecided (the search never tried a rate near it)."""
        budget = self.budget
        if budget is None or budget.min_rate_rps is None or budget.p99_ms != self.slo_ms:
            return Outcome.NOT_GATED
        if self.proven_rps >= budget.min_rate_rps:
            return Outcome.PASS
        if self.failed_rps is not None and self.failed_rps <= budget.min_rate_rps:
            return Outcome.FAIL
        return Outcome.UNDECIDED

    def verdict_line(self) -> str:
        budget = self.budget
        if budget is None or budget.min_rate_rps is None:
            return "not gated: no budget with min_rate_rps matches"
        if budget.p99_ms != self.slo_ms:
            return (
                f"not gated: the budget's P99 is {budget.p99_ms:g} ms, the search's SLO "
                f"{self.slo_ms:g} ms (--perf-slo-ms {budget.p99_ms:g} checks {budget})"
            )
        return f"{self.verdict}: {budget}; {self.line()}"

    @property
    def proven_rps(self) -> float:
        """The highest rate at which P99 <= SLO was proven (0: none)."""
        return max((p.run.rate_rps for p in self.points if p.passed), default=0.0)

    @property
    def failed_rps(self) -> float | None:
        """The lowest rate that did not prove it (None: every rate tried passed)."""
        return min((p.run.rate_rps for p in self.points if not p.passed), default=None)

    def line(self) -> str:
        above = f"{self.failed_rps:.3g}" if self.failed_rps is not None else "untested"
        return (
            f"peak rate with P99 <= {self.slo_ms:g} ms: at least {self.proven_rps:.3g} req/s, "
            f"below {above} req/s ({len(self.points)} points, {self.stopped})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "scenario": "peak",
            "slo_ms": self.slo_ms,
            "percentile": PERCENTILE,
            "confidence": self.confidence,
            "capacity_rps": self.capacity_rps,
            "peak_rps": self.proven_rps,
            "peak_rps_interval": [self.proven_rps, self.failed_rps],
            "stopped": self.stopped,
            "verdict": self.verdict.value,
            "budget": None if self.budget is None else self.budget.to_dict(),
            "points": [p.to_dict() for p in self.points],
        }


def point_requests(confidence: float) -> int:
    return math.ceil(REQUEST_MARGIN * min_passing(0, PERCENTILE, confidence))


def find_peak(
    case: PerfCase,
    workload: Workload,
    slo_ms: float,
    workers: int,
    max_seconds: float,
    confidence: float = 0.95,
    seed: int = 0,
    clock: Any = Clock,
    progress: Callable[[str], None] = lambda _line: None,
) -> PeakResult:
    """Bisect the offered rate; ``workload`` runs the case's model (one shared session)."""
    capacity = workers / _service_seconds(workload, clock)
    low, high = 0.0, capacity
    points: list[PeakPoint] = []
    spent = 0.0
    while True:
        rate = (low + high) / 2 if low > 0 else high / 2
        count = point_requests(confidence)
        if spent + count / rate > max_seconds:
            stopped = f"time cap: the next point needs {count / rate:.0f} s"
            break
        schedule = poisson_schedule(rate, count, seed + len(points), workload.weights)
        deadline = DEADLINE_FACTOR * count / rate
        run = run_open_loop(schedule, workload.serve, rate, workers, deadline, clock)
        point = PeakPoint(run, claim_holds(run.values("latency_ms"), slo_ms, PERCENTILE,
                                           confidence))  # fmt: skip
        points.append(point)
        spent += run.seconds
        progress(f"{case.id}: {rate:.3g} req/s: {point.claim.line(PERCENTILE, confidence, slo_ms)}")
        low, high = (rate, high) if point.passed else (low, rate)
        if low > 0 and high / low <= PRECISION:
            stopped = f"within {(PRECISION - 1) * 100:.0f}%"
            break
        if not point.passed and rate < capacity / 64:
            stopped = "no rate meets the SLO"
            break
    return PeakResult(case, slo_ms, confidence, capacity, tuple(points), stopped)


def _service_seconds(workload: Workload, clock: Any) -> float:
    """Mean seconds of one request, by the mix's weights, from each kind's median warm-up
    call (which also warms every input length)."""
    medians = []
    for call in workload.calls:
        times = []
        for _ in range(WARMUP_CALLS):
            began = clock.now()
            call()
            times.append(clock.now() - began)
        medians.append(statistics.median(times))
    mean = sum(w * m for w, m in zip(workload.weights, medians, strict=True))
    return max(mean / sum(workload.weights), 1e-6)
