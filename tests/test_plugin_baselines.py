"""Committed baselines end to end: --perf-save-baseline, then --benchmark-compare against it.

The pytester runs reuse tests/test_plugin.py's ``Suite`` and tiny-model cache. No assertion
depends on how fast this machine is: the regression scenario adds a 20 ms busy-wait to calls
of ~1-3 ms (many times any noise), the budget scenario compares a 150 ms delay with a 50 ms
budget, and the no-change scenario asserts only that the run is compared and does not fail.

That last one cannot be exact in real time: two unchanged runs a second apart differ by what
the machine did meanwhile (P50 moved up to 7-15%, P99 up to 50% between runs on a shared 2-core
VM), which the comparison, built for i.i.d. samples within a run, can call SLOWER even after its
re-measurement: 3 of 15 raw A/A pairs here, 4 of 15 with 300 samples a run. So it takes a fresh
baseline-and-compare pair up to NO_CHANGE_ATTEMPTS times and needs one to pass; a comparison
that flags every unchanged run still fails every attempt.

Comparisons here use raw times (--perf-no-probe in both runs). A tiny run samples for ~0.1 s,
so its probe is measured twice (first and last sample) and that pair divides every sample; a
single probe reading swings several-fold on a small shared VM (7-29 ms seen), far more than the
~1.3 ms calls do: 4 of 12 probe-normalised A/A pairs came out SLOWER. The recording test keeps
the probe on, so the stored probe_ms are checked.

The last sections test ``pooled``, ``check_against_baseline`` and ``BaselineGate.check``
on synthetic samples.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf.baselines.regression import (
    COMPARED,
    NO_BASELINE,
    REFUSED,
    BaselineCheck,
    baseline_entry,
    check_against_baseline,
    pooled,
    probe_readings,
    smoothed_probe,
)
from perf.baselines.store import (
    BASELINE_FILE,
    BaselineEntry,
    BaselineFile,
    baseline_dir,
    find_baseline,
    save_baselines,
)
from perf.measure.cases import PerfCase
from perf.measure.contention import Contention
from perf.measure.fingerprint import machine_fingerprint, software_fingerprint
from perf.measure.sampling import Samples, SamplingPolicy
from perf.measurement import LatencyResult
from perf.plugin import perf_run_of
from perf.run import PerfOptions, PerfRun
from perf.stats.compare import Change, Comparison
from perf.stats.percentiles import LatencySummary
from tests import test_plugin
from tests.test_plugin import Suite, output

pytest_plugins = ["pytester"]
# pytest-benchmark's own --benchmark-compare finds no saved runs here; only perf's is tested.
pytestmark = pytest.mark.filterwarnings("ignore:Can't compare. No benchmark files")

# The shared fixtures, bound here by name so that pytest finds them in this module too.
model_cache = test_plugin.model_cache
suite = test_plugin.suite

BENCH = "tiny/fp32-cpu-3s"
SHORT = ("--perf-max-time=1", "--perf-min-samples=60", "--perf-threads=1")
RAW = "--perf-no-probe"  # see the module docstring
NO_CHANGE_ATTEMPTS = 4  # at the ~20% false alarms per A/A pair seen here: ~0.2% flaky
FAILING_BUDGET = '[[tool.latency-suite.budget]]\nvariants = ["tiny/*"]\np99_ms = 50\n'


@pytest.fixture(autouse=True)
def _locks_in_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """save_baselines locks in the temp folder; keep these runs' lock files out of the real one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("locks")))


class BaselineChecks:
    """Records, in the inner run, what each benchmark's baseline check and result were."""

    def __init__(self) -> None:
        self.checks: dict[str, BaselineCheck] = {}
        self.samples: dict[str, int] = {}

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = perf_run_of(session.config)
        self.checks = dict(run.baselines.checks)
        self.samples = {r.case.id: len(r.samples.samples_ms) for r in run.results}


def this_machines_file(root: Path) -> Path:
    return baseline_dir(root, machine_fingerprint(), software_fingerprint()) / BASELINE_FILE


