"""``--perf-scenario offline``: the most audio per second, every request there from the start.

MLPerf LoadGen's *offline* scenario, as a policy over the same open-loop scheduler as the server
scenario: all requests arrive at time 0, so the model is never idle and never waits for
arrivals; each request is one call on a batch of ``--perf-batch-sizes`` clips. What counts is
throughput (clips and audio-seconds per second of wall time); the latency of one batched call
is reported beside it, since a batch that doubles throughput may also double each call's time.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from perf.measure.cases import PerfCase
from perf.scenarios.open_loop import (
    Clock,
    OpenLoopRun,
    Request,
    Workload,
    quantiles_ms,
    run_open_loop,
)

WARMUP_CALLS = 3
DEFAULT_BATCH_SIZES = (1, 2, 4, 8)


@dataclasses.dataclass(frozen=True)
class OfflineResult:
    case: PerfCase
    run: OpenLoopRun

    @property
    def clips_per_s(self) -> float:
        return self.run.achieved_rps * self.case.batch

    @property
    def audio_seconds_per_s(self) -> float:
        """Seconds of audio processed per second: above 1, faster than real time."""
        return self.clips_per_s * self.case.duration_s

    def to_dict(self) -> dict[str, Any]:
        call = quantiles_ms(self.run.values("service_ms"), (0.5, 0.99))
        return {
            "id": self.case.id,
            "scenario": "offline",
            "batch": self.case.batch,
            "calls": len(self.run.served),
            "seconds": self.run.seconds,
            "clips_per_s": self.clips_per_s,
            "audio_seconds_per_s": self.audio_seconds_per_s,
            "call_p50_ms": call["p50_ms"],
            "call_p99_ms": call["p99_ms"],
        }


def measure_offline(
    case: PerfCase, workload: Workload, max_seconds: float, clock: Any = Clock
) -> OfflineResult:
    """Batched calls back to back for ``max_seconds``: requests all due at time 0, as many
    as the warm-up calls say fit in the time (plus a margin; the rest are left unserved)."""
    times = []
    for _ in range(WARMUP_CALLS):
        began = clock.now()
        workload.serve(Request(0, 0.0))
        times.append(clock.now() - began)
    count = max(1, math.ceil(2 * max_seconds / max(statistics.median(times), 1e-6)))
    schedule = tuple(Request(i, 0.0) for i in range(count))
    run = run_open_loop(schedule, workload.serve, math.inf, 1, max_seconds, clock)
    return OfflineResult(case, run)


def offline_rows(results: list[OfflineResult]) -> list[tuple[str, ...]]:
    rows = []
    for result in results:
        row = result.to_dict()
        rows.append((
            result.case.id, str(result.case.batch), str(row["calls"]),
            f"{row['clips_per_s']:.2f} clips/s", f"{row['audio_seconds_per_s']:.1f} s/s",
            f"{row['call_p50_ms']:.1f} ms", f"{row['call_p99_ms']:.1f} ms",
        ))  # fmt: skip
    return rows


OFFLINE_HEADERS = (
    "configuration",
    "batch",
    "calls",
    "throughput",
    "audio per second",
    "call P50",
    "call P99",
)
