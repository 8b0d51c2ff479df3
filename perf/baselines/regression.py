"""Judge one measured benchmark against the committed baseline for this machine."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from perf.baselines.store import BaselineEntry, BaselineFile, check_compatible, model_changed
from perf.measure.cases import PerfCase
from perf.measure.sampling import Samples, measuring_code_digest
from perf.measurement import LatencyResult
from perf.stats.compare import MIN_BASELINE_RUNS, Comparison, RunSummary, compare_runs
from perf.stats.outcome import Outcome


@dataclasses.dataclass(frozen=True)
class BaselineCheck:
    """``outcome``: not compared (no baseline), refused, or the comparison's verdict."""

    outcome: Outcome
    message: str
    comparison: Comparison | None = None  # against the stored runs
    interleaved: Mapping[str, Any] | None = None  # against the stored model, measured side by side
    # A regression on the stored runs alone: per op type, the stored profile and this run's
    profile_change: Sequence[Mapping[str, Any]] | None = None

    @property
    def regressed(self) -> bool:
        return self.outcome is Outcome.SLOWER

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "message": self.message,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "interleaved": None if self.interleaved is None else dict(self.interleaved),
            "profile_change": None
            if self.profile_change is None
            else [dict(row) for row in self.profile_change],
        }


def baseline_settings(case: PerfCase, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The run settings a baseline stores and a comparison requires to be equal."""
    return {
        **settings,
        "intra_op_threads": settings.get("effective_intra_op_threads"),
        "duration_s": case.duration_s,
        "batch": case.batch,
        "measuring_code": measuring_code_digest(),
    }


@dataclasses.dataclass(frozen=True)
class StoredRow:
    """A measured benchmark as the baseline store sees it: a single-stream result, or a traffic
    scenario's row (``bench`` then names the rate, ``settings`` the scenario's)."""

    bench: str
    case: PerfCase
    settings: Mapping[str, Any]  # what the run used; baseline_settings adds the case's
    samples: Samples
    model_key: str | None
    rate_rps: float | None = None  # a server row's offered rate
    profile: Sequence[Mapping[str, Any]] | None = None  # per op type (--perf-profile rows)

    @classmethod
    def of(cls, result: LatencyResult | StoredRow) -> StoredRow:
        if isinstance(result, StoredRow):
            return result
        return cls(result.case.id, result.case, result.settings, result.samples, result.model_key,
                   profile=result.profile)  # fmt: skip


def baseline_entry(result: LatencyResult | StoredRow) -> BaselineEntry:
    row = StoredRow.of(result)
    return BaselineEntry.from_samples(
        baseline_settings(row.case, row.settings),
        row.samples.samples_ms,
        model_key=row.model_key,
        segments=row.samples.segments,
        seconds=row.samples.sampling_seconds,
        profile=row.profile,
    )


# A run whose length differs more than this from the stored runs' is not their like.
RUN_LENGTH_TOLERANCE = 0.25
# The widest P50 interval (high / low) still read as "this machine's drift": the calibration
# series' unchanged verdicts reached 1.64 (cnn/fp32, 120 s, 3 stored runs). Stored runs that
# disagree more than that (a server run over capacity in one sitting, not in another) leave
# the verdict undecided: such a baseline cannot clear anything.
MAX_DRIFT_INTERVAL_WIDTH = 2.0


def _within_drift(comparison: Comparison) -> bool:
    p50 = comparison.change_at(0.5)
    if p50 is None or not (p50.ratio_low > 0 and math.isfinite(p50.ratio_high)):
        return False
    return p50.ratio_high / p50.ratio_low <= MAX_DRIFT_INTERVAL_WIDTH


@dataclasses.dataclass(frozen=True)
class StoredRuns:
    """The stored runs a benchmark is judged against, and what differs from this run."""

    bench: str
    entry: BaselineEntry
    notes: tuple[str, ...]  # forced-despite differences, for the message

    def judge(
        self, samples: Samples, model_changed_since: bool, where: Path, same_artifact: bool = False
    ) -> BaselineCheck:
        stored_s = sum(r.seconds for r in self.entry.runs) / len(self.entry.runs)
        now_s = samples.sampling_seconds
        if abs(now_s - stored_s) > RUN_LENGTH_TOLERANCE * stored_s:
            return BaselineCheck(
                Outcome.REFUSED,
                f"comparison with {where} refused: {self.bench}'s stored runs sampled "
                f"{stored_s:.0f} s each, this run {now_s:.0f} s; runs of other lengths vary "
                "by other amounts: use the --perf-max-time the baseline was recorded with",
            )
        current = RunSummary.of(samples.samples_ms, now_s)
        comparison = compare_runs(self.entry.runs, current)
        notes = list(self.notes)
        if model_changed_since:
            notes.insert(0, "the model changed since the baseline")
        outcome = comparison.verdict
        contention = samples.disturbance()
        if contention and outcome is not Outcome.SAME:
            # Another process's load is not the model's: a 2-core VM with one busy neighbour
            # measured 3x slower. Such a run cannot convict (or clear) anything.
            outcome = Outcome.UNDECIDED
            notes.append(f"not judged: {contention}; run again on a quiet machine")
        elif (
            same_artifact
            and not self.notes  # nothing forced past a difference in settings or machine
            and outcome is Outcome.UNDECIDED
            and comparison.baseline_runs >= MIN_BASELINE_RUNS
            and _within_drift(comparison)
        ):
            # Nothing that builds or times the model differs from the stored runs': a move
            # inside the machine's drift is the machine's. Outside it (slower/faster), it stands.
            outcome = Outcome.UNCHANGED
            notes.append(
                "the same artifact, settings and timing code as the stored runs: the difference "
                "is within this machine's drift between sittings"
            )
        suffix = f" ({'; '.join(notes)})" if notes else ""
        return BaselineCheck(
            outcome,
            f"{self.bench} vs baseline: {outcome}{suffix}\n{comparison.format()}",
            comparison,
        )


def stored_runs(
    baseline: BaselineFile | None,
    case: PerfCase,
    settings: Mapping[str, Any],
    machine: Mapping[str, Any],
    software: Mapping[str, Any],
    force: bool = False,
    where: str = "baselines/",
    bench: str | None = None,
) -> StoredRuns | BaselineCheck:
    """What ``case`` (stored as ``bench``, by default its id) is compared with, or the check
    that says why it is not compared."""
    bench = bench or case.id
    if baseline is None or bench not in baseline.benchmarks:
        return BaselineCheck(
            Outcome.NOT_COMPARED,
            f"no baseline for {bench} on this machine in {where}: not compared "
            "(budgets still apply; record one with --perf-save-baseline)",
        )
    current = baseline_settings(case, settings)
    differences = check_compatible(baseline, bench, current, machine, software)
    if differences and not force:
        return BaselineCheck(
            Outcome.REFUSED,
            f"comparison with {baseline.path} refused, the runs differ in: "
            + "; ".join(differences)
            + " (--perf-force-compare compares anyway)",
        )
    entry = baseline.entry(bench)
    if not entry.runs:
        return BaselineCheck(
            Outcome.REFUSED,
            f"{baseline.path}: the baseline of {bench} was recorded by an older suite (format 1:"
            " one probe-normalised run, no run history), which cannot be compared honestly; "
            "record it again with --perf-save-baseline, three times or more",
        )
    notes = ("forced despite: " + "; ".join(differences),) if differences else ()
    return StoredRuns(bench, entry, notes)


def check_against_baseline(
    result: LatencyResult | StoredRow,
    baseline: BaselineFile | None,
    machine: Mapping[str, Any],
    software: Mapping[str, Any],
    force: bool = False,
    where: str = "baselines/",
) -> BaselineCheck:
    """Compare a measured result with its stored runs."""
    row = StoredRow.of(result)
    stored = stored_runs(
        baseline, row.case, row.settings, machine, software, force, where, bench=row.bench
    )
    if isinstance(stored, BaselineCheck):
        return stored
    assert baseline is not None
    changed = model_changed(baseline, stored.bench, row.model_key)
    stored_key = baseline.entry(stored.bench).model_key
    same = row.model_key is not None and stored_key == row.model_key
    return stored.judge(row.samples, changed, baseline.path, same_artifact=same)
