"""The benchmarks. Parametrized by the plugin from --perf-* options and pyproject.toml."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from perf.measure.cases import PerfCase
from perf.measure.numerics import NumericsRefused
from perf.measure.sessions import ProviderSkip
from perf.measurement import LatencyResult
from perf.plugin import record_samples
from perf.run import PerfRun
from perf.scenarios.ab import NOT_COMPARED


@contextlib.contextmanager
def unavailable_or_refused() -> Iterator[None]:
    """A provider or op this machine cannot run becomes a skip that says why; a model that
    computes wrong numbers here fails, since its timings would be of a wrong model."""
    try:
        yield
    except ProviderSkip as skip:
        pytest.skip(skip.reason)
    except NumericsRefused as refused:
        pytest.fail(f"not benchmarked: {refused}", pytrace=False)


def _record(request: pytest.FixtureRequest, samples_ms: Any, extra: dict[str, Any]) -> Any:
    """Hand the samples to pytest-benchmark. Its fixture is asked for only here, so a test
    that measured nothing (an unchanged A/B, a refusal) leaves no empty benchmark behind."""
    benchmark = request.getfixturevalue("benchmark")
    record_samples(benchmark, samples_ms, extra)
    return benchmark


def _record_result(request: pytest.FixtureRequest, result: LatencyResult) -> Any:
    samples = result.samples
    extra = {
        "perf": result.to_dict(),
        "samples_ms": list(samples.samples_ms),
        "segments": [s.to_dict() for s in samples.segments],
    }
    return _record(request, samples.samples_ms, extra)


def test_latency(perf_case: PerfCase, perf_run: PerfRun, request: pytest.FixtureRequest) -> None:
    if perf_run.against is not None:
        _against(perf_case, perf_run, request)
        return
    with unavailable_or_refused():
        result = perf_run.measure(perf_case)
    benchmark = _record_result(request, result)
    if perf_run.options.compare:
        check = perf_run.baselines.check(result)
        benchmark.extra_info["baseline"] = check.to_dict()
        if check.regressed:
            pytest.fail(
                f"{perf_case.id} regressed against its baseline\n{check.message}", pytrace=False
            )
        if check.status != "compared" or check.undecided:
            warnings.warn(check.message, stacklevel=1)
    if result.verdict == "fail":
        message = f"{perf_case.id} breaks its latency budget\n{result.failure_message()}"
        if not perf_run.options.gate:
            warnings.warn(f"not gated (--perf-no-gate): {message}", stacklevel=1)
            return
        pytest.fail(message, pytrace=False)


def _against(case: PerfCase, run: PerfRun, request: pytest.FixtureRequest) -> None:
    """--perf-against REF: the paired A/B verdict decides, as --benchmark-compare would."""
    with unavailable_or_refused():
        outcome = run.compare_against(case)
    if outcome.measured is not None:  # the working tree's samples, for pytest-benchmark's JSON
        samples = outcome.measured.b_samples_ms
        _record(request, samples, {"against": outcome.to_dict(), "samples_ms": list(samples)})
    if outcome.regressed:
        pytest.fail(f"{case.id} is slower than at {outcome.ref}\n{outcome.reason}", pytrace=False)
    if outcome.status == NOT_COMPARED:
        warnings.warn(outcome.line(), stacklevel=1)


def test_torch_eager_reference(
    eager_case: PerfCase, perf_run: PerfRun, request: pytest.FixtureRequest
) -> None:
    with unavailable_or_refused():
        result = perf_run.measure_torch(eager_case)
    _record_result(request, result)


def test_concurrent_throughput(concurrency_case: PerfCase, perf_run: PerfRun) -> None:
    """Requests/s of N threads on one session: in the summary and report, not a per-call
    benchmark for pytest-benchmark."""
    with unavailable_or_refused():
        perf_run.measure_concurrency(concurrency_case)
