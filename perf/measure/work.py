"""The work of one call: multiply-accumulates of a graph's matrix products and convolutions.

Counted from the graph at the call's actual shapes: the values each counted node reads and
writes are added as outputs of a copy of the model, which runs once on the call's inputs with
graph optimizations off (so that the nodes are the file's own). That gives exact shapes for any
graph onnxruntime can run, including the fused contrib ops of an optimized file, where static
shape inference stops at the first op it does not know.

Why count ourselves rather than with ``onnx-tool``: the suite needs only the few ops that carry
nearly all the arithmetic of these models (matrix products and convolutions, float and integer),
split float / integer, on graphs with contrib ops; shapes from one real run are exact, and a
dozen lines per op family are easier to check than a dependency. Ops that do heavy arithmetic
but are not counted (``Attention``, recurrent ops) are listed, so a count is never silently low.

A multiply-accumulate is 2 operations (FLOP for float, OP for integer), the usual convention.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

# op type -> (index of the input whose last axis is K, index of the weight for convolutions)
MATMUL_LIKE = {
    "MatMul": 0, "FusedMatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0,
    "DynamicQuantizeMatMul": 0, "MatMulIntegerToFloat": 0, "Gemm": 0, "QGemm": 0,
}  # fmt: skip
CONV_LIKE = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3, "NhwcConv": 1}
INTEGER_OPS = {
    "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",
    "ConvInteger", "QLinearConv",
}  # fmt: skip
HEAVY_UNCOUNTED = {
    "Attention", "MultiHeadAttention", "GroupQueryAttention", "LSTM", "GRU", "RNN",
    "ConvTranspose", "Einsum", "QAttention",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Work:
    float_flop: float
    integer_op: float
    uncounted: tuple[str, ...] = ()  # heavy op types present but not counted

    @property
    def gflop(self) -> float:
        return (self.float_flop + self.integer_op) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "gflop_per_call": self.gflop,
            "float_gflop": self.float_flop / 1e9,
            "integer_gop": self.integer_op / 1e9,
            "uncounted_ops": list(self.uncounted),
        }


def count_work(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], run: Callable[..., list[Any]]
) -> Work:
    """MACs x 2 of ``model``'s counted nodes on ``feeds``; ``run(model_bytes, names, feeds)``
    runs a copy of the model and returns the named values (see ``run_unoptimized``)."""
    graph = model.graph
    counted = [n for n in graph.node if n.op_type in MATMUL_LIKE or n.op_type in CONV_LIKE]
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    shapes |= _static_shapes([*graph.value_info, *graph.output])
    shapes |= {name: tuple(value.shape) for name, value in feeds.items()}
    wanted = sorted({name for n in counted for name in _operands(n) if name not in shapes})
    if wanted:
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted)
        values = run(probe.SerializeToString(), wanted, dict(feeds))
        shapes |= {name: tuple(np.shape(v)) for name, v in zip(wanted, values, strict=True)}
    float_flop = integer_op = 0.0
    for node in counted:
        flop = 2.0 * _macs(node, shapes)
        if node.op_type in INTEGER_OPS:
            integer_op += flop
        else:
            float_flop += flop
    heavy = sorted({n.op_type for n in graph.node} & HEAVY_UNCOUNTED)
    return Work(float_flop, integer_op, tuple(heavy))


def run_unoptimized(model_bytes: bytes, names: list[str], feeds: dict[str, np.ndarray]) -> list:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(names, feeds)


def count_work_of_file(path: Path, feeds: Mapping[str, np.ndarray]) -> Work:
    """The work of one call of the ONNX file at ``path`` (external data loaded beside it)."""
    return count_work(onnx.load(str(path)), feeds, run_unoptimized)


def _static_shapes(values: list[onnx.ValueInfoProto]) -> dict[str, tuple[int, ...]]:
    """Shapes the file declares with every dim a number (no run needed for those)."""
    shapes = {}
    for value in values:
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes


def _operands(node: onnx.NodeProto) -> list[str]:
    """The values whose shapes the count needs: the K-carrying input (or the conv weight) and
    the first output."""
    index = MATMUL_LIKE.get(node.op_type, CONV_LIKE.get(node.op_type, 0))
    return [node.input[index], node.output[0]]


def _macs(node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> float:
    out = shapes[node.output[0]]
    if node.op_type in CONV_LIKE:
        weight = shapes[node.input[CONV_LIKE[node.op_type]]]
        return float(np.prod(out, dtype=float) * np.prod(weight[1:], dtype=float))
    a = shapes[node.input[0]]
    trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
    k = a[-2] if trans_a else a[-1]
    return float(np.prod(out, dtype=float) * k)
