from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import psutil
import pytest
from onnx import TensorProto, helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from perf.measure.profile import CallProfile, NodeRun, node_providers
from perf.measure.sessions import (
    ModelLoadError,
    ProviderSkip,
    SessionSettings,
    build_session_options,
    node_placement,
    open_session,
    unsupported_op_reason,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
REAL_SESSION = ort.InferenceSession


def save_model(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    opset: int = 17,
) -> Path:
    model = helper.make_model(
        helper.make_graph(nodes, path.stem, inputs, outputs),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    model.ir_version = 8  # loadable by every onnxruntime this suite supports
    onnx.save(model, path)
    return path


@pytest.fixture
def relu_sigmoid(tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["hidden"], name="relu"),
        helper.make_node("Sigmoid", ["hidden"], ["y"], name="sigmoid"),
    ]
    return save_model(tmp_path / "relu_sigmoid.onnx", nodes, [x], [y])


@pytest.fixture
def add_bfloat16(tmp_path: Path) -> Path:
    """Add(14) on bfloat16: valid ONNX, but ORT 1.32's CPU provider has no kernel for it."""
    a, b, y = (helper.make_tensor_value_info(n, TensorProto.BFLOAT16, [2, 2]) for n in "aby")
    node = helper.make_node("Add", ["a", "b"], ["y"], name="add_bf16")
    return save_model(tmp_path / "add_bf16.onnx", [node], [a, b], [y])


@pytest.fixture
def qlinear_matmul_s8u8(tmp_path: Path) -> Path:
    """QLinearMatMul with int8 A and uint8 B: the CPU provider only pairs matching signedness."""
    types = [TensorProto.INT8, TensorProto.FLOAT, TensorProto.INT8]
    types += [TensorProto.UINT8, TensorProto.FLOAT, TensorProto.UINT8]
    types += [TensorProto.FLOAT, TensorProto.INT8]
    names = ["a", "a_scale", "a_zero", "b", "b_scale", "b_zero", "y_scale", "y_zero"]
    inputs = [
        helper.make_tensor_value_info(n, t, [2, 2] if n in ("a", "b") else [])
        for n, t in zip(names, types, strict=True)
    ]
    y = helper.make_tensor_value_info("y", TensorProto.INT8, [2, 2])
    node = helper.make_node("QLinearMatMul", names, ["y"], name="qmatmul")
    return save_model(tmp_path / "qmatmul.onnx", [node], inputs, [y], opset=13)


def pretend_built_with(monkeypatch: pytest.MonkeyPatch, *extra: str) -> None:
    """Our availability check sees `extra` providers; ORT's own C++ list is unchanged."""
    available = [*extra, CPU]
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)


def spy_sessions(
    monkeypatch: pytest.MonkeyPatch, create: Callable[..., Any] | None = None
) -> list[Any]:
    """Record the providers each InferenceSession is created with; CPU-only real sessions."""
    calls: list[Any] = []

    def fake(model: str, options: ort.SessionOptions, providers: list[Any]) -> Any:
        calls.append(providers)
        if create is not None:
            return create(model, options, providers)
        return REAL_SESSION(model, options, providers=[CPU])

    monkeypatch.setattr(ort, "InferenceSession", fake)
    return calls


# --- SessionSettings / build_session_options ------------------------------------------------


def test_settings_resolve_short_provider_names() -> None:
    assert SessionSettings("cuda").provider == CUDA


@pytest.mark.parametrize(
    "kwargs",
    [{"graph_optimization": "max"}, {"intra_op_threads": 0}, {"inter_op_threads": 0}],
)
def test_settings_reject_invalid_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SessionSettings("cpu", **kwargs)


def test_settings_to_dict_reports_effective_threads() -> None:
    settings = SessionSettings("cpu", intra_op_threads=3, provider_options={"k": "v"})
    assert settings.to_dict() == {
        "provider": CPU,
        "intra_op_threads": 3,
        "inter_op_threads": 1,
        "spinning": True,
        "graph_optimization": "all",
        "provider_options": {"k": "v"},
        "effective_intra_op_threads": 3,
    }


