"""One perf session's state: options, the model cache, budgets, and the results measured so far.

The pytest plugin creates one ``PerfRun``; the test functions call ``measure*`` on it.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

from export.cache import ModelCache
from export.recipes import parse_variant_name
from perf.baselines.gate import BaselineGate
from perf.baselines.git_ref import RefModels, RefTree
from perf.budgets.rules import BudgetRule, budget_for
from perf.measure.cases import PerfCase, case_inputs
from perf.measure.fingerprint import machine_and_software
from perf.measure.machine_speed import MachineSpeedProbe
from perf.measure.models import Models, ResolvedModel
from perf.measure.numerics import NumericsChecker, NumericsRefused, NumericsVerdict
from perf.measure.providers import provider_options, resolve_provider
from perf.measure.sampling import SamplingPolicy
from perf.measure.sessions import SessionSettings, check_available
from perf.measurement import (
    ConcurrencyResult,
    LatencyResult,
    measure_case,
    measure_model_concurrency,
    measure_torch_eager,
)
from perf.scenarios.ab import ABOutcome, ABPolicy
from perf.scenarios.against import AgainstGate

log = logging.getLogger("perf")


@dataclasses.dataclass(frozen=True)
class PerfOptions:
    variants: tuple[str, ...]
    providers: tuple[str, ...]
    durations: tuple[float, ...]
    batch: int
    model_files: tuple[Path, ...]
    dims: dict[str, int]
    fixed_inputs: dict[str, object]
    weights: dict[str, Path]
    intra_op_threads: int | None
    spinning: bool
    policy: SamplingPolicy
    concurrency: int
    concurrency_seconds: float
    cache_dir: Path | None
    speed_probe: bool = True
    gate: bool = True  # False: verdicts are reported, a broken budget does not fail the test
    compare: bool = False  # --benchmark-compare: judge each result against the baseline
    force_compare: bool = False
    save_baseline: bool = False
    baselines_dir: Path = Path("baselines")
    model_parents: dict[Path, Path] = dataclasses.field(default_factory=dict)
    emulate_isa: str | None = None  # check numerics as a CPU of this class computes them
    against: RefTree | None = None  # --perf-against: A/B with this commit's models
    against_unchanged: bool = False  # measure unchanged artifacts too, as an A/A


class PerfRun:
    """Measures cases with the session's options and keeps what it measured."""

    def __init__(self, options: PerfOptions, rules: list[BudgetRule]) -> None:
        self.options = options
        self.rules = rules
        cache = ModelCache(options.cache_dir, progress=log.info)
        self.models = Models(cache, options.weights, options.model_parents)
        self.numerics = NumericsChecker(
            cache.root / ".numerics", machine_and_software(), options.emulate_isa
        )
        self.refused: list[tuple[PerfCase, NumericsVerdict]] = []
        self.against = None if options.against is None else self._against_gate(options.against)
        self.results: list[LatencyResult] = []
        self.concurrency_results: list[tuple[PerfCase, ConcurrencyResult]] = []
        self.probe = MachineSpeedProbe() if options.speed_probe else None
        self.baselines = BaselineGate(
            options.baselines_dir, self._remeasure, force=options.force_compare
        )

    def settings(self, provider: str) -> SessionSettings:
        cache_dir = self.models.cache.root / ".provider-cache"
        return SessionSettings(
            provider=provider,
            intra_op_threads=self.options.intra_op_threads,
            spinning=self.options.spinning,
            provider_options=provider_options(provider, cache_dir),
        )

    def measure(
        self, case: PerfCase, record: bool = True, use_budget: bool = True
    ) -> LatencyResult:
        """Raises ProviderSkip when the provider cannot run this model here.

        ``use_budget=False`` samples to the full count instead of stopping once the budget
        verdict is decided (a re-measurement for a baseline comparison wants every sample).
        """
        check_available(resolve_provider(case.provider))  # before building anything
        model = self.models.resolve(case)
        settings = self.settings(case.provider)
        numerics = self.check_numerics(case, model, settings)
        budget = budget_for(case, self.rules) if use_budget else None
        inputs = case_inputs(model.path, case, self.options.dims, self.options.fixed_inputs)
        log.info("%s: sampling (budget: %s)", case.id, budget or "none")
        result = measure_case(
            case,
            model,
            settings,
            self.options.policy,
            budget,
            inputs,
            progress=lambda message: log.info("%s: %s", case.id, message),
            probe=self.probe,
        )
        result = dataclasses.replace(result, numerics=numerics.to_dict())
        self._warn_if_contended(result)
        if record:
            self.results.append(result)
        return result

    def check_numerics(
        self, case: PerfCase, model: ResolvedModel, settings: SessionSettings
    ) -> NumericsVerdict:
        """Raises NumericsRefused when the model computes wrong numbers on this machine."""
        options = self.options
        try:
            verdict = self.numerics.check_case(
                case, model, settings, options.dims, options.fixed_inputs
            )
        except NumericsRefused as refused:
            self.refused.append((case, refused.verdict))
            raise
        log.info("%s: %s", case.id, verdict.message())
        return verdict

    def _against_gate(self, tree: RefTree) -> AgainstGate:
        options = self.options

        def head(case: PerfCase, settings: SessionSettings) -> ResolvedModel:
            model = self.models.resolve(case)
            self.check_numerics(case, model, settings)
            return model

        return AgainstGate(
            RefModels(tree, self.models.cache.root, progress=log.info),
            head_key=lambda variant: parse_variant_name(variant, options.weights).key(),
            resolve_head=head,
            inputs_for=lambda path, case: case_inputs(
                path, case, options.dims, options.fixed_inputs
            ),
            policy=ABPolicy(options.policy.max_seconds, confidence=options.policy.confidence),
            measure_unchanged=options.against_unchanged,
            progress=log.info,
            variants=options.variants,
        )

    def compare_against(self, case: PerfCase) -> ABOutcome:
        """A/B with REF; spinning off, so that one session's idle threads do not slow the other."""
        assert self.against is not None
        check_available(resolve_provider(case.provider))
        settings = dataclasses.replace(self.settings(case.provider), spinning=False)
        return self.against.check(case, settings)

    def _remeasure(self, case: PerfCase) -> LatencyResult:
        return self.measure(case, record=False, use_budget=False)

    def _warn_if_contended(self, result: LatencyResult) -> None:
        warning = result.samples.contention.warning()
        if warning:
            warnings.warn(f"{result.case.id}: {warning}", stacklevel=2)

    def measure_torch(self, case: PerfCase) -> LatencyResult:
        """The torch eager reference row: what ONNX Runtime bought, on the same CPU threads."""
        arch = case.variant.split("/")[0]
        result = measure_torch_eager(
            case, self.options.weights.get(arch), self.settings("cpu"), self.options.policy
        )
        self.results.append(result)
        return result

    def measure_concurrency(self, case: PerfCase) -> ConcurrencyResult:
        check_available(resolve_provider(case.provider))
        model = self.models.resolve(case)
        self.check_numerics(case, model, self.settings(case.provider))
        result = measure_model_concurrency(
            case,
            model,
            self.settings(case.provider),
            self.options.dims,
            self.options.fixed_inputs,
            self.options.concurrency,
            self.options.concurrency_seconds,
        )
        self.concurrency_results.append((case, result))
        return result
