"""One perf session's state: options, the model cache, budgets, and the results measured so far.

The pytest plugin creates one ``PerfRun``; the test functions call ``measure*`` on it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from export.cache import ModelCache
from perf.baselines.gate import BaselineGate
from perf.baselines.regression import StoredRow
from perf.budgets.rules import BudgetRule, budget_for
from perf.config import PerfOptions
from perf.measure.cases import PerfCase, case_inputs
from perf.measure.efficiency import EfficiencyMeter
from perf.measure.fingerprint import machine_and_software
from perf.measure.gpu_modes import (
    check_provider,
    configuration_options,
    for_case,
    input_shapes,
    unbound,
)
from perf.measure.models import Models
from perf.measure.numerics import CheckedModels, NumericsChecker
from perf.measure.profile import ProfiledSession, breakdown
from perf.measure.providers import TENSORRT, provider_options, resolve_provider
from perf.measure.sampling import SamplingPolicy, timed
from perf.measure.sessions import SessionSettings, check_available, node_placement, open_session
from perf.measurement import (
    ConcurrencyResult,
    LatencyResult,
    measure_case,
    measure_model_concurrency,
    measure_torch_eager,
)
from perf.scenarios.ab import ABOutcome
from perf.scenarios.against import AgainstGate, ab_policy, against_gate
from perf.scenarios.open_loop import Workload
from perf.scenarios.pairs import VariantPair, compare_variants
from perf.scenarios.stored import side_by_side_with_stored
from perf.scenarios.tail_matrix import TailSetting
from perf.scenarios.traffic import TrafficRun, open_workload

log = logging.getLogger("perf")


def checked_models(options: PerfOptions, cache: ModelCache) -> CheckedModels:
    """The session's models, each numerics-checked on this machine before it is timed."""
    return CheckedModels(
        Models(cache, options.weights, options.model_parents),
        NumericsChecker(cache.root / ".numerics", machine_and_software, options.emulate_isa),
        options.dims,
        options.fixed_inputs,
        progress=log.info,
    )


def ref_gate(options: PerfOptions, cache: ModelCache, models: CheckedModels) -> AgainstGate | None:
    """--perf-against REF's gate: REF's models built by REF's code, checked like ours."""
    if options.against is None:
        return None
    return against_gate(
        options.against,
        cache.root,
        lambda case, settings: models.resolve(case, settings)[0],
        options,
        log.info,
        check_model=lambda case, model, settings: models.check(
            case, model, settings, label=" at REF", remember=False
        ),
    )


def sampling_policy(options: PerfOptions) -> SamplingPolicy:
    """Stored runs and the run judged on them must be alike: runs that save or compare all
    sample to the time cap."""
    if options.save_baseline or options.compare:
        return dataclasses.replace(options.policy, until_cap=True)
    return options.policy


def with_profile(
    result: LatencyResult, model_path: Path, settings: SessionSettings, inputs: Mapping[str, Any]
) -> LatencyResult:
    """--perf-profile: the result with its per-op-type breakdown, from calls made after its
    timed samples."""
    log.info("%s: profiling (--perf-profile)", result.case.id)
    opener = functools.partial(open_session, model_path, settings)
    p50_ms = result.summary.percentiles["p50"].value
    rows = breakdown(lambda: ProfiledSession(opener, inputs), p50_ms)
    return dataclasses.replace(result, profile=rows)


def traffic_workload(
    models: CheckedModels, options: PerfOptions, settings: SessionSettings, case: PerfCase
) -> Workload:
    """The case's workload for a traffic scenario, on a fresh session of its checked model;
    --perf-inject-delay slows every call of it, as it slows single-stream calls (a check of the
    suite's own detection)."""
    model, _ = models.resolve(case, settings)
    dims, fixed = options.dims, options.fixed_inputs
    workload = open_workload(
        model.path, case, settings,
        lambda length: case_inputs(model.path, length, dims, fixed), model.key,
    )  # fmt: skip
    delay_ms = options.policy.inject_delay_ms
    if not delay_ms:
        return workload
    slowed = tuple(functools.partial(timed, call, delay_ms) for call in workload.calls)
    return dataclasses.replace(workload, calls=slowed)


