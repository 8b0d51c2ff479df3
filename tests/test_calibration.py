"""perf.calibration's bookkeeping, with the pytest runs faked: resume, redo, summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf import calibration
from perf.measure.contention import Contention
from perf.scenarios.ab import ABOutcome
from perf.stats.outcome import Outcome
from tests import test_plugin
from tests.test_against import _interleave
from tests.test_plugin import Suite

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite


def _args(tmp_path: Path, runs: int = 2) -> argparse.Namespace:
    return argparse.Namespace(
        mode="baseline",
        variant="cnn/fp32",
        duration="3s",
        max_time=20.0,
        rate=None,
        baseline_runs=1,
        slower_tree=tmp_path / "slower",
        out=tmp_path / "out",
        cache=tmp_path / "models",
        runs=runs,
        machine="Test CPU (avx2)",
    )


class FakeRuns:
    """Stands in for run_once: each (kind, index) gets the next busy figure from a script."""

    def __init__(self, busy: dict[tuple[str, int], list[float]]) -> None:
        self.busy = busy
        self.calls: list[tuple[str, int]] = []

    def __call__(self, args: argparse.Namespace, kind: str, index: int) -> dict[str, Any]:
        self.calls.append((kind, index))
        busy = self.busy.get((kind, index), [0.0]).pop(0) if self.busy.get((kind, index)) else 0.0
        verdict = "saved" if kind == "save" else "slower" if kind == "ab" else "same"
        return {"kind": kind, "index": index, "verdict": verdict, "ratio": 1.0,
                "other_cores_busy": busy, "commit": "abc"}  # fmt: skip


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeRuns, runs: int = 2) -> None:
    monkeypatch.setattr(calibration, "run_once", fake)
    monkeypatch.setattr(calibration, "parse_args", lambda _argv: _args(tmp_path, runs))
    calibration.main([])


def test_saves_first_then_aa_and_ab_alternate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRuns({})
    _run(tmp_path, monkeypatch, fake)

    assert fake.calls == [("save", 1), ("aa", 1), ("ab", 1), ("aa", 2), ("ab", 2)]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| A/A | 2 | {'same': 2} | 0 / 2 false |" in summary
    assert "| A/B | 2 | {'slower': 2} | 2 / 2 caught |" in summary


def test_a_rerun_resumes_and_a_larger_plan_adds_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, monkeypatch, FakeRuns({}), runs=1)
    again = FakeRuns({})
    _run(tmp_path, monkeypatch, again, runs=1)
    more = FakeRuns({})
    _run(tmp_path, monkeypatch, more, runs=2)

    assert again.calls == []
    assert more.calls == [("aa", 2), ("ab", 2)]
    assert len(json.loads((tmp_path / "out" / "runs.json").read_text())) == 5


def test_contended_runs_are_redone_and_kept_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRuns({("aa", 1): [1.0, 0.0], ("ab", 1): [1.0, 1.0, 1.0]})
    _run(tmp_path, monkeypatch, fake, runs=1)

    assert fake.calls == [("save", 1), ("aa", 1), ("aa", 1), ("ab", 1), ("ab", 1), ("ab", 1)]
    rows = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert [r["redone"] for r in rows] == [False, True, False, True, True, False]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Runs redone because other processes kept >= 0.25 cores busy" in summary
    assert "(the suite's contention flag; kept in runs.json with `redone`): 3." in summary
    assert "| A/B | 1 | {'slower': 1} | 1 / 1 caught | 1.000-1.000 | 1 |" in summary


def test_other_settings_in_the_same_folder_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, monkeypatch, FakeRuns({}), runs=1)
    config = tmp_path / "out" / "config.json"
    config.write_text(config.read_text().replace('"20.0"', '"120.0"'))

    with pytest.raises(SystemExit, match="holds a calibration with other settings"):
        _run(tmp_path, monkeypatch, FakeRuns({}), runs=1)


# --- what a row reads is what the suite writes ---------------------------------------------------


def test_a_baseline_row_reads_the_suites_benchmark_json(suite: Suite, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    suite.run(
        "--perf-max-time=1",
        "--perf-min-samples=30",
        "--benchmark-compare",
        f"--perf-baselines={tmp_path / 'none'}",
        f"--benchmark-json={out}",
    )
    (bench,) = json.loads(out.read_text())["benchmarks"]

    row = calibration._judged(bench["extra_info"], "aa", "baseline")

    assert row["verdict"] == "not compared" and row["comparison_verdict"] is None
    assert row["other_cores_busy"] is not None


def test_an_against_row_reads_measured_and_refused_outcomes() -> None:
    measured = _interleave(20.0, 22.0, seed=0)
    busy = Contention(20.0, 0.0, 0.0, 2, None, None)
    slower = ABOutcome("cnn/fp32-cpu-3s", "HEAD", measured.comparison.verdict, "", measured,
                       contention=busy)  # fmt: skip
    refused = ABOutcome("cnn/fp32-cpu-3s", "HEAD", Outcome.REFUSED, "REF's model ...")

    row = calibration._judged({"against": slower.to_dict()}, "ab", "against")
    none = calibration._judged({"against": refused.to_dict()}, "ab", "against")

    assert row["verdict"] == "slower" and row["ratio"] == measured.comparison.ratio
    assert row["rounds"] == len(measured.rounds) and row["other_cores_busy"] == 0.0
    assert none["verdict"] == "refused" and none["ratio"] is None


def test_a_baseline_row_decided_side_by_side_reports_that_ratio() -> None:
    from perf.baselines.regression import BaselineCheck

    measured = _interleave(20.0, 22.0, seed=0)
    side = ABOutcome("cnn/fp32-cpu-3s", "the stored model k", measured.comparison.verdict, "",
                     measured)  # fmt: skip
    check = BaselineCheck(Outcome.SLOWER, "vs its stored model", None, side.to_dict())

    row = calibration._judged({"baseline": check.to_dict()}, "ab", "baseline")

    assert row["decided_by"] == "side by side" and row["verdict"] == "slower"
    assert row["ratio"] == measured.comparison.ratio and row["stored_runs_ratio"] is None


def test_the_index_has_a_row_per_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, monkeypatch, FakeRuns({("ab", 2): [1.0, 0.0]}), runs=2)

    table = calibration.index_table(tmp_path)

    assert table.splitlines()[2].startswith("| `out` | `--benchmark-compare` | `cnn/fp32`, 20 s |")
    assert "| 0 / 2 | {'same': 2} | 2 / 2 | {'slower': 2} | 1.000-1.000 | 1 |" in table


def _series_with_stored_runs(folder: Path, aa_ratios: list[float]) -> None:
    from perf.baselines.store import BaselineEntry, save_baselines

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"mode": "baseline", "variant": "cnn/fp32",
                                                    "max_time": 20}))  # fmt: skip
    rng = np.random.default_rng(0)
    for p50 in (50.0, 50.5, 49.6, 50.2, 49.9):  # one sitting: 0.7% apart
        samples = p50 * np.exp(rng.normal(0.0, 0.01, 400))
        entry = BaselineEntry.from_samples({}, samples.tolist(), model_key="k", seconds=20.0)
        save_baselines(folder / "baselines", {"cpu": "x"}, {"ort": "1"}, {"b": entry})
    rows = [
        {"kind": "aa", "index": i, "verdict": "faster" if r < 0.9 else "undecided",
         "quantiles": {q: {"ratio": r} for q in ("P50", "P95", "P99")}}
        for i, r in enumerate(aa_ratios)
    ]  # fmt: skip
    (folder / "runs.json").write_text(json.dumps(rows))


def test_the_spread_table_rejudges_recorded_a_a_runs_with_the_current_rule(
    tmp_path: Path,
) -> None:
    # A run 12% faster than one sitting's stored runs: drift, not a change, under the floor;
    # a run 40% slower stands out of any drift.
    _series_with_stored_runs(tmp_path / "s", [0.88, 1.02, 1.40])

    row = calibration.spread_table(tmp_path).splitlines()[2]

    assert row.startswith("| `s` | 3 | ")
    assert row.endswith("| 1 / 3 | 1 / 3 |")  # recorded: the 0.88; re-judged: the 1.40
    assert "[-0.128, +0.336]" in row


def test_a_run_with_one_busy_segment_is_contended_like_the_suite_says() -> None:
    # Average load under the flag, one 5 s segment over it: the suite neither judges nor
    # stores such a run, so calibration must redo it too.
    assert calibration.contended({"other_cores_busy": 0.07, "peak_other_cores_busy": 0.6})
    assert not calibration.contended({"other_cores_busy": 0.07, "peak_other_cores_busy": 0.1})
    assert calibration.contended({"other_cores_busy": 0.3})


def test_a_server_series_runs_the_server_test_at_its_rate(tmp_path: Path) -> None:
    args = _args(tmp_path)
    args.rate = 20.0
    command = calibration.pytest_command(args, tmp_path / "run.json")
    assert "perf/test_latency.py::test_server" in command
    assert command[command.index("--perf-rate") + 1] == "20"
    assert calibration.summarise([], args).startswith(
        "`--benchmark-compare`, `cnn/fp32`, server scenario at 20 req/s,"
    )


def test_a_series_begun_before_the_rate_option_resumes(tmp_path: Path) -> None:
    args = _args(tmp_path)
    args.out.mkdir(parents=True)
    old = {key: str(getattr(args, key)) for key in calibration.CONFIG_KEYS if key != "rate"}
    (args.out / "config.json").write_text(json.dumps(old))
    assert calibration._resume(args) == []
