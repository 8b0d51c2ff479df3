"""``--perf-against REF``: which benchmarks changed since REF, and each changed one's A/B verdict.

A benchmark whose artifact has the same cache key at REF and in the working tree is the same
file: it is reported ``unchanged (same artifact)`` without being measured (or measured as an
A/A with ``--perf-against-unchanged``). The others are measured interleaved (``perf.scenarios.ab``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from export.recipes import parse_variant_name
from perf.baselines.git_ref import GitRefError, RefModels, RefTree
from perf.measure.cases import PerfCase, case_inputs
from perf.measure.models import ResolvedModel
from perf.measure.numerics import NumericsRefused
from perf.measure.sessions import SessionSettings, open_session
from perf.scenarios.ab import ABOutcome, ABPolicy, Call, measure_sides
from perf.scenarios.explain import explained
from perf.scenarios.open_loop import Workload
from perf.scenarios.server import server_bench
from perf.scenarios.server_ab import measure_server_pair
from perf.scenarios.traffic import open_workload
from perf.stats.outcome import Outcome

ResolveHead = Callable[[PerfCase, SessionSettings], ResolvedModel]
# Measures REF's model file against the working tree's model, in one scenario
MeasurePair = Callable[[Path, ResolvedModel], ABOutcome]
InputsFor = Callable[[Path, PerfCase], Mapping[str, np.ndarray]]
CheckModel = Callable[[PerfCase, ResolvedModel, SessionSettings], object]


def _opener(path: Path, settings: SessionSettings, inputs: Mapping[str, np.ndarray]) -> Call:
    session = open_session(path, settings)
    feed = dict(inputs)
    return lambda: session.run(None, feed)


def measure_pair(
    case_id: str,
    label: str,
    a_path: Path,
    b_path: Path,
    settings: SessionSettings,
    inputs: Mapping[str, np.ndarray],
    policy: ABPolicy,
    progress: Callable[[str], None] | None = None,
    b_inputs: Mapping[str, np.ndarray] | None = None,
    b_label: str = "working tree",
) -> ABOutcome:
    """A's and B's model files timed call by call, interleaved (``measure_sides``); B is fed
    ``b_inputs`` where its inputs differ from A's (another variant)."""
    return measure_sides(
        case_id,
        label,
        lambda: _opener(a_path, settings, inputs),
        lambda: _opener(b_path, settings, inputs if b_inputs is None else b_inputs),
        settings.to_dict(),
        policy,
        progress,
        b_label=b_label,
    )


def ab_policy(options: Any) -> ABPolicy:
    """The A/B policy of a session's options (PerfOptions): its time cap, confidence and
    --perf-explain."""
    return ABPolicy(
        options.policy.max_seconds, confidence=options.policy.confidence, explain=options.explain
    )


def against_gate(
    tree: RefTree,
    cache_root: Path,
    resolve_head: ResolveHead,
    options: Any,
    progress: Callable[[str], None] | None = None,
    check_model: CheckModel | None = None,
) -> AgainstGate:
    """The gate for one ``pytest perf/`` session; ``options`` is its PerfOptions."""
    return AgainstGate(
        RefModels(tree, cache_root, progress=progress or (lambda _message: None)),
        head_key=lambda variant: parse_variant_name(variant, options.weights).key(),
        resolve_head=resolve_head,
        inputs_for=lambda path, case: case_inputs(path, case, options.dims, options.fixed_inputs),
        policy=ab_policy(options),
        measure_unchanged=options.against_unchanged,
        progress=progress,
        variants=options.variants,
        check_model=check_model,
    )


