"""The model cache: one directory per artifact, keyed by its recipe's content hash.

    models/<source>/<variant>-<key16>/model.onnx, model.onnx.data, reference.npz, manifest.json

An entry is built in ``models/.tmp/`` and renamed into place only when complete, with
``manifest.json`` written last, so a build killed at any point leaves nothing a later run would
use. A file lock per key makes concurrent builders (xdist workers, two terminals) build once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from export.layout import MODEL_FILE, REFERENCE_FILE, load_reference, save_reference
from export.parity import check_every_isa, check_parity, run_cpu
from export.recipes import CACHE_FORMAT, PARITY_OPTIONS, Recipe, file_sha256, onnx_file_set
from export.transforms import TRANSFORMS

MANIFEST_FILE = "manifest.json"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / "models"
CACHE_DIR_ENV = "DIARIZATION_MODEL_CACHE"

Progress = Callable[[str], None]
# Libraries whose INFO and DEBUG records flood a build (onnx_ir logs each deduplicated
# initializer: 309 lines for one model under --log-cli-level=INFO): WARNING while building.
CHATTY_LOGGERS = ("torch", "onnx", "onnx_ir", "onnxscript", "onnxruntime", "transformers")


def print_progress(message: str) -> None:
    print(f"[export {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV, DEFAULT_CACHE_DIR))


class CacheError(RuntimeError):
    """A cache entry that cannot be used or built."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    directory: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def size_bytes(self) -> int:
        """The model's files on disk (graph and weights), without the manifest and reference."""
        return sum(
            entry["bytes"]
            for name, entry in self.manifest["files"].items()
            if name not in (MANIFEST_FILE, REFERENCE_FILE)
        )


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Raise CHATTY_LOGGERS and their existing children to WARNING; restore them after."""
    existing = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in CHATTY_LOGGERS]
    loggers = [logging.getLogger(name) for name in sorted({*CHATTY_LOGGERS, *existing})]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _file_record(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"bytes": stat.st_size, "sha256": file_sha256(path), "mtime_ns": stat.st_mtime_ns}


def entry_problem(directory: Path, key: str | None, full: bool) -> str | None:
    """Why the entry in ``directory`` cannot be used, or None if it is sound.

    The quick check compares sizes and modification times with the manifest and re-hashes only
    files whose mtime changed; ``full`` re-hashes everything.
    """
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return "no manifest (an interrupted build?)"
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"unreadable manifest {manifest_path}: {error}"
    if manifest.get("cache_format") != CACHE_FORMAT:
        return f"cache format {manifest.get('cache_format')} is not {CACHE_FORMAT}"
    if key is not None and manifest.get("key") != key:
        return "manifest key does not match the recipe"
    for name, record in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        stat = path.stat()
        if stat.st_size != record["bytes"]:
            return f"{name} is {stat.st_size} bytes, the manifest says {record['bytes']}"
        if (full or stat.st_mtime_ns != record["mtime_ns"]) and file_sha256(path) != record[
            "sha256"
        ]:
            return f"{name} does not match its sha256 (corrupted)"
    return None


class ModelCache:
    def __init__(self, root: Path | None = None, progress: Progress = print_progress) -> None:
        self.root = (root or default_cache_dir()).resolve()
        self.progress = progress

    def entry_dir(self, recipe: Recipe, key: str) -> Path:
        return self.root / recipe.source.name / f"{recipe.variant}-{key[:16]}"

    def lookup(self, recipe: Recipe, key: str | None = None) -> Artifact | None:
        """The sound cached artifact for ``recipe``, or None. A broken entry is removed."""
        key = key or recipe.key()
        directory = self.entry_dir(recipe, key)
        if not directory.exists():
            return None
        problem = entry_problem(directory, key, full=False)
        if problem is not None:
            self.progress(f"cached {recipe.name} in {directory} is unusable: {problem}; rebuilding")
            shutil.rmtree(directory)
            return None
        return Artifact(directory, json.loads((directory / MANIFEST_FILE).read_text()))

    def get(self, recipe: Recipe) -> Artifact:
        """The cached artifact for ``recipe``, building it (and its parent) if needed."""
        key = recipe.key()
        artifact = self.lookup(recipe, key)
        if artifact is not None:
            return artifact
        parent = self.get(recipe.parent) if recipe.parent is not None else None
        with _build_lock(self.root, recipe, key, self.progress):
            artifact = self.lookup(recipe, key)  # another process may have built it meanwhile
            if artifact is not None:
                return artifact
            return self._build(recipe, key, parent)

    def _build(self, recipe: Recipe, key: str, parent: Artifact | None) -> Artifact:
        started = time.perf_counter()
        self.progress(f"building {recipe.name}")
        with _scratch_dir(self.root, key) as scratch:
            with quiet_library_logs():
                details = produce(recipe, scratch, parent, self.progress)
            manifest = build_manifest(recipe, key, scratch, details, parent, started)
            (scratch / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            final = self.entry_dir(recipe, key)
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch, final)
        self.progress(
            f"built {recipe.name} in {manifest['build_seconds']:.1f} s "
            f"({_megabytes(Artifact(final, manifest).size_bytes)})"
        )
        return Artifact(final, manifest)

    def reference_dir(self, recipe: Recipe) -> Path:
        """Where the reference outputs that ``recipe``'s parity is judged against live."""
        root = recipe
        while root.parent is not None:
            root = root.parent
        return _reference_dir(self.get(root))

    def reference_dir_of(self, directory: Path) -> Path:
        """The reference of the entry in ``directory``, by its manifest's parent chain: works
        for entries another commit's code built (``--perf-against REF``), whose keys this
        code does not compute."""
        for _ in range(8):  # a chain is two long today (fp32 -> int8); never loop forever
            manifest = json.loads((directory / MANIFEST_FILE).read_text())
            parent = manifest.get("parent")
            if parent is None:
                return _reference_dir(Artifact(directory, manifest))
            source, _, variant = parent["name"].partition("/")
            directory = self.root / source / f"{variant}-{parent['key'][:16]}"
        raise CacheError(f"{directory}: its manifest's parent chain does not end")

    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(
            path
            for path in self.root.glob("*/*")
            if path.is_dir() and not path.parent.name.startswith(".")
        )

    def verify(self) -> list[tuple[Path, str | None]]:
        """Every entry with its problem (None when sound), re-hashing every file."""
        return [(path, entry_problem(path, None, full=True)) for path in self.entries()]

    def clean(self, keep_keys: set[str] | None = None) -> list[Path]:
        """Remove entries (all, or those whose key is not in ``keep_keys``) and scratch space."""
        removed = []
        for path in self.entries():
            key = _manifest_key(path)
            if keep_keys is None or key is None or key not in keep_keys:
                shutil.rmtree(path)
                removed.append(path)
        shutil.rmtree(self.root / ".tmp", ignore_errors=True)
        return removed


