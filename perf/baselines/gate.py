"""A session's baseline gate: this machine's baseline, each result judged on it, the next saved."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from perf.baselines.regression import (
    BaselineCheck,
    StoredRow,
    baseline_entry,
    check_against_baseline,
)
from perf.baselines.store import BaselineFile, find_baseline, save_baselines
from perf.measure.fingerprint import machine_and_software
from perf.measure.profile import profile_change, profile_change_line
from perf.measurement import LatencyResult
from perf.stats.outcome import Outcome


class SideBySide(Protocol):
    """What measuring the stored model interleaved with this run's gives (an ABOutcome)."""

    outcome: Outcome

    def line(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


# Measures the row's model stored under a cache key interleaved with this run's model (in the
# row's scenario); None when that model is no longer in the cache.
Remeasure = Callable[[StoredRow, str], SideBySide | None]


class BaselineGate:
    """``remeasure``: when a benchmark's model changed since its stored runs and the stored
    model is still cached, the verdict comes from measuring both side by side (drift hits both
    alike), and the stored runs are reported beside it."""

    def __init__(
        self, directory: Path, force: bool = False, remeasure: Remeasure | None = None
    ) -> None:
        self.directory = directory
        self.force = force
        self.remeasure = remeasure
        self.checks: dict[str, BaselineCheck] = {}

    @functools.cached_property
    def baseline(self) -> BaselineFile | None:
        """This machine's committed baseline, loaded once; BaselineError names a bad file."""
        return find_baseline(self.directory, *self.fingerprint)

    @functools.cached_property
    def fingerprint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        both = machine_and_software()
        return both["machine"], both["software"]

    def stored_settings(self, bench: str) -> dict[str, Any] | None:
        """The settings ``bench``'s stored runs were recorded with, or None (none stored)."""
        if self.baseline is None or bench not in self.baseline.benchmarks:
            return None
        return dict(self.baseline.entry(bench).settings)

    def check(self, result: LatencyResult | StoredRow) -> BaselineCheck:
        """A single-stream result, or a traffic scenario's row, judged on its stored runs."""
        row = StoredRow.of(result)
        verdict = check_against_baseline(
            row,
            self.baseline,
            *self.fingerprint,
            force=self.force,
            where=str(self.directory),
        )
        verdict = self._side_by_side(row, verdict)
        verdict = self._with_profile_change(row, verdict)
        self.checks[row.bench] = verdict
        return verdict

    def _with_profile_change(self, row: StoredRow, verdict: BaselineCheck) -> BaselineCheck:
        """A regression judged on the stored runs alone (no stored model to measure beside
        this one) names the op types that moved, from the stored profile and this run's."""
        if verdict.outcome is not Outcome.SLOWER or verdict.interleaved is not None:
            return verdict
        stored = self.baseline.entry(row.bench).profile if self.baseline else None
        if not stored or not row.profile:
            return verdict
        rows = profile_change(stored, row.profile)
        return dataclasses.replace(
            verdict, message=f"{verdict.message}\nwhy: {profile_change_line(rows)}",
            profile_change=rows,
        )  # fmt: skip

    def _side_by_side(self, row: StoredRow, stored: BaselineCheck) -> BaselineCheck:
        if self.remeasure is None or self.baseline is None or stored.comparison is None:
            return stored  # no comparable stored runs: nothing says which model to measure
        key = self.baseline.entry(row.bench).model_key
        if key is None or key == row.model_key:
            return stored  # the same artifact: the stored runs judge what else changed
        measured = self.remeasure(row, key)
        if measured is None:
            return stored
        return BaselineCheck(
            measured.outcome,
            f"{row.bench} vs its stored model ({key[:16]}), measured side by side: "
            f"{measured.line()}\n(against the stored runs alone: {stored.outcome})",
            stored.comparison,
            interleaved=measured.to_dict(),
        )

    def save(self, results: Sequence[LatencyResult | StoredRow]) -> tuple[Path | None, list[str]]:
        """Store the quiet runs; returns the file (None if nothing was stored) and a line for
        each contended run left out: a baseline run taken under load would widen every later
        comparison's spread, or shift it."""
        rows = [StoredRow.of(r) for r in results]
        quiet = [r for r in rows if not r.samples.disturbance()]
        left_out = [
            f"{r.bench}: not stored: {r.samples.disturbance()}" for r in rows if r not in quiet
        ]
        if not quiet:
            return None, left_out
        entries = {r.bench: baseline_entry(r) for r in quiet}
        return save_baselines(self.directory, *self.fingerprint, entries), left_out
