"""The pytest plugin end to end, with pytester: options, ids, skips, verdicts, summary, JSON.

Every run benchmarks the ``tiny`` architecture from one shared model cache built (or copied
from the project's cache) once per session, and samples for at most a second. No assertion
here depends on how fast this machine is: the budget tests compare a 150 ms injected delay
with a 50 ms budget, or ~2 ms calls with a 5000 ms budget.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import perf
from export.cache import ModelCache, default_cache_dir
from export.recipes import parse_variant_name

pytest_plugins = ["pytester"]

TINY_VARIANTS = ("tiny/fp32", "tiny/int8")
TEST_FILE = Path(perf.__file__).parent / "test_latency.py"
# Only test_latency: the torch eager reference would import torch, and throughput is off.
TARGET = "test_latency.py::test_latency"
QUICK = (
    "--perf-max-time=1",
    "--perf-min-samples=30",
    "--perf-concurrency=0",
    "--perf-threads=1",
    "-p",
    "no:cacheprovider",
)
PYTEST_SECTION = '[tool.pytest.ini_options]\naddopts = ""\n'
NO_CUDA = "CUDAExecutionProvider not in this onnxruntime build (available:"
GENEROUS_BUDGET = '[[tool.latency-suite.budget]]\nvariants = ["tiny/*"]\np99_ms = 5000\n'


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding tiny/fp32 and tiny/int8, shared by every pytester run (nothing rebuilt)."""
    root = tmp_path_factory.mktemp("perf-models")
    cache = ModelCache(root, progress=lambda _message: None)
    project = ModelCache(default_cache_dir(), progress=lambda _message: None)
    for name in TINY_VARIANTS:
        recipe = parse_variant_name(name)
        key = recipe.key()
        prebuilt = project.entry_dir(recipe, key)
        if prebuilt.is_dir():  # saves the torch export; get() below still verifies the copy
            shutil.copytree(prebuilt, cache.entry_dir(recipe, key))
        cache.get(recipe)
    return root


class Suite:
    """A pytester rootdir with the plugin, the real test_latency.py and its own pyproject."""

    def __init__(self, pytester: pytest.Pytester, cache: Path) -> None:
        self.pytester = pytester
        self.cache = cache
        pytester.makeconftest('pytest_plugins = ["perf.plugin"]\n')
        (pytester.path / "test_latency.py").write_text(TEST_FILE.read_text())
        self.budgets()

    @property
    def pyproject(self) -> Path:
        return self.pytester.path / "pyproject.toml"

    def budgets(self, *rules: str) -> None:
        self.pyproject.write_text("\n".join([PYTEST_SECTION, *rules]))

    def run(
        self,
        *args: str,
        variants: str | None = "tiny/fp32",
        providers: str = "cpu",
        plugins: tuple[object, ...] = (),
        target: str = TARGET,
    ) -> pytest.RunResult:
        selection = [f"--perf-providers={providers}"]
        if variants is not None:
            selection.append(f"--perf-variants={variants}")
        return self.pytester.runpytest(
            target,
            *QUICK,
            f"--perf-cache={self.cache}",
            *selection,
            *args,
            plugins=list(plugins),
        )


