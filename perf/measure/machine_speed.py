"""A machine-speed probe, interleaved with the model calls, to cancel machine drift.

These VMs drift as a whole: stretches of 10-90 s where every call is 5-10% slower, invisible
from inside (no load, no steal). A float32 numpy matmul of about 5 ms ([256x768] x [768x3072])
tracked that drift (correlation 0.87) and, dividing each model call by it, cut A/A false alarms
at a 5% gate from 19% to under 2%; an onnxruntime probe made things worse (shared/DESIGN.md).

The probe runs every ``interval_s`` (drift moves over tens of seconds), after a sleep so that
the model's intra-op threads have stopped spinning and do not slow it, and followed by one so
that BLAS threads do not slow the next model call (OPENBLAS_THREAD_TIMEOUT is set low in the
root conftest, before numpy loads).
"""

from __future__ import annotations

import time

import numpy as np

PROBE_SHAPES = ((256, 768), (768, 3072))


class MachineSpeedProbe:
    def __init__(self, interval_s: float = 1.0, gap_s: float = 0.03, repeats: int = 3) -> None:
        rng = np.random.default_rng(0)
        self.left = rng.standard_normal(PROBE_SHAPES[0], dtype=np.float32)
        self.right = rng.standard_normal(PROBE_SHAPES[1], dtype=np.float32)
        self.interval_s = interval_s
        self.gap_s = gap_s
        self.repeats = repeats
        self.left @ self.right  # first call allocates BLAS buffers and threads

    def measure_ms(self) -> float:
        """The fastest of a few back-to-back matmuls: the first one also wakes BLAS threads
        that slept through the gap, which made single readings vary by +-30%."""
        time.sleep(self.gap_s)
        times = []
        for _ in range(self.repeats):
            start = time.perf_counter_ns()
            self.left @ self.right
            times.append((time.perf_counter_ns() - start) / 1e6)
        time.sleep(self.gap_s)
        return min(times)
