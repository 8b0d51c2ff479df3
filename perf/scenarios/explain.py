"""Why is it slower: after an A/B verdict, both models profiled in interleaved rounds and the
change attributed to the nodes and op types that moved (perf.stats.attribution).

Profiling adds per-node overhead, so it runs after the timed comparison, never inside it; its
rounds mirror the A/B's: a block of calls of each side in random order, sessions made anew
every few rounds. The profiled change differs from the timed one by that overhead (both are
shown); the attribution splits the profiled one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from perf.measure.profile import CallProfile, ProfiledSession
from perf.measure.sessions import SessionSettings, open_session
from perf.scenarios.ab import ABOutcome, ABPolicy
from perf.stats.attribution import Attribution, attribute
from perf.stats.outcome import Outcome

log = logging.getLogger("perf")
EXPLAIN_CHOICES = ("slower", "all", "off")
EXPLAIN_SECONDS = 20.0


@dataclasses.dataclass(frozen=True)
class ExplainPolicy:
    seconds: float = EXPLAIN_SECONDS  # of profiled rounds, at least min_rounds
    block_seconds: float = 0.25
    max_block_calls: int = 8
    rounds_per_segment: int = 3
    min_rounds: int = 6
    warmup_calls: int = 2  # per session, before its first round; not attributed
    seed: int = 0


OpenProfiled = Callable[[], ProfiledSession]


def profile_pair(
    open_a: OpenProfiled,
    open_b: OpenProfiled,
    policy: ExplainPolicy,
    clock: Callable[[], float] = time.perf_counter,
) -> Attribution:
    """Rounds of profiled calls of A and B until ``policy.seconds`` (and ``min_rounds``)."""
    rng = random.Random(policy.seed)
    started = clock()
    rounds: list[tuple[Sequence[CallProfile], Sequence[CallProfile]]] = []
    block_calls = 0
    while len(rounds) < policy.min_rounds or clock() - started < policy.seconds:
        order = ["a", "b"]
        rng.shuffle(order)
        sessions = {side: {"a": open_a, "b": open_b}[side]() for side in order}
        made = {side: 0 for side in order}
        for side in order:
            for _ in range(policy.warmup_calls):
                sessions[side]()
                made[side] += 1
        if not block_calls:
            block_calls = _block_calls(sessions, policy, clock)
            made = {side: made[side] + 1 for side in made}
        spans = []
        for _ in range(policy.rounds_per_segment):
            rng.shuffle(order)
            span = {}
            for side in order:
                span[side] = made[side]
                for _ in range(block_calls):
                    sessions[side]()
                made[side] += block_calls
            spans.append(span)
        calls = {side: sessions[side].calls() for side in order}
        end = block_calls
        rounds += [(calls["a"][s["a"] : s["a"] + end], calls["b"][s["b"] : s["b"] + end])
                   for s in spans]  # fmt: skip
    return attribute(rounds)


def _block_calls(
    sessions: Mapping[str, ProfiledSession], policy: ExplainPolicy, clock: Callable[[], float]
) -> int:
    """Calls per block from one timed call of each side (made before the rounds)."""
    seconds = []
    for side in sessions:
        began = clock()
        sessions[side]()
        seconds.append(clock() - began)
    typical = max(seconds)
    fitting = int(policy.block_seconds / typical) if typical > 0 else policy.max_block_calls
    return max(1, min(policy.max_block_calls, fitting))


def explained(
    outcome: ABOutcome,
    a_path: Path,
    b_path: Path,
    settings: SessionSettings,
    inputs: Mapping[str, Any],
    ab: ABPolicy,
    b_inputs: Mapping[str, Any] | None = None,
) -> ABOutcome:
    """``outcome`` with the attribution of its change, when ``ab.explain`` asks for it
    (``slower``: only slower verdicts; ``all``: every measured A/B; ``off``), profiled for a
    quarter of the A/B's time cap, 20 s at most. A model the profiler cannot run is left
    unexplained, with a warning in the log."""
    if outcome.measured is None or ab.explain == "off":
        return outcome
    if ab.explain == "slower" and outcome.outcome is not Outcome.SLOWER:
        return outcome
    policy = ExplainPolicy(seconds=min(EXPLAIN_SECONDS, ab.max_seconds / 4), seed=ab.seed)

    def opener(path: Path, feed: Mapping[str, Any]) -> OpenProfiled:
        return lambda: ProfiledSession(functools.partial(open_session, path, settings), feed)

    log.info("%s: profiling A and B for %g s to attribute the change", outcome.case_id,
             policy.seconds)  # fmt: skip
    try:
        attribution = profile_pair(
            opener(a_path, inputs), opener(b_path, inputs if b_inputs is None else b_inputs), policy
        )
    except (RuntimeError, ValueError, OSError) as error:
        log.warning("%s: no attribution: %s", outcome.case_id, error)
        return outcome
    return dataclasses.replace(outcome, explained=attribution)
