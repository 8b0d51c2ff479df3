"""Tests for perf.stats.compare: a run judged against stored runs of the same benchmark.

Two kinds of evidence. Against known distributions (run-level values drawn i.i.d. lognormal),
the t prediction interval must have its nominal coverage and error rates. Against a simulated
machine that drifts as these VMs do (AR(1) drift lasting ~30 s, session effects, per-call
noise), the run-level comparison must keep A/A false verdicts near its nominal rate while the
statistics it replaced (per call, or per 20 s stretch of one run) are far too confident.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from perf.stats.compare import (
    DEFAULT_GATES,
    MIN_BASELINE_RUNS,
    P50_SPREAD_FLOOR,
    TAIL_SPREAD_FLOOR,
    QuantileGate,
    RunSummary,
    compare_runs,
    format_comparison_table,
    main,
    prediction_interval,
)
from perf.stats.outcome import Outcome

TRIALS = 400
P50_ONLY = (QuantileGate(0.5, 0.05, 0.95),)


def _run(p50: float, spread: float = 1.3, seconds: float = 120.0) -> RunSummary:
    """A run summary with P95 and P99 a fixed multiple of its P50."""
    return RunSummary({0.5: p50, 0.95: p50 * spread, 0.99: p50 * spread**1.5}, 1000, seconds)


def _runs(rng: np.random.Generator, k: int, sigma: float, factor: float = 1.0) -> list[RunSummary]:
    return [_run(50.0 * factor * math.exp(rng.normal(0.0, sigma))) for _ in range(k)]


def _trials(k: int, sigma: float, factor: float, tag: int) -> Counter[Outcome]:
    verdicts: Counter[Outcome] = Counter()
    for seed in range(TRIALS):
        rng = np.random.default_rng([tag, seed])
        stored = _runs(rng, k, sigma)
        (current,) = _runs(rng, 1, sigma, factor)
        verdicts[compare_runs(stored, current, P50_ONLY).verdict] += 1
    return verdicts


# --- known distributions -----------------------------------------------------------------


def test_prediction_interval_covers_a_new_run_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(2000):
        stored = rng.normal(0.0, 0.04, size=5)
        new = rng.normal(0.0, 0.04)
        # The true difference is 0: the interval must contain it 95% of the time.
        _, low, high = prediction_interval(stored, new, 0.95)
        covered += low <= 0.0 <= high
    assert 0.935 <= covered / 2000 <= 0.965


def test_a_a_false_verdicts_stay_under_one_in_twenty() -> None:
    verdicts = _trials(k=5, sigma=0.03, factor=1.0, tag=2)
    assert verdicts[Outcome.SLOWER] + verdicts[Outcome.FASTER] <= 0.05 * TRIALS


def test_ten_percent_slower_is_caught_when_runs_vary_little() -> None:
    verdicts = _trials(k=10, sigma=0.015, factor=1.10, tag=3)
    assert verdicts[Outcome.SLOWER] >= 0.95 * TRIALS
    assert verdicts[Outcome.FASTER] == 0


def test_ten_percent_slower_is_undecided_not_same_when_runs_vary_as_much() -> None:
    # Runs that land 6% apart cannot resolve 10%: the honest answer is "undecided".
    verdicts = _trials(k=5, sigma=0.06, factor=1.10, tag=4)
    assert verdicts[Outcome.SAME] <= 0.02 * TRIALS
    assert verdicts[Outcome.FASTER] <= 0.01 * TRIALS
    assert verdicts[Outcome.UNDECIDED] >= 0.5 * TRIALS


def test_fifteen_percent_faster_is_faster() -> None:
    verdicts = _trials(k=10, sigma=0.015, factor=0.85, tag=5)
    assert verdicts[Outcome.FASTER] >= 0.95 * TRIALS


def test_a_change_within_the_minimum_effect_is_same_with_steady_runs() -> None:
    verdicts = _trials(k=10, sigma=0.003, factor=1.02, tag=6)
    assert verdicts[Outcome.SAME] >= 0.95 * TRIALS


def test_fewer_than_three_stored_runs_is_undecided_and_says_what_to_do() -> None:
    stored = [_run(50.0), _run(50.1)]
    result = compare_runs(stored, _run(80.0))
    assert MIN_BASELINE_RUNS == 3
    assert result.verdict is Outcome.UNDECIDED
    assert all(math.isnan(c.ratio_low) for c in result.changes)
    assert result.changes[0].ratio == pytest.approx(80.0 / math.sqrt(50.0 * 50.1))
    assert "holds 2 run(s)" in result.reason
    assert "--perf-save-baseline" in result.reason and "--perf-against" in result.reason


ALL_GATED = (
    QuantileGate(0.5, 0.05, 0.95),
    QuantileGate(0.95, 0.10, 0.99),
    QuantileGate(0.99, 0.10, 0.99),
)


def test_any_slower_gated_quantile_makes_the_verdict_slower_and_undecided_beats_faster() -> None:
    stored = [_run(p, spread=1.3) for p in (50.0, 50.5, 49.5, 50.2, 49.8)]
    tail_only = RunSummary({0.5: 50.0, 0.95: 65.0 * 1.5, 0.99: 74.1 * 1.5}, 1000, 120.0)
    result = compare_runs(stored, tail_only, ALL_GATED)
    assert [c.change for c in result.changes] == [Outcome.SAME, Outcome.SLOWER, Outcome.SLOWER]
    assert result.verdict is Outcome.SLOWER and result.regressed
    # P50 faster, P99 x1.09 with an interval reaching past the 10% line: undecided overall.
    mixed = RunSummary({0.5: 40.0, 0.95: 65.0, 0.99: 74.1 * 1.09}, 1000, 120.0)
    result = compare_runs(stored, mixed, ALL_GATED)
    assert [c.change for c in result.changes] == [Outcome.FASTER, Outcome.SAME, Outcome.UNDECIDED]
    assert result.verdict is Outcome.UNDECIDED and "P99" in result.reason


def test_by_default_tails_are_reported_but_only_p50_decides() -> None:
    # A burst of other work doubles a run's tails: shown, never a verdict (module docstring).
    stored = [_run(p, spread=1.3) for p in (50.0, 50.5, 49.5, 50.2, 49.8)]
    burst = RunSummary({0.5: 50.0, 0.95: 65.0 * 2.0, 0.99: 74.1 * 2.0}, 1000, 120.0)
    result = compare_runs(stored, burst)
    assert [c.change for c in result.changes][1:] == [Outcome.SLOWER, Outcome.SLOWER]
    assert result.verdict is not Outcome.SLOWER
    assert "(reported, not gated)" in result.format()
    assert [c["gated"] for c in result.to_dict()["changes"]] == [True, False, False]
    with pytest.raises(ValueError, match="no gate decides"):
        compare_runs(stored, burst, (QuantileGate(0.5, 0.05, 0.95, gated=False),))


def test_p50_is_gated_at_95_percent_with_a_drift_floor_and_tails_reported_at_99() -> None:
    assert [
        (g.quantile, g.min_effect, g.confidence, g.spread_floor, g.gated) for g in DEFAULT_GATES
    ] == [
        (0.5, 0.05, 0.95, P50_SPREAD_FLOOR, True),
        (0.95, 0.10, 0.99, TAIL_SPREAD_FLOOR, False),
        (0.99, 0.10, 0.99, TAIL_SPREAD_FLOOR, False),
    ]


def _sitting_trials(floor: float, tag: int, factor: float = 1.0) -> Counter[Outcome]:
    """Five stored runs in one sitting (1.5% apart), the next run in another sitting: the
    machine's speed moved by a draw of sd 5% in between (as on the calibration VMs)."""
    gates = (QuantileGate(0.5, 0.05, 0.95, floor),)
    verdicts: Counter[Outcome] = Counter()
    for seed in range(TRIALS):
        rng = np.random.default_rng([tag, seed])
        stored = _runs(rng, 5, 0.015)
        (current,) = _runs(rng, 1, 0.015, factor * math.exp(rng.normal(0.0, 0.05)))
        verdicts[compare_runs(stored, current, gates).verdict] += 1
    return verdicts


