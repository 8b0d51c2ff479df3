"""Bad input from users: every file and option gets one line naming it and the fix, before
anything is measured or written; and fuzzed files and strings never escape as another exception.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from export.inputs import parse_assignments
from export.user_files import UserFileError, check_onnx_file, weights_shapes
from perf.baselines.store import BaselineError, load_baseline
from perf.budgets.rules import BudgetConfigError, load_rules
from perf.config import LIST_OPTIONS, OPTIONS, ConfigError, read_options
from perf.measure.cases import SelectionError, parse_durations, select_providers, select_variants
from tests import test_plugin
from tests.test_plugin import Suite, output, write_foreign_model

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` with its sha256: what a refused run must leave as it was."""
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def refused(suite: Suite, *args: str) -> str:
    """Run the suite with ``args``; assert a usage error of one line that measured nothing."""
    before = snapshot(suite.cache, suite.pytester.path / "baselines")
    report = suite.pytester.path / "report"
    result = suite.run(*args, f"--perf-report={report}", "-o", "perf_variants=", variants=None)
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert len(errors) == 1, output(result)
    assert "Traceback" not in output(result)
    assert not report.exists()
    assert snapshot(suite.cache, suite.pytester.path / "baselines") == before
    return errors[0]


def tiny_model_copy(suite: Suite, name: str = "model.onnx") -> Path:
    """The cached tiny/fp32 artifact copied with its external-data file."""
    source = next(suite.cache.glob("tiny/fp32-*/model.onnx"))
    target = suite.pytester.path / "copy" / name
    target.parent.mkdir(exist_ok=True)
    shutil.copy(source, target)
    shutil.copy(source.with_name("model.onnx.data"), target.with_name("model.onnx.data"))
    return target


# --- the table of issue "bad input from users", row by row ---------------------------------------


def test_random_bytes_as_a_model(suite: Suite) -> None:
    bad = suite.pytester.path / "bad.onnx"
    bad.write_bytes(bytes(range(256)) * 4)

    line = refused(suite, f"--perf-model={bad}")

    assert f"--perf-model {bad}: not an ONNX model (" in line
    assert "re-export it, or copy it again if the copy was cut short" in line


def test_a_truncated_model(suite: Suite) -> None:
    model = tiny_model_copy(suite)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])

    line = refused(suite, f"--perf-model={model}")

    assert f"--perf-model {model}: not an ONNX model" in line


def test_a_model_copied_without_its_weights_file(suite: Suite) -> None:
    model = tiny_model_copy(suite)
    model.with_name("model.onnx.data").unlink()

    line = refused(suite, f"--perf-model={model}")

    assert "its weights file model.onnx.data is not beside it" in line
    assert "copy it next to the .onnx file" in line


def test_a_model_with_an_op_nobody_knows(suite: Suite) -> None:
    path = suite.pytester.path / "unknown-op.onnx"
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "samples"])]
    graph = helper.make_graph(
        [helper.make_node("FrobnicateAudio", ["audio"], ["y"])], "g", inputs, outputs
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    line = refused(suite, f"--perf-model={path}")

    assert f"--perf-model {path}: not a valid ONNX graph (" in line
    assert "FrobnicateAudio" in line


def test_corrupt_weights(suite: Suite) -> None:
    bad = suite.pytester.path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)

    line = refused(suite, f"--perf-weights=cnn={bad}")

    assert f"--perf-weights {bad}: not a readable safetensors file (" in line
    assert "safetensors.torch.save_file(model.state_dict(), path)" in line


def test_weights_of_another_architecture(suite: Suite) -> None:
    from safetensors.numpy import save_file

    weights = suite.pytester.path / "other.safetensors"
    save_file({"encoder.proj.weight": np.zeros((3, 3), np.float32)}, str(weights))

    line = refused(suite, f"--perf-weights=tiny={weights}")

    assert f"--perf-weights tiny={weights}: does not match architecture 'tiny'" in line
    assert "missing: " in line and "unexpected: encoder.proj.weight" in line


def test_weights_for_an_unknown_architecture(suite: Suite) -> None:
    line = refused(suite, "--perf-weights=nosuch=w.safetensors")

    assert "--perf-weights nosuch=w.safetensors: no architecture 'nosuch'" in line
    assert "w2v2-base" in line


def test_a_dim_name_that_matches_nothing_lists_what_would(suite: Suite) -> None:
    model = write_foreign_model(suite.pytester.path / "foreign.onnx")

    line = refused(suite, f"--perf-model={model}", "--perf-dim=frame=4")

    assert "--perf-dim frame=...: no --perf-model input has that dim" in line
    assert "frames" in line and "mask[1]" in line


