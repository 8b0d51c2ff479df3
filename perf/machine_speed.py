"""A machine-speed probe, interleaved with the model calls, to cancel machine drift.

These VMs drift as a whole: stretches of 10-90 s where every call is 5-10% slower, invisible
from inside (no load, no steal). A float32 numpy matmul of about 5 ms ([256x768] x [768x3072])
tracked that drift (correlation 0.87) and, dividing each model call by it, cut A/A false alarms
at a 5% gate from 19% to under 2%; an onnxruntime probe made things worse (shared/DESIGN.md).

The probe runs every ``interval_s`` after a sleep, so the model's intra-op threads have stopped
spinning and do not slow it, and the model call that follows is not slowed by BLAS threads
(OPENBLAS_THREAD_TIMEOUT is set low in the root conftest, before numpy loads).
"""

from __future__ import annotations

import time

import numpy as np

PROBE_SHAPES = ((256, 768), (768, 3072))


class MachineSpeedProbe:
    def __init__(self, interval_s: float = 0.5, gap_s: float = 0.03) -> None:
        rng = np.random.default_rng(0)
        self.left = rng.standard_normal(PROBE_SHAPES[0], dtype=np.float32)
        self.right = rng.standard_normal(PROBE_SHAPES[1], dtype=np.float32)
        self.interval_s = interval_s
        self.gap_s = gap_s
        self.left @ self.right  # first call allocates BLAS buffers and threads

    def measure_ms(self) -> float:
        time.sleep(self.gap_s)
        start = time.perf_counter_ns()
        self.left @ self.right
        elapsed = (time.perf_counter_ns() - start) / 1e6
        time.sleep(self.gap_s)
        return elapsed