def test_session_options_apply_threads_spinning_and_optimization() -> None:
    settings = SessionSettings(
        "cpu", intra_op_threads=3, inter_op_threads=2, spinning=False, graph_optimization="basic"
    )
    options = build_session_options(settings)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert options.enable_mem_pattern


def test_session_options_default_to_physical_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8 if logical else 4)
    options = build_session_options(SessionSettings("cpu"))
    assert options.intra_op_num_threads == 4
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "1"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_session_options_for_directml_disable_memory_pattern() -> None:
    options = build_session_options(SessionSettings("dml", intra_op_threads=1))
    assert not options.enable_mem_pattern
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


# --- open_session ---------------------------------------------------------------------------


def test_cpu_session_runs_on_cpu(relu_sigmoid: Path) -> None:
    session = open_session(relu_sigmoid, SessionSettings("cpu", intra_op_threads=1))
    assert session.get_providers() == [CPU]
    (y,) = session.run(None, {"x": np.array([[-1, 0, 1, 2]], np.float32)})
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-np.array([[0, 0, 1, 2]]))), rtol=1e-6)


def test_provider_missing_from_build_is_skipped(
    relu_sigmoid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_built_with(monkeypatch, "AzureExecutionProvider")
    with pytest.raises(ProviderSkip) as info:
        open_session(relu_sigmoid, SessionSettings("cuda"))
    assert info.value.reason == (
        "CUDAExecutionProvider not in this onnxruntime build "
        "(available: AzureExecutionProvider, CPUExecutionProvider)"
    )


def test_cuda_that_falls_back_to_cpu_is_skipped(
    relu_sigmoid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The build lists CUDA but the session only gets CPU: what missing cuDNN libraries look like.
    pretend_built_with(monkeypatch, CUDA)
    spy_sessions(monkeypatch)
    with pytest.raises(ProviderSkip) as info:
        open_session(relu_sigmoid, SessionSettings("cuda", intra_op_threads=1))
    assert info.value.reason.startswith(
        "CUDAExecutionProvider failed to initialize and onnxruntime fell back to "
        "CPUExecutionProvider (session providers: CPUExecutionProvider); check CUDA/cuDNN libraries"
    )


def test_tensorrt_falls_back_through_cuda_then_cpu(
    relu_sigmoid: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pretend_built_with(monkeypatch, TRT, CUDA)
    calls = spy_sessions(monkeypatch)
    settings = SessionSettings("tensorrt", provider_options={"trt_fp16_enable": "False"})
    with pytest.raises(ProviderSkip) as info:
        open_session(relu_sigmoid, settings)
    assert calls == [[(TRT, {"trt_fp16_enable": "False"}), (CUDA, {}), (CPU, {})]]
    assert "TensorrtExecutionProvider failed to initialize" in info.value.reason
    assert "check TensorRT libraries" in info.value.reason


def test_cpu_is_listed_last_and_registered_provider_accepted(
    relu_sigmoid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_built_with(monkeypatch, CUDA)

    class GpuSession:
        def __init__(self, *args: Any) -> None:
            pass

        def get_providers(self) -> list[str]:
            return [CUDA, CPU]

    calls = spy_sessions(monkeypatch, create=GpuSession)
    session = open_session(relu_sigmoid, SessionSettings("cuda", provider_options={"a": "b"}))
    assert isinstance(session, GpuSession)
    assert calls == [[(CUDA, {"a": "b"}), (CPU, {})]]


def test_real_missing_kernel_is_skipped(add_bfloat16: Path) -> None:
    with pytest.raises(ProviderSkip) as info:
        open_session(add_bfloat16, SessionSettings("cpu", intra_op_threads=1))
    assert info.value.reason == (
        "ops unsupported on CPUExecutionProvider: Add; onnxruntime: [ONNXRuntimeError] : 9 : "
        "NOT_IMPLEMENTED : Could not find an implementation for Add(14) node with name 'add_bf16'"
    )
    assert isinstance(info.value.__cause__, ort_state.NotImplemented)
    assert not isinstance(info.value.__cause__, RuntimeError)


def test_real_missing_int8_kernel_is_skipped(qlinear_matmul_s8u8: Path) -> None:
    with pytest.raises(ProviderSkip) as info:
        open_session(qlinear_matmul_s8u8, SessionSettings("cpu", intra_op_threads=1))
    assert info.value.reason.startswith(
        "INT8 ops unsupported on CPUExecutionProvider: QLinearMatMul; onnxruntime: "
    )
    assert info.value.reason.endswith(
        "Could not find an implementation for QLinearMatMul(10) node with name 'qmatmul'"
    )


def test_int8_conv_without_cuda_kernel_is_skipped(
    relu_sigmoid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = (
        "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
        "ConvInteger(10) node with name '/encoder/conv1/Conv_quant'"
    )

    def refuse(*args: Any) -> Any:
        raise ort_state.NotImplemented(message)

    pretend_built_with(monkeypatch, CUDA)
    spy_sessions(monkeypatch, create=refuse)
    with pytest.raises(ProviderSkip) as info:
        open_session(relu_sigmoid, SessionSettings("cuda"))
    assert info.value.reason == (
        f"INT8 ops unsupported on CUDAExecutionProvider: ConvInteger; onnxruntime: {message}"
    )


@pytest.mark.parametrize(
    ("op", "kind"),
    [
        ("ConvInteger", "INT8 ops"),
        ("MatMulInteger", "INT8 ops"),
        ("DynamicQuantizeLinear", "INT8 ops"),
        ("QLinearConv", "INT8 ops"),
        ("QLinearAdd", "INT8 ops"),
        ("Conv", "ops"),
        ("LayerNormalization", "ops"),
    ],
)
def test_unsupported_op_reason_wording(op: str, kind: str) -> None:
    message = (
        f"[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
        f"{op}(13) node with name 'n'\nmore detail"
    )
    first_line = message.splitlines()[0]
    reason = unsupported_op_reason("DmlExecutionProvider", message)
    assert reason == f"{kind} unsupported on DmlExecutionProvider: {op}; onnxruntime: {first_line}"


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        open_session(missing, SessionSettings("cpu"))


def test_corrupt_model_is_an_error_not_a_skip(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError) as info:
        open_session(corrupt, SessionSettings("cpu", intra_op_threads=1))
    assert str(corrupt) in str(info.value)
    assert "INVALID_PROTOBUF" in str(info.value)


def test_invalid_graph_is_an_error_not_a_skip(tmp_path: Path) -> None:
    a, b = (helper.make_tensor_value_info(n, TensorProto.INT8, [2, 2]) for n in "ab")
    y = helper.make_tensor_value_info("y", TensorProto.INT8, [2, 2])
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="int8_matmul")
    model = save_model(tmp_path / "invalid.onnx", [node], [a, b], [y])
    with pytest.raises(ModelLoadError, match="INVALID_GRAPH") as info:
        open_session(model, SessionSettings("cpu", intra_op_threads=1))
    assert str(model) in str(info.value)


# --- node_placement -------------------------------------------------------------------------


@pytest.mark.parametrize("optimization", ["disabled", "all"])
def test_node_placement_on_cpu(
    relu_sigmoid: Path, optimization: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = SessionSettings("cpu", intra_op_threads=1, graph_optimization=optimization)
    inputs = {"x": np.ones((3, 4), np.float32)}
    assert node_placement(relu_sigmoid, settings, inputs) == {CPU: 2}
    assert not list(tmp_path.glob("*.json"))


def test_node_placement_counts_each_node_once() -> None:
    def node(name: str, provider: str) -> NodeRun:
        return NodeRun(name, "Op", "Op []", 1.0, 1, provider)

    calls = [
        CallProfile(10.0, (node("conv", CUDA), node("conv", CUDA), node("shape", CPU),
                           node("gather", CPU), node("matmul", CUDA), node("memcpy", CUDA))),
        CallProfile(10.0, (node("conv", CUDA), node("unplaced", ""))),
    ]  # fmt: skip
    assert node_providers(calls) == {CUDA: 3, CPU: 2}