def record(suite: Suite, root: Path, *args: str) -> Path:
    """A passing run that saves its samples as this machine's baseline under ``root``."""
    result = suite.run(*SHORT, "--perf-save-baseline", f"--perf-baselines={root}", *args)
    result.assert_outcomes(passed=1)
    path = this_machines_file(root)
    assert path.is_file(), output(result)
    return path


def compare(
    suite: Suite, root: Path, *args: str, checks: BaselineChecks | None = None
) -> pytest.RunResult:
    plugins = (checks,) if checks is not None else ()
    return suite.run(
        *SHORT, "--benchmark-compare", f"--perf-baselines={root}", *args, plugins=plugins
    )


# --- recording ----------------------------------------------------------------------------------


def test_passing_run_saves_its_samples_as_this_machines_baseline(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    out = suite.pytester.path / "out.json"

    result = suite.run(
        *SHORT, "--perf-save-baseline", f"--perf-baselines={root}", f"--benchmark-json={out}"
    )

    result.assert_outcomes(passed=1)
    path = this_machines_file(root)
    assert [p.relative_to(root) for p in root.rglob(BASELINE_FILE)] == [path.relative_to(root)]
    assert f"baseline saved for 1 benchmark(s): {path}" in output(result)
    stored = json.loads(path.read_text())
    assert list(stored["benchmarks"]) == [BENCH]
    entry = stored["benchmarks"][BENCH]
    measured = json.loads(out.read_text())["benchmarks"][0]["extra_info"]
    assert entry["samples_ms"] == measured["samples_ms"]  # this run's samples, every one
    assert len(entry["samples_ms"]) == 60  # --perf-min-samples, no budget
    assert entry["probe_ms"] == measured["probe_ms"]
    assert len(entry["probe_ms"]) == len(entry["samples_ms"])
    assert entry["settings"]["intra_op_threads"] == 1
    assert entry["model_key"]
    loaded = find_baseline(root, machine_fingerprint(), software_fingerprint())
    assert loaded is not None
    assert list(loaded.benchmarks) == [BENCH]


def test_failing_run_leaves_the_saved_baseline_untouched(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    path = record(suite, root)
    before = path.read_bytes()
    files_before = sorted(root.rglob("*"))
    suite.budgets(FAILING_BUDGET)

    result = suite.run(
        *SHORT, "--perf-save-baseline", f"--perf-baselines={root}", "--perf-inject-delay=150"
    )

    result.assert_outcomes(failed=1)
    text = output(result)
    assert "baseline NOT saved: the run did not complete and pass" in text
    assert "baseline saved" not in text
    assert path.read_bytes() == before
    assert sorted(root.rglob("*")) == files_before


# --- comparing ----------------------------------------------------------------------------------


def test_slowed_down_model_fails_as_regressed_against_its_baseline(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    record(suite, root, RAW)
    checks = BaselineChecks()

    result = compare(suite, root, RAW, "--perf-inject-delay=20", checks=checks)

    result.assert_outcomes(failed=1)
    text = output(result)
    assert f"{BENCH} regressed against its baseline" in text
    assert f"{BENCH} vs baseline: slower" in text
    result.stdout.fnmatch_lines(
        [
            "*= comparison with baseline =*",
            "benchmark*P50 base*P50 now*P99 base*P99 now*verdict",
            "-*",
            f"{BENCH}*x*slower",
        ]
    )
    check = checks.checks[BENCH]
    assert check.status == COMPARED
    assert check.regressed
    # A SLOWER first look is re-measured and judged on both measurements' samples pooled.
    assert check.remeasured
    assert check.comparison is not None
    assert check.comparison.n_current > checks.samples[BENCH]


def test_unchanged_model_is_compared_and_passes(suite: Suite) -> None:
    # Each attempt: a fresh baseline, then a fresh run compared with it (module docstring).
    for attempt in range(1, NO_CHANGE_ATTEMPTS + 1):
        root = suite.pytester.path / f"bl{attempt}"
        record(suite, root, RAW)
        checks = BaselineChecks()

        result = compare(suite, root, RAW, checks=checks)

        check = checks.checks[BENCH]
        assert check.status == COMPARED
        assert check.comparison is not None
        assert not check.probe_normalised
        result.stdout.fnmatch_lines(["*= comparison with baseline =*", f"{BENCH}*"])
        if result.ret == pytest.ExitCode.OK:
            break
        # The one way an unchanged run may fail: drift between the runs judged a regression,
        # after the re-measurement. Anything else fails the test at once.
        result.assert_outcomes(failed=1)
        assert check.regressed, output(result)
        assert check.remeasured
    result.assert_outcomes(passed=1)
    assert "regressed against its baseline" not in output(result)
    assert check.comparison.verdict is not Change.SLOWER


def test_without_a_baseline_for_this_machine_the_run_passes_uncompared(suite: Suite) -> None:
    root = suite.pytester.path / "empty"
    root.mkdir()
    checks = BaselineChecks()

    result = compare(suite, root, checks=checks)

    result.assert_outcomes(passed=1)
    text = output(result)
    assert f"no baseline for {BENCH} on this machine in {root}: not compared" in text
    assert "comparison with baseline" not in text
    assert checks.checks[BENCH].status == NO_BASELINE
    assert list(root.iterdir()) == []  # comparing never writes a baseline


def test_different_thread_count_is_refused_unless_forced(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    record(suite, root, RAW)
    refused_checks, forced_checks = BaselineChecks(), BaselineChecks()

    refused = compare(suite, root, RAW, "--perf-threads=2", checks=refused_checks)
    forced = compare(
        suite, root, RAW, "--perf-threads=2", "--perf-force-compare", checks=forced_checks
    )

    refused.assert_outcomes(passed=1)
    text = output(refused)
    assert "refused, the runs differ in: intra_op_threads: baseline 1 != current 2" in text
    assert "--perf-force-compare compares anyway" in text
    assert "comparison with baseline" not in text
    assert refused_checks.checks[BENCH].status == REFUSED
    # Forced, it is compared (two threads may well be slower: the outcome is not asserted).
    check = forced_checks.checks[BENCH]
    assert check.status == COMPARED
    assert "forced despite: intra_op_threads: baseline 1 != current 2" in check.message
    forced.stdout.fnmatch_lines(["*= comparison with baseline =*", f"{BENCH}*"])


def test_malformed_baseline_file_is_a_usage_error_naming_it(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    path = record(suite, root)
    path.write_text('{"format_version": 1, "benchmarks": ')

    result = compare(suite, root)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = "\n".join(result.errlines)
    assert str(path.relative_to(suite.pytester.path)) in errors
    assert "not valid JSON" in errors
    assert "--perf-save-baseline" in errors  # the fix
    assert path.read_text() == '{"format_version": 1, "benchmarks": '


# --- pooled and check_against_baseline, on synthetic samples ------------------------------------

MACHINE: dict[str, Any] = {
    "cpu_model": "Test CPU",
    "usable_cores": 2,
    "isa_flags": ["avx2"],
    "gpu": None,
}
SOFTWARE: dict[str, Any] = {
    "onnxruntime_version": "1.20.1",
    "onnxruntime_distributions": {"onnxruntime": "1.20.1"},
}
SETTINGS: dict[str, Any] = {
    "provider": "CPUExecutionProvider",
    "provider_options": {},
    "intra_op_threads": 1,
    "effective_intra_op_threads": 1,
    "spinning": True,
}
CASE = PerfCase("tiny/fp32", "cpu", 3.0)
IDLE = Contention(
    wall_s=1.0, other_cpu_s=0.0, other_cores_busy=0.0, cpu_count=2, steal_s=None, load_avg_1m=None
)


def make_samples(
    samples_ms: np.ndarray | list[float],
    probe_ms: np.ndarray | list[float] | None = None,
    stopped: str = "enough samples for the percentile",
) -> Samples:
    return Samples(
        first_call_ms=5.0,
        warmup_calls=10,
        warmup_steady=True,
        samples_ms=tuple(float(x) for x in samples_ms),
        probe_ms=None if probe_ms is None else tuple(float(x) for x in probe_ms),
        stopped_because=stopped,
        sampling_seconds=0.5,
        contention=IDLE,
    )


def make_result(samples: Samples, settings: dict[str, Any] | None = None) -> LatencyResult:
    return LatencyResult(
        case=CASE,
        model_path="models/tiny/fp32/model.onnx",
        size_bytes=1000,
        model_key="key-1",
        settings=SETTINGS if settings is None else settings,
        load_ms=10.0,
        memory_mb=1.0,
        samples=samples,
        summary=LatencySummary.from_samples(samples.samples_ms),
        budget=None,
        decisions=(),
        node_placement=None,
    )


def latencies(median_ms: float, n: int = 200, seed: int = 0) -> np.ndarray:
    """Right-skewed positive latencies around ``median_ms``, as calls are."""
    rng = np.random.default_rng(seed)
    return median_ms * np.exp(rng.normal(0.0, 0.05, n))


def stored_baseline(tmp_path: Path, result: LatencyResult) -> BaselineFile:
    save_baselines(tmp_path, MACHINE, SOFTWARE, {BENCH: baseline_entry(result)})
    baseline = find_baseline(tmp_path, MACHINE, SOFTWARE)
    assert baseline is not None
    return baseline


def judge(
    baseline: BaselineFile | None, current: Samples, *, force: bool = False, **settings: Any
) -> BaselineCheck:
    result = make_result(current, {**SETTINGS, **settings})
    return check_against_baseline(
        result, current, baseline, MACHINE, SOFTWARE, force=force, where="bl/"
    )


def test_pooled_appends_the_remeasurement_to_the_first_run() -> None:
    first = make_samples([1.0, 2.0], [5.0, 5.5], stopped="time cap")
    second = make_samples([3.0, 4.0, 5.0], [6.0, 6.0, 6.5], stopped="sample cap")

    both = pooled(first, second)

    assert both.samples_ms == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert both.probe_ms == (5.0, 5.5, 6.0, 6.0, 6.5)
    assert both.stopped_because == "time cap; re-measured: sample cap"
    assert both.sampling_seconds == pytest.approx(1.0)
    assert both.first_call_ms == first.first_call_ms  # the first run's warm-up facts stay
    assert both.warmup_calls == first.warmup_calls


@pytest.mark.parametrize(
    ("first_probe", "second_probe"), [([5.0], None), (None, [5.0]), (None, None)]
)
def test_pooled_drops_the_probe_unless_both_runs_were_probed(
    first_probe: list[float] | None, second_probe: list[float] | None
) -> None:
    both = pooled(make_samples([1.0], first_probe), make_samples([2.0], second_probe))

    assert both.samples_ms == (1.0, 2.0)
    assert both.probe_ms is None


def test_no_baseline_file_or_no_entry_is_not_compared(tmp_path: Path) -> None:
    current = make_samples(latencies(2.0))
    baseline = stored_baseline(tmp_path, make_result(current))  # holds tiny/fp32-cpu-3s only
    one_second = dataclasses.replace(
        make_result(current), case=dataclasses.replace(CASE, duration_s=1)
    )

    missing_file = judge(None, current)
    missing_entry = check_against_baseline(
        one_second, current, baseline, MACHINE, SOFTWARE, where="bl/"
    )

    assert missing_file.status == NO_BASELINE
    assert missing_file.message.startswith(f"no baseline for {BENCH} on this machine in bl/")
    assert "--perf-save-baseline" in missing_file.message
    assert missing_entry.status == NO_BASELINE
    assert "tiny/fp32-cpu-1s" in missing_entry.message
    for check in (missing_file, missing_entry):
        assert check.comparison is None
        assert not check.regressed
        assert not check.needs_remeasure


def test_a_many_fold_slowdown_is_slower_and_regressed(tmp_path: Path) -> None:
    baseline = stored_baseline(tmp_path, make_result(make_samples(latencies(2.0))))

    check = judge(baseline, make_samples(latencies(20.0, seed=1)))

    assert check.status == COMPARED
    assert check.comparison is not None
    assert check.comparison.verdict is Change.SLOWER
    assert check.regressed
    assert check.needs_remeasure
    assert check.message.startswith(f"{BENCH} vs baseline: slower\nslower: n=200 -> 200")
    assert not check.probe_normalised


def test_the_same_distribution_is_not_a_regression(tmp_path: Path) -> None:
    baseline = stored_baseline(tmp_path, make_result(make_samples(latencies(2.0))))

    check = judge(baseline, make_samples(latencies(2.0, seed=1)))

    assert check.status == COMPARED
    assert check.comparison is not None
    assert check.comparison.verdict is Change.SAME
    assert not check.regressed
    assert not check.needs_remeasure


@pytest.mark.parametrize(
    ("verdict", "remeasure", "regressed"),
    [
        (Change.SLOWER, True, True),
        (Change.UNDECIDED, True, False),
        (Change.SAME, False, False),
        (Change.FASTER, False, False),
    ],
)
def test_only_slower_or_undecided_asks_for_a_remeasurement_and_only_slower_regressed(
    verdict: Change, remeasure: bool, regressed: bool
) -> None:
    comparison = Comparison((), 0.5, 0.5, 0.01, 0.99, 20, 20, verdict)

    check = BaselineCheck(COMPARED, "", comparison=comparison)

    assert check.needs_remeasure is remeasure
    assert check.regressed is regressed


def test_probe_normalisation_cancels_a_machine_that_slowed_down_as_a_whole(
    tmp_path: Path,
) -> None:
    probe = latencies(5.0, seed=2)
    base_ms = latencies(2.0)
    baseline = stored_baseline(tmp_path, make_result(make_samples(base_ms, probe)))
    # Every call and every probe 30% slower: the machine drifted, the model did not change.
    current = make_samples(base_ms * 1.3, probe * 1.3)

    normalised = judge(baseline, current)
    raw = judge(baseline, make_samples(base_ms * 1.3))  # no probe now: raw times are compared

    assert normalised.probe_normalised
    assert "normalised by the machine-speed probe" in normalised.message
    assert normalised.comparison is not None
    assert normalised.comparison.verdict is Change.SAME
    assert not raw.probe_normalised
    assert raw.comparison is not None
    assert raw.comparison.verdict is Change.SLOWER


def test_a_different_setting_is_refused_unless_forced(tmp_path: Path) -> None:
    samples = make_samples(latencies(2.0))
    baseline = stored_baseline(tmp_path, make_result(samples))

    refused = judge(baseline, samples, effective_intra_op_threads=2)
    forced = judge(baseline, samples, force=True, effective_intra_op_threads=2)

    assert refused.status == REFUSED
    assert refused.comparison is None
    assert "intra_op_threads: baseline 1 != current 2" in refused.message
    assert "--perf-force-compare" in refused.message
    assert forced.status == COMPARED
    assert forced.comparison is not None
    assert "forced despite: intra_op_threads: baseline 1 != current 2" in forced.message


def test_a_changed_model_is_compared_and_noted(tmp_path: Path) -> None:
    samples = make_samples(latencies(2.0))
    baseline = stored_baseline(tmp_path, make_result(samples))
    result = dataclasses.replace(make_result(samples), model_key="key-2")

    check = check_against_baseline(result, samples, baseline, MACHINE, SOFTWARE)

    assert check.status == COMPARED
    assert "the model changed since the baseline" in check.message


def test_baseline_entry_stores_the_effective_thread_count_and_the_case() -> None:
    result = make_result(make_samples([1.0, 2.0], [5.0, 5.0]))

    entry = baseline_entry(result)

    assert isinstance(entry, BaselineEntry)
    assert entry.samples_ms == (1.0, 2.0)
    assert entry.probe_ms == (5.0, 5.0)
    assert entry.model_key == "key-1"
    assert entry.settings["intra_op_threads"] == 1
    assert entry.settings["duration_s"] == 3.0
    assert entry.settings["batch"] == 1


# --- PerfRun.baselines.check: re-measure, pool, then judge ----------------------------------------


class FakeRun(PerfRun):
    """A PerfRun whose measurements are given samples, judged against a given baseline."""

    def __init__(self, tmp_path: Path, baseline: BaselineFile, remeasured: Samples) -> None:
        options = PerfOptions(
            variants=("tiny/fp32",),
            providers=("cpu",),
            durations=(3.0,),
            batch=1,
            model_files=(),
            dims={},
            fixed_inputs={},
            weights={},
            intra_op_threads=1,
            spinning=True,
            policy=SamplingPolicy(),
            concurrency=0,
            concurrency_seconds=1.0,
            cache_dir=tmp_path / "models",
            speed_probe=False,
            compare=True,
            baselines_dir=tmp_path,
        )
        super().__init__(options, rules=[])
        self.baselines.__dict__["baseline"] = baseline  # the cached properties, filled in
        self.baselines.__dict__["fingerprint"] = (MACHINE, SOFTWARE)
        self.remeasured = remeasured
        self.measure_calls: list[dict[str, Any]] = []

    def measure(
        self, case: PerfCase, record: bool = True, use_budget: bool = True
    ) -> LatencyResult:
        self.measure_calls.append({"case": case, "record": record, "use_budget": use_budget})
        return make_result(self.remeasured)


def test_a_slower_first_look_is_remeasured_and_judged_on_the_pooled_samples(
    tmp_path: Path,
) -> None:
    baseline = stored_baseline(tmp_path, make_result(make_samples(latencies(2.0))))
    run = FakeRun(tmp_path, baseline, remeasured=make_samples(latencies(20.0, seed=2)))

    check = run.baselines.check(make_result(make_samples(latencies(20.0, seed=1))))

    assert run.measure_calls == [{"case": CASE, "record": False, "use_budget": False}]
    assert check.remeasured
    assert check.regressed
    assert check.comparison is not None
    assert check.comparison.n_current == 400  # 200 first + 200 re-measured
    assert run.baselines.checks == {BENCH: check}


def test_a_slower_first_look_that_does_not_repeat_is_not_a_regression(tmp_path: Path) -> None:
    baseline = stored_baseline(tmp_path, make_result(make_samples(latencies(2.0))))
    # One slow stretch (a noisy neighbour), then a re-measurement that matches the baseline.
    slow_stretch = make_samples(latencies(2.0, n=40, seed=1) * 1.5)
    run = FakeRun(tmp_path, baseline, remeasured=make_samples(latencies(2.0, n=400, seed=2)))
    assert check_against_baseline(
        make_result(slow_stretch), slow_stretch, baseline, MACHINE, SOFTWARE
    ).regressed

    check = run.baselines.check(make_result(slow_stretch))

    assert len(run.measure_calls) == 1
    assert check.remeasured
    assert check.comparison is not None
    assert check.comparison.n_current == 440
    # The slow calls still sit in the pooled tail: undecided, which does not fail the test.
    assert check.comparison.verdict is Change.UNDECIDED
    assert not check.regressed


def test_a_same_first_look_is_not_remeasured(tmp_path: Path) -> None:
    baseline = stored_baseline(tmp_path, make_result(make_samples(latencies(2.0))))
    run = FakeRun(tmp_path, baseline, remeasured=make_samples(latencies(20.0)))

    check = run.baselines.check(make_result(make_samples(latencies(2.0, seed=1))))

    assert run.measure_calls == []
    assert not check.remeasured
    assert check.comparison is not None
    assert check.comparison.verdict is Change.SAME


def test_probe_readings_count_separate_measurements_not_samples() -> None:
    assert probe_readings(None) == 0
    assert probe_readings((5.0, 5.0, 5.0)) == 1
    assert probe_readings((5.0, 5.0, 6.0, 6.0, 5.0)) == 3


def test_smoothed_probe_is_a_running_median_of_readings_mapped_back_to_samples() -> None:
    probe = (1.0, 1.0, 5.0, 5.0, 2.0, 3.0, 9.0, 9.0, 4.0)
    smoothed = smoothed_probe(probe, window=3)
    # readings 1, 5, 2, 3, 9, 4 -> running medians 3, 2, 3, 3, 4, 6.5, one per sample
    assert smoothed.tolist() == [3.0, 3.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 6.5]