class AgainstGate:
    """Answers, per benchmark, "is the working tree slower than REF?"; keeps the answers."""

    def __init__(
        self,
        ref_models: RefModels,
        head_key: Callable[[str], str],
        resolve_head: ResolveHead,
        inputs_for: InputsFor,
        policy: ABPolicy,
        measure_unchanged: bool = False,
        progress: Callable[[str], None] | None = None,
        variants: Sequence[str] = (),
        check_model: CheckModel | None = None,
    ) -> None:
        """``variants``: every variant this run will ask about, to name them to REF at once;
        ``check_model`` checks REF's model's numbers on this machine and provider, as the
        working tree's are (raises NumericsRefused)."""
        self.ref_models = ref_models
        self.head_key = head_key
        self.resolve_head = resolve_head
        self.inputs_for = inputs_for
        self.policy = policy
        self.measure_unchanged = measure_unchanged
        self.progress = progress
        self.outcomes: list[ABOutcome] = []
        self.variants = list(variants)
        self.check_model = check_model

    @property
    def ref(self) -> str:
        return self.ref_models.tree.label

    def check(self, case: PerfCase, settings: SessionSettings) -> ABOutcome:
        """The case's single-stream latency at REF and here, timed call by call."""

        def calls(ref_path: Path, head: ResolvedModel) -> ABOutcome:
            inputs = self.inputs_for(head.path, case)
            return measure_pair(case.id, self.ref, ref_path, head.path, settings, inputs,
                                self.policy, self.progress)  # fmt: skip

        return self._remember(self._check(case, case.id, settings, calls))

    def check_server(
        self, case: PerfCase, rate_rps: float, workers: int, settings: SessionSettings
    ) -> ABOutcome:
        """The case's latency under Poisson arrivals at ``rate_rps``, REF's model and this
        tree's serving the same arrivals in interleaved rounds (perf.scenarios.server_ab)."""
        bench = server_bench(case, rate_rps)

        def serving(path: Path) -> Callable[[], Workload]:
            return lambda: open_workload(path, case, settings, partial(self.inputs_for, path))

        def served(ref_path: Path, head: ResolvedModel) -> ABOutcome:
            return measure_server_pair(
                bench, self.ref, serving(ref_path), serving(head.path), rate_rps, workers,
                settings.to_dict(), self.policy, self.progress,
            )  # fmt: skip

        return self._remember(self._check(case, bench, settings, served))

    def _remember(self, outcome: ABOutcome) -> ABOutcome:
        self.outcomes.append(outcome)
        return outcome

    def _outcome(self, bench: str, outcome: Outcome, reason: str, **extra: Any) -> ABOutcome:
        return ABOutcome(bench, self.ref, outcome, reason, **extra)

    def _check(
        self, case: PerfCase, bench: str, settings: SessionSettings, measure: MeasurePair
    ) -> ABOutcome:
        if case.model_file is not None:
            return self._outcome(
                bench, Outcome.NOT_COMPARED, "a --perf-model file has no version at REF"
            )
        try:
            names = list(dict.fromkeys([*self.variants, case.variant]))
            ref_key = self.ref_models.keys(names)[case.variant]
        except GitRefError as error:
            return self._outcome(bench, Outcome.NOT_COMPARED, str(error))
        same = ref_key == self.head_key(case.variant)
        if same and not self.measure_unchanged:
            return self._outcome(
                bench, Outcome.UNCHANGED, f"same cache key {ref_key[:16]}: not measured"
            )
        head = self.resolve_head(case, settings)
        try:
            ref_path = self.ref_models.build([case.variant])[case.variant]
        except GitRefError as error:
            return self._outcome(bench, Outcome.NOT_COMPARED, str(error))
        refused = ref_refusal(self.check_model, self.ref_models, case, ref_path, ref_key, settings)
        if refused:
            return self._outcome(bench, Outcome.REFUSED, refused)
        outcome = explained(
            measure(ref_path, head), ref_path, head.path, settings,
            self.inputs_for(head.path, case), self.policy,
        )  # fmt: skip
        if same:
            return dataclasses.replace(outcome, reason="same artifact, measured as an A/A")
        return outcome


def ref_refusal(
    check_model: CheckModel | None,
    ref_models: RefModels,
    case: PerfCase,
    ref_path: Path,
    ref_key: str,
    settings: SessionSettings,
) -> str | None:
    """Why REF's model cannot be compared (it computes wrong numbers here), or None."""
    if check_model is None:
        return None
    model = ResolvedModel(
        ref_path,
        ref_path.stat().st_size,
        ref_key,
        variant=case.variant.partition("/")[2],
        reference_dir=ref_models.reference_dir_of(ref_path),
    )
    try:
        check_model(case, model, settings)
    except NumericsRefused as refused:
        return f"REF's model is not benchmarked: {refused}"
    return None
