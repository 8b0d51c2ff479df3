from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import pytest
from onnxruntime.capi import build_and_package_info as build_info

from perf.measure.providers import (
    PROVIDERS,
    ConflictingOnnxruntimeError,
    check_single_onnxruntime,
    default_provider_names,
    installed_onnxruntime_distributions,
    provider_options,
    resolve_provider,
)


@dataclass(frozen=True)
class FakeDistribution:
    name: str
    version: str

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


def fake_site(*names_versions: tuple[str, str]) -> list[FakeDistribution]:
    unrelated = [FakeDistribution("numpy", "2.0.0"), FakeDistribution("onnx", "1.17.0")]
    return unrelated + [FakeDistribution(name, version) for name, version in names_versions]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cpu", "CPUExecutionProvider"),
        ("CUDA", "CUDAExecutionProvider"),
        ("tensorrt", "TensorrtExecutionProvider"),
        ("dml", "DmlExecutionProvider"),
        ("openvino", "OpenVINOExecutionProvider"),
        ("coreml", "CoreMLExecutionProvider"),
        ("cudaexecutionprovider", "CUDAExecutionProvider"),
        (" TensorrtExecutionProvider ", "TensorrtExecutionProvider"),
    ],
)
def test_resolve_provider_accepts_short_and_full_names(name: str, expected: str) -> None:
    assert resolve_provider(name) == expected


def test_resolve_provider_unknown_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown execution provider 'tpu'") as info:
        resolve_provider("tpu")
    assert "cuda (CUDAExecutionProvider)" in str(info.value)
    assert "openvino (OpenVINOExecutionProvider)" in str(info.value)


def test_table_names_are_real_onnxruntime_provider_names() -> None:
    # ROCm was dropped from onnxruntime's list; older onnxruntime-rocm wheels still register it.
    known = set(ort.get_all_providers()) | {"ROCMExecutionProvider"}
    assert {p.full for p in PROVIDERS} <= known
    assert len({p.short for p in PROVIDERS}) == len(PROVIDERS)


def test_default_providers_are_benchmarkable_and_exclude_azure() -> None:
    names = default_provider_names()
    assert names[0] == "CPUExecutionProvider"
    assert "AzureExecutionProvider" not in names
    assert {"CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider"} <= set(
        names
    )
    assert len(names) == len(PROVIDERS) - 1


def test_cuda_options_use_deterministic_conv_search(tmp_path: Path) -> None:
    options = provider_options("cuda", tmp_path)
    assert options["cudnn_conv_algo_search"] == "HEURISTIC"
    assert all(isinstance(v, str) for v in options.values())


def test_tensorrt_options_cache_under_cache_dir(tmp_path: Path) -> None:
    options = provider_options("TensorrtExecutionProvider", tmp_path)
    cache = Path(options["trt_engine_cache_path"])
    assert cache.is_dir() and cache.is_relative_to(tmp_path)
    assert options["trt_engine_cache_enable"] == "True"
    assert options["trt_timing_cache_enable"] == "True"
    assert options["trt_timing_cache_path"] == str(cache)
    assert options["trt_fp16_enable"] == "False"


@pytest.mark.parametrize("name", ["cpu", "dml", "openvino", "coreml", "qnn"])
def test_other_providers_have_no_options(name: str, tmp_path: Path) -> None:
    assert provider_options(name, tmp_path) == {}


def test_real_environment_has_single_runtime_wheel() -> None:
    installed = installed_onnxruntime_distributions()
    assert installed == [(build_info.package_name, ort.__version__)]
    assert check_single_onnxruntime() == build_info.package_name


def test_helper_packages_are_not_runtime_wheels() -> None:
    site = fake_site(
        ("onnxruntime_gpu", "1.32.0"),
        ("onnxruntime-extensions", "0.14.0"),
        ("onnxruntime-genai-cuda", "0.9.0"),
    )
    assert installed_onnxruntime_distributions(site) == [("onnxruntime-gpu", "1.32.0")]
    assert check_single_onnxruntime(site) == "onnxruntime-gpu"


def test_two_runtime_wheels_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    site = fake_site(("onnxruntime", "1.32.0"), ("onnxruntime-gpu", "1.32.0"))
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(site))
    with pytest.raises(ConflictingOnnxruntimeError) as info:
        check_single_onnxruntime()
    message = str(info.value)
    assert "onnxruntime 1.32.0, onnxruntime-gpu 1.32.0" in message
    # Names what Python really imports: the wheel of this venv.
    imported = f"Python imports {build_info.package_name} {ort.__version__} from {ort.__file__}"
    assert imported in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in message


def test_nightly_wheel_conflicts_with_release() -> None:
    site = fake_site(("onnxruntime-openvino", "1.22.0"), ("ort-nightly", "1.33.0.dev1"))
    with pytest.raises(ConflictingOnnxruntimeError, match="pip install onnxruntime-openvino"):
        check_single_onnxruntime(site)


def test_no_metadata_means_plain_onnxruntime() -> None:
    assert check_single_onnxruntime(fake_site()) == "onnxruntime"