def test_the_spread_floor_keeps_one_sitting_baselines_from_calling_drift_a_change() -> None:
    without, with_floor = _sitting_trials(0.0, tag=11), _sitting_trials(P50_SPREAD_FLOOR, tag=11)
    # Measured: without the floor about 40% of A/A runs are called slower or faster.
    assert without[Outcome.SLOWER] + without[Outcome.FASTER] >= 0.25 * TRIALS
    assert with_floor[Outcome.SLOWER] + with_floor[Outcome.FASTER] <= 0.05 * TRIALS
    # ...and a 30% slowdown still stands out of that drift.
    assert _sitting_trials(P50_SPREAD_FLOOR, tag=12, factor=1.3)[Outcome.SLOWER] >= 0.9 * TRIALS


@settings(max_examples=60, deadline=None)
@given(
    logs=st.lists(st.floats(-0.2, 0.2), min_size=3, max_size=10),
    new=st.floats(-0.3, 0.3),
    scale=st.floats(0.01, 100.0),
)
def test_scaling_every_latency_changes_nothing(logs: list[float], new: float, scale: float) -> None:
    stored = [_run(50.0 * math.exp(v)) for v in logs]
    current = _run(50.0 * math.exp(new))
    scaled = [_run(50.0 * scale * math.exp(v)) for v in logs]
    a = compare_runs(stored, current)
    b = compare_runs(scaled, _run(50.0 * scale * math.exp(new)))
    assert a.verdict is b.verdict
    for x, y in zip(a.changes, b.changes, strict=True):
        assert x.ratio == pytest.approx(y.ratio, rel=1e-9)
        assert x.ratio_low == pytest.approx(y.ratio_low, rel=1e-9)


