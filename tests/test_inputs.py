from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.inputs import (
    InputSpec,
    make_inputs,
    parse_assignments,
    read_input_specs,
    resolve_shape,
)

OPSET = 17
IR_VERSION = 10  # within what every supported onnxruntime accepts


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _axes(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _mixed_model() -> onnx.ModelProto:
    """out[batch] = sum(audio) + lengths + count(mask) + sum(gain): every input is used."""
    inputs = [
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"]),
        helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 4]),
        helper.make_tensor_value_info("gain", TensorProto.FLOAT16, ["batch", "frames"]),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["audio", "axis1"], ["audio_sum"], keepdims=0),
        helper.make_node("Cast", ["lengths"], ["lengths_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f", "axis1"], ["mask_sum"], keepdims=0),
        helper.make_node("Cast", ["gain"], ["gain_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["gain_f", "axis1"], ["gain_sum"], keepdims=0),
        helper.make_node("Sum", ["audio_sum", "lengths_f", "mask_sum", "gain_sum"], ["out"]),
    ]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch"])
    graph = helper.make_graph(nodes, "mixed", inputs, [output], initializer=[_axes("axis1", [1])])
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )


def _weighted_model(weight_count: int = 4096) -> onnx.ModelProto:
    """audio @ W with W an initializer that is also listed as a graph input (old IR style)."""
    weight = numpy_helper.from_array(np.ones((weight_count, 2), dtype=np.float32), "W")
    inputs = [
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", weight_count]),
        helper.make_tensor_value_info("W", TensorProto.FLOAT, [weight_count, 2]),
    ]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 2])
    node = helper.make_node("MatMul", ["audio", "W"], ["out"])
    graph = helper.make_graph([node], "weighted", inputs, [output], initializer=[weight])
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )


@pytest.fixture
def mixed_path(tmp_path: Path) -> Path:
    return _save(_mixed_model(), tmp_path / "mixed.onnx")


def test_reads_dtypes_and_symbolic_dims(mixed_path: Path) -> None:
    assert read_input_specs(mixed_path) == [
        InputSpec("audio", "float32", ("batch", "samples")),
        InputSpec("lengths", "int64", ("batch",)),
        InputSpec("mask", "bool", ("batch", 4)),
        InputSpec("gain", "float16", ("batch", "frames")),
    ]


