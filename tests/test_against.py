"""--perf-against REF: REF's models from REF's code, interleaved A/B, and the gate's answers.

The interleaving runs on a fake clock (each fake call advances it), so no assertion here
depends on this machine's speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import export
from perf.baselines.git_ref import GitRefError, RefModels, checkout
from perf.measure.cases import PerfCase
from perf.measure.models import ResolvedModel
from perf.measure.sessions import SessionSettings
from perf.scenarios.ab import ABPolicy, interleave
from perf.scenarios.against import AgainstGate
from perf.stats.outcome import Outcome
from tests import test_plugin
from tests.test_plugin import Suite, output

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite

PROJECT = Path(export.__file__).resolve().parent.parent


class FakeClock:
    """A nanosecond clock that only fake calls move; drift multiplies every call's duration."""

    def __init__(self, seed: int = 0) -> None:
        self.now = 0
        self.rng = np.random.default_rng(seed)
        self.speed = 1.0

    def __call__(self) -> int:
        return self.now

    def caller(self, mean_ms: float) -> object:
        def call() -> None:
            # A slowly wandering machine speed (the drift these VMs show) and per-call noise.
            self.speed = float(np.clip(self.speed * np.exp(self.rng.normal(0, 0.01)), 0.8, 1.25))
            noise = float(np.exp(self.rng.normal(0, 0.04)))
            self.now += int(mean_ms * self.speed * noise * 1e6)

        return call


def _interleave(a_ms: float, b_ms: float, seed: int, max_seconds: float = 120.0):
    clock = FakeClock(seed)
    policy = ABPolicy(max_seconds=max_seconds, seed=seed)
    return interleave(lambda: clock.caller(a_ms), lambda: clock.caller(b_ms), policy, clock=clock)


def test_a_ten_percent_slower_model_is_caught() -> None:
    verdicts = [_interleave(20.0, 22.0, seed).comparison.verdict for seed in range(10)]
    assert verdicts.count("slower") >= 9


def test_an_unchanged_model_is_never_called_slower_or_faster() -> None:
    verdicts = [_interleave(20.0, 20.0, seed).comparison.verdict for seed in range(10)]
    assert "slower" not in verdicts and "faster" not in verdicts
    assert verdicts.count("same") >= 8


def test_interleaving_stops_once_decided_and_at_the_cap() -> None:
    decided = _interleave(20.0, 30.0, seed=1)
    capped = _interleave(20.0, 21.0, seed=1, max_seconds=3.0)
    assert decided.comparison.verdict == "slower"
    assert decided.seconds < 60
    assert capped.seconds < 3.0 + 2 * decided.seconds / len(decided.rounds) * 8
    segments = {r.segment for r in decided.rounds}
    assert len(segments) >= 2  # sessions are recreated, so their own variance is sampled
    assert all(len(r.a_ms) == len(r.b_ms) == decided.block_calls for r in decided.rounds)


def test_blocks_last_about_a_quarter_second() -> None:
    assert _interleave(5.0, 5.0, seed=0).block_calls == 16  # capped
    assert _interleave(20.0, 20.0, seed=0).block_calls == 12
    assert _interleave(500.0, 500.0, seed=0).block_calls == 2  # at least a pair


class FakeRefModels:
    def __init__(self, keys: dict[str, str], path: Path | None = None) -> None:
        self._keys = keys
        self.path = path
        self.built: list[str] = []
        self.tree = type("Tree", (), {"label": "main (abc1234567)"})()

    def keys(self, variants: list[str]) -> dict[str, str]:
        if any(v not in self._keys for v in variants):
            raise GitRefError(f"REF has no variant {variants}")
        return {v: self._keys[v] for v in variants}

    def build(self, variants: list[str]) -> dict[str, Path]:
        self.built += variants
        assert self.path is not None
        return {v: self.path for v in variants}

    def reference_dir_of(self, model_path: Path) -> Path:
        return model_path.parent


