"""``--perf-tail-matrix``: which session settings give the lowest P99 at a given rate?

The settings that shape a loaded server's tail, measured as a small matrix with the server
scenario (perf.scenarios.server) at each ``--perf-rate``: intra-op threads (one, or one per
physical core), thread spinning (on: idle threads burn a core waiting for work; off: they
sleep and wake late), and workers (one request at a time, or two in parallel on one session).
Each of the eight settings gets an equal share of ``--perf-max-time``, so the matrix costs one
cap. The summary names the setting with the lowest P99 among runs that served every request
and whose generator kept up. Memory-pattern and arena options are not in the matrix: on CPU
with fixed input shapes they change allocation, not the steady-state tail.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from perf.measure.cases import PerfCase
from perf.scenarios.server import ServerResult


@dataclasses.dataclass(frozen=True)
class TailSetting:
    threads: int | None  # intra-op threads; None: one per physical core (the default)
    spinning: bool
    workers: int

    @property
    def label(self) -> str:
        threads = "all" if self.threads is None else str(self.threads)
        return f"threads {threads}, spin {'on' if self.spinning else 'off'}, workers {self.workers}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "label": self.label}


TAIL_MATRIX = tuple(
    TailSetting(threads, spinning, workers)
    for threads in (1, None)
    for spinning in (True, False)
    for workers in (1, 2)
)


@dataclasses.dataclass(frozen=True)
class MatrixResult:
    case: PerfCase
    rate_rps: float
    runs: tuple[tuple[TailSetting, ServerResult], ...]
    served_nothing: tuple[TailSetting, ...] = ()  # settings whose run started no request

    def best(self) -> tuple[TailSetting, ServerResult] | None:
        """The lowest P99 among runs that served everything with a generator that kept up."""
        sound = [(s, r) for s, r in self.runs if not r.flags]
        return min(sound, key=lambda pair: _p99(pair[1]), default=None)

    def line(self) -> str:
        best = self.best()
        labels = ", ".join(setting.label for setting in self.served_nothing)
        starved = f"; {labels} served nothing" if labels else ""
        if best is None:
            return f"at {self.rate_rps:g} req/s no setting served every request in time{starved}"
        setting, result = best
        return (
            f"at {self.rate_rps:g} req/s the lowest P99 is {_p99(result):.1f} ms: "
            f"{setting.label}{starved}"
        )

    def to_dict(self) -> dict[str, Any]:
        best = self.best()
        return {
            "id": self.case.id,
            "scenario": "tail-matrix",
            "rate_rps": self.rate_rps,
            "best": None if best is None else best[0].to_dict(),
            "runs": [{"setting": s.to_dict(), **r.to_dict()} for s, r in self.runs],
            "served_nothing": [setting.to_dict() for setting in self.served_nothing],
        }


def matrix_rows(results: list[MatrixResult]) -> list[tuple[str, ...]]:
    rows = []
    for result in results:
        best = result.best()
        for setting, run in result.runs:
            mark = "best" if best is not None and best[0] == setting else ""
            pct = run.latency.percentiles
            rows.append((
                result.case.id, f"{result.rate_rps:g}/s", setting.label,
                f"{pct['p50'].value:.1f} ms", f"{pct['p99'].value:.1f} ms",
                "; ".join(run.flags) or "-", mark,
            ))  # fmt: skip
    return rows


MATRIX_HEADERS = ("configuration", "offered", "setting", "P50", "P99", "flags", "")


def _p99(result: ServerResult) -> float:
    return result.latency.percentiles["p99"].value
