from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from perf.measure.contention import Contention, ContentionMonitor, CpuTimes


def _feeder(values: list) -> Callable[[], object]:
    """Returns the given values one per call: the start snapshot, then the stop snapshot."""
    it: Iterator = iter(values)
    return lambda: next(it)


def _monitor(
    system: list[CpuTimes], own: list[float], wall: list[float], cpus: int = 2
) -> ContentionMonitor:
    return ContentionMonitor(
        system_times=_feeder(system),
        own_times=_feeder(own),
        clock=_feeder(wall),
        cpu_count=cpus,
        load_avg=lambda: 1.5,
    )


def _measure(monitor: ContentionMonitor) -> Contention:
    with monitor:
        pass
    assert monitor.result is not None
    return monitor.result


def test_idle_neighbour_is_not_contamination() -> None:
    # 10 s on 2 cores: we used 9.9 CPU-s, the machine was busy 10.0 CPU-s in total.
    start = CpuTimes(user=100.0, system=20.0, idle=500.0)
    stop = CpuTimes(user=109.0, system=21.0, idle=510.0)
    result = _measure(_monitor([start, stop], own=[5.0, 14.9], wall=[0.0, 10.0]))

    assert result.wall_s == pytest.approx(10.0)
    assert result.other_cpu_s == pytest.approx(0.1)
    assert result.other_cores_busy == pytest.approx(0.01)
    assert not result.contaminated()
    assert result.warning() is None


def test_neighbour_using_one_core_is_contamination() -> None:
    # 10 s on 2 cores: we used 10 CPU-s, the machine was fully busy (20 CPU-s).
    start = CpuTimes(user=100.0, system=20.0, idle=500.0, iowait=3.0)
    stop = CpuTimes(user=117.0, system=23.0, idle=500.0, iowait=3.0)
    result = _measure(_monitor([start, stop], own=[0.0, 10.0], wall=[50.0, 60.0]))

    assert result.other_cores_busy == pytest.approx(1.0)
    assert result.contaminated()
    assert not result.contaminated(threshold_cores=1.5)
    assert result.describe().startswith(
        "other processes used 1.00 cores on average (of 2) during sampling"
    )
    assert "1.00 cores" in (result.warning() or "")


def test_iowait_and_guest_are_not_busy_time() -> None:
    start = CpuTimes(user=0.0, system=0.0, idle=0.0)
    # guest time is already inside user on Linux; iowait is an idle CPU.
    stop = CpuTimes(user=2.0, system=0.0, idle=10.0, iowait=6.0, guest=2.0)
    result = _measure(_monitor([start, stop], own=[0.0, 0.0], wall=[0.0, 10.0]))

    assert result.other_cpu_s == pytest.approx(2.0)


def test_steal_counts_as_other_and_is_reported() -> None:
    start = CpuTimes(user=0.0, system=0.0, idle=0.0, steal=0.0)
    stop = CpuTimes(user=10.0, system=0.0, idle=5.0, steal=5.0)
    result = _measure(_monitor([start, stop], own=[0.0, 10.0], wall=[0.0, 10.0]))

    assert result.steal_s == pytest.approx(5.0)
    assert result.other_cores_busy == pytest.approx(0.5)
    assert "0.50 of them stolen by the hypervisor" in result.describe()


def test_tick_rounding_never_goes_negative() -> None:
    start = CpuTimes(user=0.0, system=0.0, idle=0.0)
    stop = CpuTimes(user=0.99, system=0.0, idle=1.0)
    result = _measure(_monitor([start, stop], own=[0.0, 1.0], wall=[0.0, 1.0]))

    assert result.other_cpu_s == 0.0


def test_from_psutil_without_steal() -> None:
    times = CpuTimes.from_psutil(SimpleNamespace(user=1.0, system=2.0, idle=3.0, nice=0.5))
    assert times == CpuTimes(user=1.0, system=2.0, idle=3.0, nice=0.5, steal=None)
    assert times.busy == pytest.approx(3.5)
    assert (times + times).steal is None


def test_stop_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        ContentionMonitor().stop()


def test_real_psutil_smoke() -> None:
    with ContentionMonitor() as monitor:
        sum(i * i for i in range(200_000))
    result = monitor.result

    assert isinstance(result, Contention)
    assert result.wall_s > 0
    assert result.other_cpu_s >= 0
    assert result.other_cores_busy >= 0
    assert result.cpu_count >= 1
    assert result.steal_s is None or result.steal_s >= 0
    assert result.load_avg_1m is None or result.load_avg_1m >= 0
    assert isinstance(result.contaminated(), bool)
    assert "cores on average" in result.describe()


def test_a_burst_in_one_stretch_contaminates_a_run_whose_average_is_low() -> None:
    """w2v2-base/int8 A/A: a few seconds of other work doubled P95 at 0.15 cores on average."""
    quiet_average = Contention(20.0, 3.0, 0.15, 2, None, None, peak_other_cores_busy=0.6)
    steady = Contention(20.0, 3.0, 0.15, 2, None, None, peak_other_cores_busy=0.16)

    assert quiet_average.contaminated() and not steady.contaminated()
    assert "0.60 in the busiest 5 s" in (quiet_average.warning() or "")