def _gate(ref: FakeRefModels, head_keys: dict[str, str], resolved: list[str], path: Path | None):
    def resolve(case: PerfCase, settings: SessionSettings) -> ResolvedModel:
        resolved.append(case.variant)
        assert path is not None
        return ResolvedModel(path, 1, head_keys[case.variant])

    def inputs(model: Path, case: PerfCase) -> dict:
        return {"audio": np.zeros((1, 16000), np.float32)}

    return AgainstGate(
        ref,  # type: ignore[arg-type]
        head_key=head_keys.__getitem__,
        resolve_head=resolve,
        inputs_for=inputs,
        policy=ABPolicy(max_seconds=1.0),
    )


SETTINGS = SessionSettings(provider="cpu", intra_op_threads=1, spinning=False)


def test_an_unchanged_artifact_is_reported_and_not_built_or_measured() -> None:
    ref = FakeRefModels({"tiny/fp32": "k" * 64})
    resolved: list[str] = []
    gate = _gate(ref, {"tiny/fp32": "k" * 64}, resolved, None)

    outcome = gate.check(PerfCase("tiny/fp32", "cpu", 3.0), SETTINGS)

    assert outcome.outcome is Outcome.UNCHANGED
    assert "unchanged (same artifact)" in outcome.line()
    assert not outcome.regressed
    assert resolved == [] and ref.built == []
    assert gate.outcomes == [outcome]


def test_a_changed_artifact_is_measured_against_refs(model_cache: Path) -> None:
    from export.cache import ModelCache
    from export.recipes import parse_variant_name

    path = ModelCache(model_cache, progress=lambda _m: None).get(parse_variant_name("tiny/fp32"))
    ref = FakeRefModels({"tiny/fp32": "r" * 64}, path.model_path)
    resolved: list[str] = []
    gate = _gate(ref, {"tiny/fp32": "h" * 64}, resolved, path.model_path)

    outcome = gate.check(PerfCase("tiny/fp32", "cpu", 1.0), SETTINGS)

    assert outcome.measured is not None
    assert resolved == ["tiny/fp32"] and ref.built == ["tiny/fp32"]
    assert outcome.measured is not None and len(outcome.measured.rounds) >= 1
    assert outcome.to_dict()["comparison"]["verdict"] == outcome.outcome
    assert outcome.contention is not None  # other processes' CPU use, measured over the rounds
    assert outcome.to_dict()["contention"]["cpu_count"] >= 1


def test_a_ref_model_with_wrong_numbers_here_is_refused_not_measured(model_cache: Path) -> None:
    from export.cache import ModelCache
    from export.recipes import parse_variant_name
    from perf.measure.numerics import NumericsRefused, NumericsVerdict

    path = ModelCache(model_cache, progress=lambda _m: None).get(parse_variant_name("tiny/int8"))
    ref = FakeRefModels({"tiny/int8": "r" * 64}, path.model_path)
    checked: list[ResolvedModel] = []

    def wrong_numbers(case: PerfCase, model: ResolvedModel, settings: SessionSettings) -> None:
        checked.append(model)
        verdict = NumericsVerdict(Outcome.FAIL, "avx2", "cpu", "its build's float reference", "")
        raise NumericsRefused(verdict)

    gate = _gate(ref, {"tiny/int8": "h" * 64}, [], path.model_path)
    gate.check_model = wrong_numbers

    outcome = gate.check(PerfCase("tiny/int8", "cpu", 1.0), SETTINGS)

    assert outcome.outcome is Outcome.REFUSED and outcome.measured is None
    assert outcome.reason.startswith("REF's model is not benchmarked: numerics fail on cpu")
    assert [(m.path, m.variant, m.key) for m in checked] == [(path.model_path, "int8", "r" * 64)]


def test_a_variant_ref_cannot_name_and_a_user_file_are_not_compared(tmp_path: Path) -> None:
    gate = _gate(FakeRefModels({}), {}, [], None)
    missing = gate.check(PerfCase("cnn/fp32", "cpu", 3.0), SETTINGS)
    user_file = gate.check(PerfCase("m.onnx", "cpu", 3.0, model_file=tmp_path / "m.onnx"), SETTINGS)
    assert missing.outcome is user_file.outcome is Outcome.NOT_COMPARED
    assert "REF has no variant" in missing.reason
    assert "--perf-model file" in user_file.reason


