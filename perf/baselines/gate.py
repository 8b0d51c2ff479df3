"""A session's baseline gate: this machine's baseline, each result judged on it, the next saved."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from perf.baselines.regression import (
    BaselineCheck,
    baseline_entry,
    check_against_baseline,
    pooled,
)
from perf.baselines.store import BaselineFile, find_baseline, save_baselines
from perf.measure.cases import PerfCase
from perf.measure.fingerprint import machine_and_software
from perf.measure.sampling import Samples
from perf.measurement import LatencyResult

log = logging.getLogger("perf")


class BaselineGate:
    """``remeasure`` samples a case again to its full count, unrecorded and without a budget."""

    def __init__(
        self,
        directory: Path,
        remeasure: Callable[[PerfCase], LatencyResult],
        force: bool = False,
    ) -> None:
        self.directory = directory
        self.remeasure = remeasure
        self.force = force
        self.checks: dict[str, BaselineCheck] = {}

    @functools.cached_property
    def baseline(self) -> BaselineFile | None:
        """This machine's committed baseline, loaded once; BaselineError names a bad file."""
        return find_baseline(self.directory, *self.fingerprint)

    @functools.cached_property
    def fingerprint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        both = machine_and_software()
        return both["machine"], both["software"]

    def check(self, result: LatencyResult) -> BaselineCheck:
        """Compare with the baseline; a slower or undecided result is re-measured first."""
        machine, software = self.fingerprint

        def check(samples: Samples) -> BaselineCheck:
            return check_against_baseline(
                result,
                samples,
                self.baseline,
                machine,
                software,
                force=self.force,
                where=str(self.directory),
            )

        verdict = check(result.samples)
        if verdict.needs_remeasure:
            log.info(
                "%s: %s vs baseline; re-measuring before judging",
                result.case.id,
                verdict.comparison.verdict if verdict.comparison else "?",
            )
            again = self.remeasure(result.case)
            verdict = dataclasses.replace(
                check(pooled(result.samples, again.samples)), remeasured=True
            )
        self.checks[result.case.id] = verdict
        return verdict

    def save(self, results: Sequence[LatencyResult]) -> Path:
        entries = {r.case.id: baseline_entry(r) for r in results}
        return save_baselines(self.directory, *self.fingerprint, entries)
