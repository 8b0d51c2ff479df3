"""Benchmark selection (variants, providers, durations, ids) and budget rules from pyproject."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.recipes import all_variant_names
from perf.budgets.rules import (
    Budget,
    BudgetConfigError,
    BudgetRule,
    budget_for,
    load_rules,
    parse_rule,
)
from perf.measure.cases import (
    PerfCase,
    SelectionError,
    build_cases,
    format_duration,
    parse_durations,
    select_providers,
    select_variants,
    split_list,
)

PROVIDERS = ("cpu", "cuda", "tensorrt", "dml", "openvino", "coreml")
WHERE = "pyproject.toml [[tool.latency-suite.budget]] #1"


# --- variants ---------------------------------------------------------------------------------


def test_star_selects_every_variant_except_the_test_only_tiny_architecture() -> None:
    selected = select_variants(["*"])

    assert selected == [name for name in all_variant_names() if not name.startswith("tiny/")]
    assert "w2v2-base/int8" in selected


def test_glob_that_does_not_name_tiny_leaves_it_out() -> None:
    assert select_variants(["*/int8"]) == [
        name for name in all_variant_names() if name.endswith("/int8") and name != "tiny/int8"
    ]


def test_tiny_is_selected_when_a_pattern_names_it() -> None:
    assert select_variants(["tiny/fp32"]) == ["tiny/fp32"]
    assert "tiny/int8" in select_variants(["tiny/*"])


def test_variants_from_several_patterns_keep_order_without_duplicates() -> None:
    selected = select_variants(["tiny/int8", "tiny/*", "cnn/fp32"])

    assert selected[0] == "tiny/int8"
    assert selected.count("tiny/int8") == 1
    assert selected[-1] == "cnn/fp32"


def test_variant_pattern_matching_nothing_names_the_option_and_lists_known_variants() -> None:
    with pytest.raises(SelectionError) as error:
        select_variants(["nope/*"])

    message = str(error.value)
    assert "--perf-variants" in message
    assert "'nope/*'" in message
    assert "w2v2-base/fp32" in message
    assert "tiny/fp32" in message


# --- providers --------------------------------------------------------------------------------


def test_provider_globs_select_matching_short_names_in_known_order() -> None:
    assert select_providers(["c*"], PROVIDERS) == ["cpu", "cuda", "coreml"]
    assert select_providers(["*"], PROVIDERS) == list(PROVIDERS)


def test_provider_patterns_are_case_insensitive_and_deduplicated() -> None:
    assert select_providers(["CUDA", "cu*", "cpu"], PROVIDERS) == ["cuda", "cpu"]


def test_unknown_provider_names_the_option_and_lists_known_providers() -> None:
    with pytest.raises(SelectionError) as error:
        select_providers(["gpu"], PROVIDERS)

    assert "--perf-providers 'gpu' matches no provider" in str(error.value)
    assert "cpu, cuda, tensorrt" in str(error.value)


# --- durations and lists ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("3s", 3.0), ("3", 3.0), ("1.5s", 1.5), (" 10S ", 10.0), ("0.5", 0.5)]
)
def test_durations_parse_with_or_without_the_seconds_suffix(text: str, seconds: float) -> None:
    assert parse_durations([text]) == [seconds]


@pytest.mark.parametrize("text", ["abc", "3ms", "", "s"])
def test_unparseable_duration_names_the_option_and_shows_an_example(text: str) -> None:
    with pytest.raises(SelectionError) as error:
        parse_durations([text])

    assert f"--perf-durations {text!r} is not a duration" in str(error.value)
    assert "1s,3s,10s" in str(error.value)


@pytest.mark.parametrize("text", ["0s", "-1s", "nan", "inf"])
def test_duration_must_be_a_positive_finite_number_of_seconds(text: str) -> None:
    with pytest.raises(SelectionError, match="--perf-durations"):
        parse_durations([text])


def test_lists_accept_commas_spaces_and_repetition() -> None:
    assert split_list(["1s,3s", "10s  30s", ",", ""]) == ["1s", "3s", "10s", "30s"]


# --- cases and ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (PerfCase("tiny/fp32", "cpu", 3.0), "tiny/fp32-cpu-3s"),
        (PerfCase("w2v2-base/int8", "cuda", 1.5), "w2v2-base/int8-cuda-1.5s"),
        (PerfCase("cnn/fp16", "tensorrt", 10.0, batch=4), "cnn/fp16-tensorrt-10s-b4"),
    ],
)
def test_case_id_reads_variant_provider_duration_and_batch_only_when_not_one(
    case: PerfCase, expected: str
) -> None:
    assert case.id == expected


def test_format_duration_drops_a_trailing_zero() -> None:
    assert [format_duration(s) for s in (3.0, 0.25, 30.0)] == ["3s", "0.25s", "30s"]


def test_build_cases_is_the_cross_product_plus_model_files(tmp_path: Path) -> None:
    model = tmp_path / "mine.onnx"

    cases = build_cases(["tiny/fp32", "tiny/int8"], ["cpu", "cuda"], [1.0, 3.0], 1, [model])

    assert [c.id for c in cases[:4]] == [
        "tiny/fp32-cpu-1s",
        "tiny/fp32-cpu-3s",
        "tiny/fp32-cuda-1s",
        "tiny/fp32-cuda-3s",
    ]
    assert len(cases) == 2 * 2 * 2 + 2 * 2
    model_cases = [c for c in cases if c.model_file is not None]
    assert {c.variant for c in model_cases} == {str(model)}
    assert all(c.architecture is None for c in model_cases)
    assert cases[0].architecture == "tiny"


# --- budget rules -----------------------------------------------------------------------------


def rule(**table: object) -> BudgetRule:
    return parse_rule(dict(table), WHERE)


def test_rule_defaults_to_any_variant_provider_and_duration() -> None:
    parsed = rule(p99_ms=100)

    assert parsed.variants == ("*",)
    assert parsed.providers == ("*",)
    assert parsed.durations is None
    assert parsed.budget == Budget(p99_ms=100.0, p50_ms=None, rule=WHERE)
    assert parsed.matches(PerfCase("cnn/int8", "tensorrt", 7.0))


def test_rule_fields_accept_a_single_value_or_a_list() -> None:
    parsed = rule(variants="tiny/*", providers=["CUDA", "tensorrt"], durations=3, p99_ms=50)

    assert parsed.variants == ("tiny/*",)
    assert parsed.providers == ("cuda", "tensorrt")
    assert parsed.durations == (3.0,)


def test_rule_matches_variant_globs() -> None:
    parsed = rule(variants=["w2v2-*/int8", "cnn/*"], p99_ms=50)

    assert parsed.matches(PerfCase("w2v2-base/int8", "cpu", 3.0))
    assert parsed.matches(PerfCase("cnn/fp16", "cpu", 3.0))
    assert not parsed.matches(PerfCase("w2v2-base/fp32", "cpu", 3.0))


def test_rule_provider_filter() -> None:
    parsed = rule(providers=["cuda", "tensor*"], p99_ms=50)

    assert parsed.matches(PerfCase("cnn/fp32", "cuda", 3.0))
    assert parsed.matches(PerfCase("cnn/fp32", "tensorrt", 3.0))
    assert not parsed.matches(PerfCase("cnn/fp32", "cpu", 3.0))


def test_rule_duration_filter_compares_seconds_whatever_the_spelling() -> None:
    parsed = rule(durations=[3, 10.0], p99_ms=50)

    assert parsed.matches(PerfCase("cnn/fp32", "cpu", 3.0))
    assert parsed.matches(PerfCase("cnn/fp32", "cpu", 10))
    assert not parsed.matches(PerfCase("cnn/fp32", "cpu", 1.0))


def test_rule_matches_a_perf_model_path_by_glob(tmp_path: Path) -> None:
    model = tmp_path / "mine.onnx"
    parsed = rule(variants="*/mine.onnx", p99_ms=50)

    assert parsed.matches(PerfCase(str(model), "cpu", 3.0, model_file=model))


def test_first_matching_rule_is_the_budget() -> None:
    rules = [
        rule(variants="tiny/*", providers="cuda", p99_ms=10),
        rule(variants="tiny/*", durations=1, p99_ms=20),
        rule(variants="tiny/*", p99_ms=30, p50_ms=5),
        rule(p99_ms=99),
    ]

    def p99_for(case: PerfCase) -> float | None:
        budget = budget_for(case, rules)
        return None if budget is None else budget.p99_ms

    assert p99_for(PerfCase("tiny/fp32", "cuda", 1.0)) == 10
    assert p99_for(PerfCase("tiny/fp32", "cpu", 1.0)) == 20
    assert p99_for(PerfCase("tiny/fp32", "cpu", 3.0)) == 30
    assert budget_for(PerfCase("tiny/fp32", "cpu", 3.0), rules).p50_ms == 5  # type: ignore[union-attr]
    assert p99_for(PerfCase("cnn/fp32", "cpu", 3.0)) == 99


def test_budget_reads_as_its_limits_and_the_rule_it_came_from() -> None:
    assert str(rule(p99_ms=100).budget) == f"P99 < 100 ms ({WHERE})"
    assert str(rule(p99_ms=100, p50_ms=40.5).budget) == f"P99 < 100 ms, P50 < 40.5 ms ({WHERE})"
    at_rate = rule(p99_ms=100, min_rate_rps=4).budget
    assert str(at_rate) == f"P99 < 100 ms at >= 4 req/s ({WHERE})" and at_rate.min_rate_rps == 4


def test_case_no_rule_matches_has_no_budget() -> None:
    rules = [rule(variants="tiny/*", p99_ms=30)]

    assert budget_for(PerfCase("cnn/fp32", "cpu", 3.0), rules) is None
    assert budget_for(PerfCase("cnn/fp32", "cpu", 3.0), []) is None


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"variants": "*"}, "p99_ms is required"),
        ({"p99_ms": "fast"}, "p99_ms must be a positive number of ms, not 'fast'"),
        ({"p99_ms": 0}, "p99_ms must be a positive number of ms, not 0"),
        ({"p99_ms": True}, "p99_ms must be a positive number of ms, not True"),
        ({"p99_ms": 50, "p50_ms": -1}, "p50_ms must be a positive number of ms, not -1"),
        ({"p99_ms": 50, "durations": ["3s"]}, "durations must be a positive number"),
        ({"p99_ms": 50, "variants": {"a": 1}}, "variants must be a list or a single value"),
        ({"p99_ms": 50, "p95_ms": 70}, "unknown field(s) p95_ms"),
        ({"p99_ms": float("nan")}, "p99_ms must be a positive number of ms, not nan"),
        ({"p99_ms": 50, "durations": [float("inf")]}, "a positive number of seconds"),
        ({"p99_ms": 50, "min_rate_rps": 0}, "min_rate_rps must be a positive number of requests"),
        ({"p99_ms": 50, "providers": [3]}, "providers must be names or globs"),
    ],
)
def test_bad_rule_is_rejected_with_a_message_naming_the_rule_and_the_field(
    table: dict[str, object], expected: str
) -> None:
    with pytest.raises(BudgetConfigError) as error:
        parse_rule(table, WHERE)

    assert str(error.value).startswith(f"{WHERE}: ")
    assert expected in str(error.value)


def write_pyproject(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    return path


def test_load_rules_reads_budget_tables_in_order(tmp_path: Path) -> None:
    pyproject = write_pyproject(
        tmp_path,
        """
