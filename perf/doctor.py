"""``python -m perf.doctor``: can this machine gate merges on a GPU? What to run first on a runner.

Sections, each ending in a verdict line: (a) the onnxruntime wheel(s) and every known provider,
compiled in and really usable (a session on a one-MatMul graph, verified by
perf.measure.sessions); (b) the NVIDIA GPU through NVML (perf.measure.gpu_state): driver,
clocks and whether they are locked, one short state sample; (c) optionally a short benchmark of
a small and of the full model per usable provider, time-capped; (d) the final verdict, exit
code 0 when a GPU provider can gate (or ``--cpu-ok``), 1 otherwise; (e) what was not checked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from perf.files import atomic_write_text
from perf.measure.gpu_state import GpuMonitor, probe_gpus
from perf.measure.providers import (
    PROVIDERS,
    ConflictingOnnxruntimeError,
    check_single_onnxruntime,
    installed_onnxruntime_distributions,
)
from perf.measure.sessions import ProviderSkip, SessionSettings, open_session

if TYPE_CHECKING:  # imported when benchmarking: the export cache is not needed to check a runner
    from perf.measure.cases import PerfCase
    from perf.measure.models import Models

GPU_PROVIDERS = ("cuda", "tensorrt", "dml", "rocm", "migraphx")
SMALL_MODEL, FULL_MODEL = "cnn/fp32", "w2v2-base/fp32"
BENCHMARK_SECONDS = 5.0  # sampling cap per benchmark
# Starting benchmarks stops after this (builds included; one under way runs to its end, a
# TensorRT engine build of the full model may take minutes): doctor ends in under 8 minutes.
BENCHMARK_BUDGET_S = 240.0
BENCHMARK_AUDIO_S = 3.0

Say = Callable[[str], None]
# (variant, short provider name, sampling cap in seconds) -> {"p50_ms", "p99_ms", ...}
Benchmark = Callable[[str, str, float], dict[str, Any]]


def matmul_model(path: Path) -> Path:
    """A one-MatMul ONNX graph: enough for a provider to prove it runs, no export needed."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 8], np.eye(8, dtype=np.float32).ravel())
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "doctor", [x], [y], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this suite supports
    onnx.save(model, str(path))
    return path


def check_wheels(say: Say) -> dict[str, Any]:
    installed = installed_onnxruntime_distributions()
    say("onnxruntime wheels: " + (", ".join(f"{n} {v}" for n, v in installed) or "none found"))
    try:
        flavour, problem = check_single_onnxruntime(), None
    except ConflictingOnnxruntimeError as exc:
        flavour, problem = None, str(exc)
    verdict = f"one wheel: {flavour} {ort.__version__}" if problem is None else problem
    say(f"verdict: {verdict}")
    return {"installed": [list(item) for item in installed], "flavour": flavour, "problem": problem}


def check_provider(full: str, model: Path) -> dict[str, Any]:
    """Whether ``full`` is compiled in and runs the MatMul graph; the reason where not."""
    compiled = full in ort.get_available_providers()
    try:
        session = open_session(model, SessionSettings(full, intra_op_threads=1))
        session.run(None, {"x": np.ones((1, 8), dtype=np.float32)})
    except ProviderSkip as skip:
        return {"compiled_in": compiled, "usable": False, "reason": skip.reason}
    except Exception as exc:  # a provider that loads but cannot run: its message says why
        return {"compiled_in": compiled, "usable": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"compiled_in": compiled, "usable": True, "reason": None}


def check_providers(say: Say) -> dict[str, dict[str, Any]]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="perf-doctor-") as scratch:
        model = matmul_model(Path(scratch) / "matmul.onnx")
        for info in PROVIDERS:
            result = check_provider(info.full, model)
            results[info.short] = result
            say(f"  {info.short:9} {_provider_line(result)}")
    usable = [name for name, result in results.items() if result["usable"]]
    say(f"verdict: usable providers: {', '.join(usable)}")
    return results


def _provider_line(result: dict[str, Any]) -> str:
    if not result["compiled_in"]:
        return result["reason"]
    if result["usable"]:
        return "compiled in, usable"
    return f"compiled in, not usable: {result['reason']}"


