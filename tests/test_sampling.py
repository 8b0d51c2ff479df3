"""The sampling loop, driven by fake calls on a fake clock: no onnxruntime, no real time.

``perf.measure.sampling`` reads ``time.perf_counter_ns`` (call durations) and ``time.perf_counter``
(deadlines); both are replaced by one fake clock that only a fake call moves forward, so every
duration, deadline and sample count below is exact and independent of the machine's speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pytest

import perf.measure.sampling
from perf.measure.contention import Contention, ContentionMonitor, CpuTimes
from perf.measure.gpu_state import GpuMonitor
from perf.measure.sampling import SamplingPolicy, sample, timed, warm_up
from perf.stats.percentiles import min_samples_for_upper_bound
from tests.fake_nvml import FakeNvml

NS_PER_MS = 1_000_000


class FakeClock:
    """Stands in for the ``time`` module inside ``perf.measure.sampling``.

    Time moves only through ``advance_ms``, plus ``tick_ms`` on every ``perf_counter_ns`` read
    (needed only by the injected busy-wait, which spins until the clock passes a deadline).
    """

    def __init__(self, tick_ms: float = 0.0) -> None:
        self.ns = 10**12  # an arbitrary non-zero origin, like a real perf_counter
        self.tick_ns = round(tick_ms * NS_PER_MS)

    def perf_counter_ns(self) -> int:
        now = self.ns
        self.ns += self.tick_ns
        return now

    def perf_counter(self) -> float:
        return self.ns / 1e9

    def advance_ms(self, ms: float) -> None:
        self.ns += round(ms * NS_PER_MS)


class FakeModel:
    """A call that takes ``duration_ms(n)`` of fake time on its n-th call (1-based)."""

    def __init__(self, clock: FakeClock, duration_ms: Callable[[int], float]) -> None:
        self.clock = clock
        self.duration_ms = duration_ms
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.clock.advance_ms(self.duration_ms(self.calls))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(perf.measure.sampling, "time", fake)
    # The contention monitor on the same fake clock, with an idle fake machine.
    monkeypatch.setattr(
        perf.measure.sampling,
        "ContentionMonitor",
        lambda: ContentionMonitor(
            system_times=lambda: CpuTimes(user=0.0, system=0.0, idle=0.0),
            own_times=lambda: 0.0,
            clock=fake.perf_counter,
            cpu_count=2,
            load_avg=lambda: None,
        ),
    )
    return fake


def constant(ms: float) -> Callable[[int], float]:
    return lambda _n: ms


def slow_first_call(first_ms: float, then_ms: float) -> Callable[[int], float]:
    return lambda n: first_ms if n == 1 else then_ms


def test_first_call_is_reported_apart_from_the_samples(clock: FakeClock) -> None:
    model = FakeModel(clock, slow_first_call(500.0, 2.0))

    result = sample(model, SamplingPolicy(min_samples=20))

    assert result.first_call_ms == 500.0
    assert result.samples_ms == (2.0,) * 20
    assert model.calls == 1 + result.warmup_calls + 20


def test_warm_up_stops_once_two_window_medians_agree(clock: FakeClock) -> None:
    model = FakeModel(clock, constant(2.0))

    calls, steady = warm_up(model, SamplingPolicy(warmup_window=5))

    assert (calls, steady) == (10, True)
    assert model.calls == 10


def test_warm_up_continues_while_the_model_is_still_speeding_up(clock: FakeClock) -> None:
    # Window medians 10, 5, 2, 2 ms: only the last two agree within 5%.
    def settling(n: int) -> float:
        return 10.0 if n <= 5 else 5.0 if n <= 10 else 2.0

    calls, steady = warm_up(FakeModel(clock, settling), SamplingPolicy(warmup_window=5))

    assert (calls, steady) == (20, True)


def test_warm_up_never_steady_gives_up_at_its_time_cap(clock: FakeClock) -> None:
    # Windows alternate between 2 ms and 4 ms calls: consecutive medians never agree.
    def alternating(n: int) -> float:
        return 2.0 if ((n - 1) // 5) % 2 == 0 else 4.0

    model = FakeModel(clock, alternating)
    started = clock.perf_counter()

    calls, steady = warm_up(model, SamplingPolicy(warmup_window=5, warmup_max_seconds=1.0))

    elapsed = clock.perf_counter() - started
    assert steady is False
    assert calls == model.calls
    assert calls % 5 == 0  # whole windows only
    assert 1.0 <= elapsed <= 1.0 + 5 * 4.0 / 1e3  # stopped within one window of the cap


def test_never_steady_warm_up_is_reported_and_sampling_still_runs(clock: FakeClock) -> None:
    def alternating_after_first(n: int) -> float:
        return 2.0 if ((n - 2) // 5) % 2 == 0 else 4.0

    policy = SamplingPolicy(min_samples=30, warmup_max_seconds=0.5)

    result = sample(FakeModel(clock, alternating_after_first), policy)

    assert result.warmup_steady is False
    assert result.warmup_calls > 0
    assert len(result.samples_ms) == 30


def test_without_a_budget_sampling_stops_at_the_target_sample_count(clock: FakeClock) -> None:
    result = sample(FakeModel(clock, constant(2.0)), SamplingPolicy(min_samples=37))

    assert len(result.samples_ms) == 37
    assert result.stopped_because == "enough samples for the percentile"
    assert result.sampling_seconds == pytest.approx(37 * 2.0 / 1e3)
    assert result.contention.wall_s == pytest.approx(37 * 2.0 / 1e3)


def test_default_target_is_enough_samples_for_a_two_sided_p99_interval(clock: FakeClock) -> None:
    policy = SamplingPolicy()

    result = sample(FakeModel(clock, constant(1.0)), policy)

    assert policy.target_samples == min_samples_for_upper_bound(0.99, 0.975)
    assert len(result.samples_ms) == policy.target_samples


def test_sampling_stops_as_soon_as_the_verdict_is_decided(clock: FakeClock) -> None:
    looked_at: list[int] = []

    def decided_after_75(samples_ms: list[float]) -> bool:
        looked_at.append(len(samples_ms))
        assert all(ms == 3.0 for ms in samples_ms)  # the verdict sees the samples, in ms
        return len(samples_ms) >= 75

    result = sample(FakeModel(clock, constant(3.0)), SamplingPolicy(), decided_after_75)

    assert result.stopped_because == "verdict decided"
    assert looked_at[0] == 50  # first look
    assert len(result.samples_ms) == looked_at[-1] >= 75
    assert len(looked_at) == 2  # looks are spaced out, not taken after every sample


def test_undecided_verdict_samples_until_the_time_cap(clock: FakeClock) -> None:
    policy = SamplingPolicy(max_seconds=1.0)

    result = sample(FakeModel(clock, constant(2.0)), policy, lambda _samples: False)

    assert result.stopped_because == "time cap"
    assert 499 <= len(result.samples_ms) <= 501  # 1 s of 2 ms calls
    assert result.sampling_seconds == pytest.approx(1.0, abs=0.003)


def test_undecided_verdict_stops_at_the_sample_cap(clock: FakeClock) -> None:
    policy = SamplingPolicy(max_samples=120, max_seconds=3600.0)

    result = sample(FakeModel(clock, constant(2.0)), policy, lambda _samples: False)

    assert result.stopped_because == "sample cap"
    assert len(result.samples_ms) == 120


def test_sample_cap_wins_over_a_larger_target_without_budget(clock: FakeClock) -> None:
    policy = SamplingPolicy(min_samples=500, max_samples=80, max_seconds=3600.0)

    result = sample(FakeModel(clock, constant(2.0)), policy)

    assert result.stopped_because == "sample cap"
    assert len(result.samples_ms) == 80


def test_progress_is_reported_every_five_seconds_of_sampling(clock: FakeClock) -> None:
    messages: list[str] = []
    policy = SamplingPolicy(max_seconds=12.0)

    sample(FakeModel(clock, constant(4.0)), policy, lambda _samples: False, messages.append)

    assert len(messages) == 2
    assert all(m.endswith("samples, median 4.0 ms") for m in messages)


class FakeSessions:
    """Opens fake sessions; each is a FakeModel on the shared clock, counted when opened."""

    def __init__(self, clock: FakeClock, ms: float = 2.0) -> None:
        self.clock = clock
        self.ms = ms
        self.opened: list[FakeModel] = []

    def __call__(self) -> FakeModel:
        model = FakeModel(self.clock, constant(self.ms))
        self.opened.append(model)
        return model


def test_segments_run_on_fresh_sessions_warmed_untimed(clock: FakeClock) -> None:
    sessions = FakeSessions(clock)
    first = FakeModel(clock, constant(2.0))
    policy = SamplingPolicy(max_seconds=21.0, segment_seconds=5.0, until_cap=True)

    result = sample(first, policy, reopen=sessions)

    # 21 s of sampling cut every 5 s: a fresh session for each of the four later segments.
    assert len(sessions.opened) == 4
    assert [s.calls for s in result.segments][:4] == [2500] * 4
    assert sum(s.calls for s in result.segments) == len(result.samples_ms)
    assert all(4.9 < s.seconds < 5.1 for s in result.segments[:4])
    # Each new session got its warm-up calls, which are not samples.
    assert [m.calls for m in sessions.opened][:3] == [2 + 2500] * 3
    assert result.stopped_because == "time cap (baseline run: to the cap)"
    assert result.to_dict()["segments"] == len(result.segments)


def test_without_reopen_segments_only_mark_time(clock: FakeClock) -> None:
    model = FakeModel(clock, constant(2.0))

    result = sample(model, SamplingPolicy(max_seconds=12.0, segment_seconds=5.0, until_cap=True))

    assert [s.calls for s in result.segments] == [2500, 2500, 1000]
    assert model.calls == 1 + result.warmup_calls + 6000  # one session throughout


def test_a_baseline_run_samples_to_the_cap_even_when_decided(clock: FakeClock) -> None:
    policy = SamplingPolicy(max_seconds=3.0, until_cap=True)

    result = sample(FakeModel(clock, constant(2.0)), policy, lambda _samples: True)

    assert len(result.samples_ms) == 1500  # 3 s of 2 ms calls, though decided at 50


TICK_MS = 0.5  # each clock read moves time on, so the busy-wait loop terminates


def test_injected_delay_is_added_to_every_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(delay_ms: float) -> perf.measure.sampling.Samples:
        fake = FakeClock(tick_ms=TICK_MS)
        monkeypatch.setattr(perf.measure.sampling, "time", fake)
        policy = SamplingPolicy(min_samples=25, inject_delay_ms=delay_ms)
        return sample(FakeModel(fake, slow_first_call(40.0, 2.0)), policy)

    plain, delayed = run(0.0), run(150.0)

    assert len(delayed.samples_ms) == len(plain.samples_ms) == 25
    for with_delay, without in zip(delayed.samples_ms, plain.samples_ms, strict=True):
        # Exact up to the fake clock's read granularity, whatever the machine's speed.
        assert with_delay - without == pytest.approx(150.0, abs=2 * TICK_MS)
    # The first call is reported as it is: the delay models a slower steady state.
    assert delayed.first_call_ms == pytest.approx(plain.first_call_ms)


def test_timed_measures_the_call_alone_without_a_delay(clock: FakeClock) -> None:
    assert timed(FakeModel(clock, constant(7.25))) == 7.25


class ScriptedMonitor:
    """Contention of each segment from a script; the whole run's average is 0.1 cores."""

    script: ClassVar[list[float]] = []

    def __init__(self) -> None:
        self.result: Contention | None = None

    def start(self) -> None:
        pass

    def stop(self) -> Contention:
        busy = ScriptedMonitor.script.pop(0) if ScriptedMonitor.script else 0.0
        self.result = Contention(5.0, 5.0 * busy, busy, 2, None, None)
        return self.result

    def __enter__(self) -> ScriptedMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.result = Contention(20.0, 2.0, 0.1, 2, None, None)


