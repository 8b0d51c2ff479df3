"""Requests that arrive on their own schedule (MLPerf LoadGen's *server* scenario).

A closed loop (one call after another) never has a queue, so it cannot see the seed's number:
P99 1428 ms at 3.9 req/s on a model whose single call takes ~220 ms. Here arrivals are a Poisson
process at ``rate_rps`` with a seeded, prebuilt schedule; ``workers`` threads take requests in
arrival order, each waiting for its request's scheduled time; and each request's latency counts
from its *scheduled* arrival, so time spent queued behind earlier requests is in it (no
coordinated omission). Queueing and service time are kept apart.

The load generator's own lateness is measured too: a worker that was free before a request's
arrival but started it late (sleep granularity, the GIL, a GC pause) adds *issue delay*; a run
whose P99 issue delay exceeds ``LAG_LIMIT_MS`` is flagged as not trustworthy.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from perf.stats.percentiles import QUANTILE_METHOD

LAG_LIMIT_MS = 5.0  # a generator later than this at P99 measures itself, not the model


def quantile_ms(values: Sequence[float], q: float) -> float | None:
    """The suite's quantile (perf.stats.percentiles' method) of ms values; None when empty."""
    if not len(values):
        return None
    return float(np.quantile(values, q, method=QUANTILE_METHOD))


def quantiles_ms(values: Sequence[float], levels: Sequence[float] = (0.5, 0.95, 0.99)) -> dict:
    """``{"p50_ms": ..., "p95_ms": ..., "p99_ms": ...}`` of ms values."""
    return {f"p{q * 100:g}_ms": quantile_ms(values, q) for q in levels}


@dataclasses.dataclass(frozen=True)
class Request:
    index: int
    arrival_s: float  # scheduled, from the start of the run
    kind: int = 0  # which of the workload's calls it runs (an input length of a mix)


def poisson_schedule(
    rate_rps: float, count: int, seed: int = 0, weights: Sequence[float] = (1.0,)
) -> tuple[Request, ...]:
    """``count`` arrivals with exponential gaps of mean ``1 / rate_rps``, the first at its gap;
    each of a kind drawn by ``weights`` from its own seeded stream, so that a mix does not move
    the arrival times."""
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate_rps}")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, count)
    if not weights or not all(w > 0 and math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be positive numbers, got {list(weights)}")
    p = np.asarray(weights, dtype=float) / float(np.sum(weights))
    kinds = np.random.default_rng([seed, 1]).choice(len(p), size=count, p=p)
    return tuple(
        Request(i, float(t), int(k))
        for i, (t, k) in enumerate(zip(np.cumsum(gaps), kinds, strict=True))
    )


@dataclasses.dataclass(frozen=True)
class Workload:
    """What requests run: one call per kind (an input length), drawn by weight."""

    calls: tuple[Callable[[], Any], ...]
    weights: tuple[float, ...] = (1.0,)
    labels: tuple[str, ...] = ("",)
    # What serves the calls, for stored baselines: the model's cache key and session settings
    model_key: str | None = None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def serve(self, request: Request) -> Any:
        return self.calls[request.kind]()

    def warm(self, times: int, clock: Any = None) -> tuple[float, ...]:
        """Every kind, ``times`` calls: a length first seen while timed would pay its shape's
        first-call cost (memory planning, arena growth; on GPUs algorithm search and engine
        builds) inside a request. Returns each kind's first call, ms: that cost, apart."""
        clock = clock or Clock
        first = []
        for call in self.calls:
            began = clock.now()
            call()
            first.append((clock.now() - began) * 1e3)
            for _ in range(times - 1):
                call()
        return tuple(first)


@dataclasses.dataclass(frozen=True)
class Served:
    request: Request
    free_s: float  # when its worker could have started it: max(arrival, worker free)
    start_s: float
    end_s: float

    @property
    def latency_ms(self) -> float:
        return (self.end_s - self.request.arrival_s) * 1e3

    @property
    def queue_ms(self) -> float:
        # Never below 0: a request starts at or after its arrival, up to float rounding.
        return max(0.0, self.start_s - self.request.arrival_s) * 1e3

    @property
    def service_ms(self) -> float:
        return (self.end_s - self.start_s) * 1e3

    @property
    def issue_delay_ms(self) -> float:
        return max(0.0, self.start_s - self.free_s) * 1e3


@dataclasses.dataclass(frozen=True)
class OpenLoopRun:
    rate_rps: float
    workers: int
    served: tuple[Served, ...]
    seconds: float  # from the start to the last request's end
    unserved: int = 0  # requests still queued at the deadline: the rate is over capacity

    @property
    def achieved_rps(self) -> float:
        return len(self.served) / self.seconds if self.seconds > 0 else 0.0

    def values(self, name: str) -> list[float]:
        return [getattr(s, name) for s in self.served]

    @property
    def issue_delay_p99_ms(self) -> float:
        return quantile_ms(self.values("issue_delay_ms"), 0.99) or 0.0

    @property
    def generator_fell_behind(self) -> bool:
        return self.issue_delay_p99_ms > LAG_LIMIT_MS

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_rps": self.rate_rps,
            "achieved_rps": self.achieved_rps,
            "workers": self.workers,
            "requests": len(self.served),
            "seconds": self.seconds,
            "issue_delay_p99_ms": self.issue_delay_p99_ms,
            "generator_fell_behind": self.generator_fell_behind,
            "unserved": self.unserved,
        }


class Clock:
    """The real clock, replaceable in tests by any object with these two methods."""

    now = staticmethod(time.perf_counter)

    @staticmethod
    def sleep_until(t: float) -> None:
        # Sleep most of the way, then spin: time.sleep alone wakes up to a millisecond late.
        while (left := t - time.perf_counter()) > 0:
            if left > 0.002:
                time.sleep(left - 0.001)


def run_open_loop(
    schedule: Sequence[Request],
    serve: Callable[[Request], Any],
    rate_rps: float,
    workers: int = 1,
    deadline_s: float = math.inf,
    clock: Any = Clock,
) -> OpenLoopRun:
    """Serve ``schedule`` with ``workers`` threads taking requests in arrival order; requests
    not started ``deadline_s`` after the start are left unserved (an overloaded run would
    otherwise queue for ever)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    pending = iter(schedule)
    take = threading.Lock()
    served: list[Served] = []
    start = clock.now()

    def worker() -> None:
        free = clock.now()
        while True:
            with take:
                request = next(pending, None)
            if request is None:
                return
            due = start + request.arrival_s
            clock.sleep_until(due)
            began = clock.now()
            if began - start > deadline_s:
                return
            serve(request)
            ended = clock.now()
            served.append(Served(request, max(due, free) - start, began - start, ended - start))
            free = ended

    gc.collect()
    gc.freeze()  # a collection pause in the generator would be charged to the model
    try:
        if workers == 1:
            worker()
        else:
            threads = [threading.Thread(target=worker) for _ in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        gc.unfreeze()
    ordered = tuple(sorted(served, key=lambda s: s.request.index))
    seconds = max((s.end_s for s in ordered), default=0.0)
    return OpenLoopRun(rate_rps, workers, ordered, seconds, len(schedule) - len(ordered))