def check_gpu(say: Say, nvml: Any | None) -> dict[str, Any]:
    fingerprint, reason = probe_gpus(nvml)
    if fingerprint is None:
        say(f"verdict: no NVIDIA GPU: {reason}")
        return {"present": False, "reason": reason}
    say(f"driver {fingerprint['driver_version']}, CUDA {fingerprint['cuda_driver_version']}")
    for device in fingerprint["devices"]:
        say(f"  GPU {device['index']}: {device['name']}, {_clock_line(device)}")
    monitor = GpuMonitor(nvml, interval_s=0.05)
    monitor.start()
    time.sleep(0.2)
    state = monitor.stop()
    say(f"  {state.describe()}")
    warning = state.warning()
    locked = all(device["clocks_locked"] for device in fingerprint["devices"])
    verdict = warning or ("clocks locked, steady" if locked else "steady, but clocks not locked")
    say(f"verdict: {verdict}")
    report = {"present": True, "fingerprint": fingerprint, "clocks_locked": locked}
    return {**report, "state": state.to_dict()}


def _clock_line(device: dict[str, Any]) -> str:
    clocks = device["clocks"]
    locked = "locked" if device["clocks_locked"] else "not locked (nvidia-smi -lgc MIN,MAX)"
    return (
        f"SM {clocks['sm_current_mhz']}/{clocks['sm_max_mhz']} MHz, memory "
        f"{clocks['mem_current_mhz']}/{clocks['mem_max_mhz']} MHz (current/max), clocks "
        f"{locked}, persistence mode {device['persistence_mode']}, MIG {device['mig_mode']}, "
        f"clock reasons: {', '.join(device['clock_reasons']) or 'none'}"
    )


def benchmark_model(variant: str, provider: str, cap_s: float) -> dict[str, Any]:
    """Builds ``variant`` through the export cache if needed, then a time-capped measurement."""
    from export.cache import ModelCache
    from perf.measure.cases import PerfCase
    from perf.measure.models import Models

    case = PerfCase(variant, provider, BENCHMARK_AUDIO_S)
    return benchmark_case(Models(ModelCache(), {}), case, cap_s)


def benchmark_case(models: Models, case: PerfCase, cap_s: float) -> dict[str, Any]:
    """P50/P99 of ``case`` sampled for at most ``cap_s`` (warm-up capped alike), after its
    numbers are checked on the provider (NumericsRefused when they are wrong there)."""
    from perf.measure.cases import case_inputs
    from perf.measure.fingerprint import machine_and_software
    from perf.measure.numerics import NumericsChecker
    from perf.measure.providers import provider_options
    from perf.measure.sampling import SamplingPolicy
    from perf.measurement import measure_case

    model = models.resolve(case)
    options = provider_options(case.provider, models.cache.root / ".provider-cache")
    settings = SessionSettings(case.provider, provider_options=options)
    checker = NumericsChecker(models.cache.root / ".numerics", machine_and_software)
    numerics = checker.check_case(case, model, settings, {}, {})
    policy = SamplingPolicy(max_seconds=cap_s, warmup_max_seconds=cap_s, segment_seconds=cap_s)
    result = measure_case(case, model, settings, policy, None, case_inputs(model.path, case, {}))
    percentiles = result.summary.percentiles
    return {
        "p50_ms": percentiles["p50"].value,
        "p99_ms": percentiles["p99"].value,
        "samples": len(result.samples.samples_ms),
        "first_call_ms": result.samples.first_call_ms,
        "numerics": numerics.message(),
    }


