"""Which onnxruntime execution providers exist, and which onnxruntime wheel is really installed.

`onnxruntime.get_available_providers()` only says what the wheel was built with; whether a
provider really works is checked per session in `perf.measure.sessions`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from perf.measure.trt import engine_cache_dir

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DML = "DmlExecutionProvider"
# Providers that run on an NVIDIA GPU: their timings come with the GPU's state (NVML).
NVIDIA_PROVIDERS = frozenset({CUDA, TENSORRT})


@dataclass(frozen=True)
class ProviderInfo:
    short: str
    full: str
    # Shown when the provider is compiled in but a session silently fell back to CPU.
    init_hint: str
    benchmarkable: bool = True


PROVIDERS: tuple[ProviderInfo, ...] = (
    ProviderInfo("cpu", CPU, "the CPU provider cannot fail to initialize"),
    ProviderInfo(
        "cuda",
        CUDA,
        "check CUDA/cuDNN libraries (the CUDA 12 runtime, cuDNN 9 and cuBLAS this onnxruntime-gpu "
        "was built for must be loadable, e.g. on LD_LIBRARY_PATH) and that a GPU is visible",
    ),
    ProviderInfo(
        "tensorrt",
        TENSORRT,
        "check TensorRT libraries (libnvinfer, libnvonnxparser) as well as CUDA/cuDNN libraries",
    ),
    ProviderInfo("dml", DML, "check for a DirectX 12 capable GPU and driver (Windows only)"),
    ProviderInfo(
        "openvino",
        "OpenVINOExecutionProvider",
        "check the OpenVINO runtime libraries and the device_type option (CPU, GPU, NPU)",
    ),
    ProviderInfo("coreml", "CoreMLExecutionProvider", "CoreML needs macOS/iOS"),
    ProviderInfo("rocm", "ROCMExecutionProvider", "check ROCm/MIOpen libraries and the AMD GPU"),
    ProviderInfo(
        "migraphx", "MIGraphXExecutionProvider", "check ROCm/MIGraphX libraries and the AMD GPU"
    ),
    ProviderInfo("qnn", "QNNExecutionProvider", "check the QNN SDK backend_path (QnnHtp, QnnCpu)"),
    ProviderInfo("xnnpack", "XnnpackExecutionProvider", "check the XNNPACK build of onnxruntime"),
    ProviderInfo("webgpu", "WebGpuExecutionProvider", "check for a WebGPU (Dawn) capable adapter"),
    # Azure runs remote endpoints (custom ops calling a service), not the local model graph.
    ProviderInfo("azure", "AzureExecutionProvider", "", benchmarkable=False),
)

_BY_NAME: dict[str, ProviderInfo] = {
    key: info for info in PROVIDERS for key in (info.short, info.full.lower())
}

# Distributions that start with "onnxruntime" but do not ship the `onnxruntime` import package, so
# they never conflict with the runtime wheel (they depend on it instead).
HELPER_DISTRIBUTIONS = frozenset(
    {
        "onnxruntime-extensions",
        "onnxruntime-genai",
        "onnxruntime-genai-cuda",
        "onnxruntime-genai-directml",
        "onnxruntime-tools",
    }
)
# Nightly wheels from the old feed install the same `onnxruntime` package under another name.
_RUNTIME_PREFIXES = ("onnxruntime", "ort-nightly")


class ConflictingOnnxruntimeError(RuntimeError):
    """Two onnxruntime runtime wheels share one `onnxruntime` package; the last installed wins."""


def provider_info(name: str) -> ProviderInfo:
    """Table entry for a short ("cuda") or full ("CUDAExecutionProvider") name, any case."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        valid = ", ".join(f"{p.short} ({p.full})" for p in PROVIDERS)
        raise ValueError(f"unknown execution provider {name!r}; valid names: {valid}") from None


