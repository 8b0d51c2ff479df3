"""When an exporter crashes, the next path builds the artifact and the manifest says why."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from export import onnx_export
from export.architectures import DiarizationModel, example_audio
from export.cache import ModelCache
from export.onnx_export import ExportError
from export.recipes import parse_variant_name
from tests.export_fixtures import ProgressLog, entry_dir, input_dims, torch_output

pytest_plugins = ["tests.export_fixtures"]

REAL_PATHS = dict(onnx_export.EXPORT_PATHS)
OPTIMIZER_CRASH = (
    "PassError: An error occurred when running the "
    "'<onnx_ir.passes.PassManager object>' pass after the following passes: "
    "['<FoldConstantsPass>'] ... SplitToSequence"
)


def _crash(message: str) -> Callable[[Any, Any, Path], None]:
    def export(model: Any, audio: Any, target: Path) -> None:
        target.write_bytes(b"half-written")  # a crash can leave a partial file behind
        raise RuntimeError(message)

    return export


def _build_fp32(cache_root: Path, progress: ProgressLog) -> Any:
    return ModelCache(cache_root, progress=progress).get(parse_variant_name("tiny/fp32"))


def _matches_torch(model_path: Path, model: DiarizationModel) -> None:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    for batch, seconds in [(1, 1.0), (3, 2.0)]:
        audio = example_audio(batch, seconds, seed=5).numpy()
        (output,) = session.run(None, {"audio": audio})
        np.testing.assert_allclose(output, torch_output(model, audio), atol=1e-4, rtol=0)


def test_optimizer_crash_falls_back_to_the_unoptimized_dynamo_export(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    progress: ProgressLog,
    tiny_torch: DiarizationModel,
) -> None:
    monkeypatch.setattr(
        onnx_export,
        "EXPORT_PATHS",
        [
            ("dynamo", _crash(OPTIMIZER_CRASH)),
            ("dynamo-unoptimized", REAL_PATHS["dynamo-unoptimized"]),
            ("legacy", _crash("legacy must not be reached")),
        ],
    )

    artifact = _build_fp32(tmp_path / "models", progress)

    exporter = artifact.manifest["exporter"]
    assert exporter["path"] == "dynamo-unoptimized"
    first, second = exporter["attempts"]
    assert first["path"] == "dynamo"
    assert first["error"].startswith("RuntimeError: PassError")
    assert "SplitToSequence" in first["error"]
    assert second == {"path": "dynamo-unoptimized", "error": None}
    assert progress.mentions("export path 'dynamo' failed")
    assert artifact.manifest["parity"]["passed"]
    assert all(isinstance(dim, str) for dim in input_dims(artifact.model_path))
    _matches_torch(artifact.model_path, tiny_torch)


def _copy_of(model_dir: Path) -> Callable[[Any, Any, Path], None]:
    """An export path that writes a known-good export (the session's fp32 files)."""

    def export(model: Any, audio: Any, target: Path) -> None:
        for name in ("model.onnx", "model.onnx.data"):
            shutil.copyfile(model_dir / name, target.parent / name)

    return export


def test_both_dynamo_paths_failing_falls_back_to_the_third_path(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    progress: ProgressLog,
    tiny_cache_dir: Path,
    tiny_torch: DiarizationModel,
) -> None:
    good_export = _copy_of(entry_dir(tiny_cache_dir, "tiny/fp32"))
    monkeypatch.setattr(
        onnx_export,
        "EXPORT_PATHS",
        [
            ("dynamo", _crash(OPTIMIZER_CRASH)),
            ("dynamo-unoptimized", _crash("torch.export failed: data-dependent guard")),
            ("legacy", good_export),
        ],
    )

    artifact = _build_fp32(tmp_path / "models", progress)

    exporter = artifact.manifest["exporter"]
    assert exporter["path"] == "legacy"
    assert [a["path"] for a in exporter["attempts"]] == ["dynamo", "dynamo-unoptimized", "legacy"]
    assert "data-dependent guard" in exporter["attempts"][1]["error"]
    assert exporter["attempts"][2]["error"] is None
    assert set(artifact.manifest["files"]) == {"model.onnx", "model.onnx.data", "reference.npz"}
    _matches_torch(artifact.model_path, tiny_torch)


def test_real_legacy_export_is_rejected_for_baking_the_sequence_length(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, progress: ProgressLog
) -> None:
    """torch 2.13's TorchScript exporter turns nn.MultiheadAttention's sequence length into a
    Reshape constant while keeping the input dims symbolic: the model runs only at the example's
    149 frames. The export check must reject it rather than cache a model that crashes at 1 s.
    If a later torch traces MHA dynamically, this test fails: then assert the legacy path builds.
    """
    monkeypatch.setattr(
        onnx_export,
        "EXPORT_PATHS",
        [
            ("dynamo", _crash(OPTIMIZER_CRASH)),
            ("dynamo-unoptimized", _crash("torch.export failed: data-dependent guard")),
            ("legacy", REAL_PATHS["legacy"]),
        ],
    )
    fastpath_before = torch.backends.mha.get_fastpath_enabled()
    root = tmp_path / "models"

    with pytest.raises(ExportError) as error:
        _build_fp32(root, progress)

    assert "legacy: ExportError:" in str(error.value)
    assert "does not run at batch 1, 1 s of audio" in str(error.value)
    assert "Reshape" in str(error.value)
    assert torch.backends.mha.get_fastpath_enabled() == fastpath_before
    assert ModelCache(root, progress=progress).entries() == []


def test_every_path_failing_raises_export_error_and_caches_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, progress: ProgressLog
) -> None:
    paths = [(name, _crash(f"{name} exploded")) for name in REAL_PATHS]
    monkeypatch.setattr(onnx_export, "EXPORT_PATHS", paths)
    root = tmp_path / "models"

    with pytest.raises(ExportError) as error:
        _build_fp32(root, progress)

    message = str(error.value)
    for name in REAL_PATHS:
        assert f"{name}: RuntimeError: {name} exploded" in message
    cache = ModelCache(root, progress=progress)
    assert cache.entries() == []
    assert cache.lookup(parse_variant_name("tiny/fp32")) is None
    assert list((root / ".tmp").iterdir()) == []
    assert progress.mentions("built") == []


def test_an_export_with_fixed_input_dims_is_rejected(tmp_path: Path) -> None:
    """A path that specialises the batch axis counts as failed, so the next one is tried."""
    float32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Identity", ["audio"], ["speaker_activity"])],
        "fixed",
        [helper.make_tensor_value_info("audio", float32, [2, "samples"])],
        [helper.make_tensor_value_info("speaker_activity", float32, [2, "samples"])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ExportError, match="axis 0 = 2"):
        onnx_export.check_dynamic_axes(path)


def test_export_check_accepts_a_dynamic_export(
    tiny_cache_dir: Path, tiny_torch: DiarizationModel
) -> None:
    onnx_export.check_other_shape(tiny_torch, entry_dir(tiny_cache_dir, "tiny/fp32") / "model.onnx")


def test_export_check_rejects_a_model_that_computes_something_else(
    tiny_cache_dir: Path, tiny_torch: DiarizationModel
) -> None:
    fp16 = entry_dir(tiny_cache_dir, "tiny/fp16") / "model.onnx"  # close, but not within 1e-4
    with pytest.raises(ExportError, match="differs from torch"):
        onnx_export.check_other_shape(tiny_torch, fp16)
