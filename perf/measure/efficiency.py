"""How far from this machine's limit a benchmark runs: its work per call (perf.measure.work)
against the machine's measured peak (perf.measure.machine_peak).

``efficiency`` = (time the call's work would take at peak) / (its P50): 1.0 would be a graph
that does nothing but matrix products at the speed of the best GEMM onnxruntime runs here. It
is measured for the CPU provider; other providers report their work and no efficiency, since
the peak is a CPU GEMM.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from perf.measure.fingerprint import fingerprint_id, machine_and_software
from perf.measure.machine_peak import MachinePeak, cached_peak
from perf.measure.providers import CPU, resolve_provider
from perf.measure.sessions import SessionSettings
from perf.measure.work import Work, count_work_of_file

log = logging.getLogger("perf")


class EfficiencyMeter:
    """Counts each model's work once per input shape, measures the peak once per thread count."""

    def __init__(self, peak_dir: Path) -> None:
        self.peak_dir = peak_dir
        self._works: dict[tuple[str, tuple[tuple[str, tuple[int, ...]], ...]], Work] = {}
        self._peaks: dict[int, MachinePeak] = {}

    def peak(self, settings: SessionSettings) -> MachinePeak:
        threads = settings.effective_intra_op_threads()
        if threads not in self._peaks:
            machine = fingerprint_id(machine_and_software())
            self._peaks[threads] = cached_peak(self.peak_dir, machine, settings)
        return self._peaks[threads]

    def work(self, model_path: Path, inputs: Mapping[str, np.ndarray]) -> Work:
        key = (str(model_path), tuple(sorted((k, tuple(v.shape)) for k, v in inputs.items())))
        if key not in self._works:
            self._works[key] = count_work_of_file(model_path, inputs)
        return self._works[key]

    def of(
        self,
        model_path: Path,
        inputs: Mapping[str, np.ndarray],
        settings: SessionSettings,
        p50_ms: float,
    ) -> dict[str, Any] | None:
        """The row's ``work``: GFLOP per call (float / integer), and the efficiency on CPU;
        None when the graph cannot be run for counting (a custom op, say): an annotation
        never fails a benchmark."""
        try:
            work = self.work(model_path, inputs)
        except Exception as error:
            log.warning("%s: work per call not counted: %s", model_path, error)
            return None
        row: dict[str, Any] = {**work.to_dict(), "efficiency": None, "machine_peak": None}
        if resolve_provider(settings.provider) == CPU and p50_ms > 0:
            peak = self.peak(settings)
            row["efficiency"] = peak.seconds_for(work.float_flop, work.integer_op) / (p50_ms / 1e3)
            row["machine_peak"] = peak.to_dict()
        return row


def efficiency_text(work: Mapping[str, Any] | None) -> str:
    """``"43.9 GFLOP, 61% of peak"`` for the summary table."""
    if not work:
        return "-"
    text = f"{work['gflop_per_call']:.3g} GFLOP"
    if work.get("efficiency") is not None:
        text += f", {work['efficiency'] * 100:.0f}% of peak"
    if work.get("uncounted_ops"):
        text += " (+" + ",".join(work["uncounted_ops"]) + ")"
    return text