def resolve_provider(name: str) -> str:
    """Full onnxruntime provider name for a short or full name (case-insensitive)."""
    return provider_info(name).full


def default_provider_names() -> list[str]:
    """Every benchmarkable provider onnxruntime knows; the suite skips the ones not usable here."""
    return [p.full for p in PROVIDERS if p.benchmarkable]


def provider_options(provider: str, cache_dir: Path) -> dict[str, str]:
    """Benchmarking options for `provider`; TensorRT caches go under `cache_dir` (created)."""
    full = resolve_provider(provider)
    if full == CUDA:
        # HEURISTIC rather than ORT's default EXHAUSTIVE: exhaustive search times every cuDNN
        # algorithm at each new input shape, and its timing-based pick can differ between runs,
        # making baselines bimodal. Heuristic picks are deterministic; warm-up absorbs the rest.
        return {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC"}
    if full == TENSORRT:
        # Keyed by GPU model, TensorRT and onnxruntime: an engine from another is never loaded.
        trt_dir = engine_cache_dir(cache_dir)
        trt_dir.mkdir(parents=True, exist_ok=True)
        return {
            "device_id": "0",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(trt_dir),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(trt_dir),
            # FP16 changes numerics; compare fp32 to fp32 unless a test opts in.
            "trt_fp16_enable": "False",
        }
    return {}


def _normalized(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _is_runtime_distribution(name: str) -> bool:
    return name.startswith(_RUNTIME_PREFIXES) and name not in HELPER_DISTRIBUTIONS


def installed_onnxruntime_distributions(
    distributions: Iterable[importlib.metadata.Distribution] | None = None,
) -> list[tuple[str, str]]:
    """(name, version) of every installed onnxruntime runtime wheel, sorted by name.

    Helper packages (onnxruntime-extensions, onnxruntime-genai*, onnxruntime-tools) are left out:
    they add their own import packages and never overwrite `onnxruntime` itself.
    """
    if distributions is None:
        distributions = importlib.metadata.distributions()
    found = {
        (_normalized(dist.metadata["Name"] or ""), dist.version)
        for dist in distributions
        if _is_runtime_distribution(_normalized(dist.metadata["Name"] or ""))
    }
    return sorted(found)


def _imported_onnxruntime() -> str:
    """Flavour, version and location of the `onnxruntime` package Python really imports."""
    try:
        import onnxruntime
        from onnxruntime.capi import build_and_package_info as info
    except ImportError as exc:
        return f"`import onnxruntime` fails ({exc})"
    providers = ", ".join(onnxruntime.get_available_providers())
    return (
        f"Python imports {info.package_name} {info.__version__} from {onnxruntime.__file__} "
        f"(providers: {providers}), built from whichever wheel was installed last"
    )


def _fix_command(names: list[str]) -> str:
    accelerated = [n for n in names if n != "onnxruntime"]
    keep = accelerated[0] if accelerated else names[0]
    return f"pip uninstall -y {' '.join(names)} && pip install {keep}"


def check_single_onnxruntime(
    distributions: Iterable[importlib.metadata.Distribution] | None = None,
) -> str:
    """The installed onnxruntime flavour ("onnxruntime", "onnxruntime-gpu", ...).

    Raises ConflictingOnnxruntimeError when two runtime wheels are installed: they write the same
    `onnxruntime` package, so the one installed last silently decides which providers exist.
    """
    installed = installed_onnxruntime_distributions(distributions)
    if len(installed) == 1:
        return installed[0][0]
    if not installed:
        # A source build or a vendored copy has no distribution metadata.
        return "onnxruntime"
    listed = ", ".join(f"{name} {version}" for name, version in installed)
    names = [name for name, _ in installed]
    raise ConflictingOnnxruntimeError(
        f"{len(installed)} onnxruntime wheels are installed together: {listed}. "
        f"{_imported_onnxruntime()}. Keep exactly one, e.g.: {_fix_command(names)}"
    )
