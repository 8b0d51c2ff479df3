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
from typing import Any, Protocol

import numpy as np

from perf.measure.contention import Contention, ContentionMonitor
from perf.stats.attribution import Attribution
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
    # After the verdict, which ones get a per-operator attribution (perf.scenarios.explain):
    # "slower", "all" or "off"
    explain: str = "off"


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


class CallBlocks:
    """What a round measures of each side by default: a block of back-to-back calls (ms),
    about ``block_seconds`` long. The sides are the Calls their openers return."""

    def __init__(self, policy: ABPolicy, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.policy = policy
        self.clock = clock
        self.block_calls = 0

    def warm(self, sides: Mapping[str, Call], order: list[str]) -> None:
        """After each segment's sessions are made; the first time, sizes the blocks."""
        for _ in range(self.policy.segment_warmup_calls):
            for side in order:
                sides[side]()
        if not self.block_calls:
            self.block_calls = self._block_calls(sides["a"], sides["b"])

    def measure(self, side: Call, round_index: int) -> tuple[float, ...]:
        return _timed_block(side, self.block_calls, self.clock)

    def _block_calls(self, call_a: Call, call_b: Call) -> int:
        """Calls per block: about ``block_seconds`` of the slower model, from the warm-up."""
        policy, clock = self.policy, self.clock
        warm = _timed_block(call_a, policy.warmup_calls, clock) + _timed_block(
            call_b, policy.warmup_calls, clock
        )
        typical_s = float(np.median(warm)) / 1e3
        fitting = int(policy.block_seconds / typical_s) if typical_s > 0 else policy.max_block_calls
        return max(2, min(policy.max_block_calls, fitting))


class Blocks(Protocol):
    """What a round measures of each side (``CallBlocks``, or a server scenario's requests)."""

    block_calls: int

    def warm(self, sides: Mapping[str, Any], order: list[str]) -> None: ...

    def measure(self, side: Any, round_index: int) -> tuple[float, ...]: ...


def interleave(
    open_a: Callable[[], Any],
    open_b: Callable[[], Any],
    policy: ABPolicy,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    blocks: Blocks | None = None,
) -> Interleaved:
    """Measure A and B in alternating blocks until the paired verdict is decided or time is up.
    ``open_a``/``open_b`` make a side (fresh sessions) each segment; ``blocks`` says what a
    round measures of a side (by default ``CallBlocks``: timed calls)."""
    blocks = blocks or CallBlocks(policy, clock)
    rng = random.Random(policy.seed)
    started = clock()
    rounds: list[Round] = []
    segment = 0
    openers = {"a": open_a, "b": open_b}
    sides: dict[str, Any] = {}
    while True:
        sides.clear()  # the previous segment's sessions go before new ones are made
        # Which session is made and warmed first is random too: neither side gets the fresher
        # memory, and first calls (arena growth) stay outside the samples.
        order = ["a", "b"]
        rng.shuffle(order)
        sides.update({side: openers[side]() for side in order})
        blocks.warm(sides, order)
        for _ in range(policy.rounds_per_segment):
            order = ["a", "b"]
            rng.shuffle(order)
            measured = {side: blocks.measure(sides[side], len(rounds)) for side in order}
            rounds.append(Round(segment, measured["a"], measured["b"]))
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
        block_calls=blocks.block_calls,
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
    explained: Attribution | None = None  # which nodes moved (perf.scenarios.explain)
    b_label: str = "working tree"  # what B is: the working tree's model, or a variant (pairs)

    @property
    def regressed(self) -> bool:
        return self.outcome is Outcome.SLOWER

    def line(self) -> str:
        if self.measured is None:
            label = (
                "unchanged (same artifact)" if self.outcome is Outcome.UNCHANGED else self.outcome
            )
            return f"{self.case_id}: {label} vs {self.ref}: {self.reason}"
        verdict = self.measured.comparison.format()
        line = f"{self.case_id}: {verdict}; B = {self.b_label}, A = {self.ref}"
        warning = self.contention.warning() if self.contention else None
        if warning:
            line += f"\n  {warning} (both sides alike, interleaved)"
        if self.explained is not None:
            why = self.explained
            line += (
                f"\n  why: {why.line()}\n  {why.op_type_line()} (nodes matched by {why.matching})"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.case_id,
            "against": self.ref,
            "b": self.b_label,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "settings": dict(self.settings or {}),
            "contention": None if self.contention is None else dataclasses.asdict(self.contention),
            "explained": None if self.explained is None else self.explained.to_dict(),
        }
        if self.measured is not None:
            data |= {
                "comparison": self.measured.comparison.to_dict(),
                "tails": {q: list(v) for q, v in self.measured.tails.items()},
                "block_calls": self.measured.block_calls,
                "seconds": self.measured.seconds,
            }
        return data


def measure_sides(
    case_id: str,
    label: str,
    open_a: Callable[[], Any],
    open_b: Callable[[], Any],
    settings: Mapping[str, Any],
    policy: ABPolicy,
    progress: Callable[[str], None] | None = None,
    blocks: Blocks | None = None,
    b_label: str = "working tree",
) -> ABOutcome:
    """A (``label``: REF, a stored model, or a variant) and B (``b_label``: the working tree's
    model, or another variant) measured interleaved, with other processes' CPU use recorded over
    the rounds."""
    with ContentionMonitor() as monitor:
        measured = interleave(open_a, open_b, policy, progress=progress, blocks=blocks)
    return ABOutcome(
        case_id,
        label,
        measured.comparison.verdict,
        measured.comparison.reason,
        measured=measured,
        settings=settings,
        contention=monitor.result,
        b_label=b_label,
    )