@contextlib.contextmanager
def _build_lock(root: Path, recipe: Recipe, key: str, progress: Progress) -> Iterator[None]:
    """One builder per key across processes; the others wait, then find it built."""
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"{key[:16]}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        progress(f"waiting for another process that is building {recipe.name}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _scratch_dir(root: Path, key: str) -> Iterator[Path]:
    """A fresh build directory under ``.tmp/``, removed unless the body renamed it into place;
    the leftovers of a killed build of this key go first."""
    scratch_root = root / ".tmp"
    scratch_root.mkdir(parents=True, exist_ok=True)
    for stale in scratch_root.glob(f"{key[:16]}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = scratch_root / f"{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def produce(
    recipe: Recipe, out_dir: Path, parent: Artifact | None, progress: Progress
) -> dict[str, Any]:
    """Write the artifact's files into ``out_dir``; return its manifest details."""
    if parent is None:
        details = _produce_root(recipe, out_dir, progress)
        reference_dir = out_dir
    else:
        progress(f"{recipe.name}: {recipe.variant} transform of {parent.name}")
        details = {"transform": TRANSFORMS[recipe.variant](parent.model_path, out_dir)}
        reference_dir = _reference_dir(parent)
    inputs, reference = load_reference(reference_dir)
    progress(f"{recipe.name}: checking parity with its reference on CPU")
    model_path = out_dir / MODEL_FILE
    details["parity"] = check_parity(recipe.variant, model_path, inputs, reference).to_dict()
    details["isa_parity"] = check_every_isa(recipe.variant, model_path, inputs, reference)
    return details


def _produce_root(recipe: Recipe, out_dir: Path, progress: Progress) -> dict[str, Any]:
    source = recipe.source
    if source.onnx_file is None:
        from export.onnx_export import export_source  # needs torch: import only here

        return export_source(source, out_dir, progress)
    return _copy_user_model(source.onnx_file, dict(source.dims), out_dir)


def build_manifest(
    recipe: Recipe,
    key: str,
    directory: Path,
    details: dict[str, Any],
    parent: Artifact | None,
    started: float,
) -> dict[str, Any]:
    return {
        "cache_format": CACHE_FORMAT,
        "name": recipe.name,
        "key": key,
        "recipe": recipe.description(),
        "parent": None if parent is None else {"name": parent.name, "key": parent.key},
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - started, 2),
        **details,
        "files": {path.name: _file_record(path) for path in sorted(directory.iterdir())},
    }


def _manifest_key(directory: Path) -> str | None:
    try:
        return json.loads((directory / MANIFEST_FILE).read_text()).get("key")
    except (OSError, json.JSONDecodeError):
        return None


def _reference_dir(artifact: Artifact) -> Path:
    """Derived variants are compared with their root's reference (torch eager, or the source)."""
    if (artifact.directory / REFERENCE_FILE).exists():
        return artifact.directory
    raise CacheError(f"{artifact.directory} has no {REFERENCE_FILE}; run `python -m export clean`")


def _copy_user_model(onnx_file: Path, dims: dict[str, int], out_dir: Path) -> dict[str, Any]:
    """Copy a user's model (and its external data) in; its own CPU output is the reference."""
    from export.inputs import make_inputs, read_input_specs

    for path in onnx_file_set(onnx_file):
        if not path.is_file():
            raise CacheError(f"{onnx_file} references external data {path}, which is missing")
        shutil.copy2(path, out_dir / path.name)
    copied = out_dir / onnx_file.name
    if copied.name != MODEL_FILE:
        copied.rename(out_dir / MODEL_FILE)
    specs = read_input_specs(out_dir / MODEL_FILE)
    for spec in specs:  # a symbolic leading axis is the batch: reference at batch 1
        if spec.shape and isinstance(spec.shape[0], str):
            dims.setdefault(spec.shape[0], 1)
    inputs = make_inputs(specs, dim_values=dims, audio_seconds=PARITY_OPTIONS["seconds"])
    save_reference(out_dir, inputs, run_cpu(out_dir / MODEL_FILE, inputs))
    return {"reference": "onnxruntime CPU on the source file", "source_file": str(onnx_file)}


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
