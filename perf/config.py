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
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    parse_lengths,
    select_providers,
    select_variants,
    split_list,
)
from perf.measure.gpu_modes import GpuModes
from perf.measure.providers import default_provider_names, provider_info
from perf.measure.sampling import SamplingPolicy
from perf.scenarios.explain import EXPLAIN_CHOICES
from perf.scenarios.pairs import parse_pairs
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
    peak: bool = False  # --perf-rate peak: search the highest rate meeting --perf-slo-ms
    slo_ms: float | None = None  # --perf-slo-ms: the P99 target of the peak search
    lengths: tuple[tuple[float, float], ...] = ()  # --perf-lengths: (seconds, weight) mix
    batch_sizes: tuple[int, ...] = ()  # --perf-batch-sizes (offline; none: DEFAULT_BATCH_SIZES)
    history_dir: Path | None = None  # --perf-history: one immutable record of this run there
    tail_matrix: bool = False  # --perf-tail-matrix: each --perf-rate under 8 session settings
    workers: int = 1  # --perf-workers: threads sharing one session in the server scenario
    explain: str = "slower"  # --perf-explain: which A/B verdicts get a per-operator attribution
    profile: bool = False  # --perf-profile: a per-op-type breakdown of each benchmark
    variant_pairs: tuple[tuple[str, str], ...] = ()  # --perf-compare A,B: variants as an A/B
    # --perf-io-binding, --perf-cuda-graph, --perf-trt-fp16
    gpu_modes: GpuModes = dataclasses.field(default_factory=GpuModes)


# (option, ini name, help, ini default)
LIST_OPTIONS = (
    ("--perf-variants", "perf_variants", "ARCH/VARIANT globs, e.g. 'w2v2-base/*'", ["*"]),
    ("--perf-providers", "perf_providers", "provider short names or globs (cpu, cuda, ...)", ["*"]),
    ("--perf-durations", "perf_durations", "seconds of audio per call, e.g. 1s,3s,10s", ["3s"]),
)