def test_make_inputs_shapes_dtypes_and_ranges(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    arrays = make_inputs(specs, {"batch": 2, "samples": 8000, "frames": 5})

    assert {name: (a.shape, a.dtype.name) for name, a in arrays.items()} == {
        "audio": ((2, 8000), "float32"),
        "lengths": ((2,), "int64"),
        "mask": ((2, 4), "bool"),
        "gain": ((2, 5), "float16"),
    }
    assert np.abs(arrays["audio"]).max() <= 1.0
    assert arrays["audio"].std() > 0.1
    assert 0 <= arrays["lengths"].min() <= arrays["lengths"].max() <= 10


def test_generated_inputs_run_in_onnxruntime(mixed_path: Path) -> None:
    dims = {"batch": 3, "samples": 1600, "frames": 7}
    arrays = make_inputs(read_input_specs(mixed_path), dims)
    session = ort.InferenceSession(str(mixed_path), providers=["CPUExecutionProvider"])

    (out,) = session.run(None, arrays)

    expected = (
        arrays["audio"].sum(axis=1)
        + arrays["lengths"]
        + arrays["mask"].sum(axis=1)
        + arrays["gain"].astype(np.float32).sum(axis=1)
    )
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_deterministic_per_seed(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    dims = {"batch": 1, "samples": 100, "frames": 3}
    first, again = make_inputs(specs, dims, seed=1), make_inputs(specs, dims, seed=1)
    other = make_inputs(specs, dims, seed=2)

    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["audio"], other["audio"])


def test_fixing_one_input_keeps_the_others_random_data(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    dims = {"batch": 1, "samples": 100, "frames": 3}
    plain = make_inputs(specs, dims)
    fixed = make_inputs(specs, dims, fixed_values={"lengths": 100})

    np.testing.assert_array_equal(plain["audio"], fixed["audio"])


def test_missing_dim_names_input_dim_and_option(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    with pytest.raises(ValueError, match=r"'gain'.*'frames'.*--perf-dim frames=VALUE"):
        make_inputs(specs, {"batch": 1, "samples": 100})


def test_unnamed_dim_is_set_per_axis() -> None:
    spec = InputSpec("feats", "float32", ("batch", None))
    with pytest.raises(ValueError, match=r"'feats'.*axis 1.*--perf-dim 'feats\[1\]=VALUE'"):
        resolve_shape(spec, {"batch": 1})
    assert resolve_shape(spec, {"batch": 1, "feats[1]": 80}) == (1, 80)


def test_bad_dim_value_is_rejected() -> None:
    spec = InputSpec("audio", "float32", ("batch", 16000))
    with pytest.raises(ValueError, match="non-negative int"):
        resolve_shape(spec, {"batch": "1"})  # type: ignore[dict-item]


def test_audio_seconds_sizes_the_sample_axis(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    arrays = make_inputs(specs, {"batch": 1, "frames": 2}, audio_seconds=1.5)
    assert arrays["audio"].shape == (1, 24_000)

    explicit = make_inputs(specs, {"batch": 1, "frames": 2, "samples": 10}, audio_seconds=1.5)
    assert explicit["audio"].shape == (1, 10)


def test_audio_seconds_only_applies_to_audio_like_inputs() -> None:
    spec = InputSpec("gain", "float32", ("batch", "frames"))
    with pytest.raises(ValueError, match="'frames'"):
        make_inputs([spec], {"batch": 1}, audio_seconds=1.0)


def test_fixed_values_scalar_and_list(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    dims = {"batch": 2, "samples": 100, "frames": 3}
    arrays = make_inputs(specs, dims, fixed_values={"lengths": [100, 50], "gain": 0.5})

    assert arrays["lengths"].tolist() == [100, 50]
    assert arrays["lengths"].dtype == np.int64
    assert arrays["gain"].shape == (2, 3)
    assert arrays["gain"].dtype == np.float16
    assert np.all(arrays["gain"] == 0.5)


def test_full_rank_fixed_value_sizes_unset_dims(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    arrays = make_inputs(
        specs, {"batch": 1, "samples": 10}, fixed_values={"gain": [[1.0, 2.0, 3.0]]}
    )
    assert arrays["gain"].shape == (1, 3)


def test_fixed_value_of_wrong_shape_is_rejected(mixed_path: Path) -> None:
    specs = read_input_specs(mixed_path)
    dims = {"batch": 2, "samples": 100, "frames": 3}
    with pytest.raises(ValueError, match=r"'lengths'.*\(3,\).*\(2,\)"):
        make_inputs(specs, dims, fixed_values={"lengths": [1, 2, 3]})


def test_fixed_value_for_unknown_input_is_rejected(mixed_path: Path) -> None:
    with pytest.raises(ValueError, match="'treshold'"):
        make_inputs(read_input_specs(mixed_path), {}, fixed_values={"treshold": 0.5})


def test_string_input_is_a_clear_error(tmp_path: Path) -> None:
    text = helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])
    out = helper.make_tensor_value_info("out", TensorProto.STRING, ["batch"])
    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["out"])], "s", [text], [out])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    path = _save(model, tmp_path / "strings.onnx")

    with pytest.raises(ValueError, match=r"'text'.*string inputs are not supported"):
        read_input_specs(path)


def test_external_data_is_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "weighted.onnx"
    onnx.save_model(
        _weighted_model(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weighted.onnx.data",
        size_threshold=0,
    )
    data = tmp_path / "weighted.onnx.data"
    assert data.stat().st_size >= 4096 * 2 * 4
    data.unlink()  # reading the signature must not need the weights

    assert read_input_specs(path) == [InputSpec("audio", "float32", ("batch", 4096))]


def test_parse_assignments() -> None:
    assert parse_assignments(["batch=1", " samples = 48000 ", "a=b=c"], "--perf-dim") == {
        "batch": "1",
        "samples": "48000",
        "a": "b=c",
    }
    for bad in ["batch", "=1", "batch="]:
        with pytest.raises(ValueError, match=f"--perf-dim.*{bad!r}"):
            parse_assignments([bad], "--perf-dim")


def test_every_dim_without_a_size_is_named_in_one_error() -> None:
    specs = [
        InputSpec("audio", "float32", ("batch", "samples")),
        InputSpec("mask", "bool", ("batch", None, "frames")),
    ]

    with pytest.raises(ValueError) as error:
        make_inputs(specs, {"batch": 1})

    message = str(error.value)
    assert message.startswith("3 input dims have no size (audio[1], mask[1], mask[2]); set them")
    assert "--perf-dim samples=SIZE --perf-dim 'mask[1]=SIZE' --perf-dim frames=SIZE" in message


def test_an_unnamed_dynamic_leading_axis_is_the_batch(tmp_path: Path) -> None:
    from perf.measure.cases import PerfCase, case_inputs

    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [None, "samples"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, "samples"])]
    graph = helper.make_graph([helper.make_node("Relu", ["audio"], ["y"])], "g", inputs, outputs)
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]),
                 tmp_path / "m.onnx")  # fmt: skip

    arrays = case_inputs(path, PerfCase(str(path), "cpu", 0.5, batch=3, model_file=path), {})

    assert arrays["audio"].shape == (3, 8000)
