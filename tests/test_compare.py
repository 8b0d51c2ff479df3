"""Tests for perf.stats.compare: baseline-vs-current latency comparison.

The many-trial tests use ``n_resamples=500`` bootstrap resamples (the default is 2000) to stay
fast; 500 still puts the 0.5% and 99.5% points of a 99% interval between order statistics of
a few resamples, enough for rates measured over 200 trials.
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
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from perf.stats.compare import (
    Change,
    Comparison,
    QuantileChange,
    compare_samples,
    format_comparison_table,
    main,
)

N = 300
TRIALS = 200
FAST = 500  # bootstrap resamples in the many-trial tests
MIRROR = {
    Change.SLOWER: Change.FASTER,
    Change.FASTER: Change.SLOWER,
    Change.SAME: Change.SAME,
    Change.UNDECIDED: Change.UNDECIDED,
}


def _lognormal(rng: np.random.Generator, n: int = N, sigma: float = 0.2) -> np.ndarray:
    """Per-call latencies around 50 ms; sigma 0.2 is a noisy machine (P99 / P50 about 1.6)."""
    return rng.lognormal(math.log(50.0), sigma, size=n)


def _trials(factor: float, sigma: float = 0.2, tag: int = 0) -> list[Comparison]:
    """TRIALS seeded A/B comparisons, current drawn from the baseline distribution x factor."""
    results = []
    for seed in range(TRIALS):
        rng = np.random.default_rng([tag, seed])
        baseline, current = _lognormal(rng, sigma=sigma), _lognormal(rng, sigma=sigma) * factor
        results.append(compare_samples(baseline, current, n_resamples=FAST))
    return results


def _verdicts(results: list[Comparison]) -> Counter[Change]:
    return Counter(r.verdict for r in results)


def _slow_tail(rng: np.random.Generator, n: int, fraction: float = 0.03) -> np.ndarray:
    """Baseline distribution with ``fraction`` of the calls replaced by ones ~1.3x its P99."""
    samples = _lognormal(rng, n)
    slow = rng.random(n) < fraction
    p99 = 50.0 * math.exp(0.2 * 2.326)
    samples[slow] = rng.lognormal(math.log(1.3 * p99), 0.05, size=int(slow.sum()))
    return samples


# --- error rates over seeded trials ------------------------------------------------------


def test_a_a_false_slower_rate_is_at_most_two_percent() -> None:
    verdicts = _verdicts(_trials(1.0, tag=1))
    # Measured: 0 of 200 SLOWER (and 0 FASTER); the rest SAME or UNDECIDED.
    assert verdicts[Change.SLOWER] <= 0.02 * TRIALS
    assert verdicts[Change.FASTER] <= 0.02 * TRIALS


def test_fifteen_percent_slower_is_detected_in_at_least_95_percent() -> None:
    results = _trials(1.15, tag=2)
    assert _verdicts(results)[Change.SLOWER] >= 0.95 * TRIALS
    assert all(r.regressed == (r.verdict is Change.SLOWER) for r in results)


def test_three_percent_slower_below_the_minimum_effect_is_never_slower() -> None:
    # On a quiet machine (sigma 0.05). With more noise the rules as specified do flag some
    # x1.03 runs: SLOWER needs only the point ratio beyond 1.05 with a significant shift, and
    # a true 3% shift gets there by chance (measured 3% of trials at sigma 0.1, 13% at 0.2).
    verdicts = _verdicts(_trials(1.03, sigma=0.05, tag=3))
    assert verdicts[Change.SLOWER] == 0
    assert verdicts[Change.FASTER] == 0


def test_fifteen_percent_faster_is_faster_at_p50_and_never_slower() -> None:
    results = _trials(0.85, tag=4)
    p50 = Counter(r.changes[0].change for r in results)
    assert p50[Change.FASTER] >= 0.95 * TRIALS
    # Overall FASTER needs every quantile decided; at n=300 P99 often stays UNDECIDED.
    assert set(_verdicts(results)) <= {Change.FASTER, Change.UNDECIDED}


def test_fifteen_percent_faster_is_faster_overall_with_more_samples() -> None:
    rng = np.random.default_rng(5)
    result = compare_samples(_lognormal(rng, 3000), _lognormal(rng, 3000) * 0.85, n_resamples=FAST)
    assert result.verdict is Change.FASTER
    assert [c.change for c in result.changes] == [Change.FASTER] * 3


def test_tail_only_slowdown_is_slower_at_p99_and_same_at_p50() -> None:
    rng = np.random.default_rng(6)
    # 3% of calls slower moves the Mann-Whitney statistic by only 1.5%, so the significance
    # gate needs many samples: n=20000 gives p ~ 1e-6 here.
    result = compare_samples(_lognormal(rng, 20_000), _slow_tail(rng, 20_000), n_resamples=FAST)
    p50, p99 = result.change_at(0.5), result.change_at(0.99)
    assert p50 is not None and p99 is not None
    assert p99.change is Change.SLOWER
    assert p99.ratio == pytest.approx(1.3, abs=0.1)
    assert p50.change is Change.SAME
    assert result.verdict is Change.SLOWER


def test_tail_only_slowdown_with_few_samples_is_undecided_not_same() -> None:
    verdicts = Counter()
    for seed in range(20):
        rng = np.random.default_rng([7, seed])
        result = compare_samples(_lognormal(rng), _slow_tail(rng, N), n_resamples=FAST)
        verdicts[result.verdict] += 1
    assert verdicts[Change.SAME] == 0


# --- the rules, one quantile at a time --------------------------------------------------


def test_identical_samples_are_same() -> None:
    samples = _lognormal(np.random.default_rng(8))
    result = compare_samples(samples, samples)
    assert result.verdict is Change.SAME
    assert all(c.ratio_low <= c.ratio == 1.0 <= c.ratio_high for c in result.changes)
    assert result.mann_whitney_p_slower == pytest.approx(result.mann_whitney_p_faster)


def test_large_significant_shift_has_ci_and_p_values_on_the_slow_side() -> None:
    rng = np.random.default_rng(9)
    result = compare_samples(_lognormal(rng), _lognormal(rng) * 1.3)
    p50 = result.changes[0]
    assert 1.0 < p50.ratio_low < p50.ratio < p50.ratio_high
    assert p50.ratio == pytest.approx(1.3, rel=0.05)
    assert result.mann_whitney_p_slower < 1e-10 < 0.99 < result.mann_whitney_p_faster
    assert p50.change is Change.SLOWER
    assert result.regressed


def test_ratio_beyond_minimum_effect_but_not_significant_is_undecided() -> None:
    # 20 samples with sigma 0.3: the ratio interval is far too wide to call a 10% shift.
    rng = np.random.default_rng(10)
    baseline, current = _lognormal(rng, 20, sigma=0.3), _lognormal(rng, 20, sigma=0.3)
    medians = [np.quantile(x, 0.5, method="inverted_cdf") for x in (baseline, current)]
    result = compare_samples(baseline, current * 1.1 * medians[0] / medians[1])
    p50 = result.changes[0]
    assert p50.ratio > 1.05 and p50.ratio_low < 1.0
    assert p50.change is Change.UNDECIDED
    assert result.verdict is Change.UNDECIDED


def test_significant_change_within_the_minimum_effect_with_narrow_ci_is_same() -> None:
    rng = np.random.default_rng(11)
    result = compare_samples(
        _lognormal(rng, 20_000), _lognormal(rng, 20_000) * 1.02, n_resamples=FAST
    )
    p50 = result.changes[0]
    assert result.mann_whitney_p_slower < 0.01 and p50.ratio_low > 1.0
    assert p50.ratio_high < 1.05
    assert p50.change is Change.SAME


def test_custom_min_effects_choose_the_quantiles() -> None:
    rng = np.random.default_rng(12)
    result = compare_samples(_lognormal(rng), _lognormal(rng), min_effects={0.9: 0.2, 0.5: 0.1})
    assert [(c.quantile, c.label, c.min_effect) for c in result.changes] == [
        (0.5, "P50", 0.1),
        (0.9, "P90", 0.2),
    ]


def test_quantiles_are_inverted_cdf_order_statistics() -> None:
    baseline = np.arange(1.0, 101.0)
    result = compare_samples(baseline, baseline * 2, min_effects={0.5: 0.05, 0.99: 0.1})
    assert [(c.baseline, c.current, c.ratio) for c in result.changes] == [
        (50.0, 100.0, 2.0),
        (99.0, 198.0, 2.0),
    ]


def test_seed_makes_the_interval_reproducible() -> None:
    rng = np.random.default_rng(13)
    baseline, current = _lognormal(rng), _lognormal(rng)
    assert compare_samples(baseline, current, seed=3) == compare_samples(baseline, current, seed=3)
    other = compare_samples(baseline, current, seed=4)
    assert other.changes[0].ratio == compare_samples(baseline, current, seed=3).changes[0].ratio


# --- properties --------------------------------------------------------------------------

latencies = arrays(
    np.float64,
    st.integers(20, 60),
    elements=st.floats(0.1, 1000.0, allow_nan=False, allow_infinity=False),
)


def _proportional(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to scale: the one case where the resampling order falls back on the roles."""
    return a.size == b.size and np.allclose(a / a.max(), b / b.max(), rtol=1e-12, atol=0)


