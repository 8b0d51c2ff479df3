"""Variant transforms: an fp32 ONNX model -> an optimized, quantized or float16 one.

Every transform reads ``parent`` (a model.onnx with its external data beside it) and writes
``out_dir/model.onnx`` plus, for large models, ``out_dir/model.onnx.data``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from export.conv_as_matmul import conv_to_matmul
from export.layout import MODEL_FILE, save_with_external_data
from export.recipes import QUANTIZATION

DATA_FILE = MODEL_FILE + ".data"


def ort_optimize(parent: Path, out_dir: Path) -> dict[str, Any]:
    """Offline ORT graph optimization at EXTENDED level.

    ORT_ENABLE_ALL adds layout transforms (NCHWc) specific to the building CPU's ISA, so an
    ENABLE_ALL artifact is not portable; EXTENDED fusions are, and ENABLE_ALL is still applied
    online when the benchmark session is created.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out_dir / MODEL_FILE)
    # Without this the optimized model points back at its parent's .data file.
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", DATA_FILE
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    ort.InferenceSession(str(parent), options, providers=["CPUExecutionProvider"])
    return {"graph_optimization_level": "ORT_ENABLE_EXTENDED", "optimized_for": "CPU"}


def _preprocess(parent: Path, target: Path) -> str:
    """quant_pre_process, falling back to skipping symbolic shape inference where it crashes.

    Symbolic shape inference fails on wav2vec2-base's dynamo graph ("object of type 'NoneType'
    has no len()"); ONNX shape inference and ORT's basic optimizations still run without it.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    common = {
        "save_as_external_data": True,
        "all_tensors_to_one_file": True,
        "external_data_location": target.name + ".data",
    }
    try:
        # The dynamo exporter names the frame axis with a floor-division expression that
        # symbolic shape inference cannot unify without auto_merge.
        # On failure the inferencer dumps sym_shape_infer_temp.onnx (+ data) into the cwd.
        with contextlib.chdir(target.parent):
            quant_pre_process(str(parent), str(target), auto_merge=True, **common)
        return "quant_pre_process(auto_merge=True)"
    except Exception as error:  # the shape inferencer raises bare Exception and TypeError
        quant_pre_process(str(parent), str(target), skip_symbolic_shape=True, **common)
        return (
            "quant_pre_process(skip_symbolic_shape=True): symbolic shape inference failed "
            f"({type(error).__name__}: {str(error)[:200]})"
        )


def _quantize(parent: Path, out_dir: Path, variant: str) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = QUANTIZATION[variant]
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        preprocessed = Path(scratch) / "preprocessed.onnx"
        preprocess = _preprocess(parent, preprocessed)
        quantize_dynamic(
            str(preprocessed),
            str(out_dir / MODEL_FILE),
            op_types_to_quantize=options["op_types_to_quantize"],
            weight_type=QuantType[options["weight_type"]],
            reduce_range=options["reduce_range"],
            per_channel=options["per_channel"],
            use_external_data_format=True,
        )
    _normalise_external_data(out_dir)
    return {
        "quantization": "dynamic",
        **options,
        "op_types_to_quantize": options["op_types_to_quantize"]
        or "quantize_dynamic defaults (Conv included)",
        "preprocess": preprocess,
    }


def quantize_int8(parent: Path, out_dir: Path) -> dict[str, Any]:
    return _quantize(parent, out_dir, "int8")


def quantize_int8_conv(parent: Path, out_dir: Path) -> dict[str, Any]:
    return _quantize(parent, out_dir, "int8-conv")


def quantize_int8_full(parent: Path, out_dir: Path) -> dict[str, Any]:
    """The conv front end as MatMul (export/conv_as_matmul.py), then dynamic INT8 of every
    MatMul/Gemm with the portable recipe."""
    model = onnx.load(str(parent))
    rewrite = conv_to_matmul(model)
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        rewritten = Path(scratch) / MODEL_FILE
        save_with_external_data(model, rewritten)
        del model
        return {**rewrite, **_quantize(rewritten, out_dir, "int8-full")}


def convert_fp16(parent: Path, out_dir: Path) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(parent))
    # float32 inputs and outputs: callers feed the same audio to every variant.
    converted = OnnxModel(
        convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    )
    converted.topological_sort()  # the input casts are appended after their consumers
    save_with_external_data(converted.model, out_dir / MODEL_FILE)
    return {"float16": "onnxruntime.transformers.float16", "keep_io_types": True}


def _normalise_external_data(out_dir: Path) -> None:
    """Rewrite whatever external-data layout a tool chose as model.onnx + model.onnx.data."""
    target = out_dir / MODEL_FILE
    model = onnx.load(str(target))
    for stray in out_dir.iterdir():
        if stray.is_file() and stray.name != MODEL_FILE:
            stray.unlink()
    save_with_external_data(model, target)


TRANSFORMS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "ort-opt": ort_optimize,
    "int8": quantize_int8,
    "int8-conv": quantize_int8_conv,
    "int8-full": quantize_int8_full,
    "fp16": convert_fp16,
}
