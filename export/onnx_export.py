"""torch model -> ONNX file, with the fallbacks the field needs.

``torch.onnx.export(dynamo=True)``'s onnxscript optimizer crashes on some graphs (split/chunk over
a dynamic axis: SplitToSequence constant folding). Each attempt below is tried in order; the one
that produced the artifact, and why the earlier ones failed, go into the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from export.architectures import build_model, example_audio
from export.layout import MODEL_FILE, save_reference, save_with_external_data
from export.recipes import EXPORT_OPTIONS, PARITY_OPTIONS, Source


class ExportError(RuntimeError):
    """Every export path failed, or the result is not what was asked for."""


@dataclasses.dataclass(frozen=True)
class ExportAttempt:
    path: str  # "dynamo" | "dynamo-unoptimized" | "legacy"
    error: str | None  # None for the attempt that succeeded

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _dynamo_export(model: Any, audio: Any, target: Path, optimize: bool) -> None:
    import torch
    from torch.export import Dim

    names = EXPORT_OPTIONS
    torch.onnx.export(
        model,
        (audio,),
        str(target),
        dynamo=True,
        optimize=optimize,
        external_data=True,
        input_names=[names["input_name"]],
        output_names=[names["output_name"]],
        dynamic_shapes={"audio": {0: Dim("batch"), 1: Dim("samples")}},
    )


def _legacy_export(model: Any, audio: Any, target: Path) -> None:
    import torch

    names = EXPORT_OPTIONS
    # The legacy tracer cannot trace nn.TransformerEncoder's fused fast path.
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        torch.onnx.export(
            model,
            (audio,),
            str(target),
            dynamo=False,
            opset_version=names["legacy_opset"],
            input_names=[names["input_name"]],
            output_names=[names["output_name"]],
            dynamic_axes={
                names["input_name"]: {0: "batch", 1: "samples"},
                names["output_name"]: {0: "batch", 1: "frames"},
            },
        )
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
    _move_weights_to_external_data(target)


def _move_weights_to_external_data(target: Path) -> None:
    """Give legacy exports the same file layout as dynamo ones."""
    save_with_external_data(onnx.load(str(target)), target)


EXPORT_PATHS: list[tuple[str, Callable[[Any, Any, Path], None]]] = [
    ("dynamo", lambda m, a, t: _dynamo_export(m, a, t, optimize=True)),
    ("dynamo-unoptimized", lambda m, a, t: _dynamo_export(m, a, t, optimize=False)),
    ("legacy", _legacy_export),
]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


def export_with_fallbacks(
    model: Any, audio: Any, out_dir: Path, progress: Callable[[str], None]
) -> list[ExportAttempt]:
    """Try each export path in order; return the attempts (the last one succeeded)."""
    attempts: list[ExportAttempt] = []
    target = out_dir / MODEL_FILE
    for path_name, export in EXPORT_PATHS:
        for leftover in out_dir.glob(MODEL_FILE + "*"):
            leftover.unlink()
        try:
            with _quiet_exporter():
                export(model, audio, target)
            check_dynamic_axes(target)
            check_other_shape(model, target)
        except Exception as error:  # exporters raise many unrelated types
            attempts.append(ExportAttempt(path_name, _first_line(error)))
            progress(f"export path {path_name!r} failed ({_first_line(error)}); trying the next")
            continue
        attempts.append(ExportAttempt(path_name, None))
        return attempts
    summary = "; ".join(f"{a.path}: {a.error}" for a in attempts)
    raise ExportError(f"every export path failed: {summary}")


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """The dynamo exporter prints its own progress lines and many warnings; keep ours readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def check_dynamic_axes(model_path: Path) -> None:
    """The input's batch and sample axes must be symbolic, not specialised to the example."""
    model = onnx.load(str(model_path), load_external_data=False)
    audio = model.graph.input[0]
    dims = audio.type.tensor_type.shape.dim
    fixed = [f"axis {i} = {d.dim_value}" for i, d in enumerate(dims) if not d.dim_param]
    if fixed:
        raise ExportError(
            f"{model_path}: input {audio.name!r} has fixed dims ({', '.join(fixed)}); "
            "the batch and sample axes must be dynamic"
        )


# A shape unlike the export example's (batch 2, 3 s) and the parity reference's.
OTHER_SHAPE = {"batch": 1, "seconds": 1.0}


def check_other_shape(model: Any, model_path: Path) -> None:
    """Symbolic input dims are not enough: run at another batch and length and compare with torch.

    The legacy tracer bakes nn.MultiheadAttention's sequence length into Reshape constants
    while the input keeps its symbolic dims; such a model only runs at the example's length.
    """
    import torch

    from export.parity import MAX_ABS_ERROR, run_cpu

    batch, seconds = OTHER_SHAPE["batch"], OTHER_SHAPE["seconds"]
    audio = example_audio(batch, seconds, seed=7)
    with torch.no_grad():
        expected = model(audio).numpy()
    try:
        output = run_cpu(model_path, {EXPORT_OPTIONS["input_name"]: audio.numpy()})
    except Exception as error:  # onnxruntime raises its own Fail/InvalidArgument types
        raise ExportError(
            f"{model_path} does not run at batch {batch}, {seconds:g} s of audio "
            f"(sizes specialised to the export example?): {_first_line(error)}"
        ) from error
    if output.shape != expected.shape:
        raise ExportError(
            f"{model_path} outputs {output.shape} at batch {batch}, {seconds:g} s of audio; "
            f"torch outputs {expected.shape}"
        )
    max_error = float(np.max(np.abs(output - expected)))
    if max_error > MAX_ABS_ERROR:
        raise ExportError(
            f"{model_path} differs from torch by {max_error:.3g} at batch {batch}, {seconds:g} s "
            f"of audio (max {MAX_ABS_ERROR:g})"
        )


def export_source(source: Source, out_dir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """Export ``source`` to ``out_dir/model.onnx`` and save the torch reference for parity checks.

    Returns the manifest fields this step owns (exporter path, attempts, parameter count).
    """
    import torch

    assert source.architecture is not None
    progress(f"building {source.name} in PyTorch")
    model = build_model(source.architecture, source.weights)
    audio = example_audio(EXPORT_OPTIONS["example_batch"], EXPORT_OPTIONS["example_seconds"])
    progress(f"exporting {source.name} to ONNX")
    with torch.no_grad():
        attempts = export_with_fallbacks(model, audio, out_dir, progress)
        reference_audio = example_audio(
            PARITY_OPTIONS["batch"], PARITY_OPTIONS["seconds"], seed=PARITY_OPTIONS["seed"]
        )
        reference_output = model(reference_audio).numpy()
    reference_inputs = {EXPORT_OPTIONS["input_name"]: reference_audio.numpy()}
    save_reference(out_dir, reference_inputs, reference_output)
    return {
        "exporter": {
            "path": attempts[-1].path,
            "attempts": [a.to_dict() for a in attempts],
        },
        "parameters": sum(p.numel() for p in model.parameters()),
        "reference": "torch eager",
    }
