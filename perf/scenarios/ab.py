"""A/B against a commit (``--perf-against REF``): REF's model and the working tree's, measured
interleaved in one process on one machine, so the machine's drift hits both sides alike.

Rounds alternate a block of calls of each model in random order; every few rounds both
sessions are created anew (a *segment*: two sessions of one file can differ by a few percent).
Blocks last about half a second, so a round sees one drift state. Sampling stops when the paired
verdict (``perf.stats.paired``) is decided, or at the time cap.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from perf.measure.contention import Contention
from perf.stats.outcome import Outcome
from perf.stats.paired import PairedComparison, Round, compare_rounds, needs_more, tail_ratios

Call = Callable[[], Any]
OpenCall = Callable[[], Call]  # creates a session, returns a function that runs it once


@dataclasses.dataclass(frozen=True)
class ABPolicy:
    max_seconds: float
    block_seconds: float = 0.25
    max_block_calls: int = 16
    rounds_per_segment: int = 3
    # The paired verdict may stop sampling only from this many segments on: each look at the
    # data is another chance for noise to cross the line (perf/stats/paired.py).
    min_segments: int = 3
    warmup_calls: int = 3  # once, to size the blocks
    segment_warmup_calls: int = 2  # per session, each time the sessions are made
    confidence: float = 0.95
    min_effect: float = 0.05  # on P50: smaller changes are "same"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Interleaved:
    rounds: tuple[Round, ...]
    comparison: PairedComparison
    block_calls: int
    seconds: float
    tails: dict[str, tuple[float, float, float]]

    @property
    def b_samples_ms(self) -> tuple[float, ...]:
        return tuple(x for r in self.rounds for x in r.b_ms)


def _timed_block(call: Call, calls: int, clock: Callable[[], int]) -> tuple[float, ...]:
    times = []
    for _ in range(calls):
        start = clock()
        call()
        times.append((clock() - start) / 1e6)
    return tuple(times)


def _block_calls(call_a: Call, call_b: Call, policy: ABPolicy, clock: Callable[[], int]) -> int:
    """Calls per block: about ``block_seconds`` of the slower model, from the warm-up."""
    warm = _timed_block(call_a, policy.warmup_calls, clock) + _timed_block(
        call_b, policy.warmup_calls, clock
    )
    typical_s = float(np.median(warm)) / 1e3
    fitting = int(policy.block_seconds / typical_s) if typical_s > 0 else policy.max_block_calls
    return max(2, min(policy.max_block_calls, fitting))


def interleave(
    open_a: OpenCall,
    open_b: OpenCall,
    policy: ABPolicy,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Interleaved:
    """Measure A and B in alternating blocks until the paired verdict is decided or time is up."""
    rng = random.Random(policy.seed)
    started = clock()
    rounds: list[Round] = []
    block_calls = 0
    segment = 0
    openers = {"a": open_a, "b": open_b}
    calls: dict[str, Call] = {}
    while True:
        calls.clear()  # the previous segment's sessions go before new ones are made
        # Which session is made and warmed first is random too: neither side gets the fresher
        # memory, and first calls (arena growth) stay outside the samples.
        order = ["a", "b"]
        rng.shuffle(order)
        calls.update({side: openers[side]() for side in order})
        for _ in range(policy.segment_warmup_calls):
            for side in order:
                calls[side]()
        if not block_calls:
            block_calls = _block_calls(calls["a"], calls["b"], policy, clock)
        for _ in range(policy.rounds_per_segment):
            order = ["a", "b"]
            rng.shuffle(order)
            blocks = {side: _timed_block(calls[side], block_calls, clock) for side in order}
            rounds.append(Round(segment, blocks["a"], blocks["b"]))
        segment += 1
        comparison = compare_rounds(
            rounds, confidence=policy.confidence, min_effect=policy.min_effect, seed=policy.seed
        )
        elapsed = (clock() - started) / 1e9
        if progress:
            progress(
                f"A/B {len(rounds)} rounds, {segment} segments, {elapsed:.0f} s: "
                f"{comparison.format()}"
            )
        decided = segment >= policy.min_segments and not needs_more(comparison)
        if decided or elapsed >= policy.max_seconds:
            break
    return Interleaved(
        rounds=tuple(rounds),
        comparison=comparison,
        block_calls=block_calls,
        seconds=(clock() - started) / 1e9,
        tails=tail_ratios(rounds, confidence=policy.confidence, seed=policy.seed),
    )


@dataclasses.dataclass(frozen=True)
class ABOutcome:
    """One benchmark's answer to "is the working tree slower than REF?"."""

    case_id: str
    ref: str
    outcome: Outcome  # unchanged, not compared, or the measured comparison's verdict
    reason: str
    measured: Interleaved | None = None
    settings: Mapping[str, Any] | None = None
    contention: Contention | None = None  # other processes' CPU use during the rounds

    @property
    def regressed(self) -> bool:
        return self.outcome is Outcome.SLOWER

    def line(self) -> str:
        if self.measured is None:
            label = (
                "unchanged (same artifact)" if self.outcome is Outcome.UNCHANGED else self.outcome
            )
            return f"{self.case_id}: {label} vs {self.ref}: {self.reason}"
        line = (
            f"{self.case_id}: {self.measured.comparison.format()}; B = working tree, A = {self.ref}"
        )
        warning = self.contention.warning() if self.contention else None
        return f"{line}\n  {warning} (both sides alike, interleaved)" if warning else line

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.case_id,
            "against": self.ref,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "settings": dict(self.settings or {}),
            "contention": None if self.contention is None else dataclasses.asdict(self.contention),
        }
        if self.measured is not None:
            data |= {
                "comparison": self.measured.comparison.to_dict(),
                "tails": {q: list(v) for q, v in self.measured.tails.items()},
                "block_calls": self.measured.block_calls,
                "seconds": self.measured.seconds,
            }
        return data
