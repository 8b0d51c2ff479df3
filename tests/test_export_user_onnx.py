"""A user's own ONNX file as the source: its variants are checked against the file itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from export.cache import ModelCache
from export.layout import load_reference
from export.parity import compare_outputs, run_cpu
from export.recipes import (
    FILE_PACKAGES,
    PARITY_OPTIONS,
    Recipe,
    RecipeError,
    file_source,
    package_versions,
)
from export.transforms import DATA_FILE
from tests.export_fixtures import ProgressLog, entry_dir

pytest_plugins = ["tests.export_fixtures"]

pytest.importorskip("export.inputs")  # _copy_user_model needs it (moving from perf/inputs.py)


@pytest.fixture
def user_model(tiny_cache_dir: Path, tmp_path: Path) -> Path:
    """The tiny fp32 export under another name, its weights beside it (as the graph says)."""
    fp32 = entry_dir(tiny_cache_dir, "tiny/fp32")
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copyfile(fp32 / "model.onnx", folder / "diarizer.onnx")
    shutil.copyfile(fp32 / DATA_FILE, folder / DATA_FILE)
    return folder / "diarizer.onnx"


@pytest.mark.parametrize("variant", ["ort-opt", "int8", "fp16"])
def test_user_onnx_variants_build_and_pass_parity_against_the_file(
    user_model: Path, tmp_path: Path, progress: ProgressLog, variant: str
) -> None:
    source = file_source(user_model)
    cache = ModelCache(tmp_path / "models", progress=progress)

    artifact = cache.get(Recipe(source, variant))

    assert artifact.name == f"file-diarizer/{variant}"
    assert artifact.manifest["parity"]["passed"] is True
    assert artifact.manifest["parent"]["name"] == "file-diarizer/source"
    assert artifact.manifest["recipe"]["versions"] == package_versions(FILE_PACKAGES)
    root = cache.lookup(Recipe(source, "source"))
    assert root is not None
    assert root.manifest["reference"] == "onnxruntime CPU on the source file"
    inputs, reference = load_reference(root.directory)
    assert inputs["audio"].shape == (1, round(PARITY_OPTIONS["seconds"] * 16_000))
    np.testing.assert_array_equal(reference, run_cpu(user_model, inputs))
    assert compare_outputs(variant, run_cpu(artifact.model_path, inputs), reference).passed


def test_user_onnx_source_entry_is_a_renamed_copy_with_its_data(
    user_model: Path, tmp_path: Path, progress: ProgressLog
) -> None:
    source = file_source(user_model)
    root = ModelCache(tmp_path / "models", progress=progress).get(Recipe(source, "source"))
    assert {"model.onnx", DATA_FILE, "reference.npz"} <= set(root.manifest["files"])
    assert (root.directory / DATA_FILE).read_bytes() == (user_model.parent / DATA_FILE).read_bytes()
    assert root.manifest["parity"]["passed"] is True


def test_user_onnx_key_follows_the_file_content_not_its_folder(
    user_model: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(user_model.parent, elsewhere)
    moved = Recipe(file_source(elsewhere / user_model.name), "int8")
    key = moved.key()
    assert key == Recipe(file_source(user_model), "int8").key()

    data = elsewhere / DATA_FILE
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    assert moved.key() != key


def test_file_source_rejects_missing_and_non_onnx_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="does not exist"):
        file_source(tmp_path / "absent.onnx")
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(RecipeError, match=r"not an \.onnx file"):
        file_source(weights)