def test_the_busiest_segment_is_kept_beside_the_average(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(perf.measure.sampling, "ContentionMonitor", ScriptedMonitor)
    ScriptedMonitor.script = [0.05, 0.7, 0.1, 0.02]
    policy = SamplingPolicy(max_seconds=20.0, segment_seconds=5.0, until_cap=True)

    result = sample(FakeModel(clock, constant(2.0)), policy)

    assert result.contention.other_cores_busy == 0.1
    assert result.contention.peak_other_cores_busy == 0.7
    assert result.contention.contaminated()


def test_the_gpu_state_during_the_timed_calls_is_kept_with_the_samples(clock: FakeClock) -> None:
    nvml = FakeNvml(sm_mhz=(1980, 1500), reasons=(0,))
    monitor = GpuMonitor(nvml, interval_s=3600, ours=lambda: {1})

    result = sample(FakeModel(clock, constant(2.0)), SamplingPolicy(min_samples=20), gpu=monitor)

    assert result.gpu is not None and result.gpu.available and result.gpu.samples >= 2
    assert result.to_dict()["gpu"]["sm_mhz_min"] == 1500
    assert "SM clock" in (result.disturbance() or "")  # 1980 -> 1500 MHz: not the model's
    assert sample(FakeModel(clock, constant(2.0)), SamplingPolicy(min_samples=20)).gpu is None
