"""The benchmarks. Parametrized by the plugin from --perf-* options and pyproject.toml."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from perf.baselines.regression import StoredRow
from perf.budgets.rules import budget_for
from perf.measure.cases import PerfCase
from perf.measure.numerics import NumericsRefused
from perf.measure.sessions import ModelLoadError, ProviderSkip
from perf.measurement import LatencyResult
from perf.plugin import record_samples
from perf.run import PerfRun
from perf.scenarios.ab import ABOutcome
from perf.scenarios.pairs import VariantPair
from perf.scenarios.server import NothingServed, stored_row
from perf.stats.outcome import Outcome, UndecidedPolicy


@contextlib.contextmanager
def unavailable_or_refused(debug: bool = False) -> Iterator[None]:
    """A provider or op this machine cannot run becomes a skip that says why; a model that
    computes wrong numbers here, or that onnxruntime rejects, fails with one line (its
    traceback too with ``debug``)."""
    try:
        yield
    except ProviderSkip as skip:
        pytest.skip(skip.reason)
    except (NumericsRefused, ModelLoadError) as error:
        pytest.fail(f"not benchmarked: {error}", pytrace=debug)
    except NothingServed as error:
        pytest.fail(f"not measured: {error}", pytrace=debug)


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


def settle(outcome: Outcome, message: str, policy: UndecidedPolicy) -> str | None:
    """The failure message, if ``outcome`` fails the test under ``policy``; warns if it says
    to (perf/stats/outcome.py says which outcomes fail)."""
    if outcome.fails:
        return message
    if not outcome.inconclusive or policy is UndecidedPolicy.PASS:
        return None
    if policy is UndecidedPolicy.FAIL:
        return f"{message}\n(--perf-undecided fail: an inconclusive comparison fails the test)"
    warnings.warn(f"{outcome}: {message}", stacklevel=2)
    return None


def gated(message: str, run: PerfRun) -> str | None:
    """A broken budget's failure message, or with --perf-no-gate only a warning (None)."""
    if run.options.gate:
        return message
    warnings.warn(f"not gated (--perf-no-gate): {message}", stacklevel=2)
    return None


def _vs_stored(row: StoredRow | LatencyResult, run: PerfRun, benchmark: Any) -> str | None:
    """--benchmark-compare: the row judged on its stored runs; the failure message, if any."""
    check = run.baselines.check(row)
    benchmark.extra_info["baseline"] = check.to_dict()
    title = "regressed against its baseline" if check.regressed else "vs its baseline"
    name = StoredRow.of(row).bench
    return settle(check.outcome, f"{name} {title}\n{check.message}", run.options.undecided)


def test_latency(perf_case: PerfCase, perf_run: PerfRun, request: pytest.FixtureRequest) -> None:
    if perf_run.ab.gate is not None:
        _against(lambda: perf_run.ab.against_ref(perf_case), perf_run, request)
        return
    with unavailable_or_refused(perf_run.options.debug):
        result = perf_run.measure(perf_case)
    benchmark = _record_result(request, result)
    failures = []
    if perf_run.options.compare:
        failures.append(_vs_stored(result, perf_run, benchmark))
    if result.verdict is Outcome.FAIL:
        message = f"{perf_case.id} breaks its latency budget\n{result.failure_message()}"
        failures.append(gated(message, perf_run))
    failed = [f for f in failures if f]
    if failed:
        pytest.fail("\n\n".join(failed), pytrace=False)


def _against(
    compare: Callable[[], ABOutcome], run: PerfRun, request: pytest.FixtureRequest
) -> None:
    """--perf-against REF: the paired A/B verdict decides, as --benchmark-compare would."""
    with unavailable_or_refused(run.options.debug):
        outcome = compare()
    if outcome.measured is not None:  # the working tree's samples, for pytest-benchmark's JSON
        samples = outcome.measured.b_samples_ms
        _record(request, samples, {"against": outcome.to_dict(), "samples_ms": list(samples)})
    title = f"is slower than at {outcome.ref}" if outcome.regressed else f"vs {outcome.ref}"
    message = f"{outcome.case_id} {title}\n{outcome.reason}"
    if outcome.explained is not None:
        message += f"\nwhy: {outcome.explained.line()}"
    failure = settle(outcome.outcome, message, run.options.undecided)
    if failure:
        pytest.fail(failure, pytrace=False)


def test_variant_pair(
    pair_case: VariantPair, perf_run: PerfRun, request: pytest.FixtureRequest
) -> None:
    """--perf-compare A,B: B / A with its interval and (--perf-explain) the operators that make
    the difference. A question, not a gate: it passes whatever the verdict."""
    with unavailable_or_refused(perf_run.options.debug):
        outcome = perf_run.ab.variants(pair_case)
    if outcome.measured is not None:  # B's samples, for pytest-benchmark's JSON
        samples = outcome.measured.b_samples_ms
        _record(request, samples, {"pair": outcome.to_dict(), "samples_ms": list(samples)})


