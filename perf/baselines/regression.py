"""Judge one measured benchmark against the committed baseline for this machine."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from perf.baselines.store import BaselineEntry, BaselineFile, check_compatible, model_changed
from perf.measure.sampling import Samples
from perf.measurement import LatencyResult
from perf.stats.compare import Change, Comparison, compare_samples

# Below this many separate probe readings in a run, dividing by them adds more noise than the
# drift it removes (a short run gets one or two noisy 5 ms matmuls): compare raw times.
MIN_PROBE_READINGS = 20
PROBE_SMOOTHING = 5  # readings in the running median (about 5 s at one reading a second)

NO_BASELINE = "no baseline"
REFUSED = "refused"
COMPARED = "compared"


@dataclasses.dataclass(frozen=True)
class BaselineCheck:
    status: str  # NO_BASELINE | REFUSED | COMPARED
    message: str
    comparison: Comparison | None = None
    probe_normalised: bool = False
    remeasured: bool = False

    @property
    def regressed(self) -> bool:
        return self.comparison is not None and self.comparison.verdict is Change.SLOWER

    @property
    def needs_remeasure(self) -> bool:
        return self.comparison is not None and self.comparison.verdict in (
            Change.SLOWER,
            Change.UNDECIDED,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "probe_normalised": self.probe_normalised,
            "remeasured": self.remeasured,
        }


def baseline_settings(result: LatencyResult) -> dict[str, Any]:
    """The run settings a baseline stores and a comparison requires to be equal."""
    return {
        **result.settings,
        "intra_op_threads": result.settings.get("effective_intra_op_threads"),
        "duration_s": result.case.duration_s,
        "batch": result.case.batch,
    }


def baseline_entry(result: LatencyResult) -> BaselineEntry:
    return BaselineEntry.from_samples(
        baseline_settings(result),
        result.samples.samples_ms,
        model_key=result.model_key,
        probe_ms=result.samples.probe_ms,
    )


def smoothed_probe(probe_ms: tuple[float, ...], window: int = PROBE_SMOOTHING) -> np.ndarray:
    """Each sample's probe time as the running median of nearby readings.

    Drift moves over tens of seconds, a reading's own noise from one reading to the next: a
    median over a few seconds of readings keeps the first and drops the second.
    """
    probe = np.asarray(probe_ms, dtype=float)
    starts = np.flatnonzero(np.r_[True, probe[1:] != probe[:-1]])
    readings = probe[starts]
    half = window // 2
    medians = np.array([
        np.median(readings[max(0, i - half) : i + half + 1]) for i in range(len(readings))
    ])  # fmt: skip
    reading_of_sample = np.searchsorted(starts, np.arange(len(probe)), side="right") - 1
    return medians[reading_of_sample]


def _compared_values(
    samples_ms: tuple[float, ...], probe_ms: tuple[float, ...] | None, use_probe: bool
) -> np.ndarray:
    values = np.asarray(samples_ms, dtype=float)
    if use_probe:
        assert probe_ms is not None
        return values / smoothed_probe(probe_ms)
    return values


def probe_readings(probe_ms: tuple[float, ...] | None) -> int:
    """How many separate probe measurements a run's per-sample probe times came from."""
    if not probe_ms:
        return 0
    return 1 + sum(a != b for a, b in itertools.pairwise(probe_ms))


def check_against_baseline(
    result: LatencyResult,
    samples: Samples,
    baseline: BaselineFile | None,
    machine: Mapping[str, Any],
    software: Mapping[str, Any],
    force: bool = False,
    where: str = "baselines/",
) -> BaselineCheck:
    """Compare ``samples`` (the result's, or pooled with a re-measurement) with the baseline."""
    bench = result.case.id
    if baseline is None or bench not in baseline.benchmarks:
        return BaselineCheck(
            NO_BASELINE,
            f"no baseline for {bench} on this machine in {where}: not compared "
            "(budgets still apply; record one with --perf-save-baseline)",
        )
    differences = check_compatible(baseline, bench, baseline_settings(result), machine, software)
    if differences and not force:
        return BaselineCheck(
            REFUSED,
            f"comparison with {baseline.path} refused, the runs differ in: "
            + "; ".join(differences)
            + " (--perf-force-compare compares anyway)",
        )
    entry = baseline.entry(bench)
    use_probe = (
        probe_readings(entry.probe_ms) >= MIN_PROBE_READINGS
        and probe_readings(samples.probe_ms) >= MIN_PROBE_READINGS
    )
    comparison = compare_samples(
        _compared_values(entry.samples_ms, entry.probe_ms, use_probe),
        _compared_values(samples.samples_ms, samples.probe_ms, use_probe),
    )
    notes = []
    if use_probe:
        notes.append("normalised by the machine-speed probe")
    if model_changed(baseline, bench, result.model_key):
        notes.append("the model changed since the baseline")
    if differences:
        notes.append("forced despite: " + "; ".join(differences))
    suffix = f" ({', '.join(notes)})" if notes else ""
    return BaselineCheck(
        COMPARED,
        f"{bench} vs baseline: {comparison.verdict}{suffix}\n{comparison.format()}",
        comparison,
        probe_normalised=use_probe,
    )


def pooled(first: Samples, second: Samples) -> Samples:
    """A re-measurement's samples added to the first run's (both probed, or neither)."""
    probe = None
    if first.probe_ms is not None and second.probe_ms is not None:
        probe = first.probe_ms + second.probe_ms
    return dataclasses.replace(
        first,
        samples_ms=first.samples_ms + second.samples_ms,
        probe_ms=probe,
        stopped_because=f"{first.stopped_because}; re-measured: {second.stopped_because}",
        sampling_seconds=first.sampling_seconds + second.sampling_seconds,
    )
