"""Server rows judged like single-stream ones: an A/B in interleaved open-loop rounds
(--perf-against, the stored model side by side) and stored runs (--benchmark-compare).

The scheduling and statistics run on a fake clock (each fake request advances it), so no
assertion there depends on this machine's speed; the end-to-end runs use an injected delay of
20 ms on a model that serves in ~1 ms.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perf.measure.cases import PerfCase
from perf.measure.contention import Contention
from perf.scenarios import open_loop, traffic
from perf.scenarios.ab import ABPolicy, interleave
from perf.scenarios.open_loop import Workload
from perf.scenarios.peak import PeakResult
from perf.scenarios.server_ab import ServerBlocks, measure_server_pair, round_requests
from perf.stats.outcome import Outcome
from tests import test_plugin
from tests.test_against import SETTINGS, FakeRefModels, _gate, _repo_with_export
from tests.test_plugin import Suite, output

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite


class FakeClock:
    """Seconds for the open loop (now, sleep_until), nanoseconds when called (the A/B's
    clock); only fake requests and sleeps move it."""

    def __init__(self, seed: int = 0) -> None:
        self.t = 0.0
        self.rng = np.random.default_rng(seed)
        self.speed = 1.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def __call__(self) -> int:
        return int(self.t * 1e9)

    def workload(self, service_ms: float) -> Workload:
        def call() -> None:
            # A slowly wandering machine speed and per-call noise, as in test_against
            self.speed = float(np.clip(self.speed * np.exp(self.rng.normal(0, 0.01)), 0.8, 1.25))
            self.t += service_ms / 1e3 * self.speed * float(np.exp(self.rng.normal(0, 0.04)))

        return Workload((call,))


@pytest.fixture
def no_full_collections(monkeypatch: pytest.MonkeyPatch) -> None:
    # The open loop collects garbage before each run (a real pause must not land in a request);
    # on a fake clock that only costs time: seconds per test in a large xdist worker's heap
    monkeypatch.setattr(open_loop.gc, "collect", lambda *_args: 0)


def _server_ab(a_ms: float, b_ms: float, seed: int, rate_rps: float = 25.0):
    clock = FakeClock(seed)
    policy = ABPolicy(max_seconds=120.0, seed=seed)  # fake seconds
    blocks = ServerBlocks(rate_rps, 1, seed=seed, clock=clock)
    measured = interleave(
        lambda: clock.workload(a_ms),
        lambda: clock.workload(b_ms),
        policy,
        clock=clock,
        blocks=blocks,
    )
    return measured, blocks


@pytest.mark.usefixtures("no_full_collections")
def test_a_model_ten_percent_slower_at_half_load_is_caught() -> None:
    # 20 ms at 25 req/s is 50% busy: the queue amplifies a 10% slower service
    verdicts = [_server_ab(20.0, 22.0, seed)[0].comparison.verdict for seed in range(5)]
    assert verdicts.count(Outcome.SLOWER) >= 4, verdicts


@pytest.mark.usefixtures("no_full_collections")
def test_the_same_model_is_never_called_slower_or_faster() -> None:
    verdicts = [_server_ab(20.0, 20.0, seed)[0].comparison.verdict for seed in range(5)]
    assert Outcome.SLOWER not in verdicts and Outcome.FASTER not in verdicts, verdicts


@pytest.mark.usefixtures("no_full_collections")
def test_both_sides_of_a_round_serve_the_same_arrivals() -> None:
    clock = FakeClock()
    blocks = ServerBlocks(25.0, 1, seed=3, clock=clock)
    a = blocks.measure(clock.workload(20.0), round_index=4)
    b = blocks.measure(clock.workload(20.0), round_index=4)
    other_round = blocks.measure(clock.workload(20.0), round_index=5)
    # Same schedule: the latencies differ only by the per-call noise; another round, another one
    assert len(a) == len(b) == round_requests(25.0)
    assert np.median(np.abs(np.subtract(a, b))) < np.median(np.abs(np.subtract(a, other_round)))


def test_rounds_are_long_enough_for_a_queue_to_form() -> None:
    assert round_requests(2.0) == 10  # slow models: at least ten arrivals
    assert round_requests(40.0) == 100  # ~2.5 s of arrivals
    # A 30 s cap holds a dozen rounds of both sides: 1.25 s of arrivals each
    assert round_requests(20.0, max_seconds=30.0) == 25
    assert round_requests(20.0, max_seconds=120.0) == round_requests(20.0, max_seconds=60.0) == 50


@pytest.mark.usefixtures("no_full_collections")
def test_an_overloaded_rate_is_flagged_in_the_reason() -> None:
    clock = FakeClock()
    outcome = measure_server_pair(
        "m-cpu-3s-100rps", "REF",
        lambda: clock.workload(20.0), lambda: clock.workload(20.0),
        100.0, 1, {"provider": "cpu"}, ABPolicy(max_seconds=5.0), clock=clock,
    )  # fmt: skip
    assert "unserved at round deadlines: over capacity" in outcome.reason
    assert outcome.case_id == "m-cpu-3s-100rps"
    assert outcome.settings is not None and outcome.settings["scenario"] == "server"


# --- --perf-against: the gate's server rows --------------------------------------------------


def test_an_unchanged_artifact_at_a_rate_is_reported_under_the_rows_name() -> None:
    ref = FakeRefModels({"tiny/fp32": "k" * 64})
    gate = _gate(ref, {"tiny/fp32": "k" * 64}, [], None)

    outcome = gate.check_server(PerfCase("tiny/fp32", "cpu", 3.0), 50.0, 1, SETTINGS)

    assert outcome.outcome is Outcome.UNCHANGED and outcome.measured is None
    assert outcome.case_id == "tiny/fp32-cpu-3s-50rps"
    assert ref.built == [] and gate.outcomes == [outcome]


def test_a_changed_artifact_serves_refs_arrivals_interleaved(model_cache: Path) -> None:
    from export.cache import ModelCache
    from export.recipes import parse_variant_name

    path = ModelCache(model_cache, progress=lambda _m: None).get(parse_variant_name("tiny/fp32"))
    ref = FakeRefModels({"tiny/fp32": "r" * 64}, path.model_path)
    gate = _gate(ref, {"tiny/fp32": "h" * 64}, [], path.model_path)

    # 10 req/s: well under the tiny model's capacity even beside a busy xdist worker, so that
    # every arrival of a round is served before its deadline on both sides
    outcome = gate.check_server(PerfCase("tiny/fp32", "cpu", 1.0), 10.0, 1, SETTINGS)

    assert outcome.measured is not None and ref.built == ["tiny/fp32"]
    first = outcome.measured.rounds[0]
    assert len(first.a_ms) == len(first.b_ms) == round_requests(10.0, max_seconds=1.0)
    assert outcome.to_dict()["settings"]["rate_rps"] == 10.0


# --- end to end ---------------------------------------------------------------------------------


SERVER = ("--perf-scenario=server", "--perf-rate=50", "--perf-max-time=1")
# Stored runs: a rate the tiny model serves well under capacity even beside the other xdist
# worker (~20 ms per 3 s call there), so that its stored runs agree with each other
STORED = ("--perf-scenario=server", "--perf-rate=10", "--perf-max-time=3")


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner runs share two cores with the other xdist worker: that contention is the test
    run's, not a model's (contended runs are neither stored nor judged: test_plugin_baselines)."""
    monkeypatch.setattr(Contention, "contaminated", lambda *_args, **_kwargs: False)