def test_torch_eager_reference(
    eager_case: PerfCase, perf_run: PerfRun, request: pytest.FixtureRequest
) -> None:
    with unavailable_or_refused(perf_run.options.debug):
        result = perf_run.measure_torch(eager_case)
    _record_result(request, result)


def test_server(
    server_case: tuple[PerfCase, float], perf_run: PerfRun, request: pytest.FixtureRequest
) -> None:
    """--perf-scenario server: Poisson arrivals at each --perf-rate; latency from schedule.
    With --perf-against or --benchmark-compare, judged like single-stream rows: A/B in
    interleaved rounds (perf.scenarios.server_ab), or on the stored runs."""
    case, rate = server_case
    if perf_run.ab.gate is not None:
        _against(lambda: perf_run.ab.against_ref(case, rate), perf_run, request)
        return
    with unavailable_or_refused(perf_run.options.debug):
        result = perf_run.traffic.measure_server(case, rate, budget_for(case, perf_run.rules))
    latencies = result.run.values("latency_ms")
    benchmark = _record(request, latencies, {"server": result.to_dict(), "samples_ms": latencies})
    for flag in result.flags:
        warnings.warn(f"{case.id} at {rate:g} req/s: {flag}", stacklevel=1)
    failures = []
    if perf_run.options.compare:
        failures.append(_vs_stored(stored_row(result), perf_run, benchmark))
    if result.verdict.fails:
        reasons = "; ".join(d.reason for d in result.decisions if d.verdict.fails)
        failures.append(gated(f"{case.id} at {rate:g} req/s broke its budget: {reasons}", perf_run))
    failed = [f for f in failures if f]
    if failed:
        pytest.fail("\n\n".join(failed), pytrace=False)


def test_peak_rate(peak_case: PerfCase, perf_run: PerfRun, request: pytest.FixtureRequest) -> None:
    """--perf-rate peak: the highest Poisson rate whose P99 is proven under --perf-slo-ms. With
    --perf-against, REF's model and this tree's then serve that rate as a server A/B: a model
    that lost capacity queues more there."""
    with unavailable_or_refused(perf_run.options.debug):
        result = perf_run.traffic.find_peak(peak_case, budget_for(peak_case, perf_run.rules))
    for point in result.points:
        if point.run.generator_fell_behind:
            warnings.warn(f"{peak_case.id} at {point.run.rate_rps:.3g} req/s: generator late",
                          stacklevel=1)  # fmt: skip
    failure = settle(result.verdict, f"{peak_case.id}: {result.verdict_line()}",
                     perf_run.options.undecided)  # fmt: skip
    if failure and result.verdict is Outcome.FAIL:
        failure = gated(failure, perf_run)
    if failure:
        pytest.fail(failure, pytrace=False)
    if perf_run.ab.gate is not None and result.proven_rps > 0:
        rate = result.proven_rps
        _against(lambda: perf_run.ab.against_ref(peak_case, rate), perf_run, request)
    elif perf_run.options.compare or perf_run.options.save_baseline:
        _peak_vs_stored(peak_case, result.proven_rps, perf_run, request)


def _peak_vs_stored(
    case: PerfCase, proven_rps: float, run: PerfRun, request: pytest.FixtureRequest
) -> None:
    """The peak in baselines: a server run at the stored peak rate (the first saved run's
    proven rate), judged on the stored runs at that rate like any server row. A peak search
    moves with the machine's drift; the latency at one fixed rate is what lost capacity raises
    (a model that got slower queues more there)."""
    stored = run.baselines.stored_settings(f"{case.id}-peak") or {}
    rate = stored.get("rate_rps") or proven_rps
    if not rate:
        return  # nothing proven now, nothing stored: no rate to serve
    with unavailable_or_refused(run.options.debug):
        served = run.traffic.measure_server(case, rate, at_peak=True)
    latencies = served.run.values("latency_ms")
    benchmark = _record(request, latencies, {"server": served.to_dict(), "samples_ms": latencies})
    if not run.options.compare:
        return
    failure = _vs_stored(stored_row(served), run, benchmark)
    if failure:
        found = f"(the peak found now: {proven_rps:.3g} req/s; stored runs served {rate:.3g})"
        pytest.fail(f"{failure}\n{found}", pytrace=False)


def test_tail_settings(tail_case: tuple[PerfCase, float], perf_run: PerfRun) -> None:
    """--perf-tail-matrix: the server scenario at a rate under each session setting."""
    case, rate = tail_case
    with unavailable_or_refused(perf_run.options.debug):
        perf_run.traffic.measure_matrix(case, rate)


def test_offline(offline_case: PerfCase, perf_run: PerfRun) -> None:
    """--perf-scenario offline: batched calls back to back; throughput in the summary."""
    with unavailable_or_refused(perf_run.options.debug):
        perf_run.traffic.measure_offline(offline_case)


def test_concurrent_throughput(concurrency_case: PerfCase, perf_run: PerfRun) -> None:
    """Requests/s of N threads on one session: in the summary and report, not a per-call
    benchmark for pytest-benchmark."""
    with unavailable_or_refused(perf_run.options.debug):
        perf_run.measure_concurrency(concurrency_case)
