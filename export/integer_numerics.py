"""What an x86 CPU computes for an INT8 graph, and which graphs compute the same on all of them.

onnxruntime's CPU kernels for ``uint8 x int8`` products (the default of dynamic quantization)
differ by ISA. With AVX-512 VNNI, AVX-VNNI or AMX, VPDPBUSD / TDPBUSD sum the products exactly in
int32. With AVX2, or AVX-512 without VNNI, VPMADDUBSW multiplies *adjacent pairs* along K and adds
each pair into int16 **with saturation**, then VPMADDWD widens to int32 (onnxruntime's quantization
docs warn of it). ``uint8 x uint8`` kernels widen first and never saturate. Zero-point terms are
computed apart, exactly.

So a pair saturates only when ``|a0*b0 + a1*b1| > 32767``; with ``a <= 255`` that needs
``|b0| + |b1| > 128``. A graph whose constant int8 weights never have two entries in one output
column summing past 128 in magnitude (true of every 7-bit ``reduce_range`` weight, |b| <= 64)
computes the same numbers on every x86 ISA: that is ``SaturationBound``, checked statically.
For the others, ``emulate`` runs the graph with ``onnx.reference`` and the AVX2 arithmetic, so an
artifact's AVX2 numerics can be checked on any machine.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from export.machine import cpu_info

INT16_MIN, INT16_MAX = -32768, 32767
UINT8_MAX = 255
# |b0| + |b1| above this can saturate an int16 pair sum with a uint8 activation of 255.
SAFE_PAIR_MAGNITUDE = INT16_MAX // UINT8_MAX  # 128

# ISA classes, as onnxruntime's MLAS picks its u8s8 GEMM kernel on x86-64.
SATURATING = "saturating"  # AVX2, AVX-512 without VNNI: VPMADDUBSW
EXACT = "exact"  # AVX-512 VNNI, AVX-VNNI, AMX: int32 dot products
ISA_CLASSES = ("avx2", "avx512", "avx512-vnni", "avx-vnni", "amx", "non-x86", "unknown")
ARITHMETIC = {
    "avx2": SATURATING,
    "avx512": SATURATING,
    "avx512-vnni": EXACT,
    "avx-vnni": EXACT,
    "amx": EXACT,
}


def isa_class(flags: Iterable[str], machine: str = "x86_64") -> str:
    """The u8s8 kernel family MLAS uses on a CPU with these flags (/proc/cpuinfo or py-cpuinfo
    spelling: ``avx512_vnni`` and ``avx512vnni`` are the same)."""
    flags = {flag.lower().replace("_", "").replace(".", "") for flag in flags}
    if machine.lower() not in ("x86_64", "amd64", "x86", "i686", "x86_32"):
        return "non-x86"
    if {"amxint8", "amxtile"} <= flags:
        return "amx"
    if "avx512vnni" in flags:
        return "avx512-vnni"
    if "avxvnni" in flags:
        return "avx-vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "unknown"


@functools.lru_cache(maxsize=1)
def this_machine_isa() -> str:
    """This CPU's ISA class, from py-cpuinfo (CPUID), falling back to /proc/cpuinfo."""
    info = cpu_info()
    if info.get("flags"):
        return isa_class(info["flags"], info.get("arch_string_raw") or platform.machine())
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    return isa_class(flags, platform.machine())


def saturates(isa: str) -> bool | None:
    """True where u8 x s8 pair sums saturate, False where they are exact, None if unknown."""
    arithmetic = ARITHMETIC.get(isa)
    return None if arithmetic is None else arithmetic == SATURATING


# Integer GEMM-like ops: (index of the activation input, index of the weight input).
INTEGER_OPS: dict[str, tuple[int, int]] = {
    "MatMulInteger": (0, 1),
    "ConvInteger": (0, 1),
    "QLinearMatMul": (0, 3),
    "QLinearConv": (0, 3),
    "DynamicQuantizeMatMul": (0, 1),  # com.microsoft; the activation is quantized to uint8
    "MatMulIntegerToFloat": (0, 1),  # com.microsoft
}
_FLOAT_ACTIVATION_OPS = ("DynamicQuantizeMatMul",)
# MLAS saturates only a uint8 *left* operand times an int8 right one (VPMADDUBSW's operand
# order). ConvInteger multiplies its weights by the im2col'd input: its weights are the left
# operand, so the usual uint8 input x int8 weights is exact everywhere. Measured with
# onnxruntime's own AVX2 kernels under QEMU (tests/test_emulated_cpu.py).
WEIGHTS_ARE_LEFT_OPERAND = frozenset({"ConvInteger"})