@settings(max_examples=40, deadline=None)
@given(baseline=latencies, current=latencies, scale=st.floats(0.25, 4.0))
def test_ratio_and_interval_scale_with_current(
    baseline: np.ndarray, current: np.ndarray, scale: float
) -> None:
    assume(not _proportional(baseline, current))
    plain = compare_samples(baseline, current, n_resamples=200)
    scaled = compare_samples(baseline, current * scale, n_resamples=200)
    for a, b in zip(plain.changes, scaled.changes, strict=True):
        assert b.ratio == pytest.approx(a.ratio * scale, rel=1e-9)
        assert b.ratio_low == pytest.approx(a.ratio_low * scale, rel=1e-9)
        assert b.ratio_high == pytest.approx(a.ratio_high * scale, rel=1e-9)
        assert b.current == pytest.approx(a.current * scale, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(baseline=latencies, current=latencies, shift=st.sampled_from([1.0, 0.8, 1.25]))
def test_swapping_baseline_and_current_mirrors_the_result(
    baseline: np.ndarray, current: np.ndarray, shift: float
) -> None:
    assume(not _proportional(baseline, current))
    current = current * shift
    forward = compare_samples(baseline, current, n_resamples=200)
    backward = compare_samples(current, baseline, n_resamples=200)
    for f, b in zip(forward.changes, backward.changes, strict=True):
        assert b.ratio == pytest.approx(1.0 / f.ratio, rel=1e-12)
        assert b.ratio_low == pytest.approx(1.0 / f.ratio_high, rel=1e-9)
        assert b.ratio_high == pytest.approx(1.0 / f.ratio_low, rel=1e-9)
        assert b.change is MIRROR[f.change]
    assert backward.mann_whitney_p_slower == pytest.approx(forward.mann_whitney_p_faster)
    assert backward.mann_whitney_p_faster == pytest.approx(forward.mann_whitney_p_slower)
    assert backward.verdict is MIRROR[forward.verdict] or Change.UNDECIDED in (
        forward.verdict,
        backward.verdict,
    )


def test_swapping_mirrors_the_overall_verdict_on_clear_shifts() -> None:
    rng = np.random.default_rng(14)
    baseline, current = _lognormal(rng, 3000), _lognormal(rng, 3000) * 1.2
    assert compare_samples(baseline, current, n_resamples=FAST).verdict is Change.SLOWER
    assert compare_samples(current, baseline, n_resamples=FAST).verdict is Change.FASTER


# --- validation --------------------------------------------------------------------------

GOOD = np.linspace(10.0, 20.0, 30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline": GOOD[:19]}, "baseline has 19 samples; need at least 20"),
        ({"current": GOOD[:5]}, "current has 5 samples; need at least 20"),
        ({"baseline": GOOD.reshape(5, 6)}, r"baseline must be one-dimensional, got shape \(5, 6\)"),
        ({"current": np.append(GOOD, [0.0, -1.0])}, "current has 2 value"),
        ({"baseline": np.append(GOOD, np.nan)}, "baseline has 1 value"),
        ({"current": np.append(GOOD, np.inf)}, "not positive finite"),
        ({"min_effects": {}}, "min_effects is empty"),
        ({"min_effects": {0.5: 0.0}}, r"min_effects\[0.5\] must be in \(0, 1\)"),
        ({"min_effects": {0.5: 1.5}}, r"min_effects\[0.5\] must be in \(0, 1\)"),
        ({"min_effects": {1.0: 0.1}}, r"quantiles must be in \(0, 1\)"),
        ({"alpha": 0.0}, r"alpha must be in \(0, 1\)"),
        ({"alpha": 1.0}, r"alpha must be in \(0, 1\)"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
        ({"confidence": -0.5}, r"confidence must be in \(0, 1\)"),
        ({"n_resamples": 0}, "n_resamples must be a positive integer"),
    ],
)
def test_invalid_input_is_rejected(kwargs: dict, message: str) -> None:
    args = {"baseline": GOOD, "current": GOOD, **kwargs}
    with pytest.raises(ValueError, match=message):
        compare_samples(**args)


# --- rendering ---------------------------------------------------------------------------


def _change(**kwargs: object) -> QuantileChange:
    fields = {
        "quantile": 0.99,
        "label": "P99",
        "baseline": 412.3,
        "current": 455.0,
        "ratio": 1.1035,
        "ratio_low": 1.071,
        "ratio_high": 1.139,
        "min_effect": 0.1,
        "change": Change.SLOWER,
    }
    return QuantileChange(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_quantile_change_format() -> None:
    assert _change().format() == "P99 412.3 -> 455.0 (x1.10 [1.07, 1.14]) slower"


def test_comparison_to_dict_is_json_and_format_lists_every_quantile() -> None:
    rng = np.random.default_rng(15)
    result = compare_samples(_lognormal(rng), _lognormal(rng) * 1.3)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "slower" and data["regressed"] is True
    assert data["n_baseline"] == data["n_current"] == N
    assert [c["label"] for c in data["changes"]] == ["P50", "P95", "P99"]
    assert data["changes"][0]["change"] == "slower"
    text = result.format()
    assert text.startswith("slower: n=300 -> 300, Mann-Whitney p(slower)=")
    assert text.count("\n") == 3 and "P95" in text and "(min effect 5%)" in text


def test_table_has_aligned_columns_and_dashes_for_missing_quantiles() -> None:
    rng = np.random.default_rng(16)
    full = compare_samples(_lognormal(rng), _lognormal(rng) * 1.3)
    p50_only = compare_samples(_lognormal(rng), _lognormal(rng), min_effects={0.5: 0.05})
    table = format_comparison_table([("model/fp32", full), ("a-much-longer-name", p50_only)])
    header, rule, first, second = table.splitlines()
    assert header.split()[:3] == ["benchmark", "P50", "base"]
    assert rule.startswith("-" * len("a-much-longer-name") + "  ")
    assert first.startswith("model/fp32 ") and first.endswith("slower")
    assert "x1.3" in first
    assert second.split()[-4:-1] == ["-", "-", "-"]
    # Every column starts at the same offset in each row (the rule marks them).
    starts = [i for i in range(1, len(rule)) if rule[i] == "-" and rule[i - 1] == " "]
    assert all(row[i - 1] == " " for row in (header, first) for i in starts)


# --- command line ------------------------------------------------------------------------


def _write(
    path: Path, benchmarks: dict[str, np.ndarray], probes: dict[str, np.ndarray] | None = None
) -> Path:
    entries = []
    for fullname, samples in benchmarks.items():
        extra: dict[str, object] = {"samples_ms": samples.tolist()}
        if probes and fullname in probes:
            extra["probe_ms"] = probes[fullname].tolist()
        entries.append(
            {
                "fullname": fullname,
                "name": fullname.split("::")[-1],
                "stats": {},
                "extra_info": extra,
            }
        )
    path.write_text(json.dumps({"benchmarks": entries}), encoding="utf-8")
    return path


def _pair(tmp_path: Path, factor: float, seed: int = 17) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    name = "perf/test_latency.py::test_latency[cnn]"
    old = _write(tmp_path / "old.json", {name: _lognormal(rng)})
    new = _write(tmp_path / "new.json", {name: _lognormal(rng) * factor})
    return old, new


def test_cli_exit_0_when_nothing_is_slower(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    old, new = _pair(tmp_path, 1.0)
    assert main([str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "test_latency[cnn]" in out and "0 slower" in out
    assert "ms per call (no probe normalisation" in out


def test_cli_exit_1_when_a_benchmark_is_slower(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old, new = _pair(tmp_path, 1.3)
    assert main([str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "1 slower" in out and "P50" in out and "Mann-Whitney" in out


def test_cli_uses_probe_ratios_when_both_files_have_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The machine, not the model, is 30% slower in the new run: the probe slowed down as much.
    rng = np.random.default_rng(18)
    name = "perf/test_latency.py::test_latency[cnn]"
    probe_old, probe_new = _lognormal(rng, sigma=0.02) / 10, _lognormal(rng, sigma=0.02) / 10 * 1.3
    calls_old, calls_new = _lognormal(rng, sigma=0.05), _lognormal(rng, sigma=0.05)
    old = _write(tmp_path / "old.json", {name: calls_old * probe_old / 5}, {name: probe_old})
    new = _write(tmp_path / "new.json", {name: calls_new * probe_new / 5}, {name: probe_new})
    assert main([str(old), str(new)]) == 0
    assert "machine-speed probe" in capsys.readouterr().out
    # Without the probe in one file, the raw milliseconds are compared and the run fails.
    raw = _write(tmp_path / "raw.json", {name: calls_new * probe_new / 5})
    assert main([str(old), str(raw)]) == 1
    assert "no probe normalisation" in capsys.readouterr().out


def test_cli_reports_benchmarks_in_only_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rng = np.random.default_rng(19)
    old = _write(tmp_path / "old.json", {"a": _lognormal(rng), "gone": _lognormal(rng)})
    new = _write(tmp_path / "new.json", {"a": _lognormal(rng), "added": _lognormal(rng)})
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
            '{"benchmarks": [{"fullname": "x", "extra_info": '
            '{"samples_ms": [1, 2], "probe_ms": [1]}}]}',
            "1 probe_ms for 2 samples_ms",
        ),
    ],
)
def test_cli_exit_2_names_the_unusable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str, message: str
) -> None:
    good, _ = _pair(tmp_path, 1.0)
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    assert main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err


def test_cli_exit_2_for_a_missing_file_or_too_few_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good, _ = _pair(tmp_path, 1.0)
    assert main([str(good), str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    few = _write(tmp_path / "few.json", {"perf/test_latency.py::test_latency[cnn]": GOOD[:5]})
    assert main([str(good), str(few)]) == 2
    assert "current has 5 samples; need at least 20" in capsys.readouterr().err


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    old, new = _pair(tmp_path, 1.3)
    proc = subprocess.run(
        [sys.executable, "-m", "perf.stats.compare", str(old), str(new), "--n-resamples", "200"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 1, proc.stderr
    assert "slower" in proc.stdout
