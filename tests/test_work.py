"""Work per call counted from ONNX graphs at real shapes, the machine peak, the efficiency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perf.measure import machine_peak
from perf.measure.cases import PerfCase, case_inputs
from perf.measure.efficiency import EfficiencyMeter, efficiency_text
from perf.measure.sessions import SessionSettings
from perf.measure.work import count_work, count_work_of_file, run_unoptimized
from tests import test_plugin

model_cache = test_plugin.model_cache


def _graph_model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_matmul_and_conv_are_counted_at_the_shapes_of_a_real_run() -> None:
    # audio [1, 1, T] -> Conv(16 filters of 10, stride 5) -> Relu -> Transpose -> MatMul(16x4).
    # The MatMul's input length depends on T: only a run (or shape inference) knows it.
    weight = numpy_helper.from_array(np.ones((16, 1, 10), np.float32), "w")
    proj = numpy_helper.from_array(np.ones((16, 4), np.float32), "p")
    model = _graph_model(
        [
            helper.make_node("Conv", ["audio", "w"], ["c"], strides=[5]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["t", "p"], ["y"]),
        ],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight, proj],
    )
    feeds = {"audio": np.zeros((1, 1, 100), np.float32)}

    work = count_work(model, feeds, run_unoptimized)

    frames = (100 - 10) // 5 + 1  # 19
    conv_macs = 16 * frames * 1 * 10
    matmul_macs = frames * 4 * 16
    assert work.float_flop == 2 * (conv_macs + matmul_macs)
    assert work.integer_op == 0 and work.uncounted == ()


def test_integer_products_are_counted_apart_and_heavy_ops_are_named() -> None:
    b = numpy_helper.from_array(np.ones((8, 4), np.int8), "b")
    model = _graph_model(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [10, 8])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [10, 4])],
        [b],
    )
    work = count_work(model, {"a": np.zeros((10, 8), np.uint8)}, run_unoptimized)
    assert (work.float_flop, work.integer_op) == (0.0, 2.0 * 10 * 8 * 4)

    model.graph.node.append(helper.make_node("LSTM", ["x"], ["z"]))
    work = count_work(model, {"a": np.zeros((10, 8), np.uint8)}, lambda *_: pytest.fail())
    assert work.uncounted == ("LSTM",)  # shapes came from the graph: nothing had to run


def _call_inputs(path: Path) -> dict[str, np.ndarray]:
    return case_inputs(path, PerfCase("tiny/fp32", "cpu", 3.0), {})


def test_quantizing_moves_the_work_into_integer_ops_without_changing_its_amount(
    model_cache: Path,
) -> None:
    fp32 = next(model_cache.glob("tiny/fp32-*/model.onnx"))
    int8 = next(model_cache.glob("tiny/int8-*/model.onnx"))

    float_work = count_work_of_file(fp32, _call_inputs(fp32))
    int8_work = count_work_of_file(int8, _call_inputs(int8))

    assert float_work.integer_op == 0 and float_work.float_flop > 0
    assert int8_work.integer_op > 0
    total = int8_work.float_flop + int8_work.integer_op
    assert total == pytest.approx(float_work.float_flop, rel=0.05)


def test_the_peak_is_measured_once_per_machine_and_thread_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = SessionSettings(provider="cpu", intra_op_threads=1)
    calls: list[int] = []
    real = machine_peak.measure_peak

    def counted(s: SessionSettings) -> machine_peak.MachinePeak:
        calls.append(1)
        return real(s)

    monkeypatch.setattr(machine_peak, "REPEATS", 3)
    monkeypatch.setattr(machine_peak, "measure_peak", counted)

    first = machine_peak.cached_peak(tmp_path, "m1", settings)
    again = machine_peak.cached_peak(tmp_path, "m1", settings)

    assert calls == [1] and again == first
    assert first.float_gflops > 0 and first.integer_gops > 0 and first.threads == 1
    assert "MatMulInteger" in first.how
    assert json.loads((tmp_path / "m1-t1.json").read_text())["format"] == 1
    (tmp_path / "m1-t1.json").write_text("{not json")  # a damaged file is measured again
    machine_peak.cached_peak(tmp_path, "m1", settings)
    assert calls == [1, 1]


def test_efficiency_is_the_time_at_peak_over_the_p50(tmp_path: Path) -> None:
    meter = EfficiencyMeter(tmp_path)
    peak = machine_peak.MachinePeak(100.0, 400.0, 2, "test")
    meter._peaks[SessionSettings(provider="cpu").effective_intra_op_threads()] = peak
    b = numpy_helper.from_array(np.ones((1000, 1000), np.float32), "b")
    model = _graph_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [100, 1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [100, 1000])],
        [b],
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))

    row = meter.of(path, {"a": np.zeros((100, 1000), np.float32)}, SessionSettings("cpu"), 4.0)

    assert row["gflop_per_call"] == pytest.approx(0.2)  # 2 x 100 x 1000 x 1000
    assert row["efficiency"] == pytest.approx((0.2 / 100.0) / 0.004)  # 2 ms at peak / 4 ms
    assert efficiency_text(row) == "0.2 GFLOP, 50% of peak"
    gpu = meter.of(path, {"a": np.zeros((100, 1000), np.float32)}, SessionSettings("cuda"), 4.0)
    assert gpu["efficiency"] is None and efficiency_text(gpu) == "0.2 GFLOP"


def test_a_graph_that_cannot_be_counted_leaves_the_row_without_work(tmp_path: Path) -> None:
    path = tmp_path / "custom.onnx"
    model = _graph_model(
        [helper.make_node("NoSuchOp", ["a"], ["r2"], domain="custom.example"),
         helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "r2"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [],
    )  # fmt: skip
    model.opset_import.append(helper.make_opsetid("custom.example", 1))
    onnx.save(model, str(path))

    row = EfficiencyMeter(tmp_path).of(path, {"a": np.zeros((4, 4), np.float32)},
                                       SessionSettings("cpu"), 1.0)  # fmt: skip

    assert row is None and efficiency_text(row) == "-"
