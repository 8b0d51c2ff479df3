"""What an artifact is made from: a source (an architecture or a user's ONNX file) plus a variant.

A recipe's ``key`` is a content hash of everything that changes the artifact, so the same recipe
is a cache hit and any change (config, weights, export options, library versions, and the code
of this package that builds and transforms the graph) is a rebuild.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from export.specs import ARCHITECTURES, ArchitectureSpec

# The manifest's layout (export/cache.py). Changes to the code that builds an artifact need no
# bump: that code is hashed into every key (build_code_digest).
CACHE_FORMAT = 1
# Modules of this package that build nothing (the command line, checks of users' files, the CPU
# probe, runs under an emulated CPU): not hashed.
NOT_BUILD_CODE = frozenset({"__main__.py", "user_files.py", "machine.py", "emulated_cpu.py"})

VARIANTS: dict[str, str] = {
    "fp32": "torch.onnx.export (dynamo, with fallbacks), float32",
    "ort-opt": "offline ONNX Runtime graph optimization (ORT_ENABLE_EXTENDED, portable)",
    "int8": "dynamic INT8 of MatMul/Gemm after quant_pre_process, same numbers on every x86 ISA",
    "int8-conv": "the seed's recipe (Conv -> ConvInteger too), same numbers on every x86 ISA",
    "int8-full": "the conv front end as MatMul, then dynamic INT8 of every MatMul/Gemm, "
    "same numbers on every x86 ISA",
    "fp16": "float16 weights and compute, float32 inputs/outputs (for GPU providers)",
}
# Dynamic INT8 that onnxruntime's CPU kernels compute alike on every x86 ISA. Full-range int8
# weights saturate the int16 pair sums of AVX2 / AVX-512-without-VNNI kernels (tiny: cosine 0.993
# there, 0.99998 on VNNI); 7-bit weights (reduce_range) cannot (export/integer_numerics.py) and
# keep the fast u8 x s8 kernels; per-channel scales win back the bit (w2v2-base cosine 0.99991
# vs 0.99977 per-tensor). uint8 weights are exact too but 1.3x slower on VNNI. README: "INT8".
_PORTABLE_INT8 = {"weight_type": "QInt8", "reduce_range": True, "per_channel": True}
QUANTIZATION: dict[str, dict[str, Any]] = {
    # MatMul/Gemm only: the conv front end stays float (no ConvInteger, which older onnxruntime
    # CPU builds cannot run and which is slower than float conv where they can).
    "int8": {**_PORTABLE_INT8, "op_types_to_quantize": ["MatMul", "Gemm"]},
    "int8-conv": {**_PORTABLE_INT8, "op_types_to_quantize": None},
    # The convs as MatMuls (export/conv_as_matmul.py) get MatMulInteger like the rest
    "int8-full": {**_PORTABLE_INT8, "op_types_to_quantize": ["MatMul", "Gemm"]},
}

# Variants a user's own ONNX file can get (its fp32 is the file itself).
FILE_VARIANTS = ("ort-opt", "int8", "fp16")

EXPORT_OPTIONS: dict[str, Any] = {
    "example_batch": 2,  # a batch of 1 specialises the "dynamic" batch axis to 1
    "example_seconds": 3.0,
    "input_name": "audio",
    "output_name": "speaker_activity",
    "legacy_opset": 17,
}
# Another shape than the export example (batch 2, 3 s): a size baked in at export shows here.
PARITY_OPTIONS: dict[str, Any] = {"batch": 3, "seconds": 2.0, "seed": 1234}

EXPORT_PACKAGES = ("torch", "transformers", "onnxscript", "onnx", "onnxruntime")
FILE_PACKAGES = ("onnx", "onnxruntime")


class RecipeError(ValueError):
    """A variant name or source that the suite cannot build."""


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "onnxruntime":  # the GPU wheel provides the same module
                versions[name] = _onnxruntime_distribution_version()
            else:
                versions[name] = "not installed"
    return versions


def _onnxruntime_distribution_version() -> str:
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("onnxruntime-") and name not in ("onnxruntime-extensions",):
            return f"{name}=={dist.version}"
    return "not installed"


@functools.cache
def build_code_digest(package: Path = Path(__file__).parent) -> str:
    """sha256 of the code of the modules that build, transform and check artifacts.

    Keys once hashed only configs, options and versions: a change to ``forward`` came back
    ``unchanged`` from ``--perf-against`` and was served stale from the cache. The code is
    hashed as its syntax tree without docstrings, so a comment, docstring or formatting edit
    keeps every key while any change to what runs makes a new one.
    """
    return code_digest(p for p in sorted(package.glob("*.py")) if p.name not in NOT_BUILD_CODE)


def code_digest(paths: Iterable[Path]) -> str:
    """sha256 of Python files' code: syntax trees without docstrings, comments or layout."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(_code_without_docs(path.read_text(encoding="utf-8")).encode())
    return digest.hexdigest()


