"""Latency budgets, read from ``[[tool.latency-suite.budget]]`` tables in pyproject.toml.

    [[tool.latency-suite.budget]]
    variants = ["w2v2-base/*"]      # globs on ARCH/VARIANT (or a --perf-model path)
    providers = ["cuda", "tensorrt"] # short names; "*" or omitted: any
    durations = [3]                  # seconds of audio; omitted: any
    p99_ms = 100                     # required
    p50_ms = 40                      # optional
    min_rate_rps = 4                 # optional: --perf-rate peak must prove P99 <= p99_ms
                                     # at this many requests per second or more

The first rule that matches a benchmark is its budget; a benchmark no rule matches is measured
and reported but not gated.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perf.measure.cases import PerfCase
from perf.measure.providers import provider_info

TABLE = "tool.latency-suite.budget"


class BudgetConfigError(ValueError):
    """A budget table that cannot be used; the message names the file and the rule."""


@dataclasses.dataclass(frozen=True)
class Budget:
    p99_ms: float
    p50_ms: float | None
    rule: str  # where it came from, for messages
    min_rate_rps: float | None = None  # the peak search must prove P99 <= p99_ms at this rate

    def __str__(self) -> str:  # failure messages and logs: not the dataclass repr
        limits = f"P99 < {self.p99_ms:g} ms"
        if self.p50_ms is not None:
            limits += f", P50 < {self.p50_ms:g} ms"
        if self.min_rate_rps is not None:
            limits += f" at >= {self.min_rate_rps:g} req/s"
        return f"{limits} ({self.rule})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BudgetRule:
    variants: tuple[str, ...]
    providers: tuple[str, ...]
    durations: tuple[float, ...] | None
    budget: Budget

    def matches(self, case: PerfCase) -> bool:
        return (
            any(fnmatch.fnmatchcase(case.variant, pattern) for pattern in self.variants)
            and any(fnmatch.fnmatchcase(case.provider, pattern) for pattern in self.providers)
            and (self.durations is None or case.duration_s in self.durations)
        )


def _as_list(value: Any, field: str, where: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, (str, int, float)):
        return [value]
    raise BudgetConfigError(f"{where}: {field} must be a list or a single value, not {value!r}")


def _positive(value: Any, field: str, where: str, unit: str = "ms") -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise BudgetConfigError(
            f"{where}: {field} must be a positive number of {unit}, not {value!r}"
        )
    return float(value)


def _provider_pattern(name: str, where: str) -> str:
    """Short provider names; a full name (CUDAExecutionProvider) is accepted and shortened."""
    if any(char in name for char in "*?["):
        return name.lower()
    try:
        return provider_info(name).short
    except ValueError as error:
        raise BudgetConfigError(f"{where}: {error}") from None


def _names(value: Any, field: str, where: str) -> list[str]:
    names = _as_list(value, field, where)
    if not all(isinstance(name, str) and name for name in names):
        raise BudgetConfigError(f"{where}: {field} must be names or globs, not {value!r}")
    return names


def parse_rule(table: Any, where: str) -> BudgetRule:
    if not isinstance(table, dict):
        raise BudgetConfigError(f"{where}: a budget is a table of fields, not {table!r}")
    unknown = set(table) - {"variants", "providers", "durations", "p99_ms", "p50_ms",
                            "min_rate_rps"}  # fmt: skip
    if unknown:
        raise BudgetConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if "p99_ms" not in table:
        raise BudgetConfigError(f"{where}: p99_ms is required")
    durations = table.get("durations")
    return BudgetRule(
        variants=tuple(_names(table.get("variants", "*"), "variants", where)),
        providers=tuple(
            _provider_pattern(p, where)
            for p in _names(table.get("providers", "*"), "providers", where)
        ),
        durations=None
        if durations is None
        else tuple(
            _positive(d, "durations", where, "seconds")
            for d in _as_list(durations, "durations", where)
        ),
        budget=Budget(
            p99_ms=_positive(table["p99_ms"], "p99_ms", where),
            p50_ms=None if "p50_ms" not in table else _positive(table["p50_ms"], "p50_ms", where),
            rule=where,
            min_rate_rps=None
            if "min_rate_rps" not in table
            else _positive(table["min_rate_rps"], "min_rate_rps", where, "requests per second"),
        ),
    )


def load_rules(pyproject: Path) -> list[BudgetRule]:
    if not pyproject.is_file():
        return []
    try:
        data = tomllib.loads(pyproject.read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise BudgetConfigError(f"{pyproject} is not valid TOML: {error}") from error
    tables: Any = data
    for key in ("tool", "latency-suite", "budget"):
        tables = (
            tables.get(key, {} if key != "budget" else []) if isinstance(tables, dict) else None
        )
    if not isinstance(tables, list):
        raise BudgetConfigError(f"{pyproject}: write budgets as [[{TABLE}]] tables")
    return [
        parse_rule(table, f"{pyproject} [[{TABLE}]] #{i + 1}") for i, table in enumerate(tables)
    ]


def budget_quantiles(budget: Budget | None) -> list[tuple[float, float]]:
    """(quantile, limit ms) pairs a budget gates: P99, and P50 when it has one."""
    if budget is None:
        return []
    pairs = [(0.99, budget.p99_ms)]
    if budget.p50_ms is not None:
        pairs.append((0.5, budget.p50_ms))
    return pairs


def budget_for(case: PerfCase, rules: Sequence[BudgetRule]) -> Budget | None:
    return next((rule.budget for rule in rules if rule.matches(case)), None)