def test_identical_stored_runs_give_a_point_interval() -> None:
    result = compare_runs([_run(50.0)] * 3, _run(50.0), ALL_GATED)
    assert result.verdict is Outcome.SAME
    assert result.changes[0].ratio_low == result.changes[0].ratio_high == 1.0
    # With the drift floor, three identical runs still leave about x1.28: not "same".
    floored = compare_runs([_run(50.0)] * 3, _run(50.0))
    assert floored.verdict is Outcome.UNDECIDED
    half = stats.t.ppf(0.975, 2) * P50_SPREAD_FLOOR * math.sqrt(1 + 1 / 3)
    assert floored.changes[0].ratio_high == pytest.approx(math.exp(half))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: compare_runs([], _run(1.0)), "no baseline runs"),
        (lambda: compare_runs([_run(1.0)] * 3, _run(1.0), ()), "gates is empty"),
        (
            lambda: compare_runs([_run(1.0)] * 3, _run(1.0), (QuantileGate(0.5, 1.5, 0.95),)),
            "min_effect must be in",
        ),
        (
            lambda: compare_runs([_run(1.0)] * 3, RunSummary({0.5: 1.0}, 10, 1.0)),
            "has no quantile 0.95",
        ),
        (lambda: RunSummary({0.5: -1.0}, 1, 1.0), "positive ms"),
        (lambda: RunSummary.of([], 1.0), "non-empty"),
    ],
)
def test_invalid_input_is_rejected(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_run_summary_round_trips_and_uses_inverted_cdf_quantiles() -> None:
    run = RunSummary.of([float(x) for x in range(1, 101)], 12.5, "2026-12-04T00:00:00+00:00")
    assert run.quantiles_ms == {0.5: 50.0, 0.95: 95.0, 0.99: 99.0}
    assert RunSummary.from_dict(json.loads(json.dumps(run.to_dict()))) == run


# --- a simulated drifting machine ---------------------------------------------------------


def _ar1(rng: np.random.Generator, n: int, tau_s: float, sd: float) -> np.ndarray:
    phi = math.exp(-1.0 / tau_s)
    noise = rng.normal(0.0, sd * math.sqrt(1 - phi**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    return x


def _simulated_run(
    rng: np.random.Generator, drift: np.ndarray, start_s: int, seconds: int = 120
) -> list[np.ndarray]:
    """One run of 20 ms calls in 5 s segments (a fresh session each): the segments' calls."""
    segments = []
    for t in range(start_s, start_s + seconds, 5):
        session = rng.normal(0.0, 0.025)
        second = t + np.arange(250) // 50  # 50 calls per second
        segments.append(20.0 * np.exp(drift[second] + session + rng.normal(0.0, 0.04, 250)))
    return segments


def _batch_welch_verdict(a: list[np.ndarray], b: list[np.ndarray]) -> Outcome:
    """The replaced statistic: 20 s stretches of each run as replicates, Welch t on P50."""
    va = np.log([np.median(np.concatenate(a[i : i + 4])) for i in range(0, len(a), 4)])
    vb = np.log([np.median(np.concatenate(b[i : i + 4])) for i in range(0, len(b), 4)])
    low, high = stats.ttest_ind(vb, va, equal_var=False).confidence_interval(0.95)
    d = float(np.mean(vb) - np.mean(va))
    if low > 0 and d >= math.log(1.05):
        return Outcome.SLOWER
    if high < 0 and d <= -math.log(1.05):
        return Outcome.FASTER
    return Outcome.SAME


def test_on_a_drifting_machine_run_level_verdicts_hold_where_within_run_ones_do_not() -> None:
    run_level, batch_level = Counter[Outcome](), Counter[Outcome]()
    trials = 150
    for seed in range(trials):
        rng = np.random.default_rng([7, seed])
        drift = _ar1(rng, 6 * 150 + 10, tau_s=30.0, sd=0.04)
        runs = [_simulated_run(rng, drift, 150 * i) for i in range(6)]  # 30 s apart
        summaries = [RunSummary.of(np.concatenate(r), 120.0) for r in runs]
        run_level[compare_runs(summaries[:5], summaries[5], P50_ONLY).verdict] += 1
        batch_level[_batch_welch_verdict(runs[4], runs[5])] += 1
    false_run = run_level[Outcome.SLOWER] + run_level[Outcome.FASTER]
    false_batch = batch_level[Outcome.SLOWER] + batch_level[Outcome.FASTER]
    # Measured: run level 4 of 150 (2.7%); 20 s batches of one run 17 of 150 (11%).
    assert false_run <= 0.05 * trials
    assert false_batch >= 0.08 * trials


# --- presentation and command line ----------------------------------------------------------


def test_format_names_runs_and_every_quantile() -> None:
    stored = [_run(p) for p in (50.0, 51.0, 49.0)]
    result = compare_runs(stored, _run(60.0, seconds=118.0))
    text = result.format()
    assert text.startswith(f"{result.verdict}: this run (118 s, 1000 calls) against 3 stored run")
    for label in ("P50", "P95", "P99"):
        assert f"  {label} " in text
    assert json.loads(json.dumps(result.to_dict()))["baseline_runs"] == 3


def test_table_has_aligned_columns_and_run_counts() -> None:
    stored = [_run(p) for p in (50.0, 51.0, 49.0)]
    table = format_comparison_table([("cnn/fp32", compare_runs(stored, _run(50.0)))])
    header, rule, row = table.splitlines()
    assert header.split()[:2] == ["benchmark", "P50"] and "runs" in header
    assert row.startswith("cnn/fp32") and " 3  " in row
    assert len(rule) >= len(row.rstrip())


def _write(path: Path, benchmarks: dict[str, np.ndarray]) -> Path:
    entries = [
        {"fullname": name, "extra_info": {"samples_ms": samples.tolist()}}
        for name, samples in benchmarks.items()
    ]
    path.write_text(json.dumps({"benchmarks": entries}), encoding="utf-8")
    return path


def _files(tmp_path: Path, factor: float, k: int = 4) -> list[str]:
    rng = np.random.default_rng(17)
    name = "perf/test_latency.py::test_latency[cnn]"

    def run(f: float) -> np.ndarray:
        return 50.0 * f * np.exp(rng.normal(0.0, 0.01) + rng.normal(0.0, 0.05, 400))

    paths = [_write(tmp_path / f"old{i}.json", {name: run(1.0)}) for i in range(k)]
    return [*map(str, paths), str(_write(tmp_path / "new.json", {name: run(factor)}))]


def test_cli_exit_0_when_nothing_is_slower(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(_files(tmp_path, 1.0)) == 0
    out = capsys.readouterr().out
    assert "test_latency[cnn]" in out and "0 slower" in out


def test_cli_exit_1_when_a_benchmark_is_slower(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(_files(tmp_path, 1.3)) == 1
    assert "1 slower" in capsys.readouterr().out


def test_cli_with_one_baseline_file_is_undecided_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files = _files(tmp_path, 1.3, k=1)
    assert main(files) == 0
    out = capsys.readouterr().out
    assert "1 undecided" in out and "holds 1 run(s)" in out


def test_cli_reports_benchmarks_in_only_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rng = np.random.default_rng(19)
    old = _write(tmp_path / "old.json", {"a": rng.random(30) + 1, "gone": rng.random(30) + 1})
    new = _write(tmp_path / "new.json", {"a": rng.random(30) + 1, "added": rng.random(30) + 1})
    assert main([str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert f"only in {old}: gone" in out and f"only in {new}: added" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        ('{"machine_info": {}}', "no 'benchmarks' list"),
        ('{"benchmarks": [{"fullname": "x", "extra_info": {}}]}', "benchmark x has no"),
        (
            '{"benchmarks": [{"fullname": "x", "extra_info": {"samples_ms": [1, "a"]}}]}',
            "benchmark x has no",
        ),
        (
            '{"benchmarks": [{"fullname": "x", "extra_info": {"samples_ms": [1, -2]}}]}',
            "positive finite",
        ),
    ],
)
def test_cli_exit_2_names_the_unusable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str, message: str
) -> None:
    good = _files(tmp_path, 1.0, k=1)[0]
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    assert main([good, str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perf.stats.compare", *_files(tmp_path, 1.3)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 1, proc.stderr
    assert "slower" in proc.stdout