@pytest.fixture
def suite(pytester: pytest.Pytester, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Suite:
    # Under xdist the inner run would see this and pytest-benchmark would disable itself.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return Suite(pytester, model_cache)


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


# --- a. ids, durations, providers -------------------------------------------------------------


def test_case_ids_read_variant_provider_and_duration(suite: Suite) -> None:
    default = suite.run("--collect-only", "-q")
    both = suite.run("--collect-only", "-q", "--perf-durations=1s,3s")

    assert default.ret == 0
    default.stdout.fnmatch_lines(["test_latency.py::test_latency[[]tiny/fp32-cpu-3s[]]"])
    assert "tiny/fp32-cpu-1s" not in output(default)
    both.stdout.fnmatch_lines(
        [
            "test_latency.py::test_latency[[]tiny/fp32-cpu-1s[]]",
            "test_latency.py::test_latency[[]tiny/fp32-cpu-3s[]]",
        ]
    )


class PluginRegistrations:
    """Counts how often perf.plugin is registered in the inner run's plugin manager."""

    def __init__(self) -> None:
        self.count: int | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        plugins = session.config.pluginmanager.get_plugins()
        self.count = sum(getattr(p, "__name__", None) == "perf.plugin" for p in plugins)


def test_provider_missing_from_the_onnxruntime_build_is_skipped_with_the_reason(
    suite: Suite,
) -> None:
    registrations = PluginRegistrations()

    result = suite.run("-rs", "--perf-durations=1s", providers="cpu,cuda", plugins=(registrations,))

    result.assert_outcomes(passed=1, skipped=1)
    reports = result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    skipped = [r for r in reports if r.skipped]
    assert [r.nodeid for r in skipped] == ["test_latency.py::test_latency[tiny/fp32-cuda-1s]"]
    assert NO_CUDA in skipped[0].longrepr[2]
    assert NO_CUDA in output(result)  # -rs shows the reason
    assert registrations.count == 1


# --- b. a slowed-down model is caught ---------------------------------------------------------


def test_injected_slowdown_breaks_the_budget_and_explains_why(suite: Suite) -> None:
    suite.budgets('[[tool.latency-suite.budget]]\nvariants = ["tiny/*"]\np99_ms = 50\n')

    result = suite.run("--perf-inject-delay=150")

    result.assert_outcomes(failed=1)
    text = output(result)
    assert "tiny/fp32-cpu-3s breaks its latency budget" in text
    for expected in ("P99", "budget", "contention:", "over n="):
        assert expected in text
    assert f"budget P99 < 50 ms ({suite.pyproject} [[tool.latency-suite.budget]] #1)" in text
    result.stdout.fnmatch_lines(["*latency summary*", "tiny/fp32-cpu-3s*P99 < 50 ms*fail*"])


def test_unslowed_model_within_a_generous_budget_passes(suite: Suite) -> None:
    suite.budgets(GENEROUS_BUDGET)

    result = suite.run()

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*latency summary*", "tiny/fp32-cpu-3s*P99 < 5000 ms*pass*"])
    assert "breaks its latency budget" not in output(result)


# --- c. the summary table ---------------------------------------------------------------------


def test_summary_has_a_row_per_benchmark_and_marks_ungated_ones(suite: Suite) -> None:
    suite.budgets('[[tool.latency-suite.budget]]\nvariants = ["tiny/fp32"]\np99_ms = 5000\n')

    result = suite.run(variants="tiny/fp32,tiny/int8")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= latency summary =*",
            "configuration*size*load*P50*P95*P99 [[]95% CI[]]*budget*verdict*",
            "-*",
            "tiny/fp32-cpu-3s*MB*s*ms*ms*ms*P99 < 5000 ms*pass*",
            "tiny/int8-cpu-3s*MB*s*ms*ms*ms*-*not gated*",
        ]
    )


# --- d. pytest-benchmark JSON -----------------------------------------------------------------


def test_benchmark_json_holds_every_sample_and_the_perf_report(suite: Suite) -> None:
    out = suite.pytester.path / "out.json"

    result = suite.run(f"--benchmark-json={out}", "--perf-durations=1s,3s")

    result.assert_outcomes(passed=2)
    benchmarks = json.loads(out.read_text())["benchmarks"]
    assert sorted(b["param"] for b in benchmarks) == ["tiny/fp32-cpu-1s", "tiny/fp32-cpu-3s"]
    for bench in benchmarks:
        samples_ms = bench["extra_info"]["samples_ms"]
        report = bench["extra_info"]["perf"]
        assert len(samples_ms) == 30  # --perf-min-samples, no budget
        assert bench["stats"]["rounds"] == len(samples_ms)
        segments = bench["extra_info"]["segments"]
        assert sum(s["calls"] for s in segments) == len(samples_ms)
        assert bench["stats"]["iterations"] == 1
        assert bench["stats"]["min"] == pytest.approx(min(samples_ms) / 1e3)
        assert bench["stats"]["max"] == pytest.approx(max(samples_ms) / 1e3)
        assert report["case"]["id"] == bench["param"]
        assert report["sampling"]["n"] == len(samples_ms)
        assert {"p50", "p95", "p99"} <= set(report["latency_ms"]["percentiles"])
        assert report["latency_ms"]["percentiles"]["p99"]["n"] == len(samples_ms)
        assert report["verdict"] == "not gated"
        assert report["session"]["provider"] == "CPUExecutionProvider"
        assert report["session"]["effective_intra_op_threads"] == 1
        assert report["session"]["spinning"] is True


# --- e. save, then compare --------------------------------------------------------------------


