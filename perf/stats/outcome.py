"""One vocabulary for every verdict the suite gives: budgets, baselines, A/B and numerics.

Which outcomes fail a benchmark:

* ``fail`` (a budget broken, or numerics wrong) and ``slower`` (a regression) always fail;
* ``undecided`` (the data cannot tell at the cap), ``refused`` (a comparison that would mislead:
  other settings, an old baseline format) and ``not compared`` (nothing to compare with) are
  *inconclusive*: ``--perf-undecided {fail,warn,pass}`` decides (default ``warn``: the test
  passes with a warning, and the outcome is listed in the summary and the report);
* the others pass: ``pass``, ``same``, ``faster``, ``unchanged`` (the same artifact on both
  sides: not measured by ``--perf-against``; against stored runs, measured and inside the
  machine's drift between sittings) and ``not gated`` (no budget applies: measured and
  reported).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SAME = "same"
    FASTER = "faster"
    SLOWER = "slower"
    UNCHANGED = "unchanged"
    UNDECIDED = "undecided"
    REFUSED = "refused"
    NOT_COMPARED = "not compared"
    NOT_GATED = "not gated"

    @property
    def fails(self) -> bool:
        return self in (Outcome.FAIL, Outcome.SLOWER)

    @property
    def inconclusive(self) -> bool:
        return self in (Outcome.UNDECIDED, Outcome.REFUSED, Outcome.NOT_COMPARED)


class UndecidedPolicy(StrEnum):
    """What an inconclusive comparison does to the test: ``--perf-undecided``."""

    FAIL = "fail"
    WARN = "warn"
    PASS = "pass"


def budget_outcome(verdicts: list[Outcome]) -> Outcome:
    """One budget's outcome from its quantiles' final verdicts: ``not gated`` without any."""
    if not verdicts:
        return Outcome.NOT_GATED
    return Outcome.FAIL if Outcome.FAIL in verdicts else Outcome.PASS
