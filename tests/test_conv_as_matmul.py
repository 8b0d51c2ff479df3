"""The int8-full recipe's rewrite: a 1-D Conv as strided slices and a MatMul computes the same
numbers at every input length; convs it cannot express stay as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.conv_as_matmul import conv_to_matmul
from tests.export_fixtures import entry_dir

pytest_plugins = ["tests.export_fixtures"]


def _conv_model(
    in_channels: int, kernel: int, stride: int, bias: bool = True, group: int = 1,
    pads: tuple[int, int] = (0, 0), seed: int = 0,
) -> onnx.ModelProto:  # fmt: skip
    rng = np.random.default_rng(seed)
    out_channels = 6
    weight = rng.standard_normal((out_channels, in_channels // group, kernel)).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32),
                                             "b"))  # fmt: skip
        inputs.append("b")
    conv = helper.make_node("Conv", inputs, ["conv"], name="conv", strides=[stride],
                            kernel_shape=[kernel], group=group, pads=list(pads))  # fmt: skip
    gelu = helper.make_node("Relu", ["conv"], ["y"], name="after")
    graph = helper.make_graph(
        [conv, gelu], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", in_channels, "l"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6, "m"])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(("kernel", "stride", "bias"), [(3, 2, True), (2, 2, False), (10, 5, True),
                                                        (1, 1, True), (4, 1, False)])  # fmt: skip
@pytest.mark.parametrize("length", [40, 41, 57, 200])
def test_the_rewrite_computes_the_conv_at_every_length(
    kernel: int, stride: int, bias: bool, length: int
) -> None:
    model = _conv_model(in_channels=5, kernel=kernel, stride=stride, bias=bias)
    x = np.random.default_rng(length).standard_normal((2, 5, length)).astype(np.float32)
    expected = _run(model, x)

    done = conv_to_matmul(model)

    assert done["conv_as_matmul"] == ["conv"]
    assert "Conv" not in {n.op_type for n in model.graph.node}
    assert {t.name for t in model.graph.initializer}.isdisjoint({"w"})  # the old weight is gone
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "model",
    [
        _conv_model(in_channels=1, kernel=10, stride=5),  # raw audio: one input channel
        _conv_model(in_channels=4, kernel=3, stride=1, group=2),  # grouped
        _conv_model(in_channels=4, kernel=3, stride=1, pads=(1, 1)),  # padded
    ],
    ids=["one-input-channel", "grouped", "padded"],
)
def test_convs_it_cannot_express_stay_float_convs(model: onnx.ModelProto) -> None:
    before = model.SerializeToString()
    assert conv_to_matmul(model)["conv_as_matmul"] == []
    assert model.SerializeToString() == before


def test_tiny_int8_full_quantizes_the_conv_front_end(tiny_cache_dir: Path) -> None:
    def ops(variant: str) -> list[str]:
        model = onnx.load(str(entry_dir(tiny_cache_dir, f"tiny/{variant}") / "model.onnx"),
                          load_external_data=False)  # fmt: skip
        return [n.op_type for n in model.graph.node]

    full, int8 = ops("int8-full"), ops("int8")
    # Six of the seven front-end convs became MatMulIntegers; the first (raw audio) and the
    # grouped positional conv stay float
    assert full.count("Conv") == int8.count("Conv") - 6 == 2
    assert full.count("MatMulInteger") == int8.count("MatMulInteger") + 6
    assert "ConvInteger" not in full
