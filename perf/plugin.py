"""The pytest plugin: ``--perf-*`` options, parametrization, fixtures and the summary table."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from export.cache import default_cache_dir
from export.inputs import parse_assignments
from export.integer_numerics import ARITHMETIC
from perf.baselines.git_ref import GitRefError, RefTree, checkout
from perf.baselines.store import BaselineError, load_baseline
from perf.budgets.rules import BudgetConfigError, load_rules
from perf.measure.cases import (
    PerfCase,
    SelectionError,
    build_cases,
    case_inputs,
    parse_durations,
    select_providers,
    select_variants,
    split_list,
)
from perf.measure.providers import (
    ConflictingOnnxruntimeError,
    check_single_onnxruntime,
    default_provider_names,
    provider_info,
)
from perf.measure.sampling import SamplingPolicy
from perf.reports.report import ReportContent, skipped_from_report, write_report
from perf.reports.summary import format_table, summary_table
from perf.run import PerfOptions, PerfRun
from perf.stats.compare import MIN_BASELINE_RUNS, format_comparison_table
from perf.stats.outcome import Outcome, UndecidedPolicy

RUN_KEY = pytest.StashKey[PerfRun]()

# (option, ini name, help, ini default)
LIST_OPTIONS = (
    ("--perf-variants", "perf_variants", "ARCH/VARIANT globs, e.g. 'w2v2-base/*'", ["*"]),
    ("--perf-providers", "perf_providers", "provider short names or globs (cpu, cuda, ...)", ["*"]),
    ("--perf-durations", "perf_durations", "seconds of audio per call, e.g. 1s,3s,10s", ["3s"]),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perf", "latency suite (pytest perf/)")
    for option, ini, help_text, default in LIST_OPTIONS:
        group.addoption(option, action="append", default=None, help=f"{help_text} (repeatable)")
        parser.addini(ini, help_text, type="args", default=default)
    group.addoption("--perf-batch", type=int, default=1, help="batch size (default 1)")
    group.addoption(
        "--perf-model",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="also benchmark this ONNX file (repeatable)",
    )
    group.addoption(
        "--perf-dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a symbolic input dim of --perf-model (or INPUT[AXIS]=SIZE)",
    )
    group.addoption(
        "--perf-input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fixed value for a non-audio input of --perf-model (number or JSON list)",
    )
    group.addoption(
        "--perf-weights",
        action="append",
        default=[],
        metavar="ARCH=PATH",
        help="trained weights (.safetensors) for an architecture",
    )
    group.addoption(
        "--perf-threads", type=int, default=None, help="intra-op threads (default: physical cores)"
    )
    group.addoption("--perf-no-spin", action="store_true", help="turn intra-op thread spinning off")
    group.addoption(
        "--perf-max-time", type=float, default=None, help="sampling cap per benchmark, seconds"
    )
    parser.addini("perf_max_time", "sampling cap per benchmark, seconds", default="120")
    group.addoption(
        "--perf-min-samples",
        type=int,
        default=None,
        help="samples per benchmark without a budget (default: enough for a P99 interval)",
    )
    group.addoption(
        "--perf-confidence",
        type=float,
        default=0.95,
        help="confidence level of intervals and verdicts",
    )
    group.addoption(
        "--perf-concurrency",
        type=int,
        default=None,
        help="threads for the throughput test (0: off)",
    )
    parser.addini(
        "perf_concurrency", "threads for the throughput-under-concurrency test", default="2"
    )
    group.addoption(
        "--perf-concurrency-time", type=float, default=5.0, help="seconds per throughput test"
    )
    group.addoption(
        "--perf-cache", type=Path, default=None, help="model cache directory (default: models/)"
    )
    group.addoption(
        "--perf-save-baseline",
        action="store_true",
        help="after a complete, passing run, store its samples as this machine's baseline",
    )
    group.addoption(
        "--perf-baselines",
        type=Path,
        default=None,
        help="baselines directory (default: baselines/ in the rootdir)",
    )
    group.addoption(
        "--perf-force-compare",
        action="store_true",
        help="compare with a baseline whose machine, onnxruntime or settings differ",
    )
    group.addoption(
        "--perf-report",
        type=Path,
        default=None,
        metavar="DIR",
        help="write report.md, summary.md, report.json and PNG plots to DIR",
    )
    group.addoption(
        "--perf-undecided",
        choices=[p.value for p in UndecidedPolicy],
        default=UndecidedPolicy.WARN.value,
        help="what a baseline or --perf-against comparison that is undecided, refused or not "
        "compared does to its test: fail, warn (default: passes with a warning, listed in the "
        "summary and report) or pass",
    )
    group.addoption(
        "--perf-no-gate",
        action="store_true",
        help="report budget verdicts without failing (for noisy shared runners)",
    )
    group.addoption(
        "--perf-inject-delay",
        type=float,
        default=0.0,
        metavar="MS",
        help="add MS of busy-wait to every timed call (to check that a slowdown is caught)",
    )
    group.addoption(
        "--perf-model-parent",
        action="append",
        default=[],
        metavar="MODEL=PARENT",
        help="the float model a --perf-model was derived from: its numbers are checked against "
        "the parent's on this machine before it is benchmarked (repeatable)",
    )
    group.addoption(
        "--perf-against",
        default=None,
        metavar="REF",
        help="A/B: measure REF's models (built by REF's export code) and the working tree's "
        "interleaved in this process; fail when a benchmark is slower (e.g. origin/main)",
    )
    group.addoption(
        "--perf-against-unchanged",
        action="store_true",
        help="with --perf-against: also measure benchmarks whose artifact did not change (A/A)",
    )
    group.addoption(
        "--perf-emulate-isa",
        default=None,
        choices=sorted(ARITHMETIC),
        help="check CPU numerics as a CPU of this class computes them (numpy emulation; e.g. "
        "avx2 on a VNNI machine), to see what an AVX2 runner would refuse",
    )


def _list_option(config: pytest.Config, option: str, ini: str) -> list[str]:
    values = config.getoption(option.lstrip("-").replace("-", "_"))
    return split_list(values if values else config.getini(ini))


def _fixed_value(text: str) -> object:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _dims(items: list[str]) -> dict[str, int]:
    dims = {}
    for name, value in parse_assignments(items, "--perf-dim").items():
        try:
            dims[name] = int(value)
        except ValueError:
            raise ValueError(f"--perf-dim {name}={value}: the size must be an integer") from None
    return dims


def _options(config: pytest.Config) -> PerfOptions:
    providers = [info.short for info in map(provider_info, default_provider_names())]
    max_time = config.getoption("perf_max_time") or float(config.getini("perf_max_time"))
    concurrency = config.getoption("perf_concurrency")
    policy = SamplingPolicy(
        confidence=config.getoption("perf_confidence"),
        max_seconds=max_time,
        min_samples=config.getoption("perf_min_samples"),
        inject_delay_ms=config.getoption("perf_inject_delay"),
    )
    return PerfOptions(
        variants=tuple(select_variants(_list_option(config, "--perf-variants", "perf_variants"))),
        providers=tuple(
            select_providers(_list_option(config, "--perf-providers", "perf_providers"), providers)
        ),
        durations=tuple(
            parse_durations(_list_option(config, "--perf-durations", "perf_durations"))
        ),
        batch=config.getoption("perf_batch"),
        model_files=tuple(config.getoption("perf_model")),
        dims=_dims(config.getoption("perf_dim")),
        fixed_inputs={
            k: _fixed_value(v)
            for k, v in parse_assignments(config.getoption("perf_input"), "--perf-input").items()
        },
        weights={
            k: Path(v)
            for k, v in parse_assignments(
                config.getoption("perf_weights"), "--perf-weights"
            ).items()
        },
        intra_op_threads=config.getoption("perf_threads"),
        spinning=not config.getoption("perf_no_spin"),
        policy=policy,
        concurrency=int(
            concurrency if concurrency is not None else config.getini("perf_concurrency")
        ),
        concurrency_seconds=config.getoption("perf_concurrency_time"),
        cache_dir=config.getoption("perf_cache"),
        gate=not config.getoption("perf_no_gate"),
        undecided=UndecidedPolicy(config.getoption("perf_undecided")),
        compare=bool(config.getoption("benchmark_compare", default=None)),
        force_compare=config.getoption("perf_force_compare"),
        save_baseline=config.getoption("perf_save_baseline"),
        baselines_dir=config.getoption("perf_baselines") or config.rootpath / "baselines",
        model_parents=_model_parents(config.getoption("perf_model_parent")),
        emulate_isa=config.getoption("perf_emulate_isa"),
        against=_against(config),
        against_unchanged=config.getoption("perf_against_unchanged"),
    )


def _against(config: pytest.Config) -> RefTree | None:
    ref = config.getoption("perf_against")
    if ref is None:
        return None
    cache = config.getoption("perf_cache") or default_cache_dir()
    return checkout(config.rootpath, ref, Path(cache).resolve() / ".refs")


def _model_parents(items: list[str]) -> dict[Path, Path]:
    parents = {}
    for model, parent in parse_assignments(items, "--perf-model-parent").items():
        if not Path(parent).is_file():
            raise ValueError(f"--perf-model-parent {model}={parent}: {parent} does not exist")
        parents[Path(model).resolve()] = Path(parent).resolve()
    return parents


def pytest_configure(config: pytest.Config) -> None:
    try:
        check_single_onnxruntime()
    except ConflictingOnnxruntimeError as error:
        raise pytest.UsageError(str(error)) from error
    try:
        options = _options(config)
        rules = load_rules(config.rootpath / "pyproject.toml")
    except (SelectionError, BudgetConfigError, GitRefError, ValueError) as error:
        raise pytest.UsageError(str(error)) from error
    _check_model_files(options)
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
            raise pytest.UsageError(str(error)) from error
    config.stash[RUN_KEY] = run


def _check_model_files(options: PerfOptions) -> None:
    """A --perf-model whose inputs cannot be built is a usage error, before anything runs."""
    unknown = set(options.model_parents) - {path.resolve() for path in options.model_files}
    if unknown:
        raise pytest.UsageError(
            f"--perf-model-parent names {', '.join(map(str, sorted(unknown)))}, which is not a "
            "--perf-model; give the same path to both"
        )
    for path in options.model_files:
        if not path.is_file():
            raise pytest.UsageError(f"--perf-model {path}: no such file")
        case = PerfCase(str(path), "cpu", options.durations[0], options.batch, model_file=path)
        try:
            case_inputs(path, case, options.dims, options.fixed_inputs)
        except (ValueError, TypeError) as error:
            raise pytest.UsageError(f"--perf-model {path}: {error}") from error


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
    names = metafunc.fixturenames
    if not {"perf_case", "eager_case", "concurrency_case"} & set(names):
        return
    options = perf_run_of(metafunc.config).options
    if "perf_case" in names:
        cases = build_cases(
            options.variants,
            options.providers,
            options.durations,
            options.batch,
            options.model_files,
        )
        metafunc.parametrize("perf_case", cases, ids=[c.id for c in cases])
    if "eager_case" in names:
        architectures = dict.fromkeys(v.split("/")[0] for v in options.variants)
        eager = [
            PerfCase(f"{arch}/torch-eager", "cpu", duration, options.batch)
            for arch in architectures
            for duration in options.durations
            if "cpu" in options.providers
        ]
        metafunc.parametrize("eager_case", eager, ids=[c.id for c in eager])
    if "concurrency_case" in names:
        if options.concurrency < 1:
            off = pytest.param(None, marks=pytest.mark.skip(reason="--perf-concurrency 0"))
            metafunc.parametrize("concurrency_case", [off], ids=["off"])
            return
        cases = build_cases(
            options.variants,
            options.providers,
            options.durations[:1],
            options.batch,
            options.model_files,
        )
        metafunc.parametrize(
            "concurrency_case", cases, ids=[f"{c.id}-x{options.concurrency}" for c in cases]
        )


@pytest.fixture(scope="session")
def perf_run(request: pytest.FixtureRequest) -> PerfRun:
    return perf_run_of(request.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write_report(session)
    _save_baseline(session, exitstatus)


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
        against=[o.to_dict() for o in run.against.outcomes] if run.against else [],
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
    if exitstatus != 0 or session.testsfailed or session.shouldstop or not run.results:
        write(f"baseline NOT saved: the run did not complete and pass (exit status {exitstatus})")
        return
    try:
        path, left_out = run.baselines.save(run.results)
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
    stored = [r for r in run.results if saved and r.case.id in saved.benchmarks]
    write(f"baseline saved for {len(run.results) - len(left_out)} benchmark(s): {path}")
    for result in stored:
        assert saved is not None
        runs = len(saved.entry(result.case.id).runs)
        if runs < MIN_BASELINE_RUNS:
            write(
                f"{result.case.id}: the baseline now holds {runs} run(s) of it; comparisons need "
                f"{MIN_BASELINE_RUNS} (they say undecided until then): run again with "
                "--perf-save-baseline, preferably minutes apart"
            )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    run = perf_run_of(terminalreporter.config)
    if run.results:
        terminalreporter.section("latency summary")
        terminalreporter.write_line(summary_table(run.results))
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
    compared = [(bench, c.comparison) for bench, c in run.baselines.checks.items() if c.comparison]
    if run.baselines.checks:
        terminalreporter.section("against the stored baseline")
        if compared:
            terminalreporter.write_line(format_comparison_table(compared))
        for check in run.baselines.checks.values():
            if check.outcome is not Outcome.SAME:
                terminalreporter.write_line(check.message)
    if run.against is not None and run.against.outcomes:
        terminalreporter.section(f"A/B against {run.against.ref}")
        for outcome in run.against.outcomes:
            terminalreporter.write_line(outcome.line())
    line = outcomes_line(run)
    if line:
        terminalreporter.write_line(line, bold=True)


def outcomes_line(run: PerfRun) -> str | None:
    """Every comparison's outcome counted, and what the inconclusive ones did to the tests."""
    outcomes = [c.outcome for c in run.baselines.checks.values()]
    outcomes += [o.outcome for o in (run.against.outcomes if run.against else [])]
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
