"""--perf-compare A,B: two variants of one commit as an A/B (perf.scenarios.pairs), its option
parsing, a variant with real extra work named slower and explained, and the plugin end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.cache import ModelCache
from export.recipes import parse_variant_name
from perf.measure.cases import PerfCase, SelectionError
from perf.measure.models import ResolvedModel
from perf.measure.sessions import SessionSettings
from perf.scenarios.ab import ABPolicy
from perf.scenarios.pairs import VariantPair, compare_variants, pair_cases, parse_pairs
from perf.stats.outcome import Outcome
from tests import test_plugin
from tests.test_against import _repo_with_export
from tests.test_plugin import Suite, output

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite

SETTINGS = SessionSettings(provider="cpu", intra_op_threads=1, spinning=False)
INPUTS = {"audio": np.zeros((1, 16000), np.float32)}
EXTRA_MATMULS = 8


def test_pairs_are_two_named_variants() -> None:
    assert parse_pairs(["tiny/fp32,tiny/int8", " tiny/fp32 , tiny/int8 "]) == (
        ("tiny/fp32", "tiny/int8"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tiny/fp32", "two variants separated by a comma"),
        ("tiny/fp32,tiny/int8,tiny/fp16", "two variants separated by a comma"),
        ("tiny/fp32,", "two variants separated by a comma"),
        ("tiny/*,tiny/int8", "no variant 'tiny/*' (names, not globs)"),
        ("tiny/fp32,tiny/int9", "no variant 'tiny/int9'"),
        ("tiny/fp32,tiny/fp32", "A and B are one variant"),
    ],
)
def test_a_pair_that_is_not_two_variants_is_refused(value: str, expected: str) -> None:
    with pytest.raises(SelectionError, match="--perf-compare") as error:
        parse_pairs([value])
    assert expected in str(error.value)


def test_pair_ids_name_b_then_a() -> None:
    (same_arch, other_arch) = pair_cases(
        [("tiny/fp32", "tiny/int8"), ("cnn/fp32", "tiny/int8")], ["cpu"], [3.0], 1
    )
    assert same_arch.id == "tiny/int8-cpu-3s-vs-fp32"
    assert other_arch.id == "tiny/int8-cpu-3s-vs-cnn/fp32"


def _with_extra_work(model_path: Path, out: Path) -> Path:
    """The model plus a chain of 256x256 MatMuls fed from its input, as a second output (so
    onnxruntime can neither fold nor prune it): the same answer, several times the work."""
    model = onnx.load(str(model_path))
    graph = model.graph
    square = numpy_helper.from_array(np.full((256, 256), 1e-3, np.float32), "extra_weight")
    shape = numpy_helper.from_array(np.array([-1, 256], np.int64), "extra_shape")
    graph.initializer.extend([square, shape])
    audio = graph.input[0].name
    nodes = [helper.make_node("Reshape", [audio, "extra_shape"], ["extra_0"], name="extra_reshape")]
    for i in range(EXTRA_MATMULS):
        nodes.append(helper.make_node("MatMul", [f"extra_{i}", "extra_weight"], [f"extra_{i + 1}"],
                                      name=f"extra_matmul_{i}"))  # fmt: skip
    graph.node.extend(nodes)
    graph.output.append(
        helper.make_tensor_value_info(f"extra_{EXTRA_MATMULS}", TensorProto.FLOAT, None)
    )
    onnx.save(model, str(out))
    return out


def test_a_variant_with_more_work_is_slower_and_the_added_nodes_are_named(
    model_cache: Path, tmp_path: Path
) -> None:
    fp32 = ModelCache(model_cache, progress=lambda _m: None).get(parse_variant_name("tiny/fp32"))
    # 16000 samples -> [62, 256] after the reshape would not divide: feed 256 * 64 samples
    inputs = {"audio": np.zeros((1, 256 * 64), np.float32)}
    paths = {"tiny/fp32": fp32.model_path,
             "tiny/int8": _with_extra_work(fp32.model_path, tmp_path / "more.onnx")}  # fmt: skip
    pair = VariantPair(PerfCase("tiny/fp32", "cpu", 1.0), PerfCase("tiny/int8", "cpu", 1.0))

    outcome = compare_variants(
        pair,
        lambda case, _settings: ResolvedModel(paths[case.variant], 0, case.variant),
        lambda _path, _case: inputs,
        SETTINGS,
        ABPolicy(max_seconds=8, explain="slower"),
    )

    assert outcome.outcome is Outcome.SLOWER, outcome.line()
    assert (outcome.ref, outcome.b_label) == ("tiny/fp32", "tiny/int8")
    assert "B = tiny/int8, A = tiny/fp32" in outcome.line()
    assert outcome.explained is not None
    added = {c.label for c in outcome.explained.nodes if c.kind == "added"}
    assert {f"extra_matmul_{i}" for i in range(EXTRA_MATMULS)} <= added
    assert not [c for c in outcome.explained.nodes if c.kind == "removed"]


def test_perf_compare_runs_only_its_pairs_and_reports_b_over_a(
    suite: Suite, tmp_path: Path
) -> None:
    report = tmp_path / "report"

    result = suite.run(
        "--perf-compare=tiny/fp32,tiny/int8", "--perf-max-time=3", f"--perf-report={report}",
        "-rs", target="test_latency.py",
    )  # fmt: skip

    text = output(result)
    assert result.ret == 0, text
    assert "variant pairs: B / A, interleaved (--perf-compare)" in text
    assert "tiny/int8-cpu-3s-vs-fp32: x" in text and "B = tiny/int8, A = tiny/fp32" in text
    assert "--perf-compare runs only its pairs" in text  # test_latency and the others
    data = json.loads((report / "report.json").read_text())
    assert data["results"] == []
    (row,) = data["against"]
    assert (row["id"], row["against"], row["b"]) == ("tiny/int8-cpu-3s-vs-fp32", "tiny/fp32",
                                                     "tiny/int8")  # fmt: skip
    assert row["comparison"]["rounds"] >= 3
    assert "## A/B of variants (B / A, P50)" in (report / "report.md").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["--perf-against=HEAD"],
        ["--benchmark-compare"],
        ["--perf-save-baseline"],
        ["--perf-profile"],
        ["--perf-scenario=server", "--perf-rate=2"],
    ],
)
def test_perf_compare_with_what_it_cannot_do_is_a_usage_error(
    suite: Suite, args: list[str]
) -> None:
    _repo_with_export(suite.pytester.path)  # --perf-against HEAD names a real commit
    result = suite.run("--perf-compare=tiny/fp32,tiny/int8", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--perf-compare with --" in output(result)


def test_a_bad_pair_is_a_usage_error_naming_the_option(suite: Suite) -> None:
    result = suite.run("--perf-compare=tiny/fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--perf-compare 'tiny/fp32': two variants separated by a comma" in output(result)