def test_an_input_name_that_no_model_has_lists_the_inputs(suite: Suite) -> None:
    model = write_foreign_model(suite.pytester.path / "foreign.onnx")

    line = refused(suite, f"--perf-model={model}", "--perf-dim=frames=4", "--perf-input=lenght=3")

    assert "--perf-input lenght=...: no --perf-model has an input of that name" in line
    assert "audio, lengths, mask" in line


def test_a_fixed_input_applies_to_the_models_that_have_it(suite: Suite) -> None:
    # The tiny copy has only "audio"; the foreign model also "lengths": fixing lengths must
    # not refuse the tiny one.
    foreign = write_foreign_model(suite.pytester.path / "foreign.onnx")
    tiny = tiny_model_copy(suite)

    result = suite.run(
        f"--perf-model={foreign}", f"--perf-model={tiny}", "--perf-dim=frames=4",
        "--perf-input=lengths=48000", "-o", "perf_variants=", variants=None,
    )  # fmt: skip

    result.assert_outcomes(passed=2)


def test_a_parent_for_a_model_not_given_lists_the_models_that_are(suite: Suite) -> None:
    tiny = tiny_model_copy(suite)
    other = tiny_model_copy(suite, "other.onnx")

    line = refused(suite, f"--perf-model={tiny}", f"--perf-model-parent={other}={tiny}")

    assert "which is not a --perf-model (given: " in line and str(tiny.resolve()) in line


def test_a_dim_without_a_model_to_apply_to(suite: Suite) -> None:
    line = refused(suite, "--perf-dim=frames=4", "--perf-variants=tiny/fp32")

    assert "--perf-dim frames: sizes inputs of a --perf-model" in line


def test_benchmarks_are_not_run_side_by_side_under_xdist(suite: Suite) -> None:
    line = refused(suite, "-p", "xdist", "-n", "2", "--perf-variants=tiny/fp32")

    assert "-n 2: the benchmarks would run 2 at a time, each timed against the others" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--perf-providers=cpu,foo"], "foo"),
        (["--perf-durations=3x"], "3x"),
        (["--perf-durations=0s"], "0s"),
        (["--perf-variants=nosuch/*"], "nosuch/*"),
        (["--perf-batch=0"], "--perf-batch 0: inputs per call, at least 1"),
        (["--perf-max-time=nan"], "--perf-max-time nan: seconds, more than 0"),
        (["--perf-confidence=1.5"], "--perf-confidence 1.5: a level in (0, 1)"),
        (["--perf-threads=0"], "--perf-threads 0: threads, at least 1"),
        (["--perf-inject-delay=-5"], "--perf-inject-delay -5: ms, 0 or more"),
    ],
)
def test_option_values_that_mean_nothing(suite: Suite, args: list[str], expected: str) -> None:
    line = refused(suite, *args)

    assert expected in line


# --- fuzzed: every file-taking entry point, every option parser ----------------------------------

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _valid_onnx_bytes() -> bytes:
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "samples"])]
    graph = helper.make_graph([helper.make_node("Relu", ["audio"], ["y"])], "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _valid_weights_bytes(path: Path) -> bytes:
    from safetensors.numpy import save_file

    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(path))
    return path.read_bytes()


@st.composite
def damaged(draw: st.DrawFn, valid: bytes) -> bytes:
    """Truncated, bit-flipped or random versions of a valid file."""
    kind = draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "flip":
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 8))):
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    return draw(st.binary(max_size=512))


def _one_line_or_accepted(check: Callable[[], object], errors: tuple[type, ...]) -> None:
    try:
        check()
    except errors as error:
        assert "\n" not in str(error), str(error)


@FUZZ
@given(data=damaged(_valid_onnx_bytes()))
def test_damaged_onnx_files_give_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(data)

    _one_line_or_accepted(lambda: check_onnx_file(path, "--perf-model"), (UserFileError,))

    assert path.read_bytes() == data  # checking never writes


@FUZZ
@given(data=st.data())
def test_damaged_weights_files_give_one_line(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "w.safetensors"
    damaged_bytes = data.draw(damaged(_valid_weights_bytes(tmp_path / "valid.safetensors")))
    path.write_bytes(damaged_bytes)

    _one_line_or_accepted(lambda: weights_shapes(path, "--perf-weights"), (UserFileError,))

    assert path.read_bytes() == damaged_bytes


@FUZZ
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_damaged_baseline_files_are_a_baseline_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(data)

    _one_line_or_accepted(lambda: load_baseline(path), (BaselineError,))

    assert path.read_bytes() == data


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30))
def test_option_parsers_raise_only_their_own_errors(text: str) -> None:
    for parse in (
        lambda: parse_durations([text]),
        lambda: select_variants([text]),
        lambda: select_providers([text], ["cpu", "cuda"]),
        lambda: parse_assignments([text], "--perf-dim"),
    ):
        _one_line_or_accepted(parse, (SelectionError, ValueError))