def _code_without_docs(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if _is_docstring(first):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _is_docstring(node: ast.stmt | None) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def file_sha256(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_file_set(model_path: Path) -> list[Path]:
    """The .onnx file and the external-data files it references (which must travel with it)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(model_path), load_external_data=False)
    locations = set()
    for tensor in _all_tensors(model):
        if uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return [model_path, *(model_path.parent / name for name in sorted(locations))]


def _all_tensors(model: Any) -> list[Any]:
    from onnx.external_data_helper import _get_all_tensors

    return list(_get_all_tensors(model))


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the fp32 graph comes from: an architecture (+ optional weights) or an ONNX file."""

    name: str
    architecture: ArchitectureSpec | None = None
    weights: Path | None = None
    onnx_file: Path | None = None
    # Sizes for the file's symbolic input dims, used to build its parity reference.
    dims: tuple[tuple[str, int], ...] = ()

    @property
    def is_file(self) -> bool:
        return self.onnx_file is not None

    def identity(self) -> dict[str, Any]:
        if self.onnx_file is not None:
            files = {p.name: file_sha256(p) for p in onnx_file_set(self.onnx_file)}
            return {"onnx_file": self.onnx_file.name, "sha256": files, "dims": dict(self.dims)}
        assert self.architecture is not None
        weights = None if self.weights is None else file_sha256(self.weights)
        return {"architecture": self.architecture.to_dict(), "weights_sha256": weights}


@dataclasses.dataclass(frozen=True)
class Recipe:
    source: Source
    variant: str

    @property
    def name(self) -> str:
        return f"{self.source.name}/{self.variant}"

    @property
    def parent(self) -> Recipe | None:
        """The recipe this variant is derived from (fp32), or None for the root."""
        if self.variant == "fp32" or (self.source.is_file and self.variant == "source"):
            return None
        return Recipe(self.source, "source" if self.source.is_file else "fp32")

    def description(self) -> dict[str, Any]:
        packages = FILE_PACKAGES if self.source.is_file else EXPORT_PACKAGES
        return {
            "cache_format": CACHE_FORMAT,
            "build_code": build_code_digest(),
            "name": self.name,
            "source": self.source.identity(),
            "variant": self.variant,
            "variant_transform": VARIANTS.get(self.variant, "the user's ONNX file, unchanged"),
            "transform_options": QUANTIZATION.get(self.variant),
            "export_options": EXPORT_OPTIONS if not self.source.is_file else None,
            "parity_options": PARITY_OPTIONS,
            "versions": package_versions(packages),
        }

    def key(self) -> str:
        payload = json.dumps(self.description(), sort_keys=True, default=str).encode()
        return hashlib.sha256(payload).hexdigest()


def architecture_source(arch_name: str, weights: Path | None = None) -> Source:
    if arch_name not in ARCHITECTURES:
        raise RecipeError(
            f"unknown architecture {arch_name!r}; choose from {', '.join(ARCHITECTURES)}"
        )
    if weights is not None and not weights.is_file():
        raise RecipeError(f"weights file {weights} for {arch_name!r} does not exist")
    return Source(name=arch_name, architecture=ARCHITECTURES[arch_name], weights=weights)


def file_source(onnx_path: Path, dims: dict[str, int] | None = None) -> Source:
    if not onnx_path.is_file():
        raise RecipeError(f"ONNX file {onnx_path} does not exist")
    if onnx_path.suffix != ".onnx":
        raise RecipeError(f"{onnx_path} is not an .onnx file")
    return Source(
        name=f"file-{onnx_path.stem}",
        onnx_file=onnx_path.resolve(),
        dims=tuple(sorted((dims or {}).items())),
    )


def parse_variant_name(name: str, weights: dict[str, Path] | None = None) -> Recipe:
    """``ARCH/VARIANT`` (e.g. ``w2v2-base/int8``) -> Recipe."""
    arch, sep, variant = name.partition("/")
    if not sep or not arch or not variant:
        raise RecipeError(f"variant name {name!r} must look like ARCH/VARIANT, e.g. w2v2-base/int8")
    if variant not in VARIANTS:
        raise RecipeError(
            f"unknown variant {variant!r} in {name!r}; choose from {', '.join(VARIANTS)}"
        )
    source = architecture_source(arch, (weights or {}).get(arch))
    return Recipe(source, variant)


def all_variant_names(include_tiny: bool = True) -> list[str]:
    return [
        f"{arch}/{variant}"
        for arch in ARCHITECTURES
        if include_tiny or arch != "tiny"
        for variant in VARIANTS
    ]