# --- REF's code, for real ---------------------------------------------------------------------


def _repo_with_export(path: Path, old: str = "", new: str = "") -> Path:
    """A git repository holding a copy of this project's export package (with ``old`` replaced
    by ``new`` in architectures.py), committed."""
    shutil.copytree(
        PROJECT / "export", path / "export", ignore=shutil.ignore_patterns("__pycache__")
    )
    if old:
        module = path / "export" / "architectures.py"
        assert old in module.read_text()
        module.write_text(module.read_text().replace(old, new, 1))
    for args in (
        ["init", "-q"],
        ["add", "export"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "ref"],
    ):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    return path


def test_refs_code_computes_the_same_keys_for_the_same_recipes(tmp_path: Path) -> None:
    from export.recipes import parse_variant_name

    repo = _repo_with_export(tmp_path / "repo")
    tree = checkout(repo, "HEAD", tmp_path / "refs")
    again = checkout(repo, "HEAD", tmp_path / "refs")

    keys = RefModels(tree, tmp_path / "models").keys(["tiny/fp32", "cnn/int8"])

    assert again == tree and (tree.path / "export" / "recipes.py").is_file()
    assert keys == {n: parse_variant_name(n).key() for n in ("tiny/fp32", "cnn/int8")}


def test_a_ref_whose_forward_code_differs_has_other_keys(tmp_path: Path) -> None:
    """REF's ConvEncoder.forward did less work: its artifacts are not the working tree's."""
    from export.recipes import parse_variant_name

    forward = "        return self.proj(self.norm(features))\n"
    less_work = "        return self.proj(features)\n"
    repo = _repo_with_export(tmp_path / "repo", forward, less_work)
    tree = checkout(repo, "HEAD", tmp_path / "refs")

    keys = RefModels(tree, tmp_path / "models").keys(["cnn/fp32", "cnn/int8"])

    assert keys["cnn/fp32"] != parse_variant_name("cnn/fp32").key()
    assert keys["cnn/int8"] != parse_variant_name("cnn/int8").key()


def test_a_ref_that_is_not_a_commit_is_a_clear_error(tmp_path: Path) -> None:
    repo = _repo_with_export(tmp_path / "repo")
    with pytest.raises(GitRefError, match=r"--perf-against 'no-such-branch': not a commit"):
        checkout(repo, "no-such-branch", tmp_path / "refs")


def test_against_head_on_an_unchanged_tree_reports_unchanged_and_passes(
    suite: Suite, tmp_path: Path
) -> None:
    _repo_with_export(suite.pytester.path)
    report = tmp_path / "report"
    result = suite.run(
        "--perf-against=HEAD", f"--perf-report={report}", variants="tiny/fp32,tiny/int8"
    )

    text = output(result)
    assert result.ret == 0, text
    result.assert_outcomes(passed=2)
    assert "A/B against HEAD (" in text
    assert text.count("unchanged (same artifact) vs HEAD") == 2
    assert "Benchmark fixture was not used" not in text
    rows = json.loads((report / "report.json").read_text())["against"]
    assert [(r["id"], r["outcome"]) for r in rows] == [
        ("tiny/fp32-cpu-3s", "unchanged"),
        ("tiny/int8-cpu-3s", "unchanged"),
    ]
    summary = (report / "summary.md").read_text()
    assert "## A/B against HEAD (" in summary
    assert "| tiny/int8-cpu-3s | unchanged | same cache key" in summary


def test_against_a_ref_that_does_not_exist_is_a_usage_error(suite: Suite) -> None:
    _repo_with_export(suite.pytester.path)
    result = suite.run("--perf-against=no-such-branch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--perf-against 'no-such-branch': not a commit" in output(result)