def case_settings(
    options: PerfOptions, case: PerfCase, model_path: Path, settings: SessionSettings
) -> SessionSettings:
    """A benchmark's ``settings`` with TensorRT profiled for every length of the run, and the
    --perf-io-binding/--perf-cuda-graph modes (ProviderSkip when one cannot apply)."""
    dims, fixed = options.dims, options.fixed_inputs
    run_lengths = [seconds for seconds, _ in case.mix] or options.durations
    session_lengths = [seconds for seconds, _ in case.mix] or [case.duration_s]
    inputs = functools.partial(case_inputs, model_path, case, dims, fixed)
    return for_case(
        settings, options.gpu_modes,
        input_shapes(model_path, case, run_lengths, dims, fixed),
        input_shapes(model_path, case, session_lengths, dims, fixed),
        lambda: node_placement(model_path, settings, inputs()),
    )  # fmt: skip


def tensorrt_profiled(
    options: PerfOptions, models: CheckedModels, case: PerfCase, settings: SessionSettings
) -> SessionSettings:
    """``settings`` for a case that times ``session.run`` (A/Bs, traffic): on TensorRT, profiled
    for every length of the run so that no timed call builds an engine; others as they are."""
    if settings.provider != TENSORRT:
        return settings
    model, _ = models.resolve(case, settings)
    return case_settings(options, case, model.path, settings)


class ABRuns:
    """The session's A/Bs: --perf-against REF's gate, --perf-compare's variant pairs, and
    changed models measured beside their stored ones. Spinning is off in all of them, so
    that one session's idle threads do not slow the other."""

    def __init__(
        self,
        options: PerfOptions,
        cache: ModelCache,
        models: CheckedModels,
        settings: Callable[[str], SessionSettings],
    ) -> None:
        self.options = options
        self.models = models
        self.gate = ref_gate(options, cache, models)
        self.pairs: list[ABOutcome] = []  # --perf-compare
        self._settings = settings

    def settings(self, case: PerfCase) -> SessionSettings:
        """The case's A/B settings: TensorRT profiled for the run's lengths, so that no timed
        round builds an engine (the bound modes are refused with A/Bs: they time session.run)."""
        check_available(resolve_provider(case.provider))
        base = dataclasses.replace(self._settings(case.provider), spinning=False)
        return tensorrt_profiled(self.options, self.models, case, base)

    def against_ref(self, case: PerfCase, rate_rps: float | None = None) -> ABOutcome:
        """A/B with REF, per call or (with ``rate_rps``) serving Poisson arrivals."""
        assert self.gate is not None
        settings = self.settings(case)
        if rate_rps is None:
            return self.gate.check(case, settings)
        return self.gate.check_server(case, rate_rps, self.options.workers, settings)

    def variants(self, pair: VariantPair) -> ABOutcome:
        """--perf-compare: B's variant against A's, interleaved."""
        settings = self.settings(pair.b)
        dims, fixed = self.options.dims, self.options.fixed_inputs
        outcome = compare_variants(
            pair, lambda case, s: self.models.resolve(case, s)[0],
            lambda path, case: case_inputs(path, case, dims, fixed), settings,
            ab_policy(self.options), log.info,
        )  # fmt: skip
        self.pairs.append(outcome)
        return outcome

    def side_by_side(self, row: StoredRow, stored_key: str) -> ABOutcome | None:
        """A changed model against its stored one, still in the cache, in the row's scenario."""
        return side_by_side_with_stored(
            row.case, stored_key, self.models, self.settings(row.case), self.options,
            rate_rps=row.rate_rps, workers=self.options.workers,
        )  # fmt: skip

    @property
    def outcomes(self) -> list[ABOutcome]:
        """Every A/B of this run: --perf-against's and --perf-compare's."""
        return [*(self.gate.outcomes if self.gate else []), *self.pairs]


