"""The timed loop: first call, warm-up until steady, then per-call samples until the verdict is
decided, enough samples exist for the judged percentile, or the time cap is reached.

Every call is timed on its own with ``perf_counter_ns`` and every sample is kept. Samples come
in *segments* of ``segment_seconds``, each on a freshly created session when the caller can make
one: a stored-baseline comparison needs the session-to-session and drift variance that one
session cannot show (perf.stats.compare).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from export.recipes import code_digest
from perf.measure.contention import Contention, ContentionMonitor
from perf.measure.gpu_state import GpuMonitor, GpuState
from perf.stats.compare import Segment
from perf.stats.percentiles import min_samples_for_upper_bound

# The code that decides how calls are timed: runs timed by other code are not alike, and a stored
# baseline records this so that a comparison refuses runs measured differently.
MEASURING_CODE = ("sampling.py", "sessions.py", "contention.py", "gpu_state.py", "gpu_modes.py")


def measuring_code_digest() -> str:
    """The first 16 hex digits of a digest of MEASURING_CODE (comments and docstrings aside)."""
    here = Path(__file__).parent
    return code_digest(here / name for name in MEASURING_CODE)[:16]


PEAK_WINDOW_MIN_S = 1.0

Call = Callable[[], Any]
OpenCall = Callable[[], Call]  # creates a fresh session, returns a function that runs it once
# Called with the samples so far (ms); True when the verdict is decided and sampling may stop.
IsDecided = Callable[[list[float]], bool]
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class SamplingPolicy:
    quantile: float = 0.99
    confidence: float = 0.95
    max_seconds: float = 60.0  # cap on the sampling phase of one benchmark
    max_samples: int = 20_000
    min_samples: int | None = None  # default: enough for an upper bound on `quantile`
    warmup_window: int = 5
    warmup_tolerance: float = 0.05  # consecutive window medians within 5%: steady
    warmup_max_seconds: float = 15.0
    inject_delay_ms: float = 0.0  # testing the suite's own detection: a slowed-down model
    # Each segment runs on a fresh session: two sessions of one file differ by a few percent,
    # and a stored-baseline comparison must sample that (perf.stats.compare).
    segment_seconds: float = 5.0
    segment_warmup_calls: int = 2  # per new session, untimed (arena growth, first-call costs)
    until_cap: bool = False  # a baseline run: sample to the time cap, whatever is decided

    @property
    def target_samples(self) -> int:
        if self.min_samples is not None:
            return self.min_samples
        # Enough for the two-sided interval's upper end, not just a one-sided bound.
        return min_samples_for_upper_bound(self.quantile, (1 + self.confidence) / 2)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "target_samples": self.target_samples}


@dataclasses.dataclass(frozen=True)
class Samples:
    first_call_ms: float
    warmup_calls: int
    warmup_steady: bool
    samples_ms: tuple[float, ...]
    segments: tuple[Segment, ...]  # consecutive; their calls add up to len(samples_ms)
    stopped_because: str
    sampling_seconds: float
    contention: Contention
    gpu: GpuState | None = None  # the NVIDIA GPU's clocks and throttling (GPU providers)

    def disturbance(self) -> str | None:
        """Why these timings are not the model's alone (CPU contention, a GPU that throttled
        or whose clock moved, another process on it), or None: such runs are flagged, never
        stored, and cannot convict or clear anything."""
        found = [self.contention.warning(), self.gpu.warning() if self.gpu else None]
        return "; ".join(w for w in found if w) or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_call_ms": self.first_call_ms,
            "warmup_calls": self.warmup_calls,
            "warmup_steady": self.warmup_steady,
            "n": len(self.samples_ms),
            "segments": len(self.segments),
            "stopped_because": self.stopped_because,
            "sampling_seconds": self.sampling_seconds,
            "contention": dataclasses.asdict(self.contention),
            "gpu": None if self.gpu is None else self.gpu.to_dict(),
        }


def timed(call: Call, delay_ms: float = 0.0) -> float:
    """One call's latency in ms. ``delay_ms`` busy-waits inside the timed region."""
    start = time.perf_counter_ns()
    call()
    if delay_ms:
        deadline = time.perf_counter_ns() + int(delay_ms * 1e6)
        while time.perf_counter_ns() < deadline:
            pass
    return (time.perf_counter_ns() - start) / 1e6