def test_against_head_reports_the_server_row_unchanged(suite: Suite, tmp_path: Path) -> None:
    _repo_with_export(suite.pytester.path)
    report = tmp_path / "report"

    result = suite.run(
        *SERVER, "--perf-against=HEAD", f"--perf-report={report}", target="test_latency.py"
    )

    text = output(result)
    assert result.ret == 0, text
    assert "tiny/fp32-cpu-3s-50rps: unchanged (same artifact) vs HEAD" in text
    rows = json.loads((report / "report.json").read_text())["against"]
    assert [(r["id"], r["outcome"]) for r in rows] == [("tiny/fp32-cpu-3s-50rps", "unchanged")]


@pytest.mark.usefixtures("quiet")
def test_stored_server_runs_judge_a_later_run_and_catch_a_slower_model(
    suite: Suite, tmp_path: Path
) -> None:
    baselines = tmp_path / "baselines"
    for _ in range(3):
        saved = suite.run(
            *STORED, "--perf-save-baseline", f"--perf-baselines={baselines}",
            target="test_latency.py",
        )  # fmt: skip
        assert saved.ret == 0, output(saved)
    (stored,) = baselines.glob("*/baseline.json")
    entry = json.loads(stored.read_text())["benchmarks"]["tiny/fp32-cpu-3s-10rps"]
    assert entry["settings"]["scenario"] == "server" and len(entry["runs"]) == 3
    assert len(entry["samples_ms"]) > 0

    slower = suite.run(
        *STORED, "--benchmark-compare", f"--perf-baselines={baselines}",
        "--perf-inject-delay=40", target="test_latency.py",
    )  # fmt: skip

    text = output(slower)
    assert slower.ret == 1, text
    assert "tiny/fp32-cpu-3s-10rps regressed against its baseline" in text
    assert "tiny/fp32-cpu-3s-10rps vs baseline: slower" in text


