"""Does an artifact compute the right numbers *here*? Checked before it is benchmarked.

Parity was checked where an artifact was built, but INT8 numerics depend on the CPU that runs
them (``export/integer_numerics.py``: u8 x s8 saturates on AVX2), reduced precision depends on
the provider, and a model cache travels (CI caches, a shared ``models/``). So each model is run
once here, on the provider it is benchmarked on, and compared with its float reference: the
build's reference for cached artifacts, ``--perf-model-parent`` for a user's file. A user's
integer model without a parent is compared with its own exact-integer arithmetic where this CPU
could saturate. Verdicts are cached per model x machine x software x provider in
``<model cache>/.numerics/``; a failing model is never measured.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export.cache import ModelCache
from export.integer_numerics import emulate, saturates, saturation_bound, this_machine_isa
from export.parity import compare_outputs, describe_result
from perf.files import atomic_write_text
from perf.measure.cases import PerfCase, case_inputs
from perf.measure.models import Models, ResolvedModel
from perf.measure.sessions import SessionSettings, session_runner
from perf.stats.outcome import Outcome

CHECK_FORMAT = 2  # 2: outcome (pass, fail, not compared) in place of status strings

Runner = Callable[[Path, Mapping[str, np.ndarray]], np.ndarray]
# Provider options that change the arithmetic (TensorRT's reduced precision): a verdict under
# one does not vouch for the model under another, so each is checked, and cached, on its own.
PRECISION_OPTIONS = ("trt_fp16_enable", "trt_bf16_enable", "trt_int8_enable")


def checked_configuration(provider: str, options: Mapping[str, str]) -> str:
    """The provider as the numerics check names it: ``tensorrt fp16`` under trt_fp16_enable."""
    reduced = [
        name.removeprefix("trt_").removesuffix("_enable")
        for name in PRECISION_OPTIONS
        if str(options.get(name, "")).lower() in ("true", "1")
    ]
    return " ".join([provider, *reduced])


class NumericsRefused(Exception):
    """A model that computes wrong numbers on this machine or provider: not benchmarked."""

    def __init__(self, verdict: NumericsVerdict) -> None:
        super().__init__(verdict.message())
        self.verdict = verdict


@dataclasses.dataclass(frozen=True)
class NumericsVerdict:
    outcome: Outcome  # pass, fail, or not compared (nothing to compare with)
    isa: str  # this CPU's integer-arithmetic class, or the emulated one
    provider: str
    against: str  # what the output was compared with
    detail: str  # the figures, or why nothing could be compared
    cached: bool = False

    def message(self) -> str:
        where = f"{self.provider} ({self.isa})"
        return f"numerics {self.outcome} on {where} against {self.against}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "outcome": self.outcome.value}


@dataclasses.dataclass(frozen=True)
class NumericsSubject:
    """What is checked: the model, and what its output should match."""

    path: Path
    identity: str  # the artifact's cache key, or the file's sha256
    variant: str  # fp32, int8, ... ("file" for a user's model)
    reference_dir: Path | None = None  # holds reference.npz (cached artifacts)
    parent: Path | None = None  # a user's float model (--perf-model-parent)
    inputs: Mapping[str, np.ndarray] | None = None  # for parent / self comparisons


def _verdict(
    result: Any, isa: str, provider: str, against: str, prefix: str = ""
) -> NumericsVerdict:
    outcome = Outcome.PASS if result.passed else Outcome.FAIL
    return NumericsVerdict(outcome, isa, provider, against, prefix + describe_result(result))


class NumericsChecker:
    """Runs each subject once per machine and provider; remembers the verdict on disk."""

    def __init__(
        self,
        cache_dir: Path,
        fingerprint: Callable[[], Mapping[str, Any]],
        emulate_isa: str | None = None,
    ) -> None:
        """``fingerprint`` is called on the first check only: a run that checks nothing (or
        ``--collect-only``) does not pay for probing the machine."""
        self.cache_dir = cache_dir
        self.fingerprint = fingerprint
        self.emulate_isa = emulate_isa  # CPU only: compute as a CPU of that class would

    def check(self, subject: NumericsSubject, provider: str, run_here: Runner) -> NumericsVerdict:
        """``run_here`` runs a model on ``provider`` with the benchmark's session settings."""
        isa = this_machine_isa()
        if self.emulate_isa is not None and provider == "cpu":
            isa = emulated = self.emulate_isa
            run_here = lambda path, inputs: emulate(path, inputs, emulated)[0]  # noqa: E731
        record = self._record_path(subject, provider)
        cached = _read_verdict(record)
        if cached is not None:
            return cached
        verdict = _Check(isa, provider, run_here).run(subject)
        _write_verdict(record, verdict)
        return verdict

    def check_case(
        self,
        case: PerfCase,
        model: ResolvedModel,
        settings: SessionSettings,
        dims: Mapping[str, int],
        fixed: Mapping[str, object],
    ) -> NumericsVerdict:
        """Check the model a benchmark case runs; raise NumericsRefused when it fails."""
        inputs = None
        if model.reference_dir is None:  # a user's file: a small input of the case's kind
            small = dataclasses.replace(case, duration_s=min(case.duration_s, 1.0), batch=1)
            inputs = case_inputs(model.path, small, dims, fixed)
        subject = numerics_subject(model, inputs)
        configuration = checked_configuration(case.provider, settings.provider_options)
        verdict = self.check(subject, configuration, session_runner(settings))
        if verdict.outcome is Outcome.FAIL:
            raise NumericsRefused(verdict)
        return verdict

    def _record_path(self, subject: NumericsSubject, provider: str) -> Path:
        payload = {
            "format": CHECK_FORMAT,
            "model": subject.identity,
            "parent": None if subject.parent is None else _file_identity(subject.parent),
            "provider": provider,
            "emulated_isa": self.emulate_isa,
            "machine": self.fingerprint(),
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
        return self.cache_dir / f"{subject.identity[:16]}-{digest.hexdigest()[:16]}.json"


@dataclasses.dataclass(frozen=True)
class _Check:
    isa: str
    provider: str
    run_here: Runner

    def run(self, subject: NumericsSubject) -> NumericsVerdict:
        # Off the CPU, graph fusions and kernels (TF32, cuDNN) change float results slightly.
        exact = None if self.provider == "cpu" else False
        if subject.reference_dir is not None:
            from export.layout import load_reference

            inputs, reference = load_reference(subject.reference_dir)
            output = self.run_here(subject.path, inputs)
            result = compare_outputs(subject.variant, output, reference, exact=exact)
            return _verdict(result, self.isa, self.provider, "its build's float reference")
        assert subject.inputs is not None
        if subject.parent is not None:
            from export.parity import run_cpu

            reference = run_cpu(subject.parent, dict(subject.inputs))
            output = self.run_here(subject.path, subject.inputs)
            result = compare_outputs("file", output, reference, exact=exact)
            return _verdict(result, self.isa, self.provider, f"its parent {subject.parent.name}")
        return self._without_reference(subject)

    def _without_reference(self, subject: NumericsSubject) -> NumericsVerdict:
        bound = saturation_bound(subject.path)
        against = "nothing (no --perf-model-parent)"
        if not bound.has_integer_ops:
            return NumericsVerdict(
                Outcome.NOT_COMPARED, self.isa, self.provider, against, "no integer ops"
            )
        if bound.exact_everywhere or saturates(self.isa) is False:
            detail = f"integer products exact here; {bound.describe()}"
            return NumericsVerdict(Outcome.PASS, self.isa, self.provider, against, detail)
        assert subject.inputs is not None
        exact_output = emulate(subject.path, subject.inputs, "avx512-vnni")[0]
        output = self.run_here(subject.path, subject.inputs)
        result = compare_outputs("file", output, exact_output, exact=False)
        prefix = f"{bound.describe()}; "
        return _verdict(result, self.isa, self.provider, "its exact-integer arithmetic", prefix)


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return _hash_file(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _hash_file(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file, once per version of it (size and mtime are part of the cache key)."""
    from export.recipes import file_sha256

    return file_sha256(path)


def _read_verdict(path: Path) -> NumericsVerdict | None:
    try:
        data = json.loads(path.read_text())
        data["outcome"] = Outcome(data["outcome"])
        return dataclasses.replace(NumericsVerdict(**data), cached=True)
    except (OSError, ValueError, TypeError):  # absent, or unreadable: check again
        return None


def _write_verdict(path: Path, verdict: NumericsVerdict) -> None:
    atomic_write_text(path, json.dumps(verdict.to_dict(), indent=2) + "\n")


def numerics_subject(
    model: ResolvedModel, inputs: Mapping[str, np.ndarray] | None
) -> NumericsSubject:
    """``inputs`` feed models without a build reference (a user's file and its parent)."""
    return NumericsSubject(
        path=model.path,
        identity=model.key or _file_identity(model.path),
        variant=model.variant,
        reference_dir=model.reference_dir,
        parent=model.parent,
        inputs=inputs,
    )


class CheckedModels:
    """Models as benchmarks get them: resolved, and their numbers checked on this machine."""

    def __init__(
        self,
        models: Models,
        checker: NumericsChecker,
        dims: Mapping[str, int],
        fixed: Mapping[str, object],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.models = models
        self.checker = checker
        self.dims = dims
        self.fixed = fixed
        self.progress = progress
        self.refused: list[tuple[PerfCase, NumericsVerdict]] = []

    @property
    def cache(self) -> ModelCache:
        return self.models.cache

    def resolve(
        self, case: PerfCase, settings: SessionSettings
    ) -> tuple[ResolvedModel, NumericsVerdict]:
        """Raises NumericsRefused (and remembers the case) when the model is wrong here."""
        model = self.models.resolve(case)
        return model, self.check(case, model, settings)

    def check(
        self,
        case: PerfCase,
        model: ResolvedModel,
        settings: SessionSettings,
        label: str = "",
        remember: bool = True,
    ) -> NumericsVerdict:
        """Check any model a case runs (REF's too); raises NumericsRefused when it is wrong.
        ``remember``: list a refusal with the run's refused models (not for REF's)."""
        try:
            verdict = self.checker.check_case(case, model, settings, self.dims, self.fixed)
        except NumericsRefused as refused:
            if remember:
                self.refused.append((case, refused.verdict))
            raise
        if self.progress:
            self.progress(f"{case.id}{label}: {verdict.message()}")
        return verdict