@dataclasses.dataclass(frozen=True)
class IntegerOp:
    """One integer product in a graph and how much its weights can overflow an int16 pair."""

    node: str
    op_type: str
    activation_type: str  # "uint8" | "int8" | "unknown"
    weight_type: str
    constant_weight: bool
    worst_pair: int | None  # largest |b_i| + |b_j| within one output column (any two along K)

    @property
    def exact_everywhere(self) -> bool | None:
        """True: same numbers on every x86 ISA; False: can differ on saturating ISAs."""
        left, right = self.activation_type, self.weight_type
        if self.op_type in WEIGHTS_ARE_LEFT_OPERAND:
            left, right = right, left
        if "unknown" in (left, right):
            return None
        if (left, right) != ("uint8", "int8"):
            return True  # u8u8, s8u8 and s8s8 kernels never saturate
        if left == self.weight_type or self.worst_pair is None:
            return None  # the int8 side is an activation: no static bound
        return self.worst_pair <= SAFE_PAIR_MAGNITUDE

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "exact_everywhere": self.exact_everywhere}


@dataclasses.dataclass(frozen=True)
class SaturationBound:
    """Whether a graph's integer products are exact on every x86 ISA, decided from its weights."""

    ops: tuple[IntegerOp, ...]

    @property
    def has_integer_ops(self) -> bool:
        return bool(self.ops)

    @property
    def exact_everywhere(self) -> bool | None:
        """True if proven, False if some op can saturate, None if some op cannot be bounded."""
        verdicts = [op.exact_everywhere for op in self.ops]
        if any(v is False for v in verdicts):
            return False
        if any(v is None for v in verdicts):
            return None
        return True

    @property
    def worst_pair(self) -> int | None:
        pairs = [op.worst_pair for op in self.ops if op.worst_pair is not None]
        return max(pairs) if pairs else None

    def describe(self) -> str:
        if not self.ops:
            return "no integer ops"
        verdict = self.exact_everywhere
        worst = self.worst_pair
        limit = f"worst weight pair {worst} vs {SAFE_PAIR_MAGNITUDE}" if worst is not None else ""
        if verdict is True:
            return f"exact on every x86 ISA ({len(self.ops)} integer ops; {limit})"
        if verdict is False:
            risky = sum(op.exact_everywhere is False for op in self.ops)
            return (
                f"can saturate on AVX2 / AVX-512 without VNNI ({risky} of {len(self.ops)} "
                f"integer ops; {limit})"
            )
        return f"not bounded: integer ops with non-constant or signed activations ({limit})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "exact_everywhere": self.exact_everywhere,
            "worst_pair": self.worst_pair,
            "safe_pair_magnitude": SAFE_PAIR_MAGNITUDE,
            "integer_ops": len(self.ops),
            "ops_that_can_saturate": sum(op.exact_everywhere is False for op in self.ops),
            "summary": self.describe(),
        }


_TYPE_NAMES = {TensorProto.UINT8: "uint8", TensorProto.INT8: "int8"}


def _value_types(model: onnx.ModelProto) -> dict[str, str]:
    """Element types of every named value the graph declares or onnx can infer."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a help here, not a requirement
        inferred = model.graph
    types: dict[str, str] = {}
    for info in [*inferred.input, *inferred.value_info, *inferred.output]:
        elem = info.type.tensor_type.elem_type
        types[info.name] = _TYPE_NAMES.get(elem, TensorProto.DataType.Name(elem).lower())
    for init in model.graph.initializer:
        types[init.name] = _TYPE_NAMES.get(init.data_type, "other")
    for node in model.graph.node:  # outputs whose type does not depend on inference
        if node.op_type == "DynamicQuantizeLinear":
            types[node.output[0]] = "uint8"
    return types


def worst_pair_magnitude(weights: np.ndarray, op_type: str) -> int:
    """Largest sum of the two largest |w| along K in any output column."""
    magnitude = np.abs(weights.astype(np.int32))
    if op_type in ("ConvInteger", "QLinearConv"):
        columns = magnitude.reshape(magnitude.shape[0], -1)  # [M, C/group * kernel]
    else:
        columns = magnitude.reshape(-1, magnitude.shape[-1]).T  # B is [K, N]: columns are N
    if columns.shape[1] < 2:
        return int(columns.max(initial=0))
    top_two = np.partition(columns, columns.shape[1] - 2, axis=1)[:, -2:]
    return int(top_two.sum(axis=1).max(initial=0))


def saturation_bound(model_path: Path) -> SaturationBound:
    """Scan a model's integer products; reads weights of integer ops only."""
    header = onnx.load(str(model_path), load_external_data=False)
    types = _value_types(header)
    initializers = {init.name: init for init in header.graph.initializer}
    ops = []
    for node in header.graph.node:
        if node.op_type not in INTEGER_OPS:
            continue
        a_index, b_index = INTEGER_OPS[node.op_type]
        a_name, b_name = node.input[a_index], node.input[b_index]
        weight = initializers.get(b_name)
        worst = None
        if weight is not None and weight.data_type == TensorProto.INT8:
            if uses_external_data(weight):
                load_external_data_for_tensor(weight, str(model_path.parent))
            worst = worst_pair_magnitude(numpy_helper.to_array(weight), node.op_type)
        activation = "uint8" if node.op_type in _FLOAT_ACTIVATION_OPS else types.get(a_name)
        ops.append(
            IntegerOp(
                node=node.name or node.output[0],
                op_type=node.op_type,
                activation_type=activation or "unknown",
                weight_type=types.get(b_name, "unknown"),
                constant_weight=weight is not None,
                worst_pair=worst,
            )
        )
    return SaturationBound(tuple(ops))


