"""How much CPU other processes used while we measured.

On a shared 2-core machine one busy neighbour can triple latency, so every measurement records
the CPU time the machine spent on anything but our own process tree. Snapshot sources are
injectable so the arithmetic can be tested with synthetic numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import psutil

from export.machine import usable_cpu_count, usable_cpus

DEFAULT_THRESHOLD_CORES = 0.25


@dataclass(frozen=True)
class CpuTimes:
    """Seconds the (usable) CPUs spent in each state, summed over cores; mirrors psutil's."""

    user: float
    system: float
    idle: float
    nice: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    guest: float = 0.0
    guest_nice: float = 0.0
    steal: float | None = None  # None where the platform does not report it

    @property
    def busy(self) -> float:
        # Summing named states rather than total - idle: Linux guest time is already inside
        # user/nice, and iowait is idle time in disguise.
        running = self.user + self.nice + self.system + self.irq + self.softirq
        return running + (self.steal or 0.0)

    @classmethod
    def from_psutil(cls, times: Any) -> CpuTimes:
        values = {f.name: float(getattr(times, f.name, 0.0)) for f in fields(cls)}
        if not hasattr(times, "steal"):
            values["steal"] = None
        return cls(**values)

    def __add__(self, other: CpuTimes) -> CpuTimes:
        values = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name != "steal"
        }
        steal = None if self.steal is None or other.steal is None else self.steal + other.steal
        return CpuTimes(**values, steal=steal)


@dataclass(frozen=True)
class Contention:
    wall_s: float
    other_cpu_s: float  # includes hypervisor steal: CPU time our cores did not give us
    other_cores_busy: float
    cpu_count: int
    steal_s: float | None
    load_avg_1m: float | None
    # The busiest stretch (a sampling segment, ~5 s): a few seconds of a neighbour's work can
    # double a run's P95 while the run's average stays under the threshold.
    peak_other_cores_busy: float | None = None

    def contaminated(self, threshold_cores: float = DEFAULT_THRESHOLD_CORES) -> bool:
        peak = self.peak_other_cores_busy or 0.0
        return max(self.other_cores_busy, peak) >= threshold_cores

    def describe(self) -> str:
        text = (
            f"other processes used {self.other_cores_busy:.2f} cores on average "
            f"(of {self.cpu_count}) during sampling"
        )
        if self.peak_other_cores_busy is not None:
            text += f", {self.peak_other_cores_busy:.2f} in the busiest 5 s"
        if self.steal_s and self.wall_s > 0:
            text += f", {self.steal_s / self.wall_s:.2f} of them stolen by the hypervisor"
        if self.load_avg_1m is not None:
            text += f"; 1-minute load average {self.load_avg_1m:.2f}"
        return text

    def warning(self, threshold_cores: float = DEFAULT_THRESHOLD_CORES) -> str | None:
        if not self.contaminated(threshold_cores):
            return None
        return f"timings may be inflated by CPU contention: {self.describe()}"


def _online_cpus() -> list[int] | None:
    """Linux CPU ids in /proc/stat order (offline CPUs have no line there), e.g. "0-3,6"."""
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return None
    cpus = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def system_cpu_times() -> CpuTimes:
    """CPU times summed over the cores we may run on: neighbours pinned elsewhere don't count."""
    usable, online = usable_cpus(), _online_cpus()
    per_cpu = psutil.cpu_times(percpu=True)
    if usable is None or online is None or len(online) != len(per_cpu):
        return CpuTimes.from_psutil(psutil.cpu_times())
    total = CpuTimes(0.0, 0.0, 0.0, steal=0.0)
    for cpu_id, times in zip(online, per_cpu, strict=True):
        if cpu_id in usable:
            total += CpuTimes.from_psutil(times)
    return total


def own_cpu_seconds() -> float:
    """CPU seconds used by this process, its live descendants and its reaped children."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += child_times.user + child_times.system
    return total


def load_average_1m() -> float | None:
    try:
        return float(psutil.getloadavg()[0])
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class _Snapshot:
    wall: float
    system: CpuTimes
    own_cpu_s: float


class ContentionMonitor:
    """``with ContentionMonitor() as monitor: ...`` then ``monitor.result``."""

    def __init__(
        self,
        system_times: Callable[[], CpuTimes] = system_cpu_times,
        own_times: Callable[[], float] = own_cpu_seconds,
        clock: Callable[[], float] = time.perf_counter,
        cpu_count: int | None = None,
        load_avg: Callable[[], float | None] = load_average_1m,
    ) -> None:
        self._system_times = system_times
        self._own_times = own_times
        self._clock = clock
        self._cpu_count = cpu_count if cpu_count is not None else usable_cpu_count()
        self._load_avg = load_avg
        self._start: _Snapshot | None = None
        self.result: Contention | None = None

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(self._clock(), self._system_times(), self._own_times())

    def start(self) -> None:
        self.result = None
        self._start = self._snapshot()

    def stop(self) -> Contention:
        if self._start is None:
            raise RuntimeError("ContentionMonitor.stop() called before start()")
        end = self._snapshot()
        self.result = _contention(self._start, end, self._cpu_count, self._load_avg())
        self._start = None
        return self.result

    def __enter__(self) -> ContentionMonitor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _contention(
    start: _Snapshot, end: _Snapshot, cpu_count: int, load_avg: float | None
) -> Contention:
    wall_s = max(end.wall - start.wall, 0.0)
    busy_s = end.system.busy - start.system.busy
    own_s = end.own_cpu_s - start.own_cpu_s
    # Both counters tick at 10 ms, so short windows can come out slightly negative.
    other_s = max(busy_s - own_s, 0.0)
    steal_s = None
    if end.system.steal is not None and start.system.steal is not None:
        steal_s = max(end.system.steal - start.system.steal, 0.0)
    return Contention(
        wall_s=wall_s,
        other_cpu_s=other_s,
        other_cores_busy=other_s / wall_s if wall_s > 0 else 0.0,
        cpu_count=cpu_count,
        steal_s=steal_s,
        load_avg_1m=load_avg,
    )