def test_a_file_where_a_folder_is_needed(suite: Suite) -> None:
    where = suite.pytester.path / "report.txt"
    where.write_text("not a folder")

    result = suite.run(f"--perf-report={where}", "--perf-variants=tiny/fp32")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--perf-report {where}: is a file, and a folder is needed" in output(result)
    assert where.read_text() == "not a folder"


def test_perf_debug_shows_the_traceback_behind_an_input_error(suite: Suite) -> None:
    bad = suite.pytester.path / "bad.onnx"
    bad.write_bytes(b"\x00\xff" * 100)

    plain = suite.run(f"--perf-model={bad}", "-o", "perf_variants=", variants=None)
    debug = suite.run(f"--perf-model={bad}", "--perf-debug", "-o", "perf_variants=", variants=None)

    assert "Traceback" not in output(plain)
    assert "Traceback" in output(debug) and "UserFileError" in output(debug)


VALUED_OPTIONS = sorted(
    [name for name, kwargs in OPTIONS if kwargs.get("action") != "store_true"]
    + [name for name, *_ in LIST_OPTIONS]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(option=st.sampled_from(VALUED_OPTIONS), text=st.text(max_size=24))
def test_every_option_with_any_value_is_read_or_refused_in_one_line(
    pytester: pytest.Pytester, option: str, text: str
) -> None:
    """Random strings to every valued --perf-* option, through pytest's parser and the suite's
    own reading: accepted, or a usage error / ConfigError of one line; nothing written."""
    pytester.makeconftest('pytest_plugins = ["perf.plugin"]\n')
    before = snapshot(pytester.path)
    try:
        config = pytester.parseconfig(f"{option}={text}")
    except pytest.UsageError as error:  # pytest's argparse message: the usage, then the error
        assert f"error: argument {option}: " in str(error), str(error)
    else:
        _one_line_or_accepted(lambda: read_options(config), (ConfigError,))
    assert snapshot(pytester.path) == before


TOML_VALUES = st.one_of(
    st.integers(-5, 500).map(str),
    st.floats(-1e3, 1e3, allow_nan=False).map(repr),
    st.sampled_from(
        [
            '"cpu"',
            '"*"',
            '"fast"',
            "true",
            "[]",
            '["w2v2-base/*"]',
            "[3, 10]",
            '[1, "x"]',
            "{}",
            '"nan"',
            "nan",
            "inf",
            "-inf",
        ]
    ),
)
TOML_KEYS = st.sampled_from(
    ["variants", "providers", "durations", "p99_ms", "p50_ms", "min_rate_rps", "typo"]
)


@st.composite
def budget_files(draw: st.DrawFn) -> bytes:
    """pyproject.toml texts with budget tables of random fields, or damaged bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    header = draw(st.sampled_from(["[[tool.latency-suite.budget]]", "[tool.latency-suite]",
                                   "[tool]", "[[tool.latency-suite.budget.x]]"]))  # fmt: skip
    lines = [header]
    for key in draw(st.lists(TOML_KEYS, max_size=5, unique=True)):
        lines.append(f"{key} = {draw(TOML_VALUES)}")
    if header == "[tool.latency-suite]":
        lines.append(f"budget = {draw(TOML_VALUES)}")
    return "\n".join(lines).encode()


@FUZZ
@given(data=budget_files())
def test_budget_files_are_read_or_refused_in_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(data)

    _one_line_or_accepted(lambda: load_rules(path), (BudgetConfigError,))

    assert path.read_bytes() == data


@pytest.mark.parametrize(
    ("ini", "expected"),
    [('perf_max_time = "fast"', "perf_max_time = 'fast' in "),
     ('perf_concurrency = "two"', "perf_concurrency = 'two' in ")],
)  # fmt: skip
def test_an_ini_setting_that_is_not_a_number_names_the_setting_and_file(
    suite: Suite, ini: str, expected: str
) -> None:
    suite.pyproject.write_text(f'[tool.pytest.ini_options]\naddopts = ""\n{ini}\n')

    # Without the suite's quick options, which set both on the command line.
    result = suite.pytester.runpytest("--collect-only", "--perf-variants=tiny/fp32")

    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    text = output(result)
    assert expected in text and "pyproject.toml: a " in text and "number is needed" in text
    assert "Traceback" not in text
