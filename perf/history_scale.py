"""``python -m perf.history_scale``: how long the history takes to read, search and draw at
a size a project reaches after years of CI (10,000 records by default).

Synthesises records the way ``--perf-history`` writes them (perf.baselines.history: one file
per run, several machines, several benchmarks per run, ``samples`` calls each, a 10% step in
the middle of every series) into a scratch folder, then times ``load_records``, the change
points of every series (the ``--markdown`` table), and the page (perf.reports.history_page)
as ``--page`` writes it. It measures this code, not a model: nothing is run on an accelerator.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from perf.baselines.history import build_record, write_record
from perf.baselines.record_store import compact, query, stored_records
from perf.history import markdown, page, series
from perf.stats.change_points import change_points


@dataclasses.dataclass(frozen=True)
class Scale:
    records: int
    series: int
    load_s: float
    change_points_s: float
    page_s: float
    page_bytes: int
    compact_s: float | None = None  # folding the loose records into packs, once
    query_s: float | None = None  # one benchmark's series and change points on one machine
    query_all_s: float | None = None  # ... on every machine

    def describe(self) -> str:
        text = (
            f"{self.records} records, {self.series} series: load_records {self.load_s:.1f} s, "
            f"change points (--markdown) {self.change_points_s:.1f} s, page "
            f"{self.page_s:.1f} s ({self.page_bytes / 1e6:.1f} MB)"
        )
        if self.compact_s is not None and self.query_s is not None:
            text += (
                f"; compact {self.compact_s:.1f} s, then one benchmark's history on one "
                f"machine (--benchmark --machine) {self.query_s:.2f} s, on every machine "
                f"{self.query_all_s:.2f} s"
            )
        return text


def synthesise(
    directory: Path, records: int, machines: int = 4, benchmarks: int = 5, samples: int = 100
) -> None:
    """``records`` run records under ``directory``, spread round-robin over ``machines``."""
    rng = random.Random(0)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for i in range(records):
        machine = i % machines
        step = 1.1 if i >= records // 2 else 1.0
        fingerprint = {"cpu_model": f"Synthetic CPU {machine}", "usable_cores": 2}
        commit = {"sha": f"{i:040x}", "time": None, "branch": "main", "dirty": False}
        benches = {f"model{b}/fp32-cpu": _bench(rng, (10.0 + b) * step, samples)
                   for b in range(benchmarks)}  # fmt: skip
        record = build_record(benches, fingerprint, commit, environ={})
        when = start + datetime.timedelta(minutes=i)
        record["recorded_at"] = when.isoformat(timespec="seconds")
        write_record(directory, record)


def _bench(rng: random.Random, p50: float, samples: int) -> dict:
    p50 *= rng.lognormvariate(0, 0.02)
    band = {"value": p50, "low": p50 * 0.98, "high": p50 * 1.02}
    p99 = {"value": p50 * 1.5, "low": p50 * 1.4, "high": p50 * 1.6}
    return {
        "latency_ms": {"n": samples, "percentiles": {"p50": band, "p99": p99}},
        "outcome": "not gated",
        "samples_ms": [p50 * rng.lognormvariate(0, 0.05) for _ in range(samples)],
    }


def measure(directory: Path, last: int | None, packed: bool = False) -> Scale:
    """Times reading ``directory``, its change points and its page (``--last`` as given);
    ``packed``: then compacts it and times one benchmark's query on the packs."""
    started = time.perf_counter()
    records = stored_records(directory, samples=False)  # as python -m perf.history reads
    loaded = time.perf_counter()
    table = series(records)
    markdown(table)
    searched = time.perf_counter()
    text = page(table, last)
    drawn = time.perf_counter()
    scale = Scale(
        len(records), len(table), loaded - started, searched - loaded, drawn - searched,
        len(text.encode()),
    )  # fmt: skip
    if not packed:
        return scale
    compact(directory)
    compacted = time.perf_counter()
    machine, name = sorted(table)[0]
    for rows in query(directory, name, machine).values():  # what --benchmark --machine prints
        change_points([r["p50"] for r in rows])
    queried = time.perf_counter()
    for rows in query(directory, name).values():  # on every machine
        change_points([r["p50"] for r in rows])
    return dataclasses.replace(
        scale, compact_s=compacted - drawn, query_s=queried - compacted,
        query_all_s=time.perf_counter() - queried,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.history_scale", description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--benchmarks", type=int, default=5, help="benchmarks per record")
    parser.add_argument("--samples", type=int, default=100, help="calls kept per benchmark")
    parser.add_argument("--last", type=int, default=None, help="the page's --last")
    parser.add_argument(
        "--compact", action="store_true",
        help="then compact the store and time one benchmark's query on its packs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="history-scale-") as scratch:
        began = time.perf_counter()
        synthesise(Path(scratch), args.records, args.machines, args.benchmarks, args.samples)
        print(f"synthesised {args.records} records in {time.perf_counter() - began:.1f} s")
        print(measure(Path(scratch), args.last, args.compact).describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
