"""Why is it slower, for real models: profiled rounds of A and B on the tiny models, and the
plugin's --perf-explain and --perf-profile end to end (pytester)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from export.cache import ModelCache
from export.recipes import parse_variant_name
from perf.measure.profile import ProfiledSession, breakdown
from perf.measure.sessions import SessionSettings, open_session
from perf.scenarios.explain import ExplainPolicy, profile_pair
from perf.stats.attribution import BY_NAME, BY_ORDER
from tests import test_plugin
from tests.test_against import _repo_with_export
from tests.test_plugin import Suite, output

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite

SETTINGS = SessionSettings(provider="cpu", intra_op_threads=1, spinning=False)
INPUTS = {"audio": np.zeros((1, 16000), np.float32)}
QUICK = ExplainPolicy(seconds=0.5, min_rounds=4)


def _profiled(cache: Path, variant: str) -> functools.partial:
    path = ModelCache(cache, progress=lambda _m: None).get(parse_variant_name(variant)).model_path
    return functools.partial(ProfiledSession, functools.partial(open_session, path, SETTINGS))


def test_the_same_model_matches_by_name_and_the_parts_add_up(model_cache: Path) -> None:
    fp32 = _profiled(model_cache, "tiny/fp32")

    why = profile_pair(lambda: fp32(INPUTS), lambda: fp32(INPUTS), QUICK)

    assert why.matching == BY_NAME and why.rounds >= 4
    assert all(c.kind == "matched" for c in why.nodes)
    parts = sum(c.change_ms for c in why.nodes) + why.outside.change_ms
    assert abs(parts - why.total.change_ms) < 1e-9


def test_another_graph_is_matched_by_execution_order(model_cache: Path) -> None:
    fp32, int8 = _profiled(model_cache, "tiny/fp32"), _profiled(model_cache, "tiny/int8")

    why = profile_pair(lambda: fp32(INPUTS), lambda: int8(INPUTS), QUICK)

    assert why.matching == BY_ORDER
    kinds = {c.kind for c in why.nodes}
    assert {"added", "removed"} <= kinds  # quantize/dequantize nodes only in B, float ones in A
    assert any(c.op_type.endswith("Integer") or "Quant" in c.op_type for c in why.nodes
               if c.kind == "added")  # fmt: skip


def test_a_breakdown_lists_op_types_and_the_time_outside_nodes(model_cache: Path) -> None:
    fp32 = _profiled(model_cache, "tiny/fp32")
    rows = breakdown(lambda: fp32(INPUTS), typical_ms=1.0)
    assert rows[-1]["op_type"] == "(outside nodes)" and len(rows) > 2
    assert abs(sum(r["share"] for r in rows) - 1.0) < 1e-9
    assert {"Conv", "MatMul"} & {r["op_type"] for r in rows}


def test_against_head_explains_an_a_a_when_asked(suite: Suite, tmp_path: Path) -> None:
    _repo_with_export(suite.pytester.path)
    report = tmp_path / "report"

    result = suite.run(
        "--perf-against=HEAD", "--perf-against-unchanged", "--perf-explain=all",
        "--perf-max-time=4", f"--perf-report={report}",
    )  # fmt: skip

    text = output(result)
    assert result.ret == 0, text
    assert "  why: " in text and "ms per profiled call" in text
    assert "(nodes matched by node name)" in text
    (row,) = json.loads((report / "report.json").read_text())["against"]
    why = row["explained"]
    assert why["matching"] == "node name" and why["rounds"] >= 6
    assert {"total", "outside", "nodes", "op_types", "line"} <= set(why)
    markdown = (report / "report.md").read_text()
    assert "## Why it changed: per node and op type" in markdown
    assert (report / "why.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_against_head_profiles_nothing_unless_slower_by_default(
    suite: Suite, tmp_path: Path
) -> None:
    _repo_with_export(suite.pytester.path)
    report = tmp_path / "report"
    result = suite.run(
        "--perf-against=HEAD", "--perf-against-unchanged", "--perf-max-time=3",
        f"--perf-report={report}",
    )  # fmt: skip
    text = output(result)
    (row,) = json.loads((report / "report.json").read_text())["against"]
    if row["outcome"] != "slower":
        assert row["explained"] is None and "why:" not in text


def test_perf_profile_adds_each_benchmarks_op_types(suite: Suite, tmp_path: Path) -> None:
    report = tmp_path / "report"

    result = suite.run("--perf-profile", f"--perf-report={report}")

    text = output(result)
    assert result.ret == 0, text
    assert "where the time goes, per op type (--perf-profile, ms per call)" in text
    assert "tiny/fp32-cpu-3s (profiled calls):" in text
    assert "(outside nodes)" in text
    (bench,) = json.loads((report / "report.json").read_text())["results"]
    assert bench["profile"][-1]["op_type"] == "(outside nodes)"
    assert (
        "## Where the time goes, per op type (--perf-profile)" in (report / "report.md").read_text()
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--perf-profile", "--perf-scenario=server", "--perf-rate=2"], "--perf-profile applies"),
        (["--perf-explain=all"], "--perf-explain all applies to A/B comparisons"),
        (["--perf-explain=off"], "--perf-explain off applies to A/B comparisons"),
        (["--perf-explain=why"], "invalid choice: 'why'"),
    ],
)
def test_profiling_options_that_mean_nothing(suite: Suite, args: list[str], expected: str) -> None:
    result = suite.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in output(result)