@pytest.mark.usefixtures("quiet")
def test_a_stored_peak_is_served_at_its_stored_rate_and_catches_a_slower_model(
    suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each search finds another rate (drift moves a peak); the stored runs all serve the first
    save's, and a slower model queues more there. The search is faked (its own tests are in
    test_peak.py): only where its answer goes is tested here."""
    found = iter([10.0, 12.0, 9.0, 14.0])
    current = {"rps": 0.0}

    def search(case: PerfCase, _workload: object, slo_ms: float, *_args: object,
               **_kwargs: object) -> PeakResult:  # fmt: skip
        current["rps"] = next(found)
        return PeakResult(case, slo_ms, 0.95, 50.0, (), "a fake search")

    monkeypatch.setattr(traffic, "find_peak", search)
    monkeypatch.setattr(PeakResult, "proven_rps", property(lambda _self: current["rps"]))
    peak = ("--perf-scenario=server", "--perf-rate=peak", "--perf-slo-ms=1000",
            "--perf-max-time=3", f"--perf-baselines={tmp_path / 'baselines'}")  # fmt: skip
    for _ in range(3):
        saved = suite.run(*peak, "--perf-save-baseline", target="test_latency.py")
        assert saved.ret == 0, output(saved)
    (stored,) = (tmp_path / "baselines").glob("*/baseline.json")
    entry = json.loads(stored.read_text())["benchmarks"]["tiny/fp32-cpu-3s-peak"]
    assert entry["settings"]["scenario"] == "peak" and entry["settings"]["rate_rps"] == 10.0
    assert len(entry["runs"]) == 3  # the later saves served 10 req/s too, not 12 or 9

    slower = suite.run(*peak, "--benchmark-compare", "--perf-inject-delay=40",
                       target="test_latency.py")  # fmt: skip

    text = output(slower)
    assert slower.ret == 1, text
    assert "tiny/fp32-cpu-3s-peak regressed against its baseline" in text
    assert "(the peak found now: 14 req/s; stored runs served 10)" in text


@pytest.mark.usefixtures("quiet")
def test_a_server_row_is_not_judged_on_runs_at_another_worker_count(
    suite: Suite, tmp_path: Path
) -> None:
    baselines = tmp_path / "baselines"
    saved = suite.run(
        *SERVER, "--perf-save-baseline", f"--perf-baselines={baselines}", target="test_latency.py"
    )
    assert saved.ret == 0, output(saved)

    other = suite.run(
        *SERVER, "--perf-workers=2", "--benchmark-compare", f"--perf-baselines={baselines}",
        "--perf-undecided=fail", target="test_latency.py",
    )  # fmt: skip

    text = output(other)
    assert other.ret == 1, text
    assert "refused, the runs differ in: workers: baseline 1 != current 2" in text


def test_against_head_compares_the_peak_rate_found(suite: Suite, tmp_path: Path) -> None:
    _repo_with_export(suite.pytester.path)
    report = tmp_path / "report"

    result = suite.run(
        "--perf-scenario=server", "--perf-rate=peak", "--perf-slo-ms=1000", "--perf-max-time=30",
        "--perf-against=HEAD", f"--perf-report={report}", target="test_latency.py",
    )  # fmt: skip

    text = output(result)
    assert result.ret == 0, text
    data = json.loads((report / "report.json").read_text())
    (peak,) = [r for r in data["scenarios"] if r["scenario"] == "peak"]
    (row,) = data["against"]
    assert row["id"] == f"tiny/fp32-cpu-3s-{peak['peak_rps']:g}rps"
    assert row["outcome"] == "unchanged"


def test_a_round_that_started_no_request_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from perf.scenarios import server_ab
    from perf.scenarios.server import NothingServed

    def starved(schedule: list[open_loop.Request], *args: object) -> open_loop.OpenLoopRun:
        return open_loop.OpenLoopRun(20.0, 1, (), 0.0, unserved=len(schedule))

    monkeypatch.setattr(server_ab, "run_open_loop", starved)
    blocks = ServerBlocks(20.0, 1)
    with pytest.raises(NothingServed) as error:
        blocks.measure(Workload((lambda: None,)), 0)
    assert (
        f"a server A/B round (round 1) at 20 req/s: none of {blocks.block_calls} requests "
        "started within the"
    ) in str(error.value)
