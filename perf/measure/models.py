"""The ONNX file a case measures: its ``--perf-model`` file or its variant's cached artifact."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from export.cache import ModelCache
from export.recipes import file_sha256, onnx_file_set, parse_variant_name
from perf.measure.cases import PerfCase


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    path: Path
    size_bytes: int
    key: str | None
    variant: str = "file"  # the recipe's variant (fp32, int8, ...), or "file" for --perf-model
    reference_dir: Path | None = None  # the build's reference outputs (cached artifacts)
    parent: Path | None = None  # a --perf-model's float parent (--perf-model-parent)


class Models:
    """Resolves each variant once per session; building a missing artifact goes to the cache."""

    def __init__(
        self, cache: ModelCache, weights: dict[str, Path], parents: dict[Path, Path] | None = None
    ) -> None:
        self.cache = cache
        self.weights = weights
        self.parents = parents or {}
        self._models: dict[str, ResolvedModel] = {}

    def resolve(self, case: PerfCase) -> ResolvedModel:
        if case.variant not in self._models:
            self._models[case.variant] = self._resolve(case)
        return self._models[case.variant]

    def _resolve(self, case: PerfCase) -> ResolvedModel:
        if case.model_file is not None:
            path = case.model_file
            if not path.is_file():
                raise FileNotFoundError(f"--perf-model {path} does not exist")
            files = onnx_file_set(path)
            size = sum(f.stat().st_size for f in files if f.is_file())
            parent = self.parents.get(path.resolve())
            return ResolvedModel(path, size, file_sha256(path), parent=parent)
        recipe = parse_variant_name(case.variant, self.weights)
        try:
            artifact = self.cache.get(recipe)
        except ModuleNotFoundError as error:
            raise RuntimeError(
                f"building {case.variant} needs {error.name}, which is not installed; "
                "install the export extra (pip install -e '.[cpu,export]') or prebuild the "
                "models on a machine that has it (python -m export build)"
            ) from error
        return ResolvedModel(
            artifact.model_path,
            artifact.size_bytes,
            artifact.key,
            variant=recipe.variant,
            reference_dir=self.cache.reference_dir(recipe),
        )
