"""Measure one benchmark case: session load, first call, warm-up, samples, budget verdicts,
and the result they make; the torch eager reference and throughput under concurrency too."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from perf.budgets.rules import Budget, budget_quantiles
from perf.budgets.verdicts import BudgetDecision, final_decision, judge_budget
from perf.measure.cases import PerfCase, case_inputs
from perf.measure.gpu_modes import session_call as gpu_session_call
from perf.measure.gpu_modes import unbound
from perf.measure.gpu_state import GpuMonitor
from perf.measure.models import ResolvedModel
from perf.measure.providers import NVIDIA_PROVIDERS
from perf.measure.sampling import Samples, SamplingPolicy, sample
from perf.measure.sessions import ProviderSkip, SessionSettings, node_placement, open_session
from perf.measure.trt import engine_cache_state
from perf.stats.outcome import Outcome, budget_outcome
from perf.stats.percentiles import LatencySummary


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    case: PerfCase
    model_path: str
    size_bytes: int | None
    model_key: str | None  # the cache manifest's key: a changed model under the same name
    settings: dict[str, Any]
    load_ms: float
    memory_mb: float  # RSS growth from session creation through the first call
    samples: Samples
    summary: LatencySummary
    budget: Budget | None
    decisions: tuple[BudgetDecision, ...]
    node_placement: dict[str, int] | None
    numerics: dict[str, Any] | None = None  # the check that this model computes right here
    work: dict[str, Any] | None = None  # GFLOP per call and efficiency (perf.measure.efficiency)
    profile: list[dict[str, Any]] | None = None  # --perf-profile: per op type (measure.profile)
    # TensorRT: whether load_ms (session creation, never timed) "built" the engine or loaded it
    # "from cache"
    engine_cache: str | None = None

    @property
    def verdict(self) -> Outcome:
        return budget_outcome([d.verdict for d in self.decisions])

    @property
    def decided_by_point_estimate(self) -> bool:
        return any(d.decided_by_point_estimate for d in self.decisions)

    def failure_message(self) -> str:
        p99 = self.summary.percentiles["p99"]
        lines = [d.reason for d in self.decisions if d.verdict is Outcome.FAIL]
        lines += [
            f"P99 {p99.format()} over n={self.summary.n} samples "
            f"(stopped: {self.samples.stopped_because}); budget {self.budget}",
            f"provider {self.case.provider}; intra-op threads "
            f"{self.settings.get('effective_intra_op_threads')}, "
            f"spinning {self.settings.get('spinning')}",
            f"contention: {self.samples.contention.describe()}",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": {**dataclasses.asdict(self.case), "id": self.case.id},
            "model_path": self.model_path,
            "size_bytes": self.size_bytes,
            "model_key": self.model_key,
            "session": self.settings,
            "load_ms": self.load_ms,
            "memory_mb": self.memory_mb,
            "sampling": self.samples.to_dict(),
            "latency_ms": self.summary.to_dict(),
            "budget": None if self.budget is None else self.budget.to_dict(),
            "decisions": [d.to_dict() for d in self.decisions],
            "verdict": self.verdict,
            "decided_by_point_estimate": self.decided_by_point_estimate,
            "node_placement": self.node_placement,
            "numerics": self.numerics,
            "gflop_per_call": None if self.work is None else self.work["gflop_per_call"],
            "efficiency": None if self.work is None else self.work["efficiency"],
            "work": self.work,
            "profile": self.profile,
            "engine_cache": self.engine_cache,
        }


def judge(
    samples_ms: list[float] | tuple[float, ...], budget: Budget | None, confidence: float
) -> list[BudgetDecision]:
    return [judge_budget(samples_ms, q, ms, confidence) for q, ms in budget_quantiles(budget)]


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def measure_case(
    case: PerfCase,
    model: ResolvedModel,
    settings: SessionSettings,
    policy: SamplingPolicy,
    budget: Budget | None,
    inputs: dict[str, np.ndarray],
    progress: Callable[[str], None] | None = None,
) -> LatencyResult:
    rss_before = _rss_mb()
    engine_cache = engine_cache_state(settings.provider_options)
    started = time.perf_counter()
    session = open_session(model.path, settings)  # raises ProviderSkip with the reason
    load_ms = (time.perf_counter() - started) * 1e3

    def session_call(session: Any) -> Callable[[], Any]:
        return gpu_session_call(session, inputs, settings.provider, settings.io_binding)

    def reopen() -> Callable[[], Any]:
        return session_call(open_session(model.path, settings))

    def is_decided(samples_ms: list[float]) -> bool:
        return all(
            d.verdict is not Outcome.UNDECIDED for d in judge(samples_ms, budget, policy.confidence)
        )

    call = session_call(session)
    del session  # the sampling loop frees it when it makes the next segment's
    gpu = GpuMonitor() if settings.provider in NVIDIA_PROVIDERS else None
    samples = sample(call, policy, is_decided if budget else None, progress, reopen, gpu)
    memory_mb = _rss_mb() - rss_before
    decisions = tuple(
        final_decision(d) for d in judge(samples.samples_ms, budget, policy.confidence)
    )
    placement = None
    if settings.provider != "CPUExecutionProvider":
        placement = node_placement(model.path, unbound(settings), inputs)
    return LatencyResult(
        case=case,
        model_path=str(model.path),
        size_bytes=model.size_bytes,
        model_key=model.key,
        settings=settings.to_dict(),
        load_ms=load_ms,
        memory_mb=memory_mb,
        samples=samples,
        summary=LatencySummary.from_samples(samples.samples_ms, policy.confidence),
        budget=budget,
        decisions=decisions,
        node_placement=placement,
        engine_cache=engine_cache,
    )


def measure_torch_eager(
    case: PerfCase, weights: Path | None, settings: SessionSettings, policy: SamplingPolicy
) -> LatencyResult:
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
    model = build_model(ARCHITECTURES[arch], weights)
    load_ms = (time.perf_counter() - started) * 1e3
    threads = settings.effective_intra_op_threads()
    torch.set_num_threads(threads)
    audio = example_audio(case.batch, case.duration_s)

    def call() -> Any:
        with torch.inference_mode():
            return model(audio)

    samples = sample(call, policy)
    return LatencyResult(
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
        summary=LatencySummary.from_samples(samples.samples_ms, policy.confidence),
        budget=None,
        decisions=(),
        node_placement=None,
    )


@dataclasses.dataclass(frozen=True)
class ConcurrencyResult:
    threads: int
    seconds: float
    requests: int
    summary: LatencySummary

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "seconds": self.seconds,
            "requests": self.requests,
            "requests_per_s": self.requests_per_s,
            "latency_ms": self.summary.to_dict(),
        }


def measure_concurrency(call: Callable[[], Any], threads: int, seconds: float) -> ConcurrencyResult:
    """N threads calling one session for ``seconds``: throughput and latency under that load."""
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.perf_counter() + seconds

    def worker(out: list[float]) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter_ns()
            call()
            out.append((time.perf_counter_ns() - start) / 1e6)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(out,)) for out in per_thread]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = [x for out in per_thread for x in out]
    return ConcurrencyResult(
        threads, elapsed, len(latencies), LatencySummary.from_samples(latencies)
    )


def measure_model_concurrency(
    case: PerfCase,
    model: ResolvedModel,
    settings: SessionSettings,
    dims: Mapping[str, int],
    fixed: Mapping[str, object] | None,
    threads: int,
    seconds: float,
) -> ConcurrencyResult:
    """One session of ``model`` shared by ``threads`` callers, after one call outside the clock."""
    session = open_session(model.path, settings)
    inputs = case_inputs(model.path, case, dims, fixed)
    session.run(None, inputs)  # first call outside the measurement
    return measure_concurrency(lambda: session.run(None, inputs), threads, seconds)
