"""``--perf-scenario server --perf-rate R``: a model serving Poisson arrivals at R req/s.

One session shared by ``--perf-workers`` threads (default 1: one request at a time, queued in
arrival order), fed by the open-loop scheduler (perf/scenarios/open_loop.py) for the time cap.
The result is the latency people see (from each request's scheduled arrival), split into queue
and service time, with the offered and achieved rates and the generator's own issue delay.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from export.recipes import code_digest
from perf.baselines.regression import StoredRow
from perf.budgets.rules import Budget, budget_quantiles
from perf.budgets.verdicts import BudgetDecision, final_decision, judge_budget
from perf.measure.cases import PerfCase
from perf.measure.contention import Contention, ContentionMonitor
from perf.measure.sampling import Samples
from perf.scenarios.open_loop import (
    OpenLoopRun,
    Workload,
    poisson_schedule,
    quantile_ms,
    quantiles_ms,
    run_open_loop,
)
from perf.stats.compare import Segment
from perf.stats.outcome import Outcome, budget_outcome
from perf.stats.percentiles import QUANTILE_METHOD, LatencySummary

SCENARIOS = ("single-stream", "server", "offline")
WARMUP_CALLS = 5
# Requests still queued this long after the cap are not served: an over-capacity rate would
# otherwise make the run last as long as its queue.
DEADLINE_FACTOR = 1.5


def server_bench(case: PerfCase, rate_rps: float) -> str:
    """A server row's name in tests, baselines and comparisons: ``<case>-<rate>rps``."""
    return f"{case.id}-{rate_rps:g}rps"


@dataclasses.dataclass(frozen=True)
class ServerResult:
    case: PerfCase
    run: OpenLoopRun
    latency: LatencySummary  # from the scheduled arrival, ms
    queue: LatencySummary
    service: LatencySummary
    workload: Workload | None = None  # the length mix, when there is one
    decisions: tuple[BudgetDecision, ...] = ()  # the budget judged on latency from arrival
    first_call_ms: tuple[float, ...] = ()  # each length's first (cold) call, before timing
    contention: Contention | None = None  # other processes' CPU use while requests were served
    # Served at the peak rate (--perf-rate peak with baselines): stored as ``<case>-peak``
    at_peak: bool = False

    @property
    def bench(self) -> str:
        """Its name in baselines and reports (the test's id; a peak row keeps one name
        whatever its rate, the rate then being one of its settings)."""
        if self.at_peak:
            return f"{self.case.id}-peak"
        return server_bench(self.case, self.run.rate_rps)

    @property
    def verdict(self) -> Outcome:
        return budget_outcome([d.verdict for d in self.decisions])

    def judged(self, budget: Budget | None, confidence: float) -> ServerResult:
        """This run with its budget's verdicts: the same quantile bounds as single-stream
        budgets, on each request's latency from its scheduled arrival."""
        latencies = self.run.values("latency_ms")
        decisions = tuple(final_decision(judge_budget(latencies, q, ms, confidence))
                          for q, ms in budget_quantiles(budget))  # fmt: skip
        return dataclasses.replace(self, decisions=decisions)

    def per_length(self) -> list[dict[str, Any]]:
        """The latency of each length of a mix, read apart (empty without a mix)."""
        if self.workload is None or len(self.workload.calls) < 2:
            return []
        rows = []
        for kind, (label, weight) in enumerate(
            zip(self.workload.labels, self.workload.weights, strict=True)
        ):
            mine = [s for s in self.run.served if s.request.kind == kind]
            latency = [s.latency_ms for s in mine]
            service = [s.service_ms for s in mine]
            rows.append(
                {
                    "length": label,
                    "weight": weight,
                    "requests": len(mine),
                    **quantiles_ms(latency),
                    "service_p50_ms": quantile_ms(service, 0.5),
                    "first_call_ms": self.first_call_ms[kind]
                    if kind < len(self.first_call_ms)
                    else None,
                }
            )
        return rows

    @property
    def flags(self) -> list[str]:
        flags = []
        if self.run.generator_fell_behind:
            flags.append(f"generator late (P99 {self.run.issue_delay_p99_ms:.1f} ms)")
        if self.run.unserved:
            flags.append(f"{self.run.unserved} unserved: over capacity")
        return flags

    def to_dict(self) -> dict[str, Any]:
        pct = self.latency.percentiles
        return {
            "id": self.case.id,
            "bench": self.bench,
            "scenario": "server",
            **self.run.to_dict(),
            "p50_ms": pct["p50"].value,
            "p95_ms": pct["p95"].value,
            "p99_ms": pct["p99"].value,
            "latency_ms": self.latency.to_dict(),
            "queue_ms": self.queue.to_dict(),
            "service_ms": self.service.to_dict(),
            "per_length": self.per_length(),
            "first_call_ms": list(self.first_call_ms),
            # The latency CDF, for the plot: quantiles 0.01 ... 0.99 and 0.999
            "cdf_ms": _cdf(self.run.values("latency_ms")),
            "flags": self.flags,
            "contention": None if self.contention is None else dataclasses.asdict(self.contention),
            "verdict": self.verdict.value,
            "budget": [d.to_dict() for d in self.decisions],
        }