def run_benchmarks(
    say: Say, providers: list[str], benchmark: Benchmark, cap_s: float, budget_s: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each model on each provider until ``budget_s`` is spent; also what was left out."""
    results, left_out = [], []
    deadline = time.monotonic() + budget_s
    for variant in (SMALL_MODEL, FULL_MODEL):
        for provider in providers:
            if time.monotonic() > deadline:
                left_out.append(f"{variant} on {provider} (benchmark budget {budget_s:g} s spent)")
                continue
            say(f"  {variant} on {provider}: building if needed, then up to {cap_s:g} s ...")
            results.append(_one_benchmark(say, variant, provider, benchmark, cap_s))
    return results, left_out


def _one_benchmark(
    say: Say, variant: str, provider: str, benchmark: Benchmark, cap_s: float
) -> dict[str, Any]:
    try:
        figures = benchmark(variant, provider, cap_s)
    except Exception as exc:  # a model that cannot build or run here is reported, not fatal
        say(f"  {variant} on {provider}: failed: {type(exc).__name__}: {exc}")
        return {"variant": variant, "provider": provider, "error": f"{type(exc).__name__}: {exc}"}
    say(
        f"  {variant} on {provider}: P50 {figures['p50_ms']:.2f} ms, "
        f"P99 {figures['p99_ms']:.2f} ms ({figures['samples']} calls); "
        f"{figures.get('numerics', 'numerics not checked')}"
    )
    return {"variant": variant, "provider": provider, **figures}


def gateable(providers: dict[str, dict[str, Any]]) -> list[str]:
    """Usable providers that run the model itself (not azure's remote endpoints)."""
    benchmarkable = {info.short for info in PROVIDERS if info.benchmarkable}
    return [
        name for name, result in providers.items() if result["usable"] and name in benchmarkable
    ]


def gate_verdict(
    providers: dict[str, dict[str, Any]], gpu: dict[str, Any], cpu_ok: bool
) -> tuple[str, int]:
    """The verdict line and the exit code."""
    usable = gateable(providers)
    gpus = [name for name in usable if name in GPU_PROVIDERS]
    if gpus:
        return f"this machine can gate on: {', '.join(usable)}", 0
    why = [] if gpu["present"] else [f"no NVIDIA GPU: {gpu['reason']}"]
    why += [f"{name}: {providers[name]['reason']}" for name in ("cuda", "tensorrt")]
    line = f"cannot gate on a GPU: {'; '.join(why)}"
    if usable:
        line += f"\nthis machine can gate on: {', '.join(usable)}"
    return line, 0 if cpu_ok else 1


def _benchmark_providers(
    providers: dict[str, dict[str, Any]], wanted: bool | None
) -> tuple[list[str], str | None]:
    """Providers to benchmark, or the reason the benchmark is skipped."""
    usable = gateable(providers)
    gpus = [name for name in usable if name in GPU_PROVIDERS]
    if wanted is False:
        return [], "benchmark (--no-benchmark)"
    if wanted is None and not gpus:
        return [], "benchmark (no GPU provider usable; --benchmark runs it on cpu)"
    return usable, None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m perf.doctor", description=__doc__)
    bench = parser.add_mutually_exclusive_group()
    bench.add_argument(
        "--benchmark",
        dest="benchmark",
        action="store_true",
        default=None,
        help="benchmark a small and the full model per usable provider "
        "(default: on when a GPU provider is usable)",
    )
    bench.add_argument("--no-benchmark", dest="benchmark", action="store_false")
    parser.add_argument(
        "--benchmark-seconds",
        type=float,
        default=BENCHMARK_SECONDS,
        help="sampling cap per benchmark (default %(default)s)",
    )
    parser.add_argument(
        "--cpu-ok", action="store_true", help="exit 0 when only the CPU provider can gate"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    return parser


def main(
    argv: list[str] | None = None,
    nvml: Any | None = None,
    benchmark: Benchmark = benchmark_model,
    say: Say = print,
) -> int:
    """``nvml`` (a fake NVML) and ``benchmark`` are for tests; the real ones by default."""
    args = build_parser().parse_args(argv)
    say("== onnxruntime and its providers")
    report: dict[str, Any] = {"wheels": check_wheels(say), "providers": check_providers(say)}
    say("== NVIDIA GPU")
    report["gpu"] = check_gpu(say, nvml)
    say("== benchmark")
    names, skipped_bench = _benchmark_providers(report["providers"], args.benchmark)
    results, left_out = run_benchmarks(
        say, names, benchmark, args.benchmark_seconds, BENCHMARK_BUDGET_S
    )
    report["benchmarks"] = results
    say("== verdict")
    verdict, code = gate_verdict(report["providers"], report["gpu"], args.cpu_ok)
    say(verdict)
    skipped = _skipped(report, skipped_bench, left_out)
    say(f"skipped: {'; '.join(skipped)}")
    report.update(verdict=verdict, exit_code=code, skipped=skipped)
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(report, indent=2, default=str) + "\n")
        say(f"report written to {args.json}")
    return code


def _skipped(report: dict[str, Any], skipped_bench: str | None, left_out: list[str]) -> list[str]:
    skipped = [skipped_bench] if skipped_bench else []
    skipped += left_out
    if not report["gpu"]["present"]:
        skipped.append("GPU clocks, temperature and throttling (no NVIDIA GPU)")
    skipped.append("budgets, baselines and regressions (run pytest perf/ for those)")
    return skipped


if __name__ == "__main__":
    sys.exit(main())
