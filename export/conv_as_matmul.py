"""1-D convolutions rewritten as MatMul, so that dynamic INT8 reaches the conv front end
(the ``int8-full`` recipe).

wav2vec2's seven-layer conv feature extractor is about a third of a 3 s call's work (14.7 of
43.9 GFLOP), and the INT8 recipes leave it float (``int8``) or make it slower (``int8-conv``:
onnxruntime's ConvInteger on CPU is slower than its float Conv). onnxruntime's MatMulInteger
kernels are fast. A Conv with one group, no padding and no dilation is a strided unfold and a
MatMul::

    X [N, C, L] --Transpose--> [N, L, C] --Slice(rows from k, step S) for k < K-->
    K x [N, L', C] --Concat(axis 2)--> [N, L', K*C] --MatMul W'[K*C, O] (+ bias)-->
    [N, L', O] --Transpose--> Y [N, O, L']

with ``W'[k*C + c, o] = W[o, c, k]`` and each slice ending ``K-1-k`` elements before the end,
so it holds exactly ``L' = (L - K) // S + 1`` columns at any input length. The MatMul's weight
is a constant, so quantize_dynamic makes it a MatMulInteger with per-channel scales like every
other MatMul of the model. Convs over one input channel (the first layer, on raw audio: a tiny
share of the work) stay float, as do grouped or padded ones (wav2vec2's positional conv).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

INT64_MAX = np.iinfo(np.int64).max


def rewritable(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto], min_in: int) -> bool:
    """A 1-D, one-group, unpadded, undilated Conv with a constant weight of ``min_in`` input
    channels or more (and a constant bias, if any)."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return False
    weight = weights.get(node.input[1])
    if weight is None or len(weight.dims) != 3 or weight.dims[1] < min_in:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in weights:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return (
        attrs.get("group", 1) == 1
        and not any(attrs.get("pads", [0]))
        and all(d == 1 for d in attrs.get("dilations", [1]))
        and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def conv_to_matmul(model: onnx.ModelProto, min_in_channels: int = 2) -> dict[str, Any]:
    """Rewrite every ``rewritable`` Conv of ``model``'s main graph in place; returns what was
    done (for the manifest)."""
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    rewritten: list[str] = []
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if not rewritable(node, weights, min_in_channels):
            nodes.append(node)
            continue
        nodes += _as_matmul(node, weights, graph)
        rewritten.append(node.name or node.output[0])
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:  # the original conv weights, now held transposed
        graph.initializer.remove(tensor)
    return {"conv_as_matmul": rewritten, "min_in_channels": min_in_channels}


def _as_matmul(
    node: onnx.NodeProto, weights: dict[str, onnx.TensorProto], graph: onnx.GraphProto
) -> list[onnx.NodeProto]:
    weight = numpy_helper.to_array(weights[node.input[1]])
    out_channels, in_channels, kernel = weight.shape
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    stride = int(attrs.get("strides", [1])[0])
    prefix = f"{node.name or node.output[0]}/as_matmul"

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, f"{prefix}/{name}"))
        return f"{prefix}/{name}"

    # Time-major first: the taps are then strided rows of C contiguous floats (cheap copies),
    # not a strided gather along the innermost axis, and the Transposes of consecutive
    # rewritten convs meet around their elementwise activations, where onnxruntime cancels them
    axes, steps = constant("axes", np.array([1])), constant("steps", np.array([stride]))
    rows_in = f"{prefix}/time_major"
    new = [helper.make_node("Transpose", [node.input[0]], [rows_in], perm=[0, 2, 1],
                            name=f"{prefix}/Transpose_in")]  # fmt: skip
    slices = []
    for k in range(kernel):
        after = kernel - 1 - k  # elements the last window leaves after this tap
        start = constant(f"start{k}", np.array([k]))
        end = constant(f"end{k}", np.array([-after if after else INT64_MAX]))
        slices.append(f"{prefix}/tap{k}")
        new.append(helper.make_node("Slice", [rows_in, start, end, axes, steps],
                                    [slices[-1]], name=f"{prefix}/Slice{k}"))  # fmt: skip
    unfolded = weight.transpose(2, 1, 0).reshape(kernel * in_channels, out_channels)
    matmul_weight = constant("weight", np.ascontiguousarray(unfolded))
    new += [
        helper.make_node("Concat", slices, [f"{prefix}/rows"], axis=2, name=f"{prefix}/Concat"),
        helper.make_node("MatMul", [f"{prefix}/rows", matmul_weight], [f"{prefix}/product"],
                         name=f"{prefix}/MatMul"),
    ]  # fmt: skip
    product = f"{prefix}/product"
    if len(node.input) > 2 and node.input[2]:
        new.append(helper.make_node("Add", [product, node.input[2]], [f"{prefix}/biased"],
                                    name=f"{prefix}/Add"))  # fmt: skip
        product = f"{prefix}/biased"
    new.append(helper.make_node("Transpose", [product], [node.output[0]], perm=[0, 2, 1],
                                name=f"{prefix}/Transpose_out"))  # fmt: skip
    return new
