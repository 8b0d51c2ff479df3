"""Read any ONNX model's input signature and build inputs that satisfy it.

The suite's own models take one ``audio`` float32 [batch, samples] input, but ``--perf-model``
accepts any model, so dtypes, symbolic dims and extra inputs (lengths, thresholds) are all
handled here. Only the graph signature is read: weights stay on disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

SAMPLE_RATE_HZ = 16_000
AUDIO_INPUT_HINTS = ("audio", "input_values", "waveform")
DIM_OPTION = "--perf-dim"

Dim = int | str | None

_NUMPY_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.BOOL: "bool",
}


@dataclass(frozen=True)
class InputSpec:
    """One graph input. ``shape`` is None when the model does not declare a rank."""

    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    shape: tuple[Dim, ...] | None

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


def read_input_specs(model_path: str | Path) -> list[InputSpec]:
    """The model's runtime inputs (initializers excluded), without loading external weights."""
    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    initializers |= {s.values.name for s in graph.sparse_initializer}
    return [_input_spec(vi) for vi in graph.input if vi.name not in initializers]


def _input_spec(value_info: onnx.ValueInfoProto) -> InputSpec:
    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ValueError(f"input {value_info.name!r} is a {kind}, only tensor inputs are supported")
    tensor_type = value_info.type.tensor_type
    dtype = _numpy_dtype_name(value_info.name, tensor_type.elem_type)
    if not tensor_type.HasField("shape"):
        return InputSpec(value_info.name, dtype, None)
    return InputSpec(value_info.name, dtype, tuple(_dim(d) for d in tensor_type.shape.dim))


def _numpy_dtype_name(input_name: str, elem_type: int) -> str:
    if elem_type in _NUMPY_DTYPES:
        return _NUMPY_DTYPES[elem_type]
    type_name = onnx.TensorProto.DataType.Name(elem_type)
    if elem_type == onnx.TensorProto.STRING:
        raise ValueError(
            f"input {input_name!r} is a string tensor; string inputs are not supported "
            "(benchmark a model that takes numeric tensors)"
        )
    raise ValueError(f"input {input_name!r} has unsupported element type {type_name}")


def _dim(dim: onnx.TensorShapeProto.Dimension) -> Dim:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    if dim.HasField("dim_param") and dim.dim_param:
        return dim.dim_param
    return None


def axis_key(input_name: str, axis: int) -> str:
    """The ``dim_values`` key that sets one axis of one input, e.g. ``audio[1]``."""
    return f"{input_name}[{axis}]"


def settable_dims(specs: Sequence[InputSpec]) -> set[str]:
    """Every name ``--perf-dim`` can set for these inputs: symbolic dims and ``INPUT[AXIS]``."""
    names = set()
    for spec in specs:
        for axis, dim in enumerate(spec.shape or ()):
            names.add(axis_key(spec.name, axis))
            if isinstance(dim, str):
                names.add(dim)
    return names


def make_inputs(
    specs: Sequence[InputSpec],
    dim_values: Mapping[str, int],
    fixed_values: Mapping[str, object] | None = None,
    seed: int = 0,
    audio_seconds: float | None = None,
) -> dict[str, np.ndarray]:
    """Arrays for every input: given values where ``fixed_values`` has one, else seeded random.

    Symbolic dims come from ``dim_values`` by name ("batch"); any single axis can also be set
    (or overridden) with ``axis_key`` ("audio[1]"), which is the only way to size unnamed dims.
    """
    fixed = dict(fixed_values or {})
    unknown = sorted(set(fixed) - {s.name for s in specs})
    if unknown:
        names = ", ".join(s.name for s in specs)
        raise ValueError(f"fixed values given for unknown inputs {unknown}; model inputs: {names}")
    _check_every_dim_sized([s for s in specs if s.name not in fixed], dim_values, audio_seconds)
    arrays = {}
    for spec in specs:
        if spec.name in fixed:
            arrays[spec.name] = _fixed_array(spec, fixed[spec.name], dim_values, audio_seconds)
        else:
            shape = resolve_shape(spec, dim_values, audio_seconds)
            arrays[spec.name] = random_array(spec.np_dtype, shape, _input_seed(seed, spec.name))
    return arrays