class PerfRun:
    """Measures cases with the session's options and keeps what it measured."""

    def __init__(self, options: PerfOptions, rules: list[BudgetRule]) -> None:
        self.options = options
        self.rules = rules
        cache = ModelCache(options.cache_dir, progress=log.info)
        self.models = checked_models(options, cache)
        self.ab = ABRuns(options, cache, self.models, self.settings)
        self.results: list[LatencyResult] = []
        self.concurrency_results: list[tuple[PerfCase, ConcurrencyResult]] = []
        self.efficiency = EfficiencyMeter(cache.root / ".machine-peak")
        self.traffic = TrafficRun(
            options.policy, options.workers, options.slo_ms, self._open_workload
        )
        self.baselines = BaselineGate(
            options.baselines_dir, force=options.force_compare, remeasure=self.ab.side_by_side
        )

    def settings(self, provider: str) -> SessionSettings:
        cache_dir = self.models.cache.root / ".provider-cache"
        modes = configuration_options(resolve_provider(provider), self.options.gpu_modes)
        return SessionSettings(
            provider=provider,
            intra_op_threads=self.options.intra_op_threads,
            spinning=self.options.spinning,
            provider_options={**provider_options(provider, cache_dir), **modes},
        )

    def measure(self, case: PerfCase) -> LatencyResult:
        """Raises ProviderSkip when the provider cannot run this model here.

        Sampling stops when the budget verdict is decided; a run that saves or compares with a
        baseline samples to the time cap, so that its runs are alike.
        """
        check_available(resolve_provider(case.provider))  # before building anything
        check_provider(resolve_provider(case.provider), self.options.gpu_modes)
        base = self.settings(case.provider)
        model, numerics = self.models.resolve(case, base)
        settings = case_settings(self.options, case, model.path, base)
        budget = budget_for(case, self.rules)
        inputs = case_inputs(model.path, case, self.options.dims, self.options.fixed_inputs)
        log.info("%s: sampling (budget: %s)", case.id, budget or "none")
        result = measure_case(
            case, model, settings, sampling_policy(self.options), budget, inputs,
            progress=lambda message: log.info("%s: %s", case.id, message),
        )  # fmt: skip
        p50_ms = result.summary.percentiles["p50"].value
        work = self.efficiency.of(model.path, inputs, settings, p50_ms)
        result = dataclasses.replace(result, numerics=numerics.to_dict(), work=work)
        if self.options.profile or self.options.save_baseline or self.options.compare:
            # stored with a baseline, and compared with it, so a regression can be explained
            result = with_profile(result, model.path, unbound(settings), inputs)
        warning = result.samples.disturbance()
        if warning:
            warnings.warn(f"{result.case.id}: {warning}", stacklevel=2)
        self.results.append(result)
        return result

    def _open_workload(self, case: PerfCase, tail: TailSetting | None) -> Workload:
        check_available(resolve_provider(case.provider))
        settings = self.settings(case.provider)
        if tail is not None:
            settings = dataclasses.replace(
                settings, intra_op_threads=tail.threads, spinning=tail.spinning
            )
        check_provider(settings.provider, self.options.gpu_modes)
        settings = tensorrt_profiled(self.options, self.models, case, settings)
        return traffic_workload(self.models, self.options, settings, case)

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
        model, _ = self.models.resolve(case, self.settings(case.provider))
        options = self.options
        result = measure_model_concurrency(
            case, model, self.settings(case.provider), options.dims, options.fixed_inputs,
            options.concurrency, options.concurrency_seconds,
        )  # fmt: skip
        self.concurrency_results.append((case, result))
        return result
