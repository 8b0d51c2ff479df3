"""INT8 numerics per x86 ISA: the saturation arithmetic, the weight bound, and the emulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from export.integer_numerics import (
    SAFE_PAIR_MAGNITUDE,
    convolution,
    emulate,
    integer_matmul,
    isa_class,
    saturated_product,
    saturates,
    saturation_bound,
    this_machine_isa,
    worst_pair_magnitude,
)


def brute_force_avx2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """VPMADDUBSW + VPMADDWD, one output at a time: int16-saturated pairs along K, int32 sum."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), np.int64)
    for i in range(m):
        for j in range(n):
            total = 0
            for p in range(0, k, 2):
                pair = int(a[i, p]) * int(b[p, j])
                if p + 1 < k:
                    pair += int(a[i, p + 1]) * int(b[p + 1, j])
                total += min(max(pair, -32768), 32767)
            out[i, j] = total
    return out


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["avx2", "fma"], "avx2"),
        (["avx2", "avx512f", "avx512bw"], "avx512"),
        (["avx2", "avx512bw", "avx512_vnni"], "avx512-vnni"),
        (["avx2", "avx512bw", "avx512vnni"], "avx512-vnni"),  # py-cpuinfo's spelling
        (["avx2", "avx_vnni"], "avx-vnni"),
        (["avx512_vnni", "amx_tile", "amx_int8"], "amx"),
        (["sse4_2"], "unknown"),
    ],
)
def test_isa_class_follows_the_kernel_mlas_picks(flags: list[str], expected: str) -> None:
    assert isa_class(flags) == expected


def test_which_isas_saturate() -> None:
    assert saturates("avx2") is True
    assert saturates("avx512") is True  # AVX-512 without VNNI uses VPMADDUBSW too
    assert saturates("avx512-vnni") is False
    assert saturates("amx") is False
    assert saturates("unknown") is None
    assert isa_class(["asimd"], machine="aarch64") == "non-x86"


def test_a_saturating_pair_is_clipped_to_int16() -> None:
    a = np.array([[255, 255]], np.uint8)
    b = np.array([[127], [127]], np.int8)  # 2 * 255 * 127 = 64770 > 32767
    assert saturated_product(a, b)[0, 0] == 32767
    assert integer_matmul(a, b, 0, 0, saturating=False)[0, 0] == 64770


@settings(max_examples=60, deadline=None)
@given(
    a=hnp.arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 9))),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 5),
)
def test_saturated_product_matches_the_instruction_sequence(
    a: np.ndarray, seed: int, n: int
) -> None:
    b = np.random.default_rng(seed).integers(-128, 128, (a.shape[1], n)).astype(np.int8)
    assert np.array_equal(saturated_product(a, b), brute_force_avx2(a, b))


@settings(max_examples=60, deadline=None)
@given(
    a=hnp.arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 12))),
    seed=st.integers(0, 2**31 - 1),
)
def test_weights_within_the_bound_never_saturate(a: np.ndarray, seed: int) -> None:
    """The arithmetic behind the certificate: |b0| + |b1| <= 128 keeps every pair in int16."""
    half = SAFE_PAIR_MAGNITUDE // 2  # reduce_range's 7-bit weights are in [-64, 64]
    b = np.random.default_rng(seed).integers(-half, half + 1, (a.shape[1], 3)).astype(np.int8)
    assert np.array_equal(saturated_product(a, b), a.astype(np.int64) @ b.astype(np.int64))


def test_zero_points_are_applied_exactly() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 6)).astype(np.uint8)
    b = rng.integers(-60, 61, (6, 4)).astype(np.int8)
    b_zero = np.array([1, -2, 0, 3], np.int8)
    got = integer_matmul(a, b, np.uint8(7), b_zero, saturating=True)
    want = (a.astype(np.int64) - 7) @ (b.astype(np.int64) - b_zero.astype(np.int64))
    assert np.array_equal(got, want)


def test_worst_pair_is_the_two_largest_magnitudes_per_output_column() -> None:
    b = np.array([[100, 1], [-90, 2], [5, -64]], np.int8)  # [K=3, N=2]
    assert worst_pair_magnitude(b, "MatMulInteger") == 190
    conv = np.array([[[60, -64, 3]], [[1, 2, 3]]], np.int8)  # [M=2, C=1, k=3]
    assert worst_pair_magnitude(conv, "ConvInteger") == 124


@pytest.mark.parametrize(
    ("stride", "pad", "group", "dilation"), [(1, 0, 1, 1), (2, 1, 1, 1), (3, 2, 2, 2)]
)
def test_im2col_convolution_matches_onnx_reference(
    stride: int, pad: int, group: int, dilation: int
) -> None:
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 17)).astype(np.float32)
    w = rng.standard_normal((6, 4 // group, 3)).astype(np.float32)
    attributes = {"strides": [stride], "pads": [pad, pad], "group": group, "dilations": [dilation]}
    got = convolution(x, w, attributes, lambda cols, weights, g: cols @ weights)
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "w")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    want = ReferenceEvaluator(helper.make_model(graph)).run(None, {"x": x, "w": w})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _matmul_integer_model(path: Path, weights: np.ndarray) -> Path:
    graph = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "scale", "zero"]),
            helper.make_node("MatMulInteger", ["xq", "w", "zero"], ["acc"]),
            helper.make_node("Cast", ["acc"], ["y"], to=TensorProto.FLOAT),
        ],
        "integer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", weights.shape[1]])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_bound_proves_small_weights_and_flags_large_ones(tmp_path: Path) -> None:
    small = np.full((8, 4), 64, np.int8)
    large = np.full((8, 4), 100, np.int8)
    proven = saturation_bound(_matmul_integer_model(tmp_path / "small.onnx", small))
    flagged = saturation_bound(_matmul_integer_model(tmp_path / "large.onnx", large))
    assert proven.exact_everywhere is True and proven.worst_pair == 128
    assert flagged.exact_everywhere is False and flagged.worst_pair == 200
    assert "can saturate on AVX2" in flagged.describe()
    assert flagged.ops[0].activation_type == "uint8"  # from DynamicQuantizeLinear


def test_emulated_isas_differ_only_where_the_bound_fails(tmp_path: Path) -> None:
    import onnxruntime as ort

    x = {"x": np.linspace(0, 1, 16, dtype=np.float32).reshape(2, 8)}  # quantizes to 0..255
    large = _matmul_integer_model(tmp_path / "large.onnx", np.full((8, 4), 100, np.int8))
    exact = emulate(large, x, "avx512-vnni")[0]
    avx2 = emulate(large, x, "avx2")[0]
    native = ort.InferenceSession(str(large), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert not np.array_equal(exact, avx2)
    if not saturates(this_machine_isa()):
        np.testing.assert_array_equal(native, exact)  # this machine computes exactly
    small = _matmul_integer_model(tmp_path / "small.onnx", np.full((8, 4), 64, np.int8))
    assert np.array_equal(emulate(small, x, "avx2")[0], emulate(small, x, "avx512-vnni")[0])
