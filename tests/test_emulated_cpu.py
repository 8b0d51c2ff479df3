"""onnxruntime's AVX2 kernels under QEMU: the numpy emulator of their saturating arithmetic is
checked against them, and ``python -m export parity --cpu avx2`` judges artifacts with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import emulated_cpu
from export.__main__ import main
from export.emulated_cpu import emulation_problem, kernel_arithmetic, run_model
from export.integer_numerics import (
    ARITHMETIC,
    EXACT,
    SATURATING,
    emulate,
    saturation_bound,
    this_machine_isa,
)

pytest_plugins = ["tests.export_fixtures"]

needs_qemu = pytest.mark.skipif(
    emulation_problem("avx2") is not None, reason=f"{emulation_problem('avx2')}"
)


# Each output of the model below, and whether onnxruntime's AVX2 kernels saturate it: only a
# uint8 left operand times an int8 right one does. ConvInteger's weights are the left operand.
OUTPUTS = {
    "matmul_packed": True,  # uint8 input x constant int8 weights (prepacked)
    "matmul_unpacked": True,  # uint8 x int8, both inputs
    "conv_u8_input": False,  # uint8 input, int8 weights: the weights are the left operand
    "conv_s8_input": True,  # int8 input, uint8 weights
}


def _integer_model(path: Path, rng: np.random.Generator) -> Path:
    """MatMulInteger and ConvInteger with full-range weights, odd K and zero points: shapes
    that miss every kernel tile."""
    m, k, n = 37, 67, 19
    constants = {
        "w": rng.integers(-128, 128, (k, n), dtype=np.int8),
        "cw_s8": rng.integers(-128, 128, (6, 5, 3), dtype=np.int8),
        "cw_u8": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        "a_zero": np.array(7, dtype=np.uint8),
    }
    conv = {"strides": [2], "pads": [1, 1]}
    nodes = [
        helper.make_node("MatMulInteger", ["a", "w", "a_zero"], ["matmul_packed"]),
        helper.make_node("MatMulInteger", ["a", "b"], ["matmul_unpacked"]),
        helper.make_node("ConvInteger", ["x_u8", "cw_s8", "a_zero"], ["conv_u8_input"], **conv),
        helper.make_node("ConvInteger", ["x_s8", "cw_u8"], ["conv_s8_input"], **conv),
    ]
    graph = helper.make_graph(
        nodes,
        "integer",
        [
            helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k]),
            helper.make_tensor_value_info("b", TensorProto.INT8, [k, n]),
            helper.make_tensor_value_info("x_u8", TensorProto.UINT8, [2, 5, 41]),
            helper.make_tensor_value_info("x_s8", TensorProto.INT8, [2, 5, 41]),
        ],
        [helper.make_tensor_value_info(name, TensorProto.INT32, None) for name in OUTPUTS],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "a": rng.integers(0, 256, (37, 67), dtype=np.uint8),
        "b": rng.integers(-128, 128, (67, 19), dtype=np.int8),
        "x_u8": rng.integers(0, 256, (2, 5, 41), dtype=np.uint8),
        "x_s8": rng.integers(-128, 128, (2, 5, 41), dtype=np.int8),
    }


@needs_qemu
def test_the_avx2_emulator_matches_onnxruntimes_own_avx2_kernels(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    model = _integer_model(tmp_path / "integer.onnx", rng)
    inputs = _inputs(rng)
    kernels, arithmetic = run_model("avx2", model, inputs, timeout=600)
    assert arithmetic == SATURATING
    emulated = emulate(model, inputs, "avx2")
    exact = emulate(model, inputs, "avx512-vnni")
    for (name, saturates), real, ours, exact_one in zip(
        OUTPUTS.items(), kernels, emulated, exact, strict=True
    ):
        assert np.array_equal(real, exact_one) != saturates, f"{name}: saturates={saturates}"
        np.testing.assert_array_equal(real, ours, err_msg=f"{name}: emulator != AVX2 kernels")


def test_the_bound_knows_which_operand_saturates(tmp_path: Path) -> None:
    bound = saturation_bound(_integer_model(tmp_path / "integer.onnx", np.random.default_rng(5)))
    verdicts = {op.node: op.exact_everywhere for op in bound.ops}
    assert verdicts == {
        "matmul_packed": False,  # constant full-range int8 weights: pairs past 128
        "matmul_unpacked": None,  # int8 weights that are an input: no static bound
        "conv_u8_input": True,  # int8 weights on the left: never saturates
        "conv_s8_input": None,  # the int8 side is the input: no static bound
    }


@needs_qemu
def test_parity_on_avx2_runs_an_artifact_on_avx2_kernels(
    tiny_cache_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "parity.json"
    command = ["parity", "--cpu", "avx2", "tiny/int8-conv", "--json", str(report)]
    code = main(["--cache", str(tiny_cache_copy), *command])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ok  tiny/int8-conv on avx2 (saturating u8 x s8 kernels)" in out
    data = json.loads(report.read_text())
    assert data["cpu"] == "avx2" and data["emulator"].startswith("qemu-x86_64 ")
    (row,) = data["results"]
    assert row["kernel_arithmetic"] == SATURATING and row["parity"]["passed"] is True


def test_the_kernels_here_compute_as_this_machines_isa_class_says() -> None:
    expected = ARITHMETIC.get(this_machine_isa())
    if expected is None:
        pytest.skip(f"no known u8 x s8 arithmetic for ISA class {this_machine_isa()!r}")
    assert kernel_arithmetic() == expected


def test_parity_fails_when_the_emulated_output_is_wrong(
    tiny_cache_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def off_by_half(isa: str, model: Path, inputs: dict[str, np.ndarray]) -> tuple[list, str]:
        from export.parity import run_cpu

        return [run_cpu(model, inputs) + 0.5], SATURATING

    monkeypatch.setattr("export.__main__.emulation_problem", lambda isa: None)
    monkeypatch.setattr("export.__main__.run_model", off_by_half)
    code = main(["--cache", str(tiny_cache_copy), "parity", "--cpu", "avx2", "tiny/int8"])
    out = capsys.readouterr().out
    assert code == 1
    assert "BAD tiny/int8 on avx2" in out and "1 failed parity (tiny/int8)" in out


def test_an_emulator_that_did_not_change_the_kernels_is_an_error(
    tiny_cache_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def native(isa: str, model: Path, inputs: dict[str, np.ndarray]) -> tuple[list, str]:
        from export.parity import run_cpu

        return [run_cpu(model, inputs)], EXACT

    monkeypatch.setattr("export.__main__.emulation_problem", lambda isa: None)
    monkeypatch.setattr("export.__main__.run_model", native)
    code = main(["--cache", str(tiny_cache_copy), "parity", "--cpu", "avx2", "tiny/int8"])
    assert code == 2
    assert "the kernels under --cpu avx2 were exact" in capsys.readouterr().err


def test_without_qemu_the_command_says_what_to_install(
    tiny_cache_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(emulated_cpu, "qemu_version", lambda: None)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    code = main(["--cache", str(tiny_cache_copy), "parity", "--cpu", "avx2", "tiny/int8"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--cpu avx2: qemu-x86_64 is not installed" in err and "apt-get install qemu-user" in err


@pytest.mark.parametrize(
    ("version", "machine", "isa", "problem"),
    [
        ((7, 1), "x86_64", "avx2", "qemu-x86_64 7.1 cannot emulate AVX2 (needs 7.2 or newer)"),
        ((8, 2), "aarch64", "avx2", "only on an x86-64 host"),
        ((8, 2), "x86_64", "avx512", "no emulated CPU for ISA 'avx512'"),
    ],
)
def test_emulation_problems_are_named(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, int], machine: str, isa: str, problem: str
) -> None:
    monkeypatch.setattr(emulated_cpu, "qemu_version", lambda: version)
    assert problem in (emulation_problem(isa, machine) or "")
    monkeypatch.setattr(emulated_cpu, "qemu_version", lambda: (7, 2))
    assert emulation_problem("avx2", "x86_64") is None
