"""Does an artifact compute what its reference computes? Checked when it is built, for this
machine natively and for every x86 ISA class by the integer-numerics bound or its emulation."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

# fp32 and graph-optimized models must match torch closely; reduced precision must agree in
# direction (cosine) and in the thresholded speaker activity that diarization outputs.
MAX_ABS_ERROR = 1e-4
MIN_COSINE = 0.999
MIN_ACTIVITY_AGREEMENT = 0.98
ACTIVITY_THRESHOLD = 0.5
EXACT_VARIANTS = ("fp32", "ort-opt", "source")


class ParityError(RuntimeError):
    """An artifact whose outputs do not match its reference."""


@dataclasses.dataclass(frozen=True)
class ParityResult:
    variant: str
    max_abs_error: float
    cosine: float
    activity_agreement: float | None  # None where outputs are not probabilities
    criteria: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_outputs(
    variant: str, output: np.ndarray, reference: np.ndarray, exact: bool | None = None
) -> ParityResult:
    """``exact``: judge by max abs error (default: for fp32 and graph-optimized variants)."""
    if output.shape != reference.shape:
        raise ParityError(f"{variant}: output shape {output.shape} != reference {reference.shape}")
    out = output.astype(np.float64).ravel()
    ref = reference.astype(np.float64).ravel()
    max_abs = float(np.max(np.abs(out - ref)))
    norms = np.linalg.norm(out) * np.linalg.norm(ref)
    cosine = float(out @ ref / norms) if norms > 0 else float(np.array_equal(out, ref))
    agreement = None
    if ref.min() >= 0.0 and ref.max() <= 1.0:
        agreement = float(np.mean((out > ACTIVITY_THRESHOLD) == (ref > ACTIVITY_THRESHOLD)))
    if exact is None:
        exact = variant in EXACT_VARIANTS
    if exact:
        criteria = f"max abs error <= {MAX_ABS_ERROR:g}"
        passed = max_abs <= MAX_ABS_ERROR
    else:
        criteria = f"cosine >= {MIN_COSINE}, activity agreement >= {MIN_ACTIVITY_AGREEMENT:.0%}"
        passed = cosine >= MIN_COSINE and (agreement is None or agreement >= MIN_ACTIVITY_AGREEMENT)
    return ParityResult(variant, max_abs, cosine, agreement, criteria, passed)


def run_cpu(model_path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def describe_result(result: ParityResult) -> str:
    agreement = result.activity_agreement
    return (
        f"max abs error {result.max_abs_error:.3g}, cosine {result.cosine:.6f}, activity "
        f"agreement {'n/a' if agreement is None else f'{agreement:.2%}'} ({result.criteria})"
    )


def check_parity(
    variant: str, model_path: Path, inputs: dict[str, np.ndarray], reference: np.ndarray
) -> ParityResult:
    """Run ``model_path`` on CPU and compare; raise ParityError when the criteria fail."""
    onnx_checker(model_path)
    result = compare_outputs(variant, run_cpu(model_path, inputs), reference)
    if not result.passed:
        raise ParityError(
            f"{variant} artifact {model_path} fails parity: {describe_result(result)}"
        )
    return result


def check_every_isa(
    variant: str, model_path: Path, inputs: dict[str, np.ndarray], reference: np.ndarray
) -> dict[str, Any]:
    """Parity on the x86 ISAs this machine is not: proven by the weight bound, else emulated.

    An INT8 graph's numbers depend on the CPU that runs it (``export.integer_numerics``). When
    the bound proves its integer products exact everywhere, the check run here holds on every
    x86 CPU; otherwise the graph is run with AVX2's saturating arithmetic and must pass too.
    """
    from export.integer_numerics import emulate, saturation_bound

    bound = saturation_bound(model_path)
    certificate: dict[str, Any] = {"bound": bound.to_dict(), "emulated": {}}
    if bound.exact_everywhere is True or not bound.has_integer_ops:
        return certificate
    result = compare_outputs(variant, emulate(model_path, inputs, "avx2")[0], reference)
    certificate["emulated"]["avx2"] = result.to_dict()
    if not result.passed:
        raise ParityError(
            f"{variant} artifact {model_path} fails parity on AVX2 / AVX-512 without VNNI "
            f"(u8 x s8 products saturate there; emulated): {describe_result(result)}; "
            f"{bound.describe()}. Quantize with reduce_range=True or uint8 weights."
        )
    return certificate


def onnx_checker(model_path: Path) -> None:
    import onnx

    # By path: the checker then reads external data itself and handles models over 2 GB.
    onnx.checker.check_model(str(model_path), full_check=False)
