"""``--perf-compare A,B``: two variants of one commit, measured as an A/B.

Picking a recipe is the question an A/B answers: is ``ort-opt`` faster than ``fp32`` on this
machine, and where does ``int8-conv`` lose to ``int8``? Two single-stream runs one after the
other cannot tell a few percent from the machine's drift; the A/B's interleaved rounds
(``perf.scenarios.ab``) can, and give the ratio B / A with its interval, and (``--perf-explain``)
the operators that make the difference. Nothing is gated: a pair is a question, not a budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from export.recipes import all_variant_names
from perf.measure.cases import PerfCase, SelectionError
from perf.measure.models import ResolvedModel
from perf.measure.sessions import SessionSettings
from perf.scenarios.ab import ABOutcome, ABPolicy
from perf.scenarios.against import measure_pair
from perf.scenarios.explain import explained

OPTION = "--perf-compare"

Resolve = Callable[[PerfCase, SessionSettings], ResolvedModel]
InputsFor = Callable[[Path, PerfCase], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class VariantPair:
    """A and B: the same provider, input length and batch, two variants."""

    a: PerfCase
    b: PerfCase

    @property
    def id(self) -> str:
        """``<B case id>-vs-<A variant>``, A's architecture left out where both share it."""
        a_arch, _, a_recipe = self.a.variant.partition("/")
        a_name = a_recipe if a_arch == self.b.architecture else self.a.variant
        return f"{self.b.id}-vs-{a_name}"


def parse_pairs(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Each ``A,B`` of ``--perf-compare``: two different variant names, written out in full."""
    known = all_variant_names()
    pairs = []
    for value in values:
        names = [name.strip() for name in value.split(",")]
        if len(names) != 2 or not all(names):
            raise SelectionError(
                f"{OPTION} {value!r}: two variants separated by a comma, e.g. "
                "w2v2-base/fp32,w2v2-base/ort-opt (A first; the verdict is B / A)"
            )
        unknown = [name for name in names if name not in known]
        if unknown:
            raise SelectionError(
                f"{OPTION} {value!r}: no variant {unknown[0]!r} (names, not globs); known: "
                f"{', '.join(known)}"
            )
        if names[0] == names[1]:
            raise SelectionError(
                f"{OPTION} {value!r}: A and B are one variant; for an A/A of one model use "
                "--perf-against HEAD --perf-against-unchanged"
            )
        pairs.append((names[0], names[1]))
    return tuple(dict.fromkeys(pairs))


def pair_cases(
    pairs: Sequence[tuple[str, str]],
    providers: Sequence[str],
    durations: Sequence[float],
    batch: int,
) -> list[VariantPair]:
    """Every pair on every provider at every input length."""
    return [
        VariantPair(PerfCase(a, provider, seconds, batch), PerfCase(b, provider, seconds, batch))
        for a, b in pairs
        for provider in providers
        for seconds in durations
    ]


def compare_variants(
    pair: VariantPair,
    resolve: Resolve,
    inputs_for: InputsFor,
    settings: SessionSettings,
    policy: ABPolicy,
    progress: Callable[[str], None] | None = None,
) -> ABOutcome:
    """B's model against A's, interleaved on one session setting; explained per ``policy``.
    ``resolve`` builds (or finds) and numerics-checks each variant's model first."""
    a_model, b_model = resolve(pair.a, settings), resolve(pair.b, settings)
    a_inputs = inputs_for(a_model.path, pair.a)
    b_inputs = inputs_for(b_model.path, pair.b)
    outcome = measure_pair(
        pair.id, pair.a.variant, a_model.path, b_model.path, settings, a_inputs, policy,
        progress, b_inputs=b_inputs, b_label=pair.b.variant,
    )  # fmt: skip
    return explained(
        outcome, a_model.path, b_model.path, settings, a_inputs, policy, b_inputs=b_inputs
    )
