"""Sessions that really run on the provider asked for, or a precise reason why not.

onnxruntime falls back to CPU silently when a provider fails to initialize, so every session is
checked against `session.get_providers()` after creation. Test-framework free: the harness turns
ProviderSkip into a pytest skip.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil

from perf.measure.profile import ProfiledSession, node_providers
from perf.measure.providers import CPU, CUDA, DML, TENSORRT, provider_info, resolve_provider

GRAPH_OPTIMIZATION_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}

_MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(\d+\)")
_OP_IN_MESSAGE = re.compile(r"\bOp \((\w+)\)")
_INT8_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "DynamicQuantizeMatMul",
        "QuantizeLinear",
        "DequantizeLinear",
        "QAttention",
        "QGemm",
        "QEmbedLayerNormalization",
    }
)
_INT8_PREFIXES = ("QLinear", "QOrdered")


@dataclass(frozen=True)
class SessionSettings:
    """How a benchmark session is configured; `provider` accepts short names and is stored full."""

    provider: str
    intra_op_threads: int | None = None  # None: one per physical core
    # Only used by the parallel executor, which these sessions do not enable.
    inter_op_threads: int = 1
    spinning: bool = True
    graph_optimization: str = "all"
    provider_options: Mapping[str, str] = field(default_factory=dict)
    # --perf-io-binding / --perf-cuda-graph: timed calls are run_with_iobinding on the provider's
    # device (perf.measure.gpu_modes); False is a plain session.run
    io_binding: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", resolve_provider(self.provider))
        object.__setattr__(self, "provider_options", dict(self.provider_options))
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            valid = ", ".join(GRAPH_OPTIMIZATION_LEVELS)
            raise ValueError(f"graph_optimization {self.graph_optimization!r}; valid: {valid}")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1 or None, got {self.intra_op_threads}")
        if self.inter_op_threads < 1:
            raise ValueError(f"inter_op_threads must be >= 1, got {self.inter_op_threads}")

    def effective_intra_op_threads(self) -> int:
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        return psutil.cpu_count(logical=False) or os.cpu_count() or 1

    def to_dict(self) -> dict[str, Any]:
        report = asdict(self)
        report["provider_options"] = dict(self.provider_options)
        report["effective_intra_op_threads"] = self.effective_intra_op_threads()
        # Only a bound run says so: rows of plain session.run keep the settings stored before.
        if not report.pop("io_binding"):
            return report
        report["run_mode"] = "io-binding"
        return report


class ProviderSkip(Exception):
    """The provider cannot run this model here; `reason` says precisely why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ModelLoadError(RuntimeError):
    """onnxruntime rejected the model itself (bad file, invalid graph): a real failure, no skip."""


def build_session_options(settings: SessionSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.effective_intra_op_threads()
    options.inter_op_num_threads = settings.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = GRAPH_OPTIMIZATION_LEVELS[settings.graph_optimization]
    spin = "1" if settings.spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if settings.provider == DML:
        # DirectML does not support memory patterns or parallel execution.
        options.enable_mem_pattern = False
    return options


def _provider_list(settings: SessionSettings) -> list[tuple[str, dict[str, str]]]:
    providers = [(settings.provider, dict(settings.provider_options))]
    if settings.provider == TENSORRT and CUDA in ort.get_available_providers():
        # ORT's recommended TensorRT setup: nodes TensorRT rejects run on CUDA, not on CPU.
        providers.append((CUDA, {}))
    if settings.provider != CPU:
        # Lets ORT place nodes the provider has no kernel for; placement is checked separately.
        providers.append((CPU, {}))
    return providers


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _is_int8_op(op_type: str) -> bool:
    return op_type in _INT8_OPS or op_type.endswith("Integer") or op_type.startswith(_INT8_PREFIXES)


def _is_not_implemented(exc: BaseException) -> bool:
    return type(exc).__name__ == "NotImplemented" or "NOT_IMPLEMENTED" in str(exc)


def unsupported_op_reason(provider: str, message: str) -> str:
    """Skip reason for a NOT_IMPLEMENTED session-creation error."""
    match = _MISSING_KERNEL.search(message) or _OP_IN_MESSAGE.search(message)
    op_type = match.group(1) if match else "unknown op"
    kind = "INT8 ops" if _is_int8_op(op_type) else "ops"
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return f"{kind} unsupported on {provider}: {op_type}; onnxruntime: {first_line}"


def check_available(provider: str) -> None:
    available = ort.get_available_providers()
    if provider not in available:
        raise ProviderSkip(
            f"{provider} not in this onnxruntime build (available: {', '.join(available)})"
        )


def _check_registered(session: ort.InferenceSession, provider: str) -> None:
    registered = session.get_providers()
    if provider not in registered:
        raise ProviderSkip(
            f"{provider} failed to initialize and onnxruntime fell back to {CPU} "
            f"(session providers: {', '.join(registered)}); {provider_info(provider).init_hint}"
        )


def _create_session(
    model_path: Path, settings: SessionSettings, options: ort.SessionOptions
) -> ort.InferenceSession:
    check_available(settings.provider)
    if not model_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {model_path}")
    try:
        session = ort.InferenceSession(str(model_path), options, providers=_provider_list(settings))
    except Exception as exc:
        if _is_not_implemented(exc):
            raise ProviderSkip(unsupported_op_reason(settings.provider, str(exc))) from exc
        raise ModelLoadError(
            f"onnxruntime could not load {model_path} with {settings.provider}: {_first_line(exc)}"
        ) from exc
    _check_registered(session, settings.provider)
    return session


def open_session(
    model_path: Path,
    settings: SessionSettings,
    configure: Callable[[ort.SessionOptions], None] | None = None,
) -> ort.InferenceSession:
    """A session verified to run on `settings.provider` (CPU listed last as node fallback);
    ``configure`` may change its options first (profiling, for perf.measure.profile).

    Raises ProviderSkip when the provider is missing, fell back to CPU, or lacks kernels for the
    model's ops; FileNotFoundError / ModelLoadError (naming the path) for a broken model.
    """
    options = build_session_options(settings)
    if configure is not None:
        configure(options)
    return _create_session(Path(model_path), settings, options)


def node_placement(
    model_path: Path, settings: SessionSettings, inputs: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """Nodes of the optimized graph executed by each provider, from one profiled run.

    Shows nodes falling back to CPU inside a GPU session. ORT keeps some shape computations on
    CPU on purpose, and inserted Memcpy nodes count too; a fused subgraph (TensorRT) counts once.
    """
    session = ProfiledSession(functools.partial(open_session, model_path, settings), inputs)
    session()
    return node_providers(session.calls())


def session_runner(
    settings: SessionSettings,
) -> Callable[[Path, Mapping[str, np.ndarray]], np.ndarray]:
    """Run a model once on ``settings``' provider (verified) and return its first output."""

    def run(model_path: Path, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return open_session(model_path, settings).run(None, dict(inputs))[0]

    return run