def stored_row(result: ServerResult) -> StoredRow:
    """This run as a stored baseline keeps it: every request's latency from its scheduled
    arrival, one session, with the settings that make runs alike (rate, workers, mix)."""
    if result.contention is None:
        raise ValueError(f"{result.bench}: a server run without its contention record")
    latencies = tuple(result.run.values("latency_ms"))
    # The run's length is its schedule's, however long a slow model took to serve it
    scheduled_s = (len(latencies) + result.run.unserved) / result.run.rate_rps
    samples = Samples(
        first_call_ms=result.first_call_ms[0] if result.first_call_ms else math.nan,
        warmup_calls=WARMUP_CALLS,
        warmup_steady=True,
        samples_ms=latencies,
        segments=(Segment(len(latencies), result.run.seconds),),
        stopped_because="the schedule was served",
        sampling_seconds=scheduled_s,
        contention=result.contention,
    )
    workload = result.workload
    settings = {
        **(workload.settings if workload else {}),
        "scenario": "peak" if result.at_peak else "server",
        **({"rate_rps": result.run.rate_rps} if result.at_peak else {}),
        "workers": result.run.workers,
        "mix": [list(m) for m in result.case.mix],
        "scenario_code": scenario_code_digest(),
    }
    key = workload.model_key if workload else None
    return StoredRow(result.bench, result.case, settings, samples, key, result.run.rate_rps)


class NothingServed(RuntimeError):
    """A server run in which no request started before its deadline: nothing to summarise."""

    @classmethod
    def after(
        cls, what: str, rate_rps: float, count: int, deadline_s: float, load: str | None = None
    ) -> NothingServed:
        during = f" ({load})" if load else ""
        return cls(
            f"{what} at {rate_rps:g} req/s: none of {count} requests started within the "
            f"{deadline_s:g} s deadline{during}; the machine was starved or the rate is far "
            "over capacity: lower --perf-rate, or rerun on a quiet machine"
        )


def requests_for(rate_rps: float, max_seconds: float) -> int:
    return max(1, math.ceil(rate_rps * max_seconds))


def measure_server(
    case: PerfCase,
    workload: Workload,
    rate_rps: float,
    workers: int,
    max_seconds: float,
    confidence: float = 0.95,
    seed: int = 0,
) -> ServerResult:
    """``workload`` runs the case's model on a shared session; every length of it is warmed
    up here, untimed."""
    first_call_ms = workload.warm(WARMUP_CALLS)
    count = requests_for(rate_rps, max_seconds)
    schedule = poisson_schedule(rate_rps, count, seed, workload.weights)
    deadline_s = max_seconds * DEADLINE_FACTOR
    with ContentionMonitor() as monitor:
        run = run_open_loop(schedule, workload.serve, rate_rps, workers, deadline_s=deadline_s)
    if not run.served:
        load = monitor.result.describe() if monitor.result else "not measurable here"
        raise NothingServed.after(case.id, rate_rps, count, deadline_s, load)
    return ServerResult(
        case,
        run,
        *(LatencySummary.from_samples(run.values(v), confidence) for v in _SPLIT),
        workload=workload,
        first_call_ms=first_call_ms,
        contention=monitor.result,
    )


def scenario_code_digest() -> str:
    """A digest of the code that schedules and times server requests: stored server runs timed
    by other code are not alike."""
    here = Path(__file__).parent
    return code_digest(here / name for name in ("open_loop.py", "server.py"))[:16]


CDF_LEVELS = (*(i / 100 for i in range(1, 100)), 0.999)


def _cdf(values: list[float]) -> dict[str, list[float]]:
    if not values:
        return {"quantile": [], "ms": []}
    found = np.quantile(values, CDF_LEVELS, method=QUANTILE_METHOD)
    return {"quantile": list(CDF_LEVELS), "ms": [float(x) for x in found]}


_SPLIT = ("latency_ms", "queue_ms", "service_ms")


def server_rows(results: list[ServerResult]) -> list[tuple[str, ...]]:
    """The terminal table's rows: configuration, offered, achieved, P50, P99, queue, service;
    under a mix's row, one row per input length."""
    rows: list[tuple[str, ...]] = []
    for r in results:
        rows.append((
            r.case.id,
            f"{r.run.rate_rps:g}/s",
            f"{r.run.achieved_rps:.2f}/s",
            f"{r.latency.percentiles['p50'].value:.1f} ms",
            r.latency.percentiles["p99"].format(),
            f"{_p(r.queue, 'p99'):.1f} ms",
            f"{_p(r.service, 'p50'):.1f} ms",
            str(r.verdict),
            "; ".join(r.flags) or "-",
        ))  # fmt: skip
        rows += [_length_row(length) for length in r.per_length()]
    return rows


def _length_row(length: dict[str, Any]) -> tuple[str, ...]:
    def ms(key: str) -> str:
        return "-" if length[key] is None else f"{length[key]:.1f} ms"

    first = "" if length["first_call_ms"] is None else f"first call {ms('first_call_ms')}"
    return (f"  {length['length']} (weight {length['weight']:g})", "", f"{length['requests']} req",
            ms("p50_ms"), ms("p99_ms"), "", ms("service_p50_ms"), "", first)  # fmt: skip


SERVER_HEADERS = (
    "configuration",
    "offered",
    "achieved",
    "P50",
    "P99 [95% CI]",
    "queue P99",
    "service P50",
    "budget",
    "flags",
)


def _p(summary: LatencySummary, key: str) -> float:
    return summary.percentiles[key].value


def parse_rates(values: list[str] | None) -> tuple[float, ...]:
    rates = []
    for value in values or []:
        for item in value.split(","):
            try:
                rate = float(item)
            except ValueError:
                rate = math.nan
            if not (rate > 0 and math.isfinite(rate)):
                raise ValueError(
                    f"--perf-rate {item!r}: requests per second, a positive number (e.g. 2.5)"
                )
            rates.append(rate)
    return tuple(rates)