def test_saved_run_can_be_compared_in_a_later_run(suite: Suite) -> None:
    storage = f"--benchmark-storage=file://{suite.pytester.path / 'runs'}"

    saved = suite.run("--benchmark-save=base", storage)
    compared = suite.run("--benchmark-compare", storage)

    assert saved.ret == 0
    saved_files = list((suite.pytester.path / "runs").glob("*/0001_base.json"))
    assert len(saved_files) == 1
    stored = json.loads(saved_files[0].read_text())["benchmarks"]
    assert [b["stats"]["rounds"] for b in stored] == [30]
    assert compared.ret == 0
    text = output(compared)
    assert "Comparing against benchmarks from:" in text
    assert "0001_base" in text
    compared.stdout.fnmatch_lines(["*test_latency[[]tiny/fp32-cpu-3s[]] (0001_base)*"])


# --- f. usage errors --------------------------------------------------------------------------


def test_unknown_variant_is_a_usage_error_listing_known_variants(suite: Suite) -> None:
    result = suite.run(variants="nope/*")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --perf-variants 'nope/*' matches no variant; known: *w2v2-base/fp32*tiny/fp32*"]
    )


def test_unparseable_duration_is_a_usage_error(suite: Suite) -> None:
    result = suite.run("--perf-durations=abc")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --perf-durations 'abc' is not a duration*1s,3s,10s*"])


def test_malformed_budget_is_a_usage_error_naming_the_file_and_field(suite: Suite) -> None:
    suite.budgets('[[tool.latency-suite.budget]]\nvariants = ["tiny/*"]\np99_ms = "fast"\n')

    result = suite.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(result.errlines)
    assert str(suite.pyproject) in text
    assert "[[tool.latency-suite.budget]] #1: p99_ms must be a positive number" in text
    assert "'fast'" in text


def test_unknown_budget_field_is_a_usage_error(suite: Suite) -> None:
    suite.budgets("[[tool.latency-suite.budget]]\np99_ms = 100\np95_ms = 70\n")

    result = suite.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(result.errlines)
    assert str(suite.pyproject) in text
    assert "unknown field(s) p95_ms" in text


# --- g. a model this project did not build ----------------------------------------------------


def write_foreign_model(path: Path) -> Path:
    """audio float32 [batch, samples], lengths int64 [batch], mask bool [batch, frames]."""
    inputs = [
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"]),
        helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "frames"]),
    ]
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])]
    nodes = [
        helper.make_node("ReduceMean", ["audio"], ["level"], axes=[1], keepdims=0),
        helper.make_node("Cast", ["lengths"], ["lengths_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["mask_f"], ["voiced"], axes=[1], keepdims=0),
        helper.make_node("Add", ["level", "lengths_f"], ["partial"]),
        helper.make_node("Add", ["partial", "voiced"], ["score"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "foreign", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_foreign_model_with_several_input_dtypes_is_benchmarked(suite: Suite) -> None:
    model = write_foreign_model(suite.pytester.path / "foreign.onnx")

    # An empty variant list benchmarks the --perf-model file alone.
    result = suite.run(
        f"--perf-model={model}", "--perf-dim=frames=4", "-o", "perf_variants=", variants=None
    )

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*latency summary*", f"{model}-cpu-3s*not gated*"])


def test_foreign_model_with_an_unsized_symbolic_dim_names_the_perf_dim_option(
    suite: Suite,
) -> None:
    model = write_foreign_model(suite.pytester.path / "foreign.onnx")

    result = suite.run(f"--perf-model={model}", "-o", "perf_variants=", variants=None)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--perf-model {model}" in output(result)
    assert "symbolic dim 'frames'" in output(result)
    assert "--perf-dim frames=VALUE" in output(result)


# --- h. two onnxruntime wheels ----------------------------------------------------------------


def fake_distribution(root: Path, name: str, version: str) -> importlib.metadata.Distribution:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return importlib.metadata.PathDistribution(info)


def test_two_onnxruntime_wheels_are_a_usage_error_naming_both(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = list(importlib.metadata.distributions())
    cpu_version = importlib.metadata.version("onnxruntime")
    gpu = fake_distribution(tmp_path / "site", "onnxruntime-gpu", "1.20.0")
    monkeypatch.setattr(importlib.metadata, "distributions", lambda **_kw: [*real, gpu])

    result = suite.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(result.errlines)
    assert "2 onnxruntime wheels are installed together" in text
    assert f"onnxruntime {cpu_version}" in text
    assert "onnxruntime-gpu 1.20.0" in text
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in text