def _option(name: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    return name, kwargs


# Every other --perf-* option: name and argparse keywords. Values are checked in read_options.
OPTIONS = (
    _option("--perf-batch", type=int, default=1, help="batch size (default 1)"),
    _option(
        "--perf-model",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="also benchmark this ONNX file (repeatable)",
    ),
    _option(
        "--perf-dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a symbolic input dim of --perf-model (or INPUT[AXIS]=SIZE)",
    ),
    _option(
        "--perf-input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fixed value for a non-audio input of --perf-model (number or JSON list)",
    ),
    _option(
        "--perf-weights",
        action="append",
        default=[],
        metavar="ARCH=PATH",
        help="trained weights (.safetensors) for an architecture",
    ),
    _option(
        "--perf-threads", type=int, default=None, help="intra-op threads (default: physical cores)"
    ),
    _option("--perf-no-spin", action="store_true", help="turn intra-op thread spinning off"),
    _option(
        "--perf-max-time", type=float, default=None, help="sampling cap per benchmark, seconds"
    ),
    _option(
        "--perf-min-samples",
        type=int,
        default=None,
        help="samples per benchmark without a budget (default: enough for a P99 interval)",
    ),
    _option(
        "--perf-confidence",
        type=float,
        default=0.95,
        help="confidence level of intervals and verdicts",
    ),
    _option(
        "--perf-concurrency",
        type=int,
        default=None,
        help="threads for the throughput test (0: off)",
    ),
    _option("--perf-concurrency-time", type=float, default=5.0, help="seconds per throughput test"),
    _option(
        "--perf-cache", type=Path, default=None, help="model cache directory (default: models/)"
    ),
    _option(
        "--perf-save-baseline",
        action="store_true",
        help="after a complete, passing run, store its samples as this machine's baseline",
    ),
    _option(
        "--perf-baselines",
        type=Path,
        default=None,
        help="baselines directory (default: baselines/ in the rootdir)",
    ),
    _option(
        "--perf-force-compare",
        action="store_true",
        help="compare with a baseline whose machine, onnxruntime or settings differ",
    ),
    _option(
        "--perf-report",
        type=Path,
        default=None,
        metavar="DIR",
        help="write report.md, summary.md, report.json and PNG plots to DIR",
    ),
    _option(
        "--perf-scenario",
        choices=SCENARIOS,
        default="single-stream",
        help="single-stream (default: one call at a time), server (requests arriving as a "
        "Poisson process at --perf-rate, latency from each one's scheduled arrival) or offline "
        "(every request there from the start, in batches of --perf-batch-sizes)",
    ),
    _option(
        "--perf-rate",
        action="append",
        default=None,
        metavar="REQ_PER_S",
        help="server scenario: offered load in requests per second, e.g. 2 or 1,2,3; 'peak' "
        "searches the highest rate whose P99 stays under --perf-slo-ms",
    ),
    _option(
        "--perf-tail-matrix",
        action="store_true",
        help="server scenario: also run each --perf-rate under 8 session settings (threads, "
        "spinning, workers; one cap in all) and name the one with the lowest P99",
    ),
    _option(
        "--perf-history",
        type=Path,
        default=None,
        metavar="DIR",
        help="write one immutable record of this run (commit, machine, every benchmark's "
        "percentiles and samples) under DIR/<machine>/; records from many runners merge as a "
        "union of files",
    ),
    _option(
        "--perf-batch-sizes",
        action="append",
        default=[],
        metavar="N[,N]",
        help="offline scenario: clips per call, e.g. 1,4,8 (default 1,2,4,8)",
    ),
    _option(
        "--perf-lengths",
        action="append",
        default=[],
        metavar="LEN:WEIGHT",
        help="server scenario: a mix of input lengths drawn per request by weight, e.g. "
        "0.5s:1,3s:2,10s:1 (each warmed up first; results per length)",
    ),
    _option(
        "--perf-slo-ms",
        type=float,
        default=None,
        metavar="MS",
        help="with --perf-rate peak: the P99 latency target, ms",
    ),
    _option(
        "--perf-workers",
        type=int,
        default=1,
        help="server scenario: threads sharing one session (default 1: one at a time)",
    ),
    _option(
        "--perf-debug",
        action="store_true",
        help="show the traceback behind an input error or a failed benchmark",
    ),
    _option(
        "--perf-undecided",
        choices=[p.value for p in UndecidedPolicy],
        default=UndecidedPolicy.WARN.value,
        help="what a baseline or --perf-against comparison that is undecided, refused or not "
        "compared does to its test: fail, warn (default: passes with a warning, listed in the "
        "summary and report) or pass",
    ),
    _option(
        "--perf-no-gate",
        action="store_true",
        help="report budget verdicts without failing (for noisy shared runners)",
    ),
    _option(
        "--perf-inject-delay",
        type=float,
        default=0.0,
        metavar="MS",
        help="add MS of busy-wait to every timed call (to check that a slowdown is caught)",
    ),
    _option(
        "--perf-model-parent",
        action="append",
        default=[],
        metavar="MODEL=PARENT",
        help="the float model a --perf-model was derived from: its numbers are checked against "
        "the parent's on this machine before it is benchmarked (repeatable)",
    ),
    _option(
        "--perf-against",
        default=None,
        metavar="REF",
        help="A/B: measure REF's models (built by REF's export code) and the working tree's "
        "interleaved in this process; fail when a benchmark is slower (e.g. origin/main)",
    ),
    _option(
        "--perf-against-unchanged",
        action="store_true",
        help="with --perf-against: also measure benchmarks whose artifact did not change (A/A)",
    ),
    _option(
        "--perf-compare",
        action="append",
        default=[],
        metavar="A,B",
        help="A/B of two variants of this commit (e.g. w2v2-base/fp32,w2v2-base/ort-opt): "
        "interleaved, the ratio B / A with its interval; only the pairs run (repeatable)",
    ),
    _option(
        "--perf-explain",
        choices=list(EXPLAIN_CHOICES),
        default="slower",
        help="after an A/B (--perf-against, or a changed model vs its stored one): profile both "
        "models and name the operators that moved: for slower verdicts (default), all, or off",
    ),
    _option(
        "--perf-profile",
        action="store_true",
        help="add where each benchmark's time goes, per op type (onnxruntime's profiler, "
        "after the timed samples), to the summary and the report",
    ),
    _option(
        "--perf-io-binding",
        action="store_true",
        help="time run_with_iobinding with inputs and outputs bound on the provider's device "
        "(cuda for CUDA/TensorRT, cpu for CPU) instead of session.run; single-stream",
    ),
    _option(
        "--perf-cuda-graph",
        action="store_true",
        help="CUDA only: enable_cuda_graph with I/O binding (one input shape per session, every "
        "node on CUDA; otherwise skipped with the reason); single-stream",
    ),
    _option(
        "--perf-trt-fp16",
        action="store_true",
        help="TensorRT only: FP16 engines (trt_fp16_enable), a configuration of its own; other "
        "providers are skipped",
    ),
    _option(
        "--perf-emulate-isa",
        default=None,
        choices=sorted(ARITHMETIC),
        help="check CPU numerics as a CPU of this class computes them (numpy emulation; e.g. "
        "avx2 on a VNNI machine), to see what an AVX2 runner would refuse",
    ),
)

# ini settings that back an option without a list value: (ini name, help, default)
INI_SETTINGS = (
    ("perf_max_time", "sampling cap per benchmark, seconds", "120"),
    ("perf_concurrency", "threads for the throughput-under-concurrency test", "2"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("perf", "latency suite (pytest perf/)")
    for option, ini, help_text, default in LIST_OPTIONS:
        group.addoption(option, action="append", default=None, help=f"{help_text} (repeatable)")
        parser.addini(ini, help_text, type="args", default=default)
    for name, kwargs in OPTIONS:
        group.addoption(name, **kwargs)
    for ini, help_text, default in INI_SETTINGS:
        parser.addini(ini, help_text, default=default)


def _list_option(config: pytest.Config, option: str, ini: str) -> list[str]:
    values = config.getoption(option.lstrip("-").replace("-", "_"))
    return split_list(values if values else config.getini(ini))


def _fixed_value(text: str) -> object:

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _ini_number(config: pytest.Config, name: str, kind: type[float] | type[int]) -> float:
    """An ini setting that must be a number, or a ConfigError naming the setting and file."""
    text = config.getini(name)
    try:
        return kind(text)
    except (TypeError, ValueError):
        where = config.inipath or "the ini file"
        raise ConfigError(
            f"{name} = {text!r} in {where}: a {'whole ' if kind is int else ''}number is needed"
        ) from None


def _batch_sizes(values: list[str]) -> tuple[int, ...]:
    sizes = []
    for item in split_list(values):
        if not (item.isdigit() and int(item) >= 1):
            raise ConfigError(
                f"--perf-batch-sizes {item!r}: clips per call, a whole number from 1, e.g. 1,4,8"
            )
        sizes.append(int(item))
    return tuple(dict.fromkeys(sizes))


def _without_peak(values: list[str] | None) -> list[str]:
    return [item for item in split_list(values or []) if item != "peak"]


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
    max_time = config.getoption("perf_max_time") or _ini_number(config, "perf_max_time", float)
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
        concurrency=concurrency
        if concurrency is not None
        else int(_ini_number(config, "perf_concurrency", int)),
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
        rates=parse_rates(_without_peak(config.getoption("perf_rate"))),
        peak="peak" in split_list(config.getoption("perf_rate") or []),
        slo_ms=config.getoption("perf_slo_ms"),
        lengths=parse_lengths(config.getoption("perf_lengths")),
        batch_sizes=_batch_sizes(config.getoption("perf_batch_sizes")),
        history_dir=config.getoption("perf_history"),
        tail_matrix=config.getoption("perf_tail_matrix"),
        workers=config.getoption("perf_workers"),
        explain=config.getoption("perf_explain"),
        profile=config.getoption("perf_profile"),
        variant_pairs=parse_pairs(config.getoption("perf_compare")),
        gpu_modes=GpuModes(
            io_binding=config.getoption("perf_io_binding"),
            cuda_graph=config.getoption("perf_cuda_graph"),
            trt_fp16=config.getoption("perf_trt_fp16"),
        ),
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
        given = ", ".join(str(p.resolve()) for p in options.model_files) or "none"
        raise ConfigError(
            f"--perf-model-parent names {', '.join(map(str, sorted(unknown)))}, which is not a "
            f"--perf-model (given: {given}); give the same path to both"
        )
    for model, parent in options.model_parents.items():
        check_onnx_file(parent, f"--perf-model-parent {model}=")
    settable: set[str] = set()
    input_names: set[str] = set()
    for path in options.model_files:
        check_onnx_file(path, "--perf-model")
        specs = read_input_specs(path)
        settable |= settable_dims(specs)
        input_names |= {spec.name for spec in specs}
    _check_dim_names(options.dims, settable)
    unknown_inputs = sorted(set(options.fixed_inputs) - input_names)
    if unknown_inputs:
        raise ConfigError(
            f"--perf-input {unknown_inputs[0]}=...: no --perf-model has an input of that name; "
            f"their inputs: {', '.join(sorted(input_names)) or 'none (no --perf-model given)'}"
        )
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
    if options.peak and options.slo_ms is None:
        raise ConfigError(
            "--perf-rate peak needs --perf-slo-ms MS: the P99 latency the rate must keep"
        )
    if options.slo_ms is not None and not options.peak:
        raise ConfigError("--perf-slo-ms applies to --perf-rate peak; add that, or drop it")
    if options.scenario == "server" and not (options.rates or options.peak):
        raise ConfigError(
            "--perf-scenario server needs --perf-rate REQ_PER_S (e.g. --perf-rate 2): the "
            "offered load in requests per second"
        )
    if options.batch_sizes and options.scenario != "offline":
        raise ConfigError("--perf-batch-sizes applies to --perf-scenario offline; add that, or "
                          "drop it (one batch size: --perf-batch)")  # fmt: skip
    if options.tail_matrix and not options.rates:
        raise ConfigError(
            "--perf-tail-matrix needs --perf-scenario server --perf-rate REQ_PER_S: the rate "
            "at which the settings are compared"
        )
    if options.lengths and options.scenario != "server":
        raise ConfigError(
            "--perf-lengths applies to --perf-scenario server; for one call at a time, time "
            "each length with --perf-durations"
        )
    if (options.rates or options.peak) and options.scenario != "server":
        raise ConfigError("--perf-rate applies to --perf-scenario server; add that, or drop it")
    _check_profiling(options)
    _check_gpu_modes(options)


def _check_gpu_modes(options: PerfOptions) -> None:
    """A mode no selected provider can run is a usage error, not a run of skips; rows of other
    selected providers are skipped with the reason (perf.measure.gpu_modes.check_provider)."""
    modes = options.gpu_modes
    for option, wanted, provider in (
        ("--perf-cuda-graph", modes.cuda_graph, "cuda"),
        ("--perf-trt-fp16", modes.trt_fp16, "tensorrt"),
    ):
        if wanted and provider not in options.providers:
            selected = ", ".join(options.providers)
            raise ConfigError(f"{option} runs on {provider} only and --perf-providers selects "
                              f"{selected}; add {provider}, or drop it")  # fmt: skip
    bound = "--perf-cuda-graph" if modes.cuda_graph else "--perf-io-binding"
    if modes.binds and (
        options.scenario != "single-stream" or options.against or options.variant_pairs
    ):
        raise ConfigError(
            f"{bound} applies to single-stream benchmarks (not with --perf-scenario "
            "server/offline, --perf-against or --perf-compare): those time session.run"
        )


def _check_profiling(options: PerfOptions) -> None:
    if options.profile and (options.scenario != "single-stream" or options.against):
        raise ConfigError(
            "--perf-profile applies to measured single-stream benchmarks (not with "
            "--perf-scenario server/offline or --perf-against); an A/B names the operators "
            "that moved with --perf-explain"
        )
    if options.explain != "slower" and not (
        options.against or options.compare or options.variant_pairs
    ):
        raise ConfigError(
            f"--perf-explain {options.explain} applies to A/B comparisons: add --perf-against "
            "REF, --perf-compare A,B or --benchmark-compare, or drop it"
        )


def _check_pairs(options: PerfOptions) -> None:
    """--perf-compare runs only its pairs, single-stream; nothing of it is stored or gated."""
    if not options.variant_pairs:
        return
    clashing = {
        "--perf-against": options.against is not None,
        "--benchmark-compare": options.compare,
        "--perf-save-baseline": options.save_baseline,
        "--perf-profile": options.profile,
        "--perf-model": bool(options.model_files),
        f"--perf-scenario {options.scenario}": options.scenario != "single-stream",
    }
    for option, present in clashing.items():
        if present:
            raise ConfigError(
                f"--perf-compare with {option}: a variant pair is its own A/B of two built-in "
                "variants, one call at a time (it names the operators with --perf-explain); "
                "run it on its own"
            )


# Numeric options: (option, value of, least allowed, whether the least is allowed, what it is)
NUMBER_RULES: tuple[tuple[str, Callable[[PerfOptions], float | None], float, bool, str], ...] = (
    ("--perf-batch", lambda o: o.batch, 1, True, "inputs per call, at least 1"),
    ("--perf-threads", lambda o: o.intra_op_threads, 1, True, "threads, at least 1"),
    ("--perf-workers", lambda o: o.workers, 1, True, "threads, at least 1"),
    ("--perf-max-time", lambda o: o.policy.max_seconds, 0, False, "seconds, more than 0"),
    ("--perf-min-samples", lambda o: o.policy.min_samples, 1, True, "calls, at least 1"),
    ("--perf-confidence", lambda o: o.policy.confidence, 0, False, "a level in (0, 1): 0.95"),
    ("--perf-concurrency", lambda o: o.concurrency, 0, True, "threads, 0 (off) or more"),
    ("--perf-concurrency-time", lambda o: o.concurrency_seconds, 0, False, "seconds, over 0"),
    ("--perf-inject-delay", lambda o: o.policy.inject_delay_ms, 0, True, "ms, 0 or more"),
    ("--perf-slo-ms", lambda o: o.slo_ms, 0, False, "ms, more than 0"),
)


def _check_numbers(options: PerfOptions) -> None:
    for option, value_of, least, least_allowed, what in NUMBER_RULES:
        value = value_of(options)
        if value is None:
            continue  # not set: its default applies
        too_low = value < least if least_allowed else value <= least
        too_high = option == "--perf-confidence" and value >= 1
        if not math.isfinite(value) or too_low or too_high:
            raise ConfigError(f"{option} {value:g}: {what}")


def _check_output_dirs(config: pytest.Config, options: PerfOptions) -> None:
    """Folders the run writes into at its end must be folders (or not exist yet), up front."""
    wanted = {
        "--perf-report": config.getoption("perf_report"),
        "--perf-baselines": options.baselines_dir,
        "--perf-cache": options.cache_dir,
        "--perf-history": options.history_dir,
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
        _check_pairs(options)
        _check_numbers(options)
    except (SelectionError, GitRefError, UserFileError, ValueError) as error:
        if config.getoption("perf_debug"):
            raise
        raise ConfigError(one_line(error)) from None
    return options
