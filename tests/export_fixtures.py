"""Shared fixtures and helpers for the export tests (loaded with ``pytest_plugins``).

Exporting ``tiny`` takes seconds, so it is built once per session into its own cache directory;
tests that change a cache work on a copy (``tiny_cache_copy``). Test modules import the helpers
below before pytest registers this module as a plugin, hence PYTEST_DONT_REWRITE (it holds no
asserts to rewrite).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from export.architectures import ARCHITECTURES, DiarizationModel, build_model
from export.cache import ModelCache
from export.recipes import VARIANTS, parse_variant_name

TINY_VARIANTS = tuple(VARIANTS)


class ProgressLog(list[str]):
    """A ``progress`` callable for ModelCache that remembers every message."""

    def __call__(self, message: str) -> None:
        self.append(message)

    def starting_with(self, prefix: str) -> list[str]:
        return [message for message in self if message.startswith(prefix)]

    def mentions(self, text: str) -> list[str]:
        return [message for message in self if text in message]


@pytest.fixture(scope="session")
def tiny_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding every tiny variant. Treat it as read-only; copy it to change it."""
    root = tmp_path_factory.mktemp("tiny-cache") / "models"
    cache = ModelCache(root, progress=ProgressLog())
    for variant in TINY_VARIANTS:
        cache.get(parse_variant_name(f"tiny/{variant}"))
    return root


@pytest.fixture
def tiny_cache_copy(tiny_cache_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny cache (mtimes preserved, so its entries are sound)."""
    copy = tmp_path / "models"
    shutil.copytree(tiny_cache_dir, copy)
    return copy


@pytest.fixture(scope="session")
def tiny_torch() -> DiarizationModel:
    return build_model(ARCHITECTURES["tiny"])


@pytest.fixture
def progress() -> ProgressLog:
    return ProgressLog()


def entry_dir(cache_root: Path, name: str) -> Path:
    """The cached entry directory of ``name`` (``ARCH/VARIANT``) under ``cache_root``."""
    recipe = parse_variant_name(name)
    return ModelCache(cache_root).entry_dir(recipe, recipe.key())


def op_types(model_path: Path) -> set[str]:
    model = onnx.load(str(model_path), load_external_data=False)
    return {node.op_type for node in model.graph.node}


def external_data_locations(model_path: Path) -> set[str]:
    model = onnx.load(str(model_path), load_external_data=False)
    return {
        entry.value
        for tensor in _get_all_tensors(model)
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }


def input_dims(model_path: Path) -> list[str | int]:
    model = onnx.load(str(model_path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def torch_output(model: DiarizationModel, audio: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(audio)).numpy()
