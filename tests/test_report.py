"""Tests for perf.reports.report and .plots: report.md / summary.md / report.json and PNGs.

Results are built from synthetic samples (no model is run), so nothing here depends on how
fast this machine is. Images are checked for being PNGs, never compared.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from perf.baselines.regression import BaselineCheck
from perf.budgets.rules import Budget
from perf.budgets.verdicts import final_decision
from perf.files import atomic_write_text
from perf.measure.cases import PerfCase
from perf.measure.contention import Contention
from perf.measure.sampling import Samples
from perf.measurement import LatencyResult, judge
from perf.reports.plots import plot_distribution, plot_overview
from perf.reports.report import (
    FORMAT_VERSION,
    SUMMARY_LIMIT_BYTES,
    ReportContent,
    markdown_summary,
    skipped_from_report,
    write_report,
)
from perf.reports.summary import HEADERS
from perf.stats.compare import DEFAULT_GATES, RunSummary, Segment, compare_runs
from perf.stats.outcome import Outcome
from perf.stats.percentiles import LatencySummary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GITHUB_LIMIT = 1024 * 1024
RUN_INFO = {"machine": "Test CPU, 2 usable cores", "onnxruntime": "onnxruntime 1.0", "date": "D"}
SKIPPED = [("w2v2-base/fp32-cuda-3s", "CUDAExecutionProvider not in this onnxruntime build")]


def _contention(busy: float = 0.0) -> Contention:
    return Contention(
        wall_s=2.0,
        other_cpu_s=busy * 2.0,
        other_cores_busy=busy,
        cpu_count=2,
        steal_s=None,
        load_avg_1m=None,
    )


def make_result(
    variant: str,
    provider: str = "cpu",
    median_ms: float = 10.0,
    budget_ms: float | None = None,
    n: int = 400,
    busy: float = 0.0,
    seed: int = 0,
) -> LatencyResult:
    rng = np.random.default_rng(seed)
    samples_ms = tuple(float(x) for x in median_ms * rng.lognormal(0.0, 0.05, n))
    budget = None if budget_ms is None else Budget(budget_ms, None, "test rule")
    decisions = tuple(final_decision(d) for d in judge(samples_ms, budget, 0.95))
    samples = Samples(
        first_call_ms=median_ms * 3,
        warmup_calls=10,
        warmup_steady=True,
        samples_ms=samples_ms,
        segments=(Segment(len(samples_ms), n * median_ms / 1e3),),
        stopped_because="verdict decided" if budget else "enough samples for the percentile",
        sampling_seconds=n * median_ms / 1e3,
        contention=_contention(busy),
    )
    return LatencyResult(
        case=PerfCase(variant, provider, 3.0),
        model_path=f"/models/{variant}/model.onnx",
        size_bytes=120_000_000,
        model_key="abc123",
        settings={"provider": provider, "effective_intra_op_threads": 2},
        load_ms=850.0,
        memory_mb=12.0,
        samples=samples,
        summary=LatencySummary.from_samples(samples_ms),
        budget=budget,
        decisions=decisions,
        node_placement=None,
    )


def _check(ratio: float) -> BaselineCheck:
    """A real comparison of a run ``ratio`` x as slow as four steady stored runs, on a machine
    steady enough for "same" (no drift floor)."""
    stored = [RunSummary({0.5: x, 0.95: x * 1.1, 0.99: x * 1.2}, 400, 20.0) for x in STORED_P50]
    current = RunSummary({0.5: 10 * ratio, 0.95: 11 * ratio, 0.99: 12 * ratio}, 400, 20.0)
    steady = tuple(dataclasses.replace(g, spread_floor=0.0) for g in DEFAULT_GATES)
    comparison = compare_runs(stored, current, steady)
    return BaselineCheck(comparison.verdict, f"vs baseline: {comparison.verdict}", comparison)


STORED_P50 = (10.0, 10.1, 9.9, 10.05)


@pytest.fixture(scope="module")
def results() -> list[LatencyResult]:
    return [
        make_result("cnn/int8", median_ms=10.0, budget_ms=100.0, seed=1),  # pass
        make_result("w2v2-base/fp32", median_ms=200.0, budget_ms=100.0, seed=2),  # fail
        make_result("w2v2-base/int8", median_ms=50.0, seed=3),  # not gated
        make_result("distilhubert/int8", median_ms=30.0, busy=1.5, seed=4),  # contended
    ]


COMPARISONS = [
    ("cnn/int8-cpu-3s", _check(1.0)),
    ("w2v2-base/fp32-cpu-3s", _check(1.3)),
    ("w2v2-base/int8-cpu-3s", BaselineCheck(Outcome.NOT_COMPARED, "no baseline: not compared")),
]


@pytest.fixture(scope="module")
def written(
    results: list[LatencyResult], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Path]]:
    directory = tmp_path_factory.mktemp("perf-report")
    paths = write_report(directory, ReportContent(results, COMPARISONS, RUN_INFO, skipped=SKIPPED))
    return directory, paths


def _png_ok(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > len(PNG_MAGIC) and data.startswith(PNG_MAGIC)


def test_report_files_are_written(written: tuple[Path, list[Path]]) -> None:
    directory, paths = written
    names = {p.relative_to(directory).as_posix() for p in paths}
    assert {"report.md", "summary.md", "report.json", "overview.png"} <= names
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert len([n for n in names if n.startswith("plots/")]) == 4


def test_markdown_has_table_headers_rows_verdicts_and_units(
    written: tuple[Path, list[Path]],
) -> None:
    text = (written[0] / "report.md").read_text()
    assert "| " + " | ".join(HEADERS) + " |" in text
    assert "| --- |" in text
    rows = {
        line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if " MB |" in line
    }
    assert rows["cnn/int8-cpu-3s"].endswith("| P99 < 100 ms | pass |")
    assert rows["w2v2-base/fp32-cpu-3s"].endswith("| P99 < 100 ms | fail |")
    assert rows["w2v2-base/int8-cpu-3s"].endswith("| - | not gated |")
    assert rows["distilhubert/int8-cpu-3s"].endswith("| not gated [contended] |")
    assert " ms [" in rows["cnn/int8-cpu-3s"]  # P99 with its interval, in ms
    assert "120 MB | 0.85 s" in rows["cnn/int8-cpu-3s"]
    assert "milliseconds (ms)" in text
    assert "**4 benchmarks**: 1 fail, 2 not gated, 1 pass; 1 skipped" in text


def test_markdown_has_run_info_skips_and_comparisons(written: tuple[Path, list[Path]]) -> None:
    text = (written[0] / "report.md").read_text()
    assert "- **machine**: Test CPU, 2 usable cores" in text
    assert "- **onnxruntime**: onnxruntime 1.0" in text
    assert "## Skipped (1)" in text
    assert (
        "| w2v2-base/fp32-cuda-3s | CUDAExecutionProvider not in this onnxruntime build |" in text
    )
    assert "## Against the stored baseline" in text
    assert "| w2v2-base/fp32-cpu-3s | **slower** | P50 10.01 -> 13.00 (x1.30 [" in text
    assert "| cnn/int8-cpu-3s | same | P50 10.01 -> 10.00" in text
    assert "| w2v2-base/int8-cpu-3s | **not compared** | no baseline: not compared |" in text
    assert "against the baseline: 1 not compared, 1 same, 1 slower" in text


def test_markdown_links_plots_that_exist(written: tuple[Path, list[Path]]) -> None:
    directory = written[0]
    text = (directory / "report.md").read_text()
    assert "![latency overview](overview.png)" in text
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if "](plots/" in line]
    assert len(links) == 4
    assert all(_png_ok(directory / link) for link in links)


def test_job_summary_has_no_image_links(written: tuple[Path, list[Path]]) -> None:
    summary = (written[0] / "summary.md").read_text()
    assert "](" not in summary
    assert "perf-report` artifact" in summary
    assert "| w2v2-base/fp32-cpu-3s |" in summary


def test_json_report_is_versioned_and_has_no_samples(written: tuple[Path, list[Path]]) -> None:
    text = (written[0] / "report.json").read_text()
    data = json.loads(text)
    assert data["format_version"] == FORMAT_VERSION == 7
    assert data["machine_peak"] is None  # synthetic results: no work counted
    assert data["refused"] == data["against"] == []  # added in format 2
    assert data["run_info"] == RUN_INFO
    assert [r["case"]["id"] for r in data["results"]] == [
        "cnn/int8-cpu-3s",
        "w2v2-base/fp32-cpu-3s",
        "w2v2-base/int8-cpu-3s",
        "distilhubert/int8-cpu-3s",
    ]
    assert [r["verdict"] for r in data["results"]] == ["pass", "fail", "not gated", "not gated"]
    assert data["results"][0]["latency_ms"]["percentiles"]["p99"]["high"] is not None
    assert data["results"][0]["sampling"]["n"] == 400
    assert data["skipped"] == [{"id": SKIPPED[0][0], "reason": SKIPPED[0][1]}]
    assert [(c["id"], c["outcome"]) for c in data["comparisons"]] == [
        ("cnn/int8-cpu-3s", "same"),
        ("w2v2-base/fp32-cpu-3s", "slower"),
        ("w2v2-base/int8-cpu-3s", "not compared"),
    ]
    assert data["comparisons"][1]["comparison"]["changes"][0]["ratio"] == pytest.approx(1.3, 0.01)
    assert data["comparisons"][2]["comparison"] is None
    assert "samples_ms" not in text and "segments" not in text


def test_pngs_are_valid(written: tuple[Path, list[Path]]) -> None:
    pngs = [p for p in written[1] if p.suffix == ".png"]
    assert len(pngs) == 5
    assert all(_png_ok(p) for p in pngs)


def test_no_temporary_files_are_left(written: tuple[Path, list[Path]]) -> None:
    leftovers = [p for p in written[0].rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert leftovers == []


def test_failed_write_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_plot_functions_write_pngs_with_few_samples(tmp_path: Path) -> None:
    few = make_result("tiny/fp32", median_ms=2.0, budget_ms=5.0, n=20)  # P99 interval open
    assert _png_ok(plot_distribution(few, tmp_path / "nested" / "dist.png"))
    assert _png_ok(plot_overview([few], tmp_path / "overview.png"))


def _many(results: list[LatencyResult], count: int) -> list[LatencyResult]:
    """``count`` results sharing the same samples; every 1000th one is the failing result."""
    fail, ok = results[1], results[0]
    return [
        dataclasses.replace(
            fail if i % 1000 == 999 else ok,
            case=PerfCase(f"arch-{i:05d}/{'x' * 40}", "cpu", 3.0),
        )
        for i in range(count)
    ]


def test_thousands_of_rows_are_cut_to_fit_github_job_summary(
    results: list[LatencyResult], tmp_path: Path
) -> None:
    many = _many(results, 8000)
    skipped = [(f"skip-{i}", "reason " * 20) for i in range(2000)]
    write_report(
        tmp_path, ReportContent(many, (), RUN_INFO, skipped=skipped), max_distribution_plots=0
    )
    for name in ("report.md", "summary.md"):
        text = (tmp_path / name).read_text()
        assert len(text.encode()) <= SUMMARY_LIMIT_BYTES < GITHUB_LIMIT
        assert "rows left out to stay under GitHub's 1 MiB job-summary limit" in text
        assert "**8000 benchmarks**: 8 fail, 7992 pass; 2000 skipped" in text
        for i in range(999, 8000, 1000):  # every failing row survives the cut
            assert f"| arch-{i:05d}/" in text
    data = json.loads((tmp_path / "report.json").read_text())
    assert len(data["results"]) == 8000 and len(data["skipped"]) == 2000
    assert _png_ok(tmp_path / "overview.png")
    assert not (tmp_path / "plots").exists()


def test_small_limit_keeps_failures_first(results: list[LatencyResult]) -> None:
    many = _many(results, 3000)
    text = markdown_summary(ReportContent(many, (), RUN_INFO), limit_bytes=20_000)
    assert len(text.encode()) <= 20_000
    kept = [line for line in text.splitlines() if line.startswith("| arch-")]
    assert 3 <= len(kept) < 3000
    assert all(f"| arch-{i:05d}/" in text for i in (999, 1999, 2999))
    assert f"{3000 - len(kept)} of 3000 rows left out" in text


def test_unlimited_summary_keeps_every_row(results: list[LatencyResult]) -> None:
    text = markdown_summary(ReportContent(_many(results, 50), (), RUN_INFO))
    assert len([line for line in text.splitlines() if line.startswith("| arch-")]) == 50
    assert "left out" not in text


def test_cells_escape_pipes_and_newlines(results: list[LatencyResult]) -> None:
    text = markdown_summary(
        ReportContent(results[:1], skipped=[("a|b", "line one\nline | two")]), plots=[]
    )
    assert "| a\\|b | line one<br>line \\| two |" in text


def test_default_run_info_names_machine_onnxruntime_and_date(
    results: list[LatencyResult], tmp_path: Path
) -> None:
    write_report(tmp_path, ReportContent(results[:1]), max_distribution_plots=0)
    info = json.loads((tmp_path / "report.json").read_text())["run_info"]
    assert {"machine", "onnxruntime", "date"} <= set(info)
    assert "onnxruntime" in info["onnxruntime"]


def test_skipped_from_pytest_report() -> None:
    skipped = SimpleNamespace(
        skipped=True,
        nodeid="perf/test_latency.py::test_latency[w2v2-base/int8-cuda-3s]",
        longrepr=("perf/test_latency.py", 28, "Skipped: CUDA not in this build"),
    )
    assert skipped_from_report(skipped) == ("w2v2-base/int8-cuda-3s", "CUDA not in this build")
    assert skipped_from_report(SimpleNamespace(skipped=False, nodeid="x", longrepr=None)) is None
    empty = SimpleNamespace(
        skipped=True,
        nodeid="perf/test_latency.py::test_concurrent_throughput[NOTSET]",
        longrepr=("perf/test_latency.py", 47, "Skipped: got empty parameter set"),
    )
    assert skipped_from_report(empty) is None
