"""Which benchmarks a run holds: each test fixture's parameters from the run's options.

``perf/test_latency.py`` takes one ``*_case`` fixture per test. For each, ``plan`` gives its
parameter values and ids, or the reason it is off (a one-line skip: ``--perf-scenario server``,
``no --perf-rate peak``, ...), so that every test of the suite either runs or says why not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from perf.config import PerfOptions
from perf.measure.cases import PerfCase, build_cases
from perf.scenarios.offline import DEFAULT_BATCH_SIZES
from perf.scenarios.pairs import pair_cases
from perf.scenarios.server import server_bench

FIXTURES_BY_SCENARIO = {
    "single-stream": ("perf_case", "eager_case", "concurrency_case", "pair_case"),
    "server": ("server_case", "peak_case", "tail_case"),
    "offline": ("offline_case",),
}
CASE_FIXTURES = frozenset(name for names in FIXTURES_BY_SCENARIO.values() for name in names)


@dataclasses.dataclass(frozen=True)
class Planned:
    values: list[Any]
    ids: list[str]


Plan = Planned | str  # a str says why the fixture is off


def plan(name: str, options: PerfOptions) -> Plan:
    """``name``'s parameters under ``options``, or why it does not run."""
    if name not in FIXTURES_BY_SCENARIO[options.scenario]:
        return f"--perf-scenario {options.scenario}"
    if (name == "pair_case") != bool(options.variant_pairs):
        return (
            "--perf-compare runs only its pairs" if options.variant_pairs else "no --perf-compare"
        )
    if name == "pair_case":
        pairs = pair_cases(
            options.variant_pairs, options.providers, options.durations, options.batch
        )
        return Planned(list(pairs), [p.id for p in pairs])
    cases = build_cases(
        options.variants, options.providers, options.durations, options.batch, options.model_files
    )
    if options.lengths and name in ("server_case", "peak_case"):
        first = {(c.variant, c.provider, c.model_file): c for c in reversed(cases)}.values()
        cases = [
            dataclasses.replace(c, duration_s=options.lengths[0][0], mix=options.lengths)
            for c in first
        ]
    return _PLANNERS[name](cases, options)


def _cases(cases: list[PerfCase], suffix: str = "") -> Planned:
    return Planned(list(cases), [case.id + suffix for case in cases])


def _at_rates(cases: list[PerfCase], rates: tuple[float, ...], suffix: str = "") -> Planned:
    """Each case at each rate, with ids ``<case>-<rate>rps`` (the server rows' names)."""
    pairs = [(case, rate) for case in cases for rate in rates]
    return Planned(pairs, [server_bench(case, rate) + suffix for case, rate in pairs])


def _offline(cases: list[PerfCase], options: PerfOptions) -> Plan:
    sizes = options.batch_sizes or DEFAULT_BATCH_SIZES
    return _cases([dataclasses.replace(c, batch=b) for c in cases for b in sizes])


def _tail(cases: list[PerfCase], options: PerfOptions) -> Plan:
    if not options.tail_matrix:
        return "no --perf-tail-matrix"
    return _at_rates(cases, options.rates, "-matrix")


def _peak(cases: list[PerfCase], options: PerfOptions) -> Plan:
    return _cases(cases, "-peak") if options.peak else "no --perf-rate peak"


def _server(cases: list[PerfCase], options: PerfOptions) -> Plan:
    return _at_rates(cases, options.rates) if options.rates else "--perf-rate peak only"


def _eager(cases: list[PerfCase], options: PerfOptions) -> Plan:
    architectures = dict.fromkeys(v.split("/")[0] for v in options.variants)
    eager = [
        PerfCase(f"{arch}/torch-eager", "cpu", duration, options.batch)
        for arch in architectures
        for duration in options.durations
        if "cpu" in options.providers
    ]
    return _cases(eager)


def _concurrency(cases: list[PerfCase], options: PerfOptions) -> Plan:
    if options.concurrency < 1:
        return "--perf-concurrency 0"
    first = [c for c in cases if c.duration_s == options.durations[0]]
    return _cases(first, f"-x{options.concurrency}")


_PLANNERS: dict[str, Callable[[list[PerfCase], PerfOptions], Plan]] = {
    "perf_case": lambda cases, options: _cases(cases),
    "offline_case": _offline,
    "tail_case": _tail,
    "peak_case": _peak,
    "server_case": _server,
    "eager_case": _eager,
    "concurrency_case": _concurrency,
}
