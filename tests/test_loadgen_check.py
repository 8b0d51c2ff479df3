"""The LoadGen referee: its summary parsed, and its Server scenario driving a fake model."""

from __future__ import annotations

import pytest

from perf.loadgen_check import parse_summary

SUMMARY = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Server
Mode     : PerformanceOnly
Completed samples per second    : 19.95
Min latency (ns)                : 16123456
Mean latency (ns)               : 24000000
50.00 percentile latency (ns)   : 21400000
90.00 percentile latency (ns)   : 35000000
99.00 percentile latency (ns)   : 63600000
99.90 percentile latency (ns)   : 80000000
"""


def test_the_summary_gives_each_percentile_in_ms() -> None:
    found = parse_summary(SUMMARY)

    assert found[50.0] == pytest.approx(21.4) and found[99.0] == pytest.approx(63.6)
    assert found[99.9] == pytest.approx(80.0)
    with pytest.raises(ValueError, match="no 'percentile latency"):
        parse_summary("Scenario : Server\n")


def test_loadgen_serves_every_query_of_its_schedule_through_the_worker() -> None:
    pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen is not installed (.[loadgen])")
    from perf.loadgen_check import loadgen_server

    calls: list[int] = []

    found = loadgen_server(lambda: calls.append(1), rate_rps=200.0, seconds=1.0)

    assert len(calls) >= 200  # every query of the second was served, one at a time
    assert 0 < found[50.0] <= found[99.0]
