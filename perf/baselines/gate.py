"""A session's baseline gate: this machine's baseline, each result judged on it, the next saved."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perf.baselines.regression import BaselineCheck, baseline_entry, check_against_baseline
from perf.baselines.store import BaselineFile, find_baseline, save_baselines
from perf.measure.fingerprint import machine_and_software
from perf.measurement import LatencyResult


class BaselineGate:
    def __init__(self, directory: Path, force: bool = False) -> None:
        self.directory = directory
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
        verdict = check_against_baseline(
            result,
            self.baseline,
            *self.fingerprint,
            force=self.force,
            where=str(self.directory),
        )
        self.checks[result.case.id] = verdict
        return verdict

    def save(self, results: Sequence[LatencyResult]) -> tuple[Path | None, list[str]]:
        """Store the quiet runs; returns the file (None if nothing was stored) and a line for
        each contended run left out: a baseline run taken under load would widen every later
        comparison's spread, or shift it."""
        quiet = [r for r in results if not r.samples.contention.contaminated()]
        left_out = [
            f"{r.case.id}: not stored: {r.samples.contention.warning()}"
            for r in results
            if r not in quiet
        ]
        if not quiet:
            return None, left_out
        entries = {r.case.id: baseline_entry(r) for r in quiet}
        return save_baselines(self.directory, *self.fingerprint, entries), left_out
