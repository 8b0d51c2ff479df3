"""One perf session's state: options, the model cache, budgets, and the results measured so far.

The pytest plugin creates one ``PerfRun``; the test functions call ``measure*`` on it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from export.cache import ModelCache
from export.recipes import file_sha256, onnx_file_set, parse_variant_name
from perf.baselines import BaselineFile, find_baseline, save_baselines
from perf.budgets import BudgetRule, budget_for
from perf.cases import PerfCase
from perf.fingerprint import machine_fingerprint, software_fingerprint
from perf.machine_speed import MachineSpeedProbe
from perf.measurement import (
    ConcurrencyResult,
    LatencyResult,
    case_inputs,
    measure_case,
    measure_concurrency,
)
from perf.percentiles import LatencySummary
from perf.providers import provider_options, resolve_provider
from perf.regression import BaselineCheck, baseline_entry, check_against_baseline, pooled
from perf.sampling import Samples, SamplingPolicy, sample
from perf.sessions import ProviderSkip, SessionSettings, check_available, open_session

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


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    path: Path
    size_bytes: int
    key: str | None


class PerfRun:
    def __init__(self, options: PerfOptions, rules: list[BudgetRule]) -> None:
        self.options = options
        self.rules = rules
        self.cache = ModelCache(options.cache_dir, progress=log.info)
        self.results: list[LatencyResult] = []
        self.concurrency_results: list[tuple[PerfCase, ConcurrencyResult]] = []
        self._models: dict[str, ResolvedModel] = {}
        self.probe = MachineSpeedProbe() if options.speed_probe else None
        self.baseline_checks: dict[str, BaselineCheck] = {}

    def model(self, case: PerfCase) -> ResolvedModel:
        if case.variant not in self._models:
            self._models[case.variant] = self._resolve(case)
        return self._models[case.variant]

    def _resolve(self, case: PerfCase) -> ResolvedModel:
        if case.model_file is not None:
            path = case.model_file
            if not path.is_file():
                raise FileNotFoundError(f"--perf-model {path} does not exist")
            files = onnx_file_set(path)
            size = sum(f.stat().st_size for f in files if f.is_file())
            return ResolvedModel(path, size, file_sha256(path))
        recipe = parse_variant_name(case.variant, self.options.weights)
        try:
            artifact = self.cache.get(recipe)
        except ModuleNotFoundError as error:
            raise RuntimeError(
                f"building {case.variant} needs {error.name}, which is not installed; "
                "install the export extra (pip install -e '.[cpu,export]') or prebuild the "
                "models on a machine that has it (python -m export build)"
            ) from error
        return ResolvedModel(artifact.model_path, artifact.size_bytes, artifact.key)

    def settings(self, provider: str) -> SessionSettings:
        cache_dir = self.cache.root / ".provider-cache"
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
        model = self.model(case)
        settings = self.settings(case.provider)
        budget = budget_for(case, self.rules) if use_budget else None
        inputs = case_inputs(model.path, case, self.options.dims, self.options.fixed_inputs)
        log.info("%s: sampling (budget: %s)", case.id, budget or "none")
        samples, load_ms, memory_mb, decisions, placement = measure_case(
            case,
            model.path,
            settings,
            self.options.policy,
            budget,
            inputs,
            progress=lambda message: log.info("%s: %s", case.id, message),
            probe=self.probe,
        )
        result = LatencyResult(
            case=case,
            model_path=str(model.path),
            size_bytes=model.size_bytes,
            model_key=model.key,
            settings=settings.to_dict(),
            load_ms=load_ms,
            memory_mb=memory_mb,
            samples=samples,
            summary=LatencySummary.from_samples(samples.samples_ms, self.options.policy.confidence),
            budget=budget,
            decisions=decisions,
            node_placement=placement,
        )
        self._warn_if_contended(result)
        if record:
            self.results.append(result)
        return result

    @functools.cached_property
    def baseline(self) -> BaselineFile | None:
        """This machine's committed baseline, loaded once; BaselineError names a bad file."""
        return find_baseline(self.options.baselines_dir, *self.fingerprint)

    @functools.cached_property
    def fingerprint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return machine_fingerprint(), software_fingerprint()

    def check_regression(self, result: LatencyResult) -> BaselineCheck:
        """Compare with the baseline; a slower or undecided result is re-measured first."""
        machine, software = self.fingerprint

        def check(samples: Samples) -> BaselineCheck:
            return check_against_baseline(
                result,
                samples,
                self.baseline,
                machine,
                software,
                force=self.options.force_compare,
                where=str(self.options.baselines_dir),
            )

        verdict = check(result.samples)
        if verdict.needs_remeasure:
            log.info(
                "%s: %s vs baseline; re-measuring before judging",
                result.case.id,
                verdict.comparison.verdict if verdict.comparison else "?",
            )
            again = self.measure(result.case, record=False, use_budget=False)
            verdict = dataclasses.replace(
                check(pooled(result.samples, again.samples)), remeasured=True
            )
        self.baseline_checks[result.case.id] = verdict
        return verdict

    def save_baseline(self) -> Path:
        entries = {r.case.id: baseline_entry(r) for r in self.results}
        return save_baselines(self.options.baselines_dir, *self.fingerprint, entries)

    def _warn_if_contended(self, result: LatencyResult) -> None:
        warning = result.samples.contention.warning()
        if warning:
            warnings.warn(f"{result.case.id}: {warning}", stacklevel=2)

    def measure_torch(self, case: PerfCase) -> LatencyResult:
        """The torch eager reference row: what ONNX Runtime bought, on the same CPU threads."""
        try:
            import torch
        except ModuleNotFoundError:
            raise ProviderSkip(
                "torch is not installed (pip install -e '.[export]'); no eager reference"
            ) from None
        from export.architectures import ARCHITECTURES, build_model, example_audio

        arch = case.variant.split("/")[0]
        started = time.perf_counter()
        model = build_model(ARCHITECTURES[arch], self.options.weights.get(arch))
        load_ms = (time.perf_counter() - started) * 1e3
        threads = self.settings("cpu").effective_intra_op_threads()
        torch.set_num_threads(threads)
        audio = example_audio(case.batch, case.duration_s)

        def call() -> Any:
            with torch.inference_mode():
                return model(audio)

        samples = sample(call, self.options.policy)
        result = LatencyResult(
            case=case,
            model_path=f"torch eager ({arch})",
            size_bytes=None,
            model_key=None,
            settings={
                "framework": f"torch {torch.__version__}",
                "effective_intra_op_threads": threads,
            },
            load_ms=load_ms,
            memory_mb=0.0,
            samples=samples,
            summary=LatencySummary.from_samples(samples.samples_ms, self.options.policy.confidence),
            budget=None,
            decisions=(),
            node_placement=None,
        )
        self.results.append(result)
        return result

    def measure_concurrency(self, case: PerfCase) -> ConcurrencyResult:
        check_available(resolve_provider(case.provider))
        model = self.model(case)
        session = open_session(model.path, self.settings(case.provider))
        inputs = case_inputs(model.path, case, self.options.dims, self.options.fixed_inputs)
        session.run(None, inputs)  # first call outside the measurement
        result = measure_concurrency(
            lambda: session.run(None, inputs),
            self.options.concurrency,
            self.options.concurrency_seconds,
        )
        self.concurrency_results.append((case, result))
        return result
