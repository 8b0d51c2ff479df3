"""Traffic scenarios of a session: ``--perf-scenario server`` at fixed rates, the peak-rate
search and ``offline``, all policies over the one open-loop scheduler
(perf.scenarios.open_loop)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from perf.budgets.rules import Budget
from perf.measure.cases import PerfCase, format_duration
from perf.measure.sampling import SamplingPolicy
from perf.measure.sessions import SessionSettings, open_session
from perf.scenarios.offline import OfflineResult, measure_offline
from perf.scenarios.open_loop import Workload
from perf.scenarios.peak import PeakResult, find_peak
from perf.scenarios.server import NothingServed, ServerResult, measure_server
from perf.scenarios.tail_matrix import TAIL_MATRIX, MatrixResult, TailSetting

log = logging.getLogger("perf")


def workload_for(
    case: PerfCase,
    run: Callable[..., object],
    inputs_for: Callable[[PerfCase], Mapping[str, object]],
    model_key: str | None = None,
    settings: Mapping[str, object] | None = None,
) -> Workload:
    """A call of ``run`` (a session's run) per input length of the case's mix, on
    ``inputs_for`` the case at that length; ``model_key`` and ``settings`` say what serves."""
    mix = case.mix or ((case.duration_s, 1.0),)
    calls = []
    for seconds, _weight in mix:
        inputs = inputs_for(dataclasses.replace(case, duration_s=seconds))
        calls.append(functools.partial(run, None, inputs))
    labels = tuple(format_duration(seconds) for seconds, _ in mix)
    weights = tuple(w for _, w in mix)
    return Workload(tuple(calls), weights, labels, model_key, dict(settings or {}))


def open_workload(
    path: Path,
    case: PerfCase,
    settings: SessionSettings,
    inputs_for: Callable[[PerfCase], Mapping[str, object]],
    model_key: str | None = None,
) -> Workload:
    """The case's workload on a fresh session of the model file at ``path``."""
    session = open_session(path, settings)
    return workload_for(case, session.run, inputs_for, model_key, settings.to_dict())


class TrafficRun:
    """Runs the traffic scenarios of the session's cases and keeps their results.

    ``open_workload`` gives a case's workload on a fresh session of its (built, checked) model,
    with a tail setting's threads and spinning when one is given.
    """

    def __init__(
        self,
        policy: SamplingPolicy,
        workers: int,
        slo_ms: float | None,
        open_workload: Callable[[PerfCase, TailSetting | None], Workload],
    ) -> None:
        self.policy = policy
        self.workers = workers
        self.slo_ms = slo_ms
        self.open_workload = open_workload
        self.server_results: list[ServerResult] = []
        self.peak_results: list[PeakResult] = []
        self.offline_results: list[OfflineResult] = []
        self.matrix_results: list[MatrixResult] = []

    def measure_server(
        self,
        case: PerfCase,
        rate_rps: float,
        budget: Budget | None = None,
        at_peak: bool = False,
    ) -> ServerResult:
        """The case's model on one session serving Poisson arrivals at ``rate_rps``, judged
        on ``budget``; ``at_peak``: the run that stands for the case's peak rate in baselines."""
        workload = self.open_workload(case, None)
        policy = self.policy
        log.info("%s: serving %g req/s for %g s", case.id, rate_rps, policy.max_seconds)
        result = measure_server(
            case, workload, rate_rps, self.workers, policy.max_seconds, policy.confidence
        ).judged(budget, policy.confidence)
        result = dataclasses.replace(result, at_peak=at_peak)
        self.server_results.append(result)
        return result

    def find_peak(self, case: PerfCase, budget: Budget | None = None) -> PeakResult:
        """The highest Poisson rate at which the case's model proves P99 <= --perf-slo-ms."""
        workload = self.open_workload(case, None)
        assert self.slo_ms is not None  # read_options requires it with peak
        policy = self.policy
        log.info("%s: searching the peak rate for %g s at most", case.id, policy.max_seconds)
        result = find_peak(
            case, workload, self.slo_ms, self.workers,
            policy.max_seconds, policy.confidence, progress=log.info,
        )  # fmt: skip
        result = dataclasses.replace(result, budget=budget)
        self.peak_results.append(result)
        return result

    def measure_offline(self, case: PerfCase) -> OfflineResult:
        """The case's model on batches of ``case.batch`` clips, back to back, for the cap."""
        workload = self.open_workload(case, None)
        seconds = self.policy.max_seconds
        log.info("%s: offline, batch %d, for %g s", case.id, case.batch, seconds)
        result = measure_offline(case, workload, seconds)
        self.offline_results.append(result)
        return result

    def measure_matrix(self, case: PerfCase, rate_rps: float) -> MatrixResult:
        """The server scenario at ``rate_rps`` under each tail setting, a share of the cap each."""
        seconds = self.policy.max_seconds / len(TAIL_MATRIX)
        runs, starved = [], []
        for setting in TAIL_MATRIX:
            log.info("%s at %g req/s: %s for %.0f s", case.id, rate_rps, setting.label, seconds)
            workload = self.open_workload(case, setting)
            try:
                result = measure_server(
                    case, workload, rate_rps, setting.workers, seconds, self.policy.confidence
                )
            except NothingServed as error:  # one setting's starved run; the others still count
                log.warning("%s: %s", setting.label, error)
                starved.append(setting)
                continue
            runs.append((setting, result))
        if not runs:
            raise NothingServed(f"{case.id} at {rate_rps:g} req/s: every tail setting starved")
        matrix = MatrixResult(case, rate_rps, tuple(runs), tuple(starved))
        self.matrix_results.append(matrix)
        return matrix

    def rows(self) -> list[dict[str, object]]:
        """Every traffic result as a report.json ``scenarios`` row."""
        return [r.to_dict() for r in (*self.server_results, *self.peak_results,
                                      *self.offline_results, *self.matrix_results)]  # fmt: skip
