"""Committed baselines end to end: --perf-save-baseline, then --benchmark-compare against it.

The pytester runs reuse tests/test_plugin.py's ``Suite`` and tiny-model cache. No assertion
depends on how fast this machine is: the regression scenario adds a 20 ms busy-wait to calls
of ~1-3 ms (many times any noise), the budget scenario compares a 150 ms delay with a 50 ms
budget, and the no-change scenario asserts only that the run is compared and not called a
regression.

A comparison needs three stored runs (perf.stats.compare judges a run against the spread
between stored runs), so the comparing scenarios record three first. Runs that save or compare
sample to the time cap (1 s here). Two unchanged runs a second apart can still land far apart
on a shared 2-core VM; the comparison's prediction interval is built for that, and the no-change
scenario allows NO_CHANGE_ATTEMPTS fresh tries, for the nominal 2.5% false "slower" rate.

The last sections test ``check_against_baseline`` and ``BaselineGate.check`` on synthetic runs.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf.baselines.gate import BaselineGate
from perf.baselines.regression import (
    BaselineCheck,
    StoredRow,
    baseline_entry,
    check_against_baseline,
)
from perf.baselines.store import (
    BASELINE_FILE,
    BaselineEntry,
    BaselineError,
    BaselineFile,
    baseline_dir,
    find_baseline,
    load_baseline,
    save_baselines,
)
from perf.measure.cases import PerfCase
from perf.measure.contention import Contention
from perf.measure.fingerprint import machine_fingerprint, software_fingerprint
from perf.measure.gpu_state import GpuMonitor, GpuState
from perf.measure.sampling import Samples
from perf.measurement import LatencyResult
from perf.plugin import perf_run_of
from perf.run import PerfRun
from perf.stats.compare import Segment
from perf.stats.outcome import Outcome
from perf.stats.percentiles import LatencySummary
from tests import test_plugin
from tests.fake_nvml import FakeNvml
from tests.perf_options import perf_options
from tests.test_plugin import Suite, output

pytest_plugins = ["pytester"]
# pytest-benchmark's own --benchmark-compare finds no saved runs here; only perf's is tested.
pytestmark = pytest.mark.filterwarnings("ignore:Can't compare. No benchmark files")

# The shared fixtures, bound here by name so that pytest finds them in this module too.
model_cache = test_plugin.model_cache


@pytest.fixture
def suite(pytester: pytest.Pytester, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Suite:
    """The inner runs share two cores with the other xdist worker: that contention is the test
    run's, not a model's, so it is ignored here (contended runs have their own tests below)."""
    monkeypatch.setattr(Contention, "contaminated", lambda *_args, **_kwargs: False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return Suite(pytester, model_cache)


BENCH = "tiny/fp32-cpu-3s"
SHORT = ("--perf-max-time=1", "--perf-min-samples=60", "--perf-threads=1")
NO_CHANGE_ATTEMPTS = 2
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


def record(suite: Suite, root: Path, *args: str, runs: int = 3) -> Path:
    """``runs`` passing runs, each adding its run to this machine's baseline under ``root``."""
    for _ in range(runs):
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
    assert len(entry["samples_ms"]) > 60  # sampled to the 1 s cap, past --perf-min-samples
    assert entry["segments"] == measured["segments"]
    assert sum(s["calls"] for s in entry["segments"]) == len(entry["samples_ms"])
    assert [run["calls"] for run in entry["runs"]] == [len(entry["samples_ms"])]
    assert entry["runs"][0]["seconds"] == pytest.approx(1.0, abs=0.5)
    assert f"{BENCH}: the baseline now holds 1 run(s) of it; comparisons need 3" in output(result)
    assert entry["settings"]["intra_op_threads"] == 1
    assert entry["model_key"]
    # where the time went, kept so that a later regression on these runs can be explained
    assert entry["profile"][-1]["op_type"] == "(outside nodes)" and len(entry["profile"]) > 2
    loaded = find_baseline(root, machine_fingerprint(), software_fingerprint())
    assert loaded is not None
    assert list(loaded.benchmarks) == [BENCH]