def warm_up(call: Call, policy: SamplingPolicy) -> tuple[int, bool]:
    """Run windows of calls until two consecutive window medians agree; (calls, steady)."""
    deadline = time.perf_counter() + policy.warmup_max_seconds
    previous: float | None = None
    calls = 0
    while time.perf_counter() < deadline:
        window = [timed(call, policy.inject_delay_ms) for _ in range(policy.warmup_window)]
        calls += len(window)
        median = statistics.median(window)
        if previous is not None and abs(median - previous) <= policy.warmup_tolerance * previous:
            return calls, True
        previous = median
    return calls, False


def _next_look(n: int) -> int:
    """Looks at the verdict on a geometric schedule: few looks, so little multiple testing."""
    return max(n + 50, int(n * 1.5))


class _Segments:
    """Cuts the sampling phase into segments of ``seconds``, each on a fresh session."""

    def __init__(self, call: Call, reopen: OpenCall | None, policy: SamplingPolicy) -> None:
        self.call = call
        self.reopen = reopen
        self.policy = policy
        self.closed: list[Segment] = []
        self.calls = 0
        self.started = time.perf_counter()
        self.monitor = ContentionMonitor()
        self.monitor.start()
        self.peak_busy = 0.0  # other processes' cores, in the busiest segment so far

    def due(self) -> bool:
        return time.perf_counter() - self.started >= self.policy.segment_seconds

    def close(self) -> None:
        if self.calls:
            self.closed.append(Segment(self.calls, time.perf_counter() - self.started))
            busy = self.monitor.stop()
            if busy.wall_s >= PEAK_WINDOW_MIN_S:  # a short tail segment would be all noise
                self.peak_busy = max(self.peak_busy, busy.other_cores_busy)
        self.calls = 0

    def next(self) -> None:
        """Close this segment; a new session (warmed, untimed) starts the next."""
        self.close()
        if self.reopen is not None:
            self.call = None  # type: ignore[assignment]  # free the old session first
            self.call = self.reopen()
            for _ in range(self.policy.segment_warmup_calls):
                self.call()
        self.started = time.perf_counter()
        self.monitor.start()


def sample(
    call: Call,
    policy: SamplingPolicy,
    is_decided: IsDecided | None = None,
    progress: Progress | None = None,
    reopen: OpenCall | None = None,
    gpu: GpuMonitor | None = None,
) -> Samples:
    """First call, warm-up, then segmented samples; ``reopen`` makes each segment's session
    (without it, segments only mark time); ``gpu`` samples the GPU's state meanwhile."""
    first_call_ms = timed(call)  # lazy initialisation, cuDNN/TensorRT tuning: reported apart
    warmup_calls, steady = warm_up(call, policy)
    samples: list[float] = []
    segments = _Segments(call, reopen, policy)
    look = policy.target_samples if is_decided is None else 50
    report_at = time.perf_counter() + 5.0
    with ContentionMonitor() as monitor, gpu or contextlib.nullcontext():
        start = time.perf_counter()
        deadline = start + policy.max_seconds
        stopped = "time cap"
        while time.perf_counter() < deadline:
            samples.append(timed(segments.call, policy.inject_delay_ms))
            segments.calls += 1
            if len(samples) >= policy.max_samples:
                stopped = "sample cap"
                break
            if len(samples) >= look and not policy.until_cap:
                if is_decided is None:
                    stopped = "enough samples for the percentile"
                    break
                if is_decided(samples):
                    stopped = "verdict decided"
                    break
                look = _next_look(len(samples))
            if segments.due():
                segments.next()
            if progress is not None and time.perf_counter() >= report_at:
                progress(f"{len(samples)} samples, median {statistics.median(samples):.1f} ms")
                report_at += 5.0
        segments.close()
        elapsed = time.perf_counter() - start
    assert monitor.result is not None
    return Samples(
        first_call_ms=first_call_ms,
        warmup_calls=warmup_calls,
        warmup_steady=steady,
        samples_ms=tuple(samples),
        segments=tuple(segments.closed),
        stopped_because=f"{stopped} (baseline run: to the cap)" if policy.until_cap else stopped,
        sampling_seconds=elapsed,
        contention=dataclasses.replace(monitor.result, peak_other_cores_busy=segments.peak_busy),
        gpu=None if gpu is None else gpu.result,
    )
