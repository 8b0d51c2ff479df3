"""The models of another commit (``--perf-against REF``), built by that commit's export code.

REF's source is extracted once per commit (``git archive``) next to the model cache, and its own
``python -m export`` builds its artifacts into the same cache, so a recipe that did not change
between REF and the working tree has the same key and is the same artifact: nothing to measure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

BUILD_TIMEOUT_S = 3600
_KEYS_SNIPPET = (
    "import json, sys\n"
    "from export.recipes import parse_variant_name\n"
    "print(json.dumps({name: parse_variant_name(name).key() for name in sys.argv[1:]}))\n"
)


class GitRefError(ValueError):
    """A --perf-against REF that cannot be resolved, extracted or built."""


@dataclasses.dataclass(frozen=True)
class RefTree:
    ref: str  # as the user wrote it
    commit: str
    path: Path  # REF's files, extracted

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.commit[:10]})"


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise GitRefError("--perf-against needs git on PATH") from None
    except subprocess.CalledProcessError as error:
        raise GitRefError(error.stderr.strip() or str(error)) from None
    return done.stdout


def checkout(repo: Path, ref: str, scratch: Path) -> RefTree:
    """REF's tracked files under ``scratch/<commit>``, extracted once and reused."""
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except GitRefError as error:
        raise GitRefError(
            f"--perf-against {ref!r}: not a commit of the repository at {repo} ({error}); "
            "name a branch, tag or sha, e.g. origin/main or $(git merge-base HEAD origin/main)"
        ) from None
    target = scratch / commit
    if not (target / "export").is_dir():
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            archive = Path(tmp) / "ref.tar"
            _git(repo, "archive", "--format=tar", f"--output={archive}", commit)
            with tarfile.open(archive) as tar:
                tar.extractall(Path(tmp) / "tree", filter="data")
            if not (Path(tmp) / "tree" / "export").is_dir():
                raise GitRefError(f"--perf-against {ref!r}: commit {commit[:10]} has no export/")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(Path(tmp) / "tree", target)
    return RefTree(ref, commit, target)


class RefModels:
    """Keys and artifacts of REF's recipes, asked of REF's own code in a subprocess."""

    def __init__(
        self, tree: RefTree, cache_dir: Path, progress: Callable[[str], None] = print
    ) -> None:
        self.tree = tree
        self.cache_dir = cache_dir
        self.progress = progress
        self._keys: dict[str, str] = {}
        self._paths: dict[str, Path] = {}

    def keys(self, variants: Sequence[str]) -> dict[str, str]:
        """Each variant's cache key as REF computes it, without building anything."""
        missing = [v for v in variants if v not in self._keys]
        if missing:
            output = self._run(["-c", _KEYS_SNIPPET, *missing], f"name {', '.join(missing)}")
            self._keys.update(json.loads(output.strip().splitlines()[-1]))
        return {v: self._keys[v] for v in variants}

    def build(self, variants: Sequence[str]) -> dict[str, Path]:
        """Build (or reuse) REF's artifacts; returns each one's model.onnx."""
        missing = [v for v in variants if v not in self._paths]
        if missing:
            self.progress(f"building {', '.join(missing)} at {self.tree.label}")
            args = ["-m", "export", "--cache", str(self.cache_dir), "build", *missing]
            lines = self._run(args, f"build {', '.join(missing)}").strip().splitlines()
            self._paths.update(zip(missing, map(Path, lines[-len(missing) :]), strict=True))
        return {v: self._paths[v] for v in variants}

    def reference_dir_of(self, model_path: Path) -> Path:
        """Where REF's build left the reference outputs REF's artifact is checked against."""
        from export.cache import ModelCache

        return ModelCache(self.cache_dir).reference_dir_of(model_path.parent)

    def _run(self, args: list[str], what: str) -> str:
        env = {**os.environ, "PYTHONPATH": str(self.tree.path)}
        try:
            done = subprocess.run(
                [sys.executable, *args],
                cwd=self.tree.path,
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=True,
            )
        except subprocess.CalledProcessError as error:
            tail = "\n".join(error.stderr.strip().splitlines()[-5:])
            raise GitRefError(
                f"--perf-against {self.tree.label}: could not {what}:\n{tail}"
            ) from None
        return done.stdout
