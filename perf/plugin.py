"""The pytest plugin: its hooks, fixtures and the summary table (options: perf.config; which
benchmarks run: perf.case_plan)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from perf.baselines.history import benchmark_entry, build_record, git_state, write_record
from perf.baselines.regression import StoredRow
from perf.baselines.store import BaselineError, load_baseline
from perf.budgets.rules import BudgetConfigError, load_rules
from perf.case_plan import CASE_FIXTURES, plan
from perf.config import ConfigError, add_options, one_line, read_options
from perf.measure.fingerprint import machine_and_software
from perf.measure.profile import breakdown_lines
from perf.measure.providers import (
    ConflictingOnnxruntimeError,
    check_single_onnxruntime,
)
from perf.reports.report import ReportContent, skipped_from_report, write_report
from perf.reports.summary import format_table, summary_table
from perf.run import PerfRun
from perf.scenarios.offline import OFFLINE_HEADERS, offline_rows
from perf.scenarios.server import SERVER_HEADERS, server_rows, stored_row
from perf.scenarios.tail_matrix import MATRIX_HEADERS, matrix_rows
from perf.stats.compare import MIN_BASELINE_RUNS, format_comparison_table
from perf.stats.outcome import Outcome

RUN_KEY = pytest.StashKey[PerfRun]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    try:
        check_single_onnxruntime()
    except ConflictingOnnxruntimeError as error:
        raise pytest.UsageError(str(error)) from error
    try:
        options = read_options(config)
        rules = load_rules(config.rootpath / "pyproject.toml")
    except (ConfigError, BudgetConfigError) as error:
        if config.getoption("perf_debug"):
            raise
        raise pytest.UsageError(one_line(error)) from None
    run = PerfRun(options, rules)
    if options.compare:
        # --benchmark-compare is the suite's trigger for its own comparison with baselines/;
        # pytest-benchmark's "Can't compare. No benchmark files in '.benchmarks'" (its own
        # storage, usually empty) would tell the reader that nothing was compared. This filter
        # is active while pytest-benchmark's pytest_configure (trylast) runs.
        warnings.filterwarnings(
            "ignore", message=r"Can't compare\. No benchmark files", category=pytest.PytestWarning
        )
        try:
            run.baselines.baseline  # noqa: B018 - load now: a malformed file is an error at start
        except BaselineError as error:
            if options.debug:
                raise
            raise pytest.UsageError(one_line(error)) from None
    config.stash[RUN_KEY] = run


def perf_run_of(config: pytest.Config) -> PerfRun:
    return config.stash[RUN_KEY]


def record_samples(benchmark: Any, samples_ms: Sequence[float], extra_info: dict[str, Any]) -> None:
    """Hand our own per-call samples to pytest-benchmark, so that its JSON, --benchmark-save,
    --benchmark-autosave and --benchmark-compare see them.

    pytest-benchmark has no public API for externally timed calls (ionelmc/pytest-benchmark#52);
    this uses the documented workaround from that thread in one place, and tests/ checks the JSON
    it produces. With ``pedantic(rounds=N, iterations=1)`` semantics, one round is one call.
    """
    benchmark.extra_info.update(extra_info)
    if benchmark.disabled:  # --benchmark-disable, or xdist without --benchmark-enable
        return
    benchmark._mode = "benchmark.pedantic(...)"
    stats = benchmark._make_stats(1)
    for value in samples_ms:
        stats.update(value / 1e3)  # pytest-benchmark stores seconds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = CASE_FIXTURES & set(metafunc.fixturenames)
    if not wanted:
        return
    (name,) = wanted
    planned = plan(name, perf_run_of(metafunc.config).options)
    if isinstance(planned, str):
        metafunc.parametrize(
            name, [pytest.param(None, marks=pytest.mark.skip(reason=planned))], ids=["off"]
        )
    else:
        metafunc.parametrize(name, planned.values, ids=planned.ids)


@pytest.fixture(scope="session")
def perf_run(request: pytest.FixtureRequest) -> PerfRun:
    return perf_run_of(request.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write_report(session)
    _save_baseline(session, exitstatus)
    _write_history(session)


def _write_history(session: pytest.Session) -> None:
    """A record of every run that measured something, passing or not: history keeps both."""
    run = perf_run_of(session.config)
    directory = run.options.history_dir
    against = [o.to_dict() for o in run.ab.outcomes]
    if directory is None or not (run.results or run.traffic.rows() or against):
        return
    checks = run.baselines.checks
    benchmarks = {
        r.case.id: benchmark_entry(r, checks[r.case.id].to_dict() if r.case.id in checks else None)
        for r in run.results
    }
    both = machine_and_software()
    record = build_record(benchmarks, both, git_state(session.config.rootpath),
                          run.traffic.rows(), against)  # fmt: skip
    path = write_record(directory, record)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(f"run record: {path}")


def _write_report(session: pytest.Session) -> None:
    directory = session.config.getoption("perf_report")
    if directory is None:
        return
    run = perf_run_of(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reports = reporter.stats.get("skipped", []) if reporter else []
    skipped = [s for s in map(skipped_from_report, reports) if s]
    comparisons = list(run.baselines.checks.items())
    content = ReportContent(
        results=run.results,
        comparisons=comparisons,
        skipped=skipped,
        refused=[(case.id, verdict.message()) for case, verdict in run.models.refused],
        against=[o.to_dict() for o in run.ab.outcomes],
        scenarios=run.traffic.rows(),
    )
    paths = write_report(directory, content)
    if reporter:
        reporter.write_line(f"latency report: {paths[0]}")


def _save_baseline(session: pytest.Session, exitstatus: int) -> None:
    run = perf_run_of(session.config)
    if not run.options.save_baseline:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    rows = [StoredRow.of(r) for r in run.results]
    rows += [stored_row(r) for r in run.traffic.server_results]
    if exitstatus != 0 or session.testsfailed or session.shouldstop or not rows:
        write(f"baseline NOT saved: the run did not complete and pass (exit status {exitstatus})")
        return
    try:
        path, left_out = run.baselines.save(rows)
    except BaselineError as error:
        write(f"baseline NOT saved: {error}")
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    for line in left_out:
        write(line)
    if path is None:
        write("baseline NOT saved: every run was contended")
        return
    saved = load_baseline(path)
    stored = [r for r in rows if saved and r.bench in saved.benchmarks]
    write(f"baseline saved for {len(rows) - len(left_out)} benchmark(s): {path}")
    for row in stored:
        assert saved is not None
        runs = len(saved.entry(row.bench).runs)
        if runs < MIN_BASELINE_RUNS:
            write(
                f"{row.bench}: the baseline now holds {runs} run(s) of it; comparisons need "
                f"{MIN_BASELINE_RUNS} (they say undecided until then): run again with "
                "--perf-save-baseline, preferably minutes apart"
            )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    run = perf_run_of(terminalreporter.config)
    if run.results:
        terminalreporter.section("latency summary")
        terminalreporter.write_line(summary_table(run.results))
    profiled = [r for r in run.results if r.profile]
    if profiled:
        terminalreporter.section("where the time goes, per op type (--perf-profile, ms per call)")
        for result in profiled:
            terminalreporter.write_line(f"{result.case.id} (profiled calls):")
            provider = str(result.settings.get("provider", ""))
            for line in breakdown_lines(result.profile or [], provider):
                terminalreporter.write_line(line)
    if run.models.refused:
        terminalreporter.section("refused: wrong numbers on this machine, not benchmarked")
        for case, verdict in run.models.refused:
            terminalreporter.write_line(f"{case.id}: {verdict.message()}")
    if run.concurrency_results:
        terminalreporter.section("throughput under concurrency")
        rows = [
            (
                case.id,
                str(result.threads),
                f"{result.requests_per_s:.1f} req/s",
                f"{result.summary.percentiles['p50'].value:.1f} ms",
                result.summary.percentiles["p99"].format(),
            )
            for case, result in run.concurrency_results
        ]
        headers = ("configuration", "threads", "throughput", "P50", "P99 [95% CI]")
        terminalreporter.write_line(format_table(rows, headers))
    _traffic_sections(terminalreporter, run)
    checks = run.baselines.checks
    # The table holds the verdicts of stored runs; a verdict measured side by side is a line.
    by_runs = [(b, c.comparison) for b, c in checks.items() if c.comparison and not c.interleaved]
    if checks:
        terminalreporter.section("against the stored baseline")
        if by_runs:
            terminalreporter.write_line(format_comparison_table(by_runs))
        for check in checks.values():
            if check.outcome is not Outcome.SAME or check.interleaved:
                terminalreporter.write_line(check.message)
    if run.ab.gate is not None and run.ab.gate.outcomes:
        terminalreporter.section(f"A/B against {run.ab.gate.ref}")
        for outcome in run.ab.gate.outcomes:
            terminalreporter.write_line(outcome.line())
    if run.ab.pairs:
        terminalreporter.section("variant pairs: B / A, interleaved (--perf-compare)")
        for outcome in run.ab.pairs:
            terminalreporter.write_line(outcome.line())
    line = outcomes_line(run)
    if line:
        terminalreporter.write_line(line, bold=True)


def _traffic_sections(terminalreporter: pytest.TerminalReporter, run: PerfRun) -> None:
    """The traffic scenarios' tables: server, offline, tail settings and peak rates."""
    if run.traffic.server_results:
        terminalreporter.section("server scenario: Poisson arrivals, latency from scheduled time")
        terminalreporter.write_line(
            format_table(server_rows(run.traffic.server_results), SERVER_HEADERS)
        )
    if run.traffic.offline_results:
        terminalreporter.section("offline: every request there from the start, batched")
        terminalreporter.write_line(
            format_table(offline_rows(run.traffic.offline_results), OFFLINE_HEADERS)
        )
    if run.traffic.matrix_results:
        terminalreporter.section("tail settings: the server scenario under each session setting")
        rows = matrix_rows(run.traffic.matrix_results)
        terminalreporter.write_line(format_table(rows, MATRIX_HEADERS))
        for result in run.traffic.matrix_results:
            terminalreporter.write_line(f"{result.case.id}: {result.line()}")
    if run.traffic.peak_results:
        terminalreporter.section("peak rate under an SLO (Poisson arrivals, early stopping)")
        for result in run.traffic.peak_results:
            terminalreporter.write_line(f"{result.case.id}: {result.line()}")
            terminalreporter.write_line(f"  budget: {result.verdict_line()}")


def outcomes_line(run: PerfRun) -> str | None:
    """Every comparison's outcome counted, and what the inconclusive ones did to the tests."""
    outcomes = [c.outcome for c in run.baselines.checks.values()]
    outcomes += [o.outcome for o in run.ab.outcomes]
    if not outcomes:
        return None
    counts = Counter(str(o) for o in outcomes)
    text = "comparisons: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    inconclusive = sum(o.inconclusive for o in outcomes)
    if inconclusive:
        text += (
            f"; {inconclusive} inconclusive (undecided, refused or not compared): "
            f"--perf-undecided {run.options.undecided}"
        )
    return text
