"""The server scenario as an A/B: REF's (or the stored) model and the working tree's serving the
same Poisson arrivals, in interleaved rounds (``--perf-against`` and ``--benchmark-compare`` for
``--perf-scenario server`` rows).

A round serves ~2.5 s of arrivals (less under a short time cap, so that it holds a dozen
rounds; at least 10 arrivals) at the rate on one side, then the same arrivals (the same
seed: common random numbers, so the arrival pattern's own luck cancels in the round's ratio) on
the other, in random order; every few rounds both sessions are made anew, as in the single-stream
A/B (perf.scenarios.ab, whose scheduler and paired statistics this reuses). What is compared per
round is the median latency from scheduled arrival, queueing included, so a slower model shows
up amplified by the queue it builds; the loaded P95/P99 ratios are reported from the pooled
requests, not gated. Each round starts with an empty queue: a little kinder than one long run,
to both sides alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from perf.scenarios.ab import ABOutcome, ABPolicy, measure_sides
from perf.scenarios.open_loop import Clock, Workload, poisson_schedule, run_open_loop
from perf.scenarios.server import DEADLINE_FACTOR, WARMUP_CALLS, NothingServed

ROUND_SECONDS = 2.5  # of arrivals per side and round, at most
ROUNDS_IN_CAP = 12  # rounds sized so that the time cap holds this many (the paired verdict
# needs MIN segments of rounds: 9 rounds at the least)
MIN_ROUND_SECONDS = 0.5
MIN_ROUND_REQUESTS = 10


def round_requests(rate_rps: float, max_seconds: float = ROUND_SECONDS * 2 * ROUNDS_IN_CAP) -> int:
    """Arrivals per side and round: ~ROUND_SECONDS of them, less when the time cap would not
    hold ROUNDS_IN_CAP rounds of both sides (a 30 s cap: 1.25 s), and enough for a queue to
    form (MIN_ROUND_REQUESTS)."""
    seconds = min(ROUND_SECONDS, max(MIN_ROUND_SECONDS, max_seconds / (2 * ROUNDS_IN_CAP)))
    return max(MIN_ROUND_REQUESTS, math.ceil(rate_rps * seconds))


class ServerBlocks:
    """A round's measurement of one side: a seeded Poisson schedule served open loop."""

    def __init__(
        self, rate_rps: float, workers: int, seed: int = 0, clock: Any = Clock,
        max_seconds: float = ROUND_SECONDS * 2 * ROUNDS_IN_CAP,
    ) -> None:  # fmt: skip
        self.rate_rps = rate_rps
        self.workers = workers
        self.seed = seed
        self.clock = clock
        self.block_calls = round_requests(rate_rps, max_seconds)
        self.unserved = 0  # over all rounds: requests still queued at a round's deadline
        self.late_rounds = 0  # rounds whose load generator fell behind

    def warm(self, sides: Mapping[str, Workload], order: list[str]) -> None:
        for side in order:
            sides[side].warm(WARMUP_CALLS, self.clock)

    def measure(self, workload: Workload, round_index: int) -> tuple[float, ...]:
        schedule = poisson_schedule(
            self.rate_rps, self.block_calls, self.seed + round_index, workload.weights
        )
        deadline = self.block_calls / self.rate_rps * DEADLINE_FACTOR
        run = run_open_loop(
            schedule, workload.serve, self.rate_rps, self.workers, deadline, self.clock
        )
        if not run.served:  # a round needs latencies on both sides to be compared at all
            what = f"a server A/B round (round {round_index + 1})"
            raise NothingServed.after(what, self.rate_rps, self.block_calls, deadline)
        self.unserved += run.unserved
        self.late_rounds += run.generator_fell_behind
        return tuple(run.values("latency_ms"))

    def flags(self) -> list[str]:
        flags = []
        if self.unserved:
            flags.append(f"{self.unserved} requests unserved at round deadlines: over capacity")
        if self.late_rounds:
            flags.append(f"the load generator fell behind in {self.late_rounds} round(s)")
        return flags


def measure_server_pair(
    bench: str,
    label: str,
    open_a: Callable[[], Workload],
    open_b: Callable[[], Workload],
    rate_rps: float,
    workers: int,
    settings: Mapping[str, Any],
    policy: ABPolicy,
    progress: Callable[[str], None] | None = None,
    clock: Any = Clock,
) -> ABOutcome:
    """``open_a``/``open_b`` give a fresh workload (session) of A's and B's model (its
    lengths drawn by the workload's weights); the verdict is the paired one on the loaded
    median, with the load generator's troubles in the reason."""
    blocks = ServerBlocks(rate_rps, workers, policy.seed, clock, policy.max_seconds)
    outcome = measure_sides(
        bench, label, open_a, open_b,
        {**settings, "scenario": "server", "rate_rps": rate_rps, "workers": workers},
        policy, progress, blocks,
    )  # fmt: skip
    flags = blocks.flags()
    if not flags:
        return outcome
    return ABOutcome(
        outcome.case_id, outcome.ref, outcome.outcome,
        f"{outcome.reason} ({'; '.join(flags)})",
        outcome.measured, outcome.settings, outcome.contention,
    )  # fmt: skip
