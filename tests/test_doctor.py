"""python -m perf.doctor on this machine (CPU onnxruntime), with a fake NVML and fake benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from export.cache import ModelCache
from perf import doctor
from perf.measure.cases import PerfCase
from perf.measure.models import Models
from perf.measure.providers import CUDA
from tests.fake_nvml import FakeNvml

NO_NVML = "NVML Shared Library Not Found"
cpu_onnxruntime = pytest.mark.skipif(
    CUDA in ort.get_available_providers(), reason="needs the CPU onnxruntime wheel"
)


def _doctor(
    *argv: str, nvml: Any = None, benchmark: doctor.Benchmark | None = None
) -> tuple[int, str]:
    """The exit code and the printed report."""
    lines: list[str] = []
    nvml = nvml if nvml is not None else FakeNvml(init_error=NO_NVML)
    code = doctor.main(
        list(argv), nvml=nvml, benchmark=benchmark or _no_benchmark, say=lines.append
    )
    return code, "\n".join(lines)


def _no_benchmark(variant: str, provider: str, cap_s: float) -> dict[str, Any]:
    raise AssertionError(f"benchmark ran: {variant} on {provider}")


def _fake_benchmark(variant: str, provider: str, cap_s: float) -> dict[str, Any]:
    if variant == doctor.FULL_MODEL:
        raise RuntimeError("building w2v2-base/fp32 needs torch")
    return {"p50_ms": 1.25, "p99_ms": 2.5, "samples": 40, "first_call_ms": 9.0}


@cpu_onnxruntime
def test_cpu_machine_report_and_exit_code() -> None:
    code, text = _doctor("--no-benchmark")
    assert code == 1
    assert "  cpu       compiled in, usable" in text
    assert "verdict: no NVIDIA GPU: NVML could not start: " + NO_NVML in text
    available = f"available: {', '.join(ort.get_available_providers())}"
    assert f"CUDAExecutionProvider not in this onnxruntime build ({available})" in text
    assert f"TensorrtExecutionProvider not in this onnxruntime build ({available})" in text
    assert "cannot gate on a GPU: no NVIDIA GPU" in text
    assert "this machine can gate on: cpu\n" in text  # azure runs no local model
    assert "skipped: benchmark (--no-benchmark); GPU clocks" in text


@cpu_onnxruntime
def test_cpu_ok_exits_zero() -> None:
    assert _doctor("--no-benchmark", "--cpu-ok")[0] == 0


@cpu_onnxruntime
def test_benchmark_off_by_default_without_a_gpu_provider() -> None:
    text = _doctor()[1]
    assert "skipped: benchmark (no GPU provider usable; --benchmark runs it on cpu)" in text


@cpu_onnxruntime
def test_json_report_written(tmp_path: Path) -> None:
    path = tmp_path / "out" / "doctor.json"
    code, text = _doctor("--no-benchmark", "--json", str(path))
    report = json.loads(path.read_text())
    assert report["exit_code"] == code == 1
    assert report["providers"]["cpu"] == {"compiled_in": True, "usable": True, "reason": None}
    assert report["providers"]["cuda"]["compiled_in"] is False
    assert report["gpu"] == {"present": False, "reason": "NVML could not start: " + NO_NVML}
    assert report["wheels"]["problem"] is None
    assert report["verdict"].startswith("cannot gate on a GPU")
    assert f"report written to {path}" in text


def test_gpu_section_from_fake_nvml() -> None:
    nvml = FakeNvml(sm_mhz=(1410,), mem_mhz=(2619,), reasons=(0x2,))
    text = _doctor("--no-benchmark", "--cpu-ok", nvml=nvml)[1]
    assert "driver 550.54.15, CUDA 12.4" in text
    assert "GPU 0: NVIDIA H100 80GB HBM3, SM 1410/1980 MHz, memory 2619/2619 MHz" in text
    assert "clocks locked, persistence mode 1, MIG 0" in text
    assert "verdict: clocks locked, steady" in text
    assert "GPU clocks" not in text.split("skipped:")[1]


def test_gpu_section_warns_of_a_throttling_gpu() -> None:
    nvml = FakeNvml(reasons=(0x40,))
    text = _doctor("--no-benchmark", "--cpu-ok", nvml=nvml)[1]
    assert "clocks not locked (nvidia-smi -lgc MIN,MAX)" in text
    assert "verdict: GPU timings may be off: clocks slowed down: hw_thermal_slowdown" in text


def test_benchmark_per_model_and_provider() -> None:
    code, text = _doctor("--benchmark", "--cpu-ok", benchmark=_fake_benchmark)
    assert code == 0
    assert f"{doctor.SMALL_MODEL} on cpu: P50 1.25 ms, P99 2.50 ms (40 calls)" in text
    assert f"{doctor.FULL_MODEL} on cpu: failed: RuntimeError: building" in text
    assert "azure" not in text.split("== benchmark")[1].split("== verdict")[0]


def test_benchmark_budget_leaves_the_rest_out() -> None:
    results, left_out = doctor.run_benchmarks(
        lambda line: None, ["cpu"], _fake_benchmark, cap_s=1.0, budget_s=-1.0
    )
    assert results == []
    assert left_out == [
        f"{doctor.SMALL_MODEL} on cpu (benchmark budget -1 s spent)",
        f"{doctor.FULL_MODEL} on cpu (benchmark budget -1 s spent)",
    ]


def test_a_usable_gpu_provider_can_gate() -> None:
    providers = {
        "cpu": {"usable": True, "reason": None},
        "cuda": {"usable": True, "reason": None},
        "tensorrt": {"usable": False, "reason": "TensorRT libraries missing"},
    }
    verdict, code = doctor.gate_verdict(providers, {"present": True}, cpu_ok=False)
    assert (verdict, code) == ("this machine can gate on: cpu, cuda", 0)


def test_matmul_model_runs_on_cpu(tmp_path: Path) -> None:
    model = doctor.matmul_model(tmp_path / "m.onnx")
    assert doctor.check_provider("CPUExecutionProvider", model)["usable"]


def test_benchmark_case_samples_a_real_model_within_its_cap(tmp_path: Path) -> None:
    model = doctor.matmul_model(tmp_path / "m.onnx")
    models = Models(ModelCache(tmp_path / "cache"), {})
    case = PerfCase(str(model), "cpu", 3.0, model_file=model)
    figures = doctor.benchmark_case(models, case, cap_s=0.2)
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["samples"] > 0
    # checked before it was timed; a float file without a parent has nothing to compare with
    assert figures["numerics"].startswith("numerics not compared on cpu")
