"""The open-loop scheduler on a fake clock: seeded Poisson arrivals, latency from the schedule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from perf.measure.cases import PerfCase
from perf.scenarios.offline import measure_offline
from perf.scenarios.open_loop import (
    LAG_LIMIT_MS,
    OpenLoopRun,
    Request,
    Workload,
    poisson_schedule,
    run_open_loop,
)
from perf.scenarios.server import ServerResult
from perf.scenarios.tail_matrix import TAIL_MATRIX, MatrixResult
from perf.stats.percentiles import LatencySummary

CASE = PerfCase("fake/fp32", "cpu", 1.0, mix=((1.0, 1.0), (8.0, 1.0)))


class FakeClock:
    """Time moves only when a fake model serves or a worker sleeps (plus ``late`` per sleep)."""

    def __init__(self, late_s: float = 0.0) -> None:
        self.t = 100.0
        self.late_s = late_s

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        if t > self.t:
            self.t = t + self.late_s


def slow_model(clock: FakeClock, seconds: float):
    def serve(_request: Request) -> None:
        clock.t += seconds

    return serve


def test_latency_counts_from_the_scheduled_arrival_with_the_queue_in_it() -> None:
    clock = FakeClock()
    schedule = (Request(0, 0.1), Request(1, 0.2), Request(2, 1.0))

    run = run_open_loop(schedule, slow_model(clock, 0.3), rate_rps=3.0, clock=clock)

    assert [round(s.latency_ms) for s in run.served] == [300, 500, 300]
    assert [round(s.queue_ms) for s in run.served] == [0, 200, 0]  # 1 waited behind 0
    assert [round(s.service_ms) for s in run.served] == [300, 300, 300]
    assert run.values("issue_delay_ms") == [0.0, 0.0, 0.0]
    assert run.seconds == pytest.approx(1.3) and run.unserved == 0


def test_an_overloaded_run_builds_a_queue_a_closed_loop_never_sees() -> None:
    clock = FakeClock()
    schedule = tuple(Request(i, 0.1 * i) for i in range(20))  # 10 req/s on a 5 req/s model

    run = run_open_loop(schedule, slow_model(clock, 0.2), rate_rps=10.0, clock=clock)

    latencies = run.values("latency_ms")
    assert latencies[0] == pytest.approx(200)
    assert latencies[-1] == pytest.approx(200 + 19 * 100)  # each waits 100 ms more
    assert run.achieved_rps == pytest.approx(20 / 4.0)


def test_requests_not_started_by_the_deadline_are_counted_unserved() -> None:
    clock = FakeClock()
    schedule = tuple(Request(i, 0.1 * i) for i in range(20))

    run = run_open_loop(
        schedule, slow_model(clock, 0.2), rate_rps=10.0, deadline_s=1.05, clock=clock
    )

    assert len(run.served) == 6 and run.unserved == 14  # started at 0, 0.2, ... 1.0 s


def test_a_late_generator_is_measured_and_flagged() -> None:
    clock = FakeClock(late_s=0.010)
    schedule = poisson_schedule(1.0, 50, seed=1)

    run = run_open_loop(schedule, slow_model(clock, 0.01), rate_rps=1.0, clock=clock)

    assert run.issue_delay_p99_ms == pytest.approx(10.0)
    assert run.generator_fell_behind and LAG_LIMIT_MS < 10.0
    assert run.to_dict()["generator_fell_behind"] is True


def test_the_schedule_is_seeded_and_its_gaps_are_exponential_at_the_rate() -> None:
    first, again = poisson_schedule(4.0, 2000, seed=7), poisson_schedule(4.0, 2000, seed=7)
    gaps = np.diff([0.0] + [r.arrival_s for r in first])

    assert first == again and poisson_schedule(4.0, 2000, seed=8) != first
    assert [r.index for r in first] == list(range(2000))
    assert stats.kstest(gaps, "expon", args=(0, 1 / 4.0)).pvalue > 0.01
    assert np.mean(gaps) == pytest.approx(0.25, rel=0.1)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive number of requests per second"):
        poisson_schedule(rate, 10)


def test_several_workers_serve_every_request_once() -> None:
    served: list[int] = []
    schedule = tuple(Request(i, 0.0) for i in range(40))

    run = run_open_loop(schedule, lambda r: served.append(r.index), rate_rps=1e6, workers=3)

    assert sorted(served) == list(range(40))
    assert [s.request.index for s in run.served] == list(range(40))


def test_a_mix_draws_kinds_by_weight_without_moving_the_arrivals() -> None:
    plain = poisson_schedule(4.0, 4000, seed=3)
    mixed = poisson_schedule(4.0, 4000, seed=3, weights=(1.0, 2.0, 1.0))

    assert [r.arrival_s for r in mixed] == [r.arrival_s for r in plain]
    assert {r.kind for r in plain} == {0}
    shares = np.bincount([r.kind for r in mixed]) / 4000
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    with pytest.raises(ValueError, match="weights must be positive"):
        poisson_schedule(4.0, 10, weights=(1.0, 0.0))


def test_each_length_of_a_mix_is_warmed_and_read_apart() -> None:
    clock = FakeClock()
    calls: list[str] = []

    def length(name: str, seconds: float):
        def call() -> None:
            calls.append(name)
            clock.t += seconds

        return call

    workload = Workload((length("1s", 0.01), length("8s", 0.08)), (1.0, 1.0), ("1s", "8s"))
    first = workload.warm(2, clock=clock)
    assert calls == ["1s", "1s", "8s", "8s"]
    assert first == pytest.approx((10.0, 80.0))  # each length's cold call, measured apart
    schedule = poisson_schedule(2.0, 400, seed=5, weights=workload.weights)

    run = run_open_loop(schedule, workload.serve, rate_rps=2.0, clock=clock)
    result = ServerResult(CASE, run, *(LatencySummary.from_samples(run.values(v))
                                       for v in ("latency_ms", "queue_ms", "service_ms")),
                          workload=workload, first_call_ms=first)  # fmt: skip

    short, long = result.per_length()
    assert (short["length"], long["length"]) == ("1s", "8s")
    assert short["requests"] + long["requests"] == 400
    assert short["service_p50_ms"] == pytest.approx(10.0)
    assert long["service_p50_ms"] == pytest.approx(80.0)
    assert long["first_call_ms"] == pytest.approx(80.0)
    assert result.to_dict()["per_length"] == [short, long]


def test_offline_serves_batches_back_to_back_and_counts_clips() -> None:
    clock = FakeClock()

    def batch_of_four() -> None:
        clock.t += 0.010 + 4 * 0.005  # a fixed cost per call, and per clip

    case = PerfCase("fake/fp32", "cpu", 3.0, batch=4)
    result = measure_offline(case, Workload((batch_of_four,)), max_seconds=10.0, clock=clock)

    row = result.to_dict()
    assert row["calls"] == 334  # 30 ms each, started at 0, 0.03, ... up to the 10 s cap
    assert result.clips_per_s == pytest.approx(4 / 0.030, rel=0.01)
    assert result.audio_seconds_per_s == pytest.approx(3.0 * 4 / 0.030, rel=0.01)
    assert row["call_p50_ms"] == pytest.approx(30.0)
    assert result.run.issue_delay_p99_ms == 0.0


def _served_at(seconds: float, deadline_s: float = 1e9) -> ServerResult:
    clock = FakeClock()
    schedule = poisson_schedule(20.0, 200, seed=2)
    run = run_open_loop(schedule, slow_model(clock, seconds), 20.0, deadline_s=deadline_s,
                        clock=clock)  # fmt: skip
    parts = ("latency_ms", "queue_ms", "service_ms")
    return ServerResult(CASE, run, *(LatencySummary.from_samples(run.values(v)) for v in parts))


def test_the_tail_matrix_names_the_lowest_p99_among_sound_runs() -> None:
    fast, slow = TAIL_MATRIX[0], TAIL_MATRIX[1]
    overloaded = TAIL_MATRIX[2]
    matrix = MatrixResult(CASE, 20.0, ((slow, _served_at(0.02)), (fast, _served_at(0.005)),
                                       (overloaded, _served_at(0.2, deadline_s=2.0))))  # fmt: skip

    assert matrix.best()[0] == fast  # the overloaded run left requests unserved: not a candidate
    assert fast.label in matrix.line() and "lowest P99" in matrix.line()
    assert matrix.to_dict()["best"]["label"] == fast.label
    assert len(TAIL_MATRIX) == 8 and len(set(TAIL_MATRIX)) == 8


def test_a_server_run_that_started_no_request_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from perf.scenarios import server

    def starved(schedule: list[Request], *args: object, **kwargs: object) -> OpenLoopRun:
        return OpenLoopRun(20.0, 1, (), 0.0, unserved=len(schedule))

    monkeypatch.setattr(server, "run_open_loop", starved)
    with pytest.raises(server.NothingServed) as error:
        server.measure_server(CASE, Workload((lambda: None,)), 20.0, 1, max_seconds=2.0)
    message = str(error.value)
    assert "fake/fp32-cpu-mix at 20 req/s: none of 40 requests started within the 3 s deadline" in (
        message
    )
    assert "lower --perf-rate, or rerun on a quiet machine" in message


def test_a_starved_tail_setting_is_named_and_the_others_still_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from perf.measure.sampling import SamplingPolicy
    from perf.scenarios import traffic

    starved_setting = TAIL_MATRIX[3]

    def measure(case: PerfCase, workload: Workload, *args: object) -> ServerResult:
        if workload.labels == (starved_setting.label,):
            raise traffic.NothingServed("none of 5 requests started")
        return _served_at(0.005)

    monkeypatch.setattr(traffic, "measure_server", measure)
    runs = traffic.TrafficRun(
        SamplingPolicy(max_seconds=8.0), workers=1, slo_ms=None,
        open_workload=lambda case, setting: Workload((lambda: None,), labels=(setting.label,)),
    )  # fmt: skip
    matrix = runs.measure_matrix(CASE, 20.0)

    assert matrix.served_nothing == (starved_setting,)
    assert len(matrix.runs) == len(TAIL_MATRIX) - 1
    assert f"{starved_setting.label} served nothing" in matrix.line()
    assert matrix.to_dict()["served_nothing"] == [starved_setting.to_dict()]