# --- Emulation: the graph run in numpy with a chosen ISA's integer arithmetic -------------------


def saturated_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for uint8 ``a`` [M, K] and int8 ``b`` [K, N] as VPMADDUBSW + VPMADDWD compute it.

    Exact int64 product, then a correction for the pairs (2j, 2j+1) along K whose weights can
    overflow int16; only those pairs (usually few) are visited.
    """
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    exact = a64 @ b64
    if a.dtype != np.uint8 or b.dtype != np.int8:
        return exact
    if b64.shape[0] % 2:
        a64 = np.pad(a64, ((0, 0), (0, 1)))
        b64 = np.pad(b64, ((0, 1), (0, 0)))
    even, odd = b64[0::2], b64[1::2]
    pair_j, column = np.nonzero(np.abs(even) + np.abs(odd) > SAFE_PAIR_MAGNITUDE)
    for start in range(0, len(pair_j), 4096):
        j, n = pair_j[start : start + 4096], column[start : start + 4096]
        sums = a64[:, 2 * j] * even[j, n] + a64[:, 2 * j + 1] * odd[j, n]  # [M, R]
        correction = np.clip(sums, INT16_MIN, INT16_MAX) - sums
        np.add.at(exact.T, n, correction.T)
    return exact


def integer_matmul(
    a: np.ndarray,
    b: np.ndarray,
    a_zero: Any,
    b_zero: Any,
    saturating: bool,
    b_is_left_operand: bool = False,
) -> np.ndarray:
    """MatMulInteger: (A - a_zero) @ (B - b_zero) as int32, B of shape [K, N].

    ``b_is_left_operand``: MLAS computes ``B.T @ A.T`` (ConvInteger's weights times its input),
    so a pair saturates only where B is uint8 and A int8.
    """
    k = a.shape[-1]
    flat = a.reshape(-1, k)
    if not saturating:
        raw = flat.astype(np.int64) @ b.astype(np.int64)
    elif b_is_left_operand:
        raw = saturated_product(b.T, flat.T).T
    else:
        raw = saturated_product(flat, b)
    a_zero = np.int64(0 if a_zero is None else np.asarray(a_zero).reshape(-1)[0])
    b_zero = np.zeros(b.shape[1], np.int64) if b_zero is None else np.asarray(b_zero, np.int64)
    b_zero = np.broadcast_to(b_zero.reshape(-1), (b.shape[1],))
    row_sums = flat.astype(np.int64).sum(axis=1, keepdims=True)
    col_sums = b.astype(np.int64).sum(axis=0, keepdims=True)
    out = raw - a_zero * col_sums - row_sums * b_zero + k * a_zero * b_zero
    return out.reshape(*a.shape[:-1], b.shape[1]).astype(np.int32)


def im2col(
    x: np.ndarray,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    pads: tuple[int, ...],
    pad_value: Any,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """[N, C, *S] -> columns [N, *out, C * prod(kernel)] in (C, kernel...) order, and ``out``."""
    dims = len(kernel)
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + dims]) for i in range(dims)]
    padded = np.pad(x, widths, constant_values=pad_value)
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True))
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=tuple(range(2, 2 + dims)))
    select = (slice(None), slice(None))
    select += tuple(slice(None, None, s) for s in strides)
    select += tuple(slice(None, None, d) for d in dilations)
    windows = windows[select]  # [N, C, *out, *kernel]
    out_shape = windows.shape[2 : 2 + dims]
    order = (0, *range(2, 2 + dims), 1, *range(2 + dims, 2 + 2 * dims))
    columns = windows.transpose(order).reshape(x.shape[0], *out_shape, -1)
    return columns, out_shape


def convolution(
    x: np.ndarray,
    w: np.ndarray,
    attributes: Mapping[str, Any],
    product: Any,
    pad_value: Any = 0,
) -> np.ndarray:
    """Conv / ConvInteger by im2col and ``product(columns [P, K], weights [K, M])`` per group."""
    dims = w.ndim - 2
    kernel = tuple(w.shape[2:])
    strides = tuple(attributes.get("strides") or (1,) * dims)
    dilations = tuple(attributes.get("dilations") or (1,) * dims)
    pads = tuple(attributes.get("pads") or (0,) * 2 * dims)
    if attributes.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        raise NotImplementedError("auto_pad is not emulated; export with explicit pads")
    group = int(attributes.get("group") or 1)
    channels_per_group, outputs_per_group = x.shape[1] // group, w.shape[0] // group
    results = []
    for g in range(group):
        part = x[:, g * channels_per_group : (g + 1) * channels_per_group]
        columns, out_shape = im2col(part, kernel, strides, dilations, pads, pad_value)
        weights = w[g * outputs_per_group : (g + 1) * outputs_per_group].reshape(
            outputs_per_group, -1
        )
        flat = product(columns.reshape(-1, columns.shape[-1]), weights.T, g)
        results.append(flat.reshape(x.shape[0], *out_shape, outputs_per_group))
    y = np.concatenate(results, axis=-1)
    return np.moveaxis(y, -1, 1)


def _attributes(op: Any, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(op, name, None) for name in names}


_CONV_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _reference_ops(saturating: bool) -> list[type]:
    """onnx.reference implementations of the ops whose arithmetic (or speed) matters here."""
    from onnx.reference.op_run import OpRun

    class MatMulInteger(OpRun):
        def _run(self, a, b, a_zero_point=None, b_zero_point=None):  # type: ignore[no-untyped-def]
            return (integer_matmul(a, b, a_zero_point, b_zero_point, saturating),)

    class ConvInteger(OpRun):
        def _run(self, x, w, x_zero_point=None, w_zero_point=None, **attrs):  # type: ignore[no-untyped-def]
            attributes = _attributes(self, _CONV_ATTRIBUTES)
            w_zero = None if w_zero_point is None else np.asarray(w_zero_point).reshape(-1)
            per_group = w.shape[0] // int(attributes.get("group") or 1)

            def product(columns: np.ndarray, weights: np.ndarray, g: int) -> np.ndarray:
                zero = None
                if w_zero is not None:
                    zero = np.broadcast_to(w_zero, (w.shape[0],))[
                        g * per_group : (g + 1) * per_group
                    ]
                return integer_matmul(
                    columns, weights, x_zero_point, zero, saturating, b_is_left_operand=True
                )

            pad_value = 0 if x_zero_point is None else np.asarray(x_zero_point).reshape(-1)[0]
            y = convolution(x, w, attributes, product, pad_value)
            return (y.astype(np.int32),)

    class Conv(OpRun):  # onnx.reference's float Conv is far too slow for wav2vec2's front end
        def _run(self, x, w, b=None, **attrs):  # type: ignore[no-untyped-def]
            attributes = _attributes(self, _CONV_ATTRIBUTES)
            y = convolution(x, w, attributes, lambda cols, weights, g: cols @ weights)
            if b is not None:
                y = y + b.reshape(1, -1, *([1] * (y.ndim - 2)))
            return (y.astype(x.dtype),)

    return [MatMulInteger, ConvInteger, Conv]


def emulate(
    model_path: Path, inputs: Mapping[str, np.ndarray], isa: str = "avx2"
) -> list[np.ndarray]:
    """Run a model in numpy with the integer arithmetic of ``isa`` (see ``ISA_CLASSES``)."""
    from onnx.reference import ReferenceEvaluator

    saturating = saturates(isa)
    if saturating is None:
        raise ValueError(f"no known integer arithmetic for ISA {isa!r}; choose from {ARITHMETIC}")
    model = onnx.load(str(model_path))
    evaluator = ReferenceEvaluator(model, new_ops=_reference_ops(saturating))
    return list(evaluator.run(None, dict(inputs)))
