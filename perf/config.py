"""Every ``--perf-*`` option: registered, parsed and checked once, before anything runs.

``read_options`` turns pytest's config into one frozen ``PerfOptions``, or raises
``ConfigError`` with one line that names the option or file, what is wrong and what to write
instead; the plugin turns that into a usage error (no traceback, nothing measured or written).
Files are checked where it is cheap: an ONNX file is parsed, run through ``onnx.checker`` and
its external data located; a weights file's header is read.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from export.cache import default_cache_dir
from export.inputs import parse_assignments, read_input_specs, settable_dims
from export.integer_numerics import ARITHMETIC
from export.specs import ARCHITECTURES
from export.user_files import UserFileError, check_onnx_file, check_weights_file
from perf.baselines.git_ref import GitRefError, RefTree, checkout
from perf.measure.cases import (
    PerfCase,
    SelectionError,
    case_inputs,
    parse_durations,
    select_providers,
    select_variants,
    split_list,
)
from perf.measure.providers import default_provider_names, provider_info
from perf.measure.sampling import SamplingPolicy
from perf.scenarios.server import SCENARIOS, parse_rates
from perf.stats.outcome import UndecidedPolicy


class ConfigError(ValueError):
    """A bad option or input file: one line naming it, what is wrong and what to do."""


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
    gate: bool = True  # False: verdicts are reported, a broken budget does not fail the test
    compare: bool = False  # --benchmark-compare: judge each result against the baseline
    force_compare: bool = False
    save_baseline: bool = False
    baselines_dir: Path = Path("baselines")
    model_parents: dict[Path, Path] = dataclasses.field(default_factory=dict)
    emulate_isa: str | None = None  # check numerics as a CPU of this class computes them
    against: RefTree | None = None  # --perf-against: A/B with this commit's models
    against_unchanged: bool = False  # measure unchanged artifacts too, as an A/A
    undecided: UndecidedPolicy = UndecidedPolicy.WARN  # what inconclusive comparisons do
    debug: bool = False  # --perf-debug: tracebacks with errors and failures
    scenario: str = "single-stream"  # or "server": open-loop Poisson arrivals at each rate
    rates: tuple[float, ...] = ()  # --perf-rate, requests per second
    workers: int = 1  # --perf-workers: threads sharing one session in the server scenario


# (option, ini name, help, ini default)
LIST_OPTIONS = (
    ("--perf-variants", "perf_variants", "ARCH/VARIANT globs, e.g. 'w2v2-base/*'", ["*"]),
    ("--perf-providers", "perf_providers", "provider short names or globs (cpu, cuda, ...)", ["*"]),
    ("--perf-durations", "perf_durations", "seconds of audio per call, e.g. 1s,3s,10s", ["3s"]),
)


def add_options(parser: pytest.Parser) -> None:
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
        "--perf-scenario",
        choices=SCENARIOS,
        default="single-stream",
        help="single-stream (default: one call at a time) or server (requests arriving as a "
        "Poisson process at --perf-rate, latency from each one's scheduled arrival)",
    )
    group.addoption(
        "--perf-rate",
        action="append",
        default=None,
        metavar="REQ_PER_S",
        help="server scenario: offered load in requests per second, e.g. 2 or 1,2,3",
    )
    group.addoption(
        "--perf-workers",
        type=int,
        default=1,
        help="server scenario: threads sharing one session (default 1: one at a time)",
    )
    group.addoption(
        "--perf-debug",
        action="store_true",
        help="show the traceback behind an input error or a failed benchmark",
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
        debug=config.getoption("perf_debug"),
        scenario=config.getoption("perf_scenario"),
        rates=parse_rates(config.getoption("perf_rate")),
        workers=config.getoption("perf_workers"),
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


def _check_model_files(options: PerfOptions) -> None:
    """--perf-model files (and their parents) parse, are whole and can be fed, before any run."""
    unknown = set(options.model_parents) - {path.resolve() for path in options.model_files}
    if unknown:
        raise ConfigError(
            f"--perf-model-parent names {', '.join(map(str, sorted(unknown)))}, which is not a "
            "--perf-model; give the same path to both"
        )
    for model, parent in options.model_parents.items():
        check_onnx_file(parent, f"--perf-model-parent {model}=")
    settable: set[str] = set()
    for path in options.model_files:
        check_onnx_file(path, "--perf-model")
        settable |= settable_dims(read_input_specs(path))
    _check_dim_names(options.dims, settable)
    for path in options.model_files:
        case = PerfCase(str(path), "cpu", options.durations[0], options.batch, model_file=path)
        try:
            case_inputs(path, case, options.dims, options.fixed_inputs)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"--perf-model {path}: {error}") from None


def _check_dim_names(dims: dict[str, int], settable: set[str]) -> None:
    unknown = sorted(set(dims) - settable)
    if not unknown:
        return
    if not settable:
        raise ConfigError(
            f"--perf-dim {unknown[0]}: sizes inputs of a --perf-model, and no --perf-model with "
            "symbolic dims is given; drop it, or add --perf-model PATH"
        )
    raise ConfigError(
        f"--perf-dim {unknown[0]}=...: no --perf-model input has that dim; it can set "
        f"{', '.join(sorted(settable))}"
    )


def _check_weights(weights: dict[str, Path]) -> None:
    for arch, path in weights.items():
        if arch not in ARCHITECTURES:
            raise ConfigError(
                f"--perf-weights {arch}={path}: no architecture {arch!r}; "
                f"choose from {', '.join(ARCHITECTURES)}"
            )
        check_weights_file(path, "--perf-weights", arch)


def _refuse_parallel_benchmarks(config: pytest.Config) -> None:
    """pytest-xdist would run benchmarks side by side, each timed against the others."""
    workers = getattr(config.option, "numprocesses", None)
    if not workers or getattr(config.option, "dist", "no") == "no":
        return
    benchmarks = [a for a in config.args if "perf" in Path(a.split("::")[0]).parts or
                  a.split("::")[0].endswith("test_latency.py")]  # fmt: skip
    if benchmarks:
        raise ConfigError(
            f"-n {workers}: the benchmarks would run {workers} at a time, each timed against "
            "the others (and the summary would not be printed); run pytest perf/ without -n "
            "(the suite's own tests/ take -n)"
        )


def _check_scenario(options: PerfOptions) -> None:
    if options.scenario == "server" and not options.rates:
        raise ConfigError(
            "--perf-scenario server needs --perf-rate REQ_PER_S (e.g. --perf-rate 2): the "
            "offered load in requests per second"
        )
    if options.rates and options.scenario != "server":
        raise ConfigError("--perf-rate applies to --perf-scenario server; add that, or drop it")
    if options.workers < 1:
        raise ConfigError(f"--perf-workers {options.workers}: at least 1 thread")


def _check_output_dirs(config: pytest.Config, options: PerfOptions) -> None:
    """Folders the run writes into at its end must be folders (or not exist yet), up front."""
    wanted = {
        "--perf-report": config.getoption("perf_report"),
        "--perf-baselines": options.baselines_dir,
        "--perf-cache": options.cache_dir,
    }
    for option, path in wanted.items():
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise ConfigError(
                f"{option} {path}: is a file, and a folder is needed; name a folder (it is "
                "created if missing)"
            )


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def read_options(config: pytest.Config) -> PerfOptions:
    """Every option parsed and every input file checked; raises ConfigError (one line)."""
    try:
        _refuse_parallel_benchmarks(config)
        options = _options(config)
        _check_model_files(options)
        _check_weights(options.weights)
        _check_output_dirs(config, options)
        _check_scenario(options)
    except (SelectionError, GitRefError, UserFileError, ValueError) as error:
        if config.getoption("perf_debug"):
            raise
        raise ConfigError(one_line(error)) from None
    return options