[project]
name = "x"

[[tool.latency-suite.budget]]
variants = ["w2v2-base/*"]
providers = ["cuda"]
durations = [3]
p99_ms = 100
p50_ms = 40

[[tool.latency-suite.budget]]
p99_ms = 500
""",
    )

    rules = load_rules(pyproject)

    assert len(rules) == 2
    assert rules[0].budget == Budget(100.0, 40.0, f"{pyproject} [[tool.latency-suite.budget]] #1")
    assert rules[1].budget.rule == f"{pyproject} [[tool.latency-suite.budget]] #2"


def test_missing_file_or_missing_tables_mean_no_budgets(tmp_path: Path) -> None:
    assert load_rules(tmp_path / "absent.toml") == []
    assert load_rules(write_pyproject(tmp_path, '[project]\nname = "x"\n')) == []


def test_error_in_the_second_rule_names_the_file_and_that_rule(tmp_path: Path) -> None:
    pyproject = write_pyproject(
        tmp_path,
        """
[[tool.latency-suite.budget]]
p99_ms = 100

[[tool.latency-suite.budget]]
variants = ["tiny/*"]
p99_ms = "fast"
""",
    )

    with pytest.raises(BudgetConfigError) as error:
        load_rules(pyproject)

    assert str(error.value).startswith(f"{pyproject} [[tool.latency-suite.budget]] #2: p99_ms")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, "[[tool.latency-suite.budget]\np99_ms = 1\n")

    with pytest.raises(BudgetConfigError, match="is not valid TOML") as error:
        load_rules(pyproject)

    assert str(pyproject) in str(error.value)


def test_budget_written_as_a_single_table_asks_for_an_array_of_tables(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, "[tool.latency-suite.budget]\np99_ms = 100\n")

    with pytest.raises(BudgetConfigError) as error:
        load_rules(pyproject)

    assert str(pyproject) in str(error.value)
    assert "[[tool.latency-suite.budget]]" in str(error.value)


def test_budget_rule_accepts_full_provider_names_and_rejects_unknown_ones(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[[tool.latency-suite.budget]]\nproviders = ["CUDAExecutionProvider"]\np99_ms = 100\n'
    )
    (rule,) = load_rules(pyproject)
    assert rule.matches(PerfCase("w2v2-base/fp32", "cuda", 3.0))
    pyproject.write_text('[[tool.latency-suite.budget]]\nproviders = ["gpu"]\np99_ms = 100\n')
    with pytest.raises(BudgetConfigError, match="unknown execution provider 'gpu'"):
        load_rules(pyproject)