def test_failing_run_leaves_the_saved_baseline_untouched(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    path = record(suite, root, runs=1)
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
    path = record(suite, root)
    assert len(json.loads(path.read_text())["benchmarks"][BENCH]["runs"]) == 3
    checks = BaselineChecks()

    result = compare(suite, root, "--perf-inject-delay=20", checks=checks)

    result.assert_outcomes(failed=1)
    text = output(result)
    assert f"{BENCH} regressed against its baseline" in text
    assert f"{BENCH} vs baseline: slower" in text
    result.stdout.fnmatch_lines(
        [
            "*= against the stored baseline =*",
            "benchmark*P50 base*P50 now*P99 base*P99 now*runs*verdict",
            "-*",
            f"{BENCH}*x*3*slower",
        ]
    )
    check = checks.checks[BENCH]
    assert check.comparison is not None
    assert check.regressed
    assert check.comparison is not None
    assert check.comparison.baseline_runs == 3
    assert check.comparison.n_current == checks.samples[BENCH]


def test_unchanged_model_is_compared_and_passes(suite: Suite) -> None:
    # Each attempt: a fresh baseline, then a fresh run compared with it (module docstring).
    for attempt in range(1, NO_CHANGE_ATTEMPTS + 1):
        root = suite.pytester.path / f"bl{attempt}"
        record(suite, root)
        checks = BaselineChecks()

        result = compare(suite, root, checks=checks)

        check = checks.checks[BENCH]
        assert check.comparison is not None
        assert check.comparison is not None
        result.stdout.fnmatch_lines(["*= against the stored baseline =*", f"{BENCH}*"])
        if result.ret == pytest.ExitCode.OK:
            break
        result.assert_outcomes(failed=1)
        assert check.regressed, output(result)
    result.assert_outcomes(passed=1)
    assert "regressed against its baseline" not in output(result)
    assert check.comparison.verdict is not Outcome.SLOWER


def test_with_one_stored_run_the_comparison_is_undecided_and_says_what_to_do(
    suite: Suite,
) -> None:
    root = suite.pytester.path / "bl"
    record(suite, root, runs=1)

    result = compare(suite, root, "--perf-inject-delay=20")

    result.assert_outcomes(passed=1)  # undecided warns; it does not fail
    text = output(result)
    assert f"{BENCH} vs baseline: undecided" in text
    assert "holds 1 run(s) of this benchmark" in text and "--perf-save-baseline" in text


def test_without_a_baseline_for_this_machine_the_run_passes_uncompared(suite: Suite) -> None:
    root = suite.pytester.path / "empty"
    root.mkdir()
    checks = BaselineChecks()

    result = compare(suite, root, checks=checks)

    result.assert_outcomes(passed=1)
    text = output(result)
    assert f"no baseline for {BENCH} on this machine in {root}: not compared" in text
    assert (
        "comparisons: 1 not compared; 1 inconclusive (undecided, refused or not compared): "
        "--perf-undecided warn" in text
    )
    assert checks.checks[BENCH].outcome is Outcome.NOT_COMPARED
    assert list(root.iterdir()) == []  # comparing never writes a baseline


@pytest.mark.parametrize(
    ("policy", "exit_code", "warned"), [("fail", 1, False), ("warn", 0, True), ("pass", 0, False)]
)
def test_perf_undecided_decides_what_an_inconclusive_comparison_does(
    suite: Suite, policy: str, exit_code: int, warned: bool
) -> None:
    root = suite.pytester.path / "bl"

    result = compare(suite, root, f"--perf-undecided={policy}")

    text = output(result)
    assert result.ret == exit_code, text
    assert ("UserWarning: not compared: " in text) is warned
    if policy == "fail":
        assert "--perf-undecided fail: an inconclusive comparison fails the test" in text
    assert f"--perf-undecided {policy}" in text  # the summary line says which rule applied


def test_different_thread_count_is_refused_unless_forced(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    record(suite, root, runs=1)
    refused_checks, forced_checks = BaselineChecks(), BaselineChecks()

    refused = compare(suite, root, "--perf-threads=2", checks=refused_checks)
    forced = compare(suite, root, "--perf-threads=2", "--perf-force-compare", checks=forced_checks)

    refused.assert_outcomes(passed=1)
    text = output(refused)
    assert "refused, the runs differ in: intra_op_threads: baseline 1 != current 2" in text
    assert "--perf-force-compare compares anyway" in text
    assert "comparisons: 1 refused; 1 inconclusive" in text
    assert refused_checks.checks[BENCH].outcome is Outcome.REFUSED
    # Forced, it is compared (two threads may well be slower: the outcome is not asserted).
    check = forced_checks.checks[BENCH]
    assert check.comparison is not None
    assert "forced despite: intra_op_threads: baseline 1 != current 2" in check.message
    forced.stdout.fnmatch_lines(["*= against the stored baseline =*", f"{BENCH}*"])


def test_malformed_baseline_file_is_a_usage_error_naming_it(suite: Suite) -> None:
    root = suite.pytester.path / "bl"
    path = record(suite, root, runs=1)
    path.write_text('{"format_version": 1, "benchmarks": ')

    result = compare(suite, root)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = "\n".join(result.errlines)
    assert str(path.relative_to(suite.pytester.path)) in errors
    assert "not valid JSON" in errors
    assert "--perf-save-baseline" in errors  # the fix
    assert path.read_text() == '{"format_version": 1, "benchmarks": '


# --- check_against_baseline, on synthetic runs ---------------------------------------------------

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


def make_samples(samples_ms: np.ndarray | list[float], seconds: float = 120.0) -> Samples:
    samples = tuple(float(x) for x in samples_ms)
    return Samples(
        first_call_ms=5.0,
        warmup_calls=10,
        warmup_steady=True,
        samples_ms=samples,
        segments=(Segment(len(samples), seconds),),
        stopped_because="time cap",
        sampling_seconds=seconds,
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
    """Right-skewed positive latencies around ``median_ms``, each run 1% off by itself."""
    rng = np.random.default_rng(seed)
    return median_ms * np.exp(rng.normal(0.0, 0.01) + rng.normal(0.0, 0.05, n))


def stored_baseline(tmp_path: Path, median_ms: float = 2.0, runs: int = 3) -> BaselineFile:
    for seed in range(runs):
        result = make_result(make_samples(latencies(median_ms, seed=100 + seed)))
        save_baselines(tmp_path, MACHINE, SOFTWARE, {BENCH: baseline_entry(result)})
    baseline = find_baseline(tmp_path, MACHINE, SOFTWARE)
    assert baseline is not None
    assert len(baseline.entry(BENCH).runs) == runs
    return baseline


def judge(
    baseline: BaselineFile | None, current: Samples, *, force: bool = False, **settings: Any
) -> BaselineCheck:
    result = make_result(current, {**SETTINGS, **settings})
    return check_against_baseline(result, baseline, MACHINE, SOFTWARE, force=force, where="bl/")


def test_no_baseline_file_or_no_entry_is_not_compared(tmp_path: Path) -> None:
    current = make_samples(latencies(2.0))
    baseline = stored_baseline(tmp_path)  # holds tiny/fp32-cpu-3s only
    one_second = dataclasses.replace(
        make_result(current), case=dataclasses.replace(CASE, duration_s=1)
    )

    missing_file = judge(None, current)
    missing_entry = check_against_baseline(one_second, baseline, MACHINE, SOFTWARE, where="bl/")

    assert missing_file.outcome is Outcome.NOT_COMPARED
    assert missing_file.message.startswith(f"no baseline for {BENCH} on this machine in bl/")
    assert "--perf-save-baseline" in missing_file.message
    assert missing_entry.outcome is Outcome.NOT_COMPARED
    assert "tiny/fp32-cpu-1s" in missing_entry.message
    for check in (missing_file, missing_entry):
        assert check.comparison is None
        assert not check.regressed
        assert check.outcome is not Outcome.UNDECIDED


def test_a_many_fold_slowdown_is_slower_and_regressed(tmp_path: Path) -> None:
    check = judge(stored_baseline(tmp_path), make_samples(latencies(20.0, seed=1)))

    assert check.comparison is not None
    assert check.comparison is not None
    assert check.comparison.verdict is Outcome.SLOWER
    assert check.regressed
    assert check.message.startswith(f"{BENCH} vs baseline: slower\nslower: this run (120 s")


BUSY = dataclasses.replace(IDLE, other_cpu_s=1.0, other_cores_busy=1.0)


def test_a_contended_run_is_not_judged(tmp_path: Path) -> None:
    """One busy neighbour tripled latency here: the run says nothing about the model."""
    contended = dataclasses.replace(make_samples(latencies(6.0, seed=1)), contention=BUSY)

    check = judge(stored_baseline(tmp_path), contended)

    assert check.comparison is not None and check.comparison.verdict is Outcome.SLOWER
    assert check.outcome is Outcome.UNDECIDED
    assert not check.regressed
    assert "not judged: timings may be inflated by CPU contention" in check.message


def test_a_contended_run_is_not_stored_as_a_baseline_run(tmp_path: Path) -> None:
    quiet = make_result(make_samples(latencies(2.0)))
    busy = dataclasses.replace(
        make_result(dataclasses.replace(make_samples(latencies(6.0)), contention=BUSY)),
        case=dataclasses.replace(CASE, duration_s=1.0),
    )
    gate = BaselineGate(tmp_path)
    gate.fingerprint = (MACHINE, SOFTWARE)  # no probing in a unit test

    path, left_out = gate.save([quiet, busy])

    assert path is not None
    baseline = load_baseline(path)
    assert baseline is not None and set(baseline.benchmarks) == {BENCH}
    assert left_out == [
        "tiny/fp32-cpu-1s: not stored: timings may be inflated by CPU contention: other "
        "processes used 1.00 cores on average (of 2) during sampling"
    ]
    assert gate.save([busy])[0] is None


def _throttled() -> GpuState:
    """A GPU that reported a hardware thermal slowdown (fake NVML) while it was sampled."""
    monitor = GpuMonitor(FakeNvml(reasons=(0, 0x40, 0)), interval_s=3600, ours=lambda: {1})
    monitor.start()
    monitor.sample()
    return monitor.stop()


def test_a_run_on_a_throttled_gpu_is_neither_judged_nor_stored(tmp_path: Path) -> None:
    throttled = dataclasses.replace(make_samples(latencies(6.0, seed=1)), gpu=_throttled())

    check = judge(stored_baseline(tmp_path / "judged"), throttled)
    gate = BaselineGate(tmp_path / "stored")
    gate.fingerprint = (MACHINE, SOFTWARE)
    path, left_out = gate.save([make_result(throttled)])

    assert check.comparison is not None and check.comparison.verdict is Outcome.SLOWER
    assert check.outcome is Outcome.UNDECIDED and not check.regressed
    assert "not judged: " in check.message and "hw_thermal_slowdown" in check.message
    assert path is None and "hw_thermal_slowdown" in left_out[0]
    assert make_samples(latencies(2.0)).disturbance() is None


def _profile(conv_ms: float, matmul_ms: float = 1.0) -> list[dict[str, Any]]:
    call = conv_ms + matmul_ms + 0.2
    return [{"op_type": "Conv", "ms": conv_ms, "share": conv_ms / call},
            {"op_type": "MatMul", "ms": matmul_ms, "share": matmul_ms / call},
            {"op_type": "(outside nodes)", "ms": 0.2, "share": 0.2 / call}]  # fmt: skip


def test_a_regression_on_stored_runs_names_the_op_types_that_moved(tmp_path: Path) -> None:
    """No stored model to measure beside this one: the stored profile and this run's say where
    the time went (the model's Conv doubled; MatMul did not move)."""
    for seed in range(3):
        stored = make_result(make_samples(latencies(2.0, seed=100 + seed)))
        entry = baseline_entry(dataclasses.replace(stored, profile=_profile(0.8)))
        save_baselines(tmp_path, MACHINE, SOFTWARE, {BENCH: entry})
    gate = BaselineGate(tmp_path)
    gate.fingerprint = (MACHINE, SOFTWARE)
    slower = make_result(make_samples(latencies(2.8, seed=1)))

    check = gate.check(dataclasses.replace(slower, profile=_profile(1.6)))
    unexplained = BaselineGate(tmp_path)
    unexplained.fingerprint = (MACHINE, SOFTWARE)

    assert check.outcome is Outcome.SLOWER
    assert "why: +0.80 ms Conv (40% -> 57% of the call), +0.00 ms MatMul" in check.message
    assert check.to_dict()["profile_change"][0]["op_type"] == "Conv"
    assert unexplained.check(slower).profile_change is None  # this run was not profiled


def test_the_profile_is_stored_with_the_baseline_and_old_entries_load(tmp_path: Path) -> None:
    result = dataclasses.replace(make_result(make_samples(latencies(2.0))), profile=_profile(0.8))
    path = save_baselines(tmp_path, MACHINE, SOFTWARE, {BENCH: baseline_entry(result)})
    data = json.loads(path.read_text())
    assert data["benchmarks"][BENCH]["profile"][0] == {"op_type": "Conv", "ms": 0.8,
                                                       "share": 0.8 / 2.0}  # fmt: skip
    del data["benchmarks"][BENCH]["profile"]  # recorded before profiles were kept
    path.write_text(json.dumps(data))
    assert load_baseline(path).entry(BENCH).profile is None  # type: ignore[union-attr]
    data["benchmarks"][BENCH]["profile"] = [{"op_type": "Conv"}]
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match=r"profile\[0\].*needs an op_type"):
        load_baseline(path)


def test_the_same_distribution_is_not_a_regression(tmp_path: Path) -> None:
    check = judge(stored_baseline(tmp_path), make_samples(latencies(2.0, seed=1)))

    assert check.comparison is not None
    assert check.comparison is not None
    assert check.comparison.verdict is not Outcome.SLOWER
    assert not check.regressed


def test_a_run_of_another_length_is_refused(tmp_path: Path) -> None:
    check = judge(stored_baseline(tmp_path), make_samples(latencies(2.0), seconds=20.0))

    assert check.outcome is Outcome.REFUSED
    assert "stored runs sampled 120 s each, this run 20 s" in check.message
    assert "--perf-max-time" in check.message


def test_a_format_1_entry_is_refused_with_the_fix(tmp_path: Path) -> None:
    baseline = stored_baseline(tmp_path)
    old = dataclasses.replace(baseline.entry(BENCH), runs=(), segments=None)
    baseline = dataclasses.replace(baseline, benchmarks={BENCH: old})

    check = judge(baseline, make_samples(latencies(2.0)))

    assert check.outcome is Outcome.REFUSED
    assert "format 1" in check.message and "--perf-save-baseline" in check.message


def test_a_different_setting_is_refused_unless_forced(tmp_path: Path) -> None:
    baseline = stored_baseline(tmp_path)
    samples = make_samples(latencies(2.0))

    refused = judge(baseline, samples, effective_intra_op_threads=2)
    forced = judge(baseline, samples, force=True, effective_intra_op_threads=2)

    assert refused.outcome is Outcome.REFUSED
    assert refused.comparison is None
    assert "intra_op_threads: baseline 1 != current 2" in refused.message
    assert "--perf-force-compare" in refused.message
    assert forced.comparison is not None
    assert forced.comparison is not None
    assert "forced despite: intra_op_threads: baseline 1 != current 2" in forced.message


def test_a_changed_model_is_compared_and_noted(tmp_path: Path) -> None:
    baseline = stored_baseline(tmp_path)
    result = dataclasses.replace(make_result(make_samples(latencies(2.0))), model_key="key-2")

    check = check_against_baseline(result, baseline, MACHINE, SOFTWARE)

    assert check.comparison is not None
    assert "the model changed since the baseline" in check.message


def test_baseline_entry_stores_the_effective_thread_count_the_case_and_the_run() -> None:
    result = make_result(make_samples([1.0, 2.0], seconds=3.0))

    entry = baseline_entry(result)

    assert isinstance(entry, BaselineEntry)
    assert entry.samples_ms == (1.0, 2.0)
    assert entry.segments == (Segment(2, 3.0),)
    assert [(r.calls, r.seconds) for r in entry.runs] == [(2, 3.0)]
    assert entry.model_key == "key-1"
    assert entry.settings["intra_op_threads"] == 1
    assert entry.settings["duration_s"] == 3.0
    assert entry.settings["batch"] == 1


def test_the_gate_records_each_check_by_benchmark(tmp_path: Path) -> None:
    options = perf_options(cache_dir=tmp_path / "models", compare=True, baselines_dir=tmp_path)
    run = PerfRun(options, rules=[])
    run.baselines.__dict__["baseline"] = stored_baseline(tmp_path)  # the cached properties
    run.baselines.__dict__["fingerprint"] = (MACHINE, SOFTWARE)

    check = run.baselines.check(make_result(make_samples(latencies(20.0, seed=1))))

    assert check.regressed
    assert run.baselines.checks == {BENCH: check}


# --- a changed model: the stored model measured side by side -------------------------------------


class FakeSideBySide:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def line(self) -> str:
        return f"x1.12 [1.08, 1.16] {self.outcome} (B/A P50)"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "ratio": 1.12}


def _gate_with(tmp_path: Path, remeasure: Any) -> BaselineGate:
    stored_baseline(tmp_path)  # model key "key-1"
    gate = BaselineGate(tmp_path, remeasure=remeasure)
    gate.fingerprint = (MACHINE, SOFTWARE)
    return gate


def test_a_changed_model_is_measured_side_by_side_with_the_stored_one(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    def remeasure(row: StoredRow, key: str) -> FakeSideBySide:
        asked.append((row.bench, key))
        return FakeSideBySide(Outcome.SLOWER)

    gate = _gate_with(tmp_path, remeasure)
    changed = dataclasses.replace(make_result(make_samples(latencies(2.0))), model_key="key-2")

    check = gate.check(changed)

    assert asked == [(BENCH, "key-1")]
    assert check.outcome is Outcome.SLOWER and check.regressed
    assert "vs its stored model (key-1), measured side by side: x1.12" in check.message
    assert "(against the stored runs alone: " in check.message
    assert check.comparison is not None  # the stored runs are still reported
    assert check.to_dict()["interleaved"] == {"outcome": "slower", "ratio": 1.12}


def test_the_same_model_or_an_uncached_one_is_judged_by_the_stored_runs(tmp_path: Path) -> None:
    asked: list[str] = []

    def not_cached(row: StoredRow, key: str) -> None:
        asked.append(key)

    gate = _gate_with(tmp_path, not_cached)
    same = make_result(make_samples(latencies(2.0)))
    changed = dataclasses.replace(same, model_key="key-2")

    unchanged_check, uncached_check = gate.check(same), gate.check(changed)

    assert asked == ["key-1"]  # only for the changed model
    for check in (unchanged_check, uncached_check):
        assert check.interleaved is None and check.comparison is not None
    assert uncached_check.outcome is uncached_check.comparison.verdict
    # The same artifact, inside the drift floor's interval: the machine's, not a change.
    assert unchanged_check.comparison.verdict is Outcome.UNDECIDED
    assert unchanged_check.outcome is Outcome.UNCHANGED
    assert "same artifact, settings and timing code" in unchanged_check.message


def test_end_to_end_the_stored_model_is_found_in_the_cache_and_measured(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored runs of a model built by 'other code' (another cache key), then a run of this
    code's model: the stored artifact is still cached, so both are measured side by side."""
    from export import recipes

    root = suite.pytester.path / "bl"
    real_digest = recipes.build_code_digest()
    monkeypatch.setattr(recipes, "build_code_digest", lambda: "earlier build code")
    record(suite, root)
    monkeypatch.setattr(recipes, "build_code_digest", lambda: real_digest)
    checks = BaselineChecks()

    result = compare(suite, root, checks=checks)

    check = checks.checks[BENCH]
    assert check.interleaved is not None, output(result)
    assert check.interleaved["against"].startswith("the stored model ")
    assert check.interleaved["comparison"]["rounds"] >= 3
    assert "measured side by side" in output(result)
    assert check.outcome is not Outcome.SLOWER  # the same graph on both sides


def test_runs_timed_by_other_measuring_code_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perf.baselines import regression

    monkeypatch.setattr(regression, "measuring_code_digest", lambda: "0ld5amp1ingc0de")
    baseline = stored_baseline(tmp_path)
    monkeypatch.undo()

    check = judge(baseline, make_samples(latencies(2.0)))

    assert check.outcome is Outcome.REFUSED
    assert "measuring_code: baseline '0ld5amp1ingc0de' != current" in check.message


def test_stored_runs_that_disagree_wildly_cannot_clear_the_same_artifact(tmp_path: Path) -> None:
    # One sitting's run over capacity (100x), the others not: the interval spans everything,
    # and "inside the machine's drift" would clear a x50 run of the same artifact
    for seed, median in enumerate((2.0, 200.0, 2.0)):
        result = make_result(make_samples(latencies(median, seed=100 + seed)))
        save_baselines(tmp_path, MACHINE, SOFTWARE, {BENCH: baseline_entry(result)})
    baseline = find_baseline(tmp_path, MACHINE, SOFTWARE)

    check = judge(baseline, make_samples(latencies(100.0)))

    assert check.outcome is Outcome.UNDECIDED
    assert "within this machine's drift" not in check.message
