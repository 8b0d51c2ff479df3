"""Which benchmarks a run holds: every test fixture runs with its parameters or says why not."""

from __future__ import annotations

from typing import Any

import pytest

from perf.case_plan import FIXTURES_BY_SCENARIO, Planned, plan
from perf.config import PerfOptions
from tests.perf_options import perf_options


def _options(**changes: Any) -> PerfOptions:
    return perf_options(variants=("tiny/fp32", "tiny/int8"), durations=(1.0, 3.0), **changes)


def _ids(name: str, **changes: Any) -> list[str]:
    planned = plan(name, _options(**changes))
    assert isinstance(planned, Planned), planned
    assert len(planned.values) == len(planned.ids)
    return planned.ids


def test_single_stream_runs_each_variant_at_each_length() -> None:
    assert _ids("perf_case") == [
        "tiny/fp32-cpu-1s",
        "tiny/fp32-cpu-3s",
        "tiny/int8-cpu-1s",
        "tiny/int8-cpu-3s",
    ]
    assert _ids("eager_case") == ["tiny/torch-eager-cpu-1s", "tiny/torch-eager-cpu-3s"]


def test_concurrency_runs_the_first_length_only() -> None:
    assert _ids("concurrency_case", concurrency=4) == ["tiny/fp32-cpu-1s-x4", "tiny/int8-cpu-1s-x4"]


def test_server_cases_are_named_by_rate_and_share_one_length_with_a_mix() -> None:
    ids = _ids("server_case", scenario="server", rates=(5.0,), lengths=((3.0, 0.5), (1.0, 0.5)))
    assert len(ids) == 2 and all(i.endswith("5rps") for i in ids)
    planned = plan("server_case", _options(scenario="server", rates=(5.0,), lengths=((3.0, 1.0),)))
    assert isinstance(planned, Planned)
    assert {case.duration_s for case, _ in planned.values} == {3.0}


def test_offline_multiplies_the_cases_by_the_batch_sizes() -> None:
    assert len(_ids("offline_case", scenario="offline", batch_sizes=(1, 4, 8))) == 12


def test_pairs_run_alone() -> None:
    pairs = (("tiny/fp32", "tiny/int8"),)
    assert len(_ids("pair_case", variant_pairs=pairs)) == 2  # one per length
    assert plan("perf_case", _options(variant_pairs=pairs)) == "--perf-compare runs only its pairs"


@pytest.mark.parametrize(
    ("name", "changes", "reason"),
    [
        ("server_case", {}, "--perf-scenario single-stream"),
        ("perf_case", {"scenario": "server", "rates": (5.0,)}, "--perf-scenario server"),
        ("pair_case", {}, "no --perf-compare"),
        ("concurrency_case", {}, "--perf-concurrency 0"),
        ("tail_case", {"scenario": "server", "rates": (5.0,)}, "no --perf-tail-matrix"),
        ("peak_case", {"scenario": "server", "rates": (5.0,)}, "no --perf-rate peak"),
        ("server_case", {"scenario": "server", "peak": True}, "--perf-rate peak only"),
    ],
)
def test_a_fixture_that_does_not_run_says_why(
    name: str, changes: dict[str, Any], reason: str
) -> None:
    assert plan(name, _options(**changes)) == reason


def test_every_fixture_runs_when_its_options_ask_for_it() -> None:
    for scenario, names in FIXTURES_BY_SCENARIO.items():
        for name in names:
            changes = {"scenario": scenario, "rates": (5.0,), "peak": True, "tail_matrix": True}
            if name == "pair_case":
                changes["variant_pairs"] = (("tiny/fp32", "tiny/int8"),)
            assert isinstance(plan(name, _options(**changes, concurrency=2)), Planned), name
