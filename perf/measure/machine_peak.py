"""This machine's peak for the work the models do: a GEMM of a wav2vec2 layer's shape.

The efficiency of a benchmark is the time its work would take at this peak over the time it
took (perf.measure.work counts the work): "P50 265 ms, 61% of peak" says whether to look for a
faster recipe or a faster machine. The peak is what onnxruntime itself reaches on this CPU with
the benchmark's threads, on one matrix product of the shape that dominates the models (149
frames, 3 s of audio, through a 768 x 3072 feed-forward layer): float32 ``MatMul`` and 8-bit
``MatMulInteger`` (uint8 x int8, the dynamic quantization recipes' kernel). It is measured
once per machine fingerprint and thread count and kept in the model cache
(``.machine-peak/``): the median of ``REPEATS`` calls after ``WARMUP`` untimed ones.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from perf.files import atomic_write_bytes
from perf.measure.sessions import SessionSettings, build_session_options

M, K, N = 149, 768, 3072
WARMUP, REPEATS = 5, 40
PEAK_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class MachinePeak:
    float_gflops: float  # GFLOP/s of a float32 MatMul
    integer_gops: float  # GOP/s of a uint8 x int8 MatMulInteger
    threads: int
    how: str

    def seconds_for(self, float_flop: float, integer_op: float) -> float:
        """How long the work would take at this peak."""
        return float_flop / (self.float_gflops * 1e9) + integer_op / (self.integer_gops * 1e9)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "format": PEAK_FORMAT}


def _matmul_model(integer: bool) -> bytes:
    rng = np.random.default_rng(0)
    if integer:
        b = rng.integers(-64, 64, size=(K, N), dtype=np.int8)
        a_type, out_type, op = TensorProto.UINT8, TensorProto.INT32, "MatMulInteger"
    else:
        b = rng.standard_normal((K, N)).astype(np.float32)
        a_type, out_type, op = TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        "peak",
        [helper.make_tensor_value_info("a", a_type, [M, K])],
        [helper.make_tensor_value_info("y", out_type, [M, N])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _rate(integer: bool, settings: SessionSettings) -> float:
    """Operations per second of the GEMM, median of REPEATS calls."""
    options = build_session_options(settings)
    session = ort.InferenceSession(
        _matmul_model(integer), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(1)
    a = (
        rng.integers(0, 255, size=(M, K), dtype=np.uint8)
        if integer
        else rng.standard_normal((M, K)).astype(np.float32)
    )
    for _ in range(WARMUP):
        session.run(None, {"a": a})
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        session.run(None, {"a": a})
        times.append(time.perf_counter() - began)
    return 2.0 * M * K * N / float(np.median(times))


def measure_peak(settings: SessionSettings) -> MachinePeak:
    cpu = dataclasses.replace(settings, provider="CPUExecutionProvider", provider_options=())
    threads = cpu.effective_intra_op_threads()
    return MachinePeak(
        float_gflops=_rate(False, cpu) / 1e9,
        integer_gops=_rate(True, cpu) / 1e9,
        threads=threads,
        how=(
            f"onnxruntime {ort.__version__} CPU, {threads} intra-op thread(s): median of "
            f"{REPEATS} calls of a [{M}x{K}] x [{K}x{N}] MatMul (float32) and MatMulInteger "
            "(uint8 x int8)"
        ),
    )


def cached_peak(directory: Path, machine_id: str, settings: SessionSettings) -> MachinePeak:
    """The peak measured for this machine and thread count, measuring it the first time."""
    threads = settings.effective_intra_op_threads()
    path = directory / f"{machine_id}-t{threads}.json"
    try:
        data = json.loads(path.read_text())
        if data.pop("format") == PEAK_FORMAT:
            return MachinePeak(**data)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable: measure again
    peak = measure_peak(settings)
    atomic_write_bytes(path, json.dumps(peak.to_dict(), indent=1).encode())
    return peak
