"""Build, cache and verify every model variant the latency suite benchmarks.

from export import ModelCache, parse_variant_name
artifact = ModelCache().get(parse_variant_name("w2v2-base/int8"))
artifact.model_path  # models/w2v2-base/int8-<key>/model.onnx
"""

from __future__ import annotations

from export.cache import Artifact, CacheError, ModelCache, default_cache_dir
from export.recipes import (
    VARIANTS,
    Recipe,
    RecipeError,
    all_variant_names,
    architecture_source,
    file_source,
    parse_variant_name,
)

__all__ = [
    "VARIANTS",
    "Artifact",
    "CacheError",
    "ModelCache",
    "Recipe",
    "RecipeError",
    "all_variant_names",
    "architecture_source",
    "default_cache_dir",
    "file_source",
    "parse_variant_name",
]