def resolve_shape(
    spec: InputSpec, dim_values: Mapping[str, int], audio_seconds: float | None = None
) -> tuple[int, ...]:
    if spec.shape is None:
        raise ValueError(
            f"input {spec.name!r} declares no shape; give it a value instead of random data"
        )
    resolved = []
    for axis, dim in enumerate(spec.shape):
        size = _dim_size(spec, axis, dim, dim_values, audio_seconds)
        if size is None:
            raise ValueError(_missing_dim_message(spec, axis, dim))
        resolved.append(size)
    return tuple(resolved)


def _dim_size(
    spec: InputSpec,
    axis: int,
    dim: Dim,
    dim_values: Mapping[str, int],
    audio_seconds: float | None,
) -> int | None:
    key = axis_key(spec.name, axis)
    if key in dim_values:
        return _checked_size(key, dim_values[key])
    if isinstance(dim, int):
        return dim
    if isinstance(dim, str) and dim in dim_values:
        return _checked_size(dim, dim_values[dim])
    if audio_seconds is not None and axis == 1 and _looks_like_audio(spec):
        return round(audio_seconds * SAMPLE_RATE_HZ)
    return None


def _checked_size(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{DIM_OPTION} {key}={value!r}: a dim size must be a non-negative int")
    return int(value)


def _looks_like_audio(spec: InputSpec) -> bool:
    is_float = spec.np_dtype.kind == "f"
    is_2d = spec.shape is not None and len(spec.shape) == 2
    return is_float and is_2d and any(hint in spec.name.lower() for hint in AUDIO_INPUT_HINTS)


def _check_every_dim_sized(
    specs: Sequence[InputSpec], dim_values: Mapping[str, int], audio_seconds: float | None
) -> None:
    """One error naming every dim without a size, not one per run."""
    missing: dict[str, str] = {}  # what to write -> where it is
    for spec in specs:
        for axis, dim in enumerate(spec.shape or ()):
            if _dim_size(spec, axis, dim, dim_values, audio_seconds) is None:
                option = (
                    f"{dim}=SIZE" if isinstance(dim, str) else f"'{axis_key(spec.name, axis)}=SIZE'"
                )
                missing.setdefault(f"{DIM_OPTION} {option}", f"{spec.name}[{axis}]")
    if len(missing) > 1:
        where = ", ".join(missing.values())
        raise ValueError(
            f"{len(missing)} input dims have no size ({where}); set them all: " + " ".join(missing)
        )


def _missing_dim_message(spec: InputSpec, axis: int, dim: Dim) -> str:
    if isinstance(dim, str):
        return (
            f"input {spec.name!r} has symbolic dim {dim!r} (axis {axis}) with no size; "
            f"set it with {DIM_OPTION} {dim}=VALUE"
        )
    return (
        f"input {spec.name!r} has an unnamed dim of unknown size (axis {axis}); "
        f"set it with {DIM_OPTION} '{axis_key(spec.name, axis)}=VALUE'"
    )


def _fixed_array(
    spec: InputSpec, value: object, dim_values: Mapping[str, int], audio_seconds: float | None
) -> np.ndarray:
    array = np.asarray(value, dtype=spec.np_dtype)
    if spec.shape is None:
        return array
    shape = []
    for axis, dim in enumerate(spec.shape):
        size = _dim_size(spec, axis, dim, dim_values, audio_seconds)
        if size is None and array.ndim == len(spec.shape):
            size = array.shape[axis]  # a full-rank value sizes the dims nobody named
        if size is None:
            raise ValueError(_missing_dim_message(spec, axis, dim))
        shape.append(size)
    try:
        return np.ascontiguousarray(np.broadcast_to(array, tuple(shape)))
    except ValueError:
        raise ValueError(
            f"value for input {spec.name!r} has shape {array.shape}, "
            f"which does not broadcast to its shape {tuple(shape)}"
        ) from None


def _input_seed(seed: int, name: str) -> list[int]:
    # Per-input streams: fixing one input's value leaves the others' random data unchanged.
    return [seed, zlib.crc32(name.encode())]


def random_array(dtype: np.dtype, shape: tuple[int, ...], seed: int | list[int]) -> np.ndarray:
    """Audio-like floats in [-1, 1], small non-negative ints (valid lengths/ids), random bools."""
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return np.clip(rng.standard_normal(shape) * 0.3, -1.0, 1.0).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 11, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    raise ValueError(f"cannot generate random data of dtype {dtype}")


def parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """``["batch=1", "samples=48000"]`` -> ``{"batch": "1", "samples": "48000"}``."""
    parsed = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"{option} expects NAME=VALUE, got {item!r}")
        parsed[name] = value
    return parsed
