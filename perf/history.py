"""``python -m perf.history DIR``: every benchmark's runs over time, per machine, as text.

Reads the run records of ``--perf-history DIR`` (perf.baselines.history) and prints, per
machine and benchmark, one line per run (oldest first): when, the commit (``+`` when the tree
was dirty), P50 and P99 with the P99's interval, calls, and the outcome; then a sparkline of the
P50s and the series' change points (perf.stats.change_points: binary segmentation with a
max-t permutation test on log P50, each with the commit of the first run after it, its size
with an interval and its p-value). ``--last N`` keeps the newest N runs of each; ``--page
FILE`` also writes them as one self-contained HTML page (perf.reports.history_page).

``python -m perf.history gather SRC... --into DIR`` puts the records of several stores (e.g.
downloaded artifacts of several runners) into one as a union of files: a record already there
with the same bytes changes nothing, one of the same name with other bytes is refused, naming
both files, and the store is left as it was. ``python -m perf.history compact DIR`` folds
each machine's records into one lossless pack (perf.baselines.record_store), ``unpack PACK
--into DIR`` gives the files back, and ``DIR --benchmark NAME [--machine ID]`` shows one
benchmark's series from the packs' columns alone (fast at any size). ``python -m
perf.history_scale`` times all of this on 10,000 synthesised records (perf.history_scale).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perf.baselines.history import HistoryError
from perf.baselines.record_store import (
    Series,
    as_series,
    compact,
    gather,
    query,
    record_rows,
    stored_records,
    unpack,
)
from perf.files import atomic_write_text
from perf.reports.history_page import render_page
from perf.stats.change_points import MIN_RUNS, change_points

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled between the smallest and the largest."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return BARS[0] * len(values)
    return "".join(BARS[int((v - low) / (high - low) * (len(BARS) - 1))] for v in values)


def series(records: Sequence[dict[str, Any]]) -> Series:
    """(machine id, benchmark) -> rows, oldest first."""
    return as_series(row for record in records for row in record_rows(record))


def render(table: Series, last: int | None = None) -> str:
    lines = []
    for (machine, name), rows in sorted(table.items()):
        rows = rows[-last:] if last else rows
        lines.append(f"{name} on machine {machine}: {len(rows)} run(s)")
        for r in rows:
            p99 = r["p99"]
            interval = f"[{_ms(p99.get('low'))}, {_ms(p99.get('high'))}]"
            lines.append(
                f"  {r['when']}  {r['commit']:<9}  P50 {_ms(r['p50'])} ms  "
                f"P99 {_ms(p99['value'])} ms {interval}  n={r['n']}  {r['outcome']}"
            )
        p50s = [r["p50"] for r in rows]
        lines.append(f"  P50 {sparkline(p50s)}")
        found = change_points(p50s)
        lines += [f"  {c.describe(rows[c.index]['commit'])}" for c in found]
        if not found and len(rows) >= 2 * MIN_RUNS:
            lines.append("  no change point (max-t permutation test, p <= 0.01)")
    return "\n".join(lines) + "\n" if lines else "no run records\n"


SUMMARY_RUNS = 20  # runs a job summary's sparkline shows, unless --last says otherwise


def markdown(table: Series, last: int | None = SUMMARY_RUNS) -> str:
    """A table per machine for a CI job summary: benchmark, runs, the last P50 and P99 (with
    its interval), a sparkline of the last ``last`` P50s, and the last change point."""
    lines = []
    for machine in sorted({m for m, _ in table}):
        lines += [f"### Latency history on machine {machine}", "",
                  "| benchmark | runs | last P50 | last P99 [95% CI] | P50, last runs | "
                  "last change point |", "|---|---|---|---|---|---|"]  # fmt: skip
        for (mine, name), rows in sorted(table.items()):
            if mine != machine:
                continue
            p99 = rows[-1]["p99"]
            found = change_points([r["p50"] for r in rows])
            change = found[-1].describe(rows[found[-1].index]["commit"]) if found else "none"
            shown = rows[-last:] if last else rows
            lines.append(
                f"| {name} | {len(rows)} | {_ms(rows[-1]['p50'])} ms | {_ms(p99['value'])} ms "
                f"[{_ms(p99.get('low'))}, {_ms(p99.get('high'))}] | "
                f"{sparkline([r['p50'] for r in shown])} | {change} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n" if lines else "No run records.\n"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def page(table: Series, last: int | None, url: str | None = None) -> str:
    """The HTML page of ``table``, each series cut to its newest ``last`` runs."""
    return render_page({key: rows[-last:] if last else rows for key, rows in table.items()}, url)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gather"]:
        return gather_main(argv[1:])
    if argv[:1] == ["compact"]:
        return compact_main(argv[1:])
    if argv[:1] == ["unpack"]:
        return unpack_main(argv[1:])
    return show_main(argv)


def compact_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perf.history compact",
        description="Fold each machine's loose records into one pack, without loss "
        "(perf.baselines.record_store); a query for one benchmark then reads no JSON.",
    )
    parser.add_argument("directory", type=Path, help="the --perf-history folder")
    args = parser.parse_args(argv)
    try:
        made = compact(args.directory)
    except HistoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(f"packed: {path}" for path in made) or "nothing to pack")
    return 0


def unpack_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perf.history unpack",
        description="The records of packs as files again, byte for byte (write-once).",
    )
    parser.add_argument("packs", type=Path, nargs="+", help="pack-<id>.jsonl.gz files")
    parser.add_argument("--into", type=Path, required=True, help="the store to write into")
    args = parser.parse_args(argv)
    try:
        written = [path for pack in args.packs for path in unpack(pack, args.into)]
    except HistoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.into}: {len(written)} record(s) written")
    return 0


def gather_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perf.history gather",
        description="Copy the records of several stores into one (a union of files; "
        "a record of the same name with other bytes is refused, naming both files).",
    )
    parser.add_argument("sources", type=Path, nargs="+", help="--perf-history folders")
    parser.add_argument("--into", type=Path, required=True, help="the store to gather into")
    args = parser.parse_args(argv)
    missing = [str(source) for source in args.sources if not source.is_dir()]
    if missing:
        parser.error(f"no such folder: {', '.join(missing)}")
    try:
        done = gather(args.sources, args.into)
    except HistoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(done.describe(args.into))
    return 0


def show_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.history", description=__doc__)
    parser.add_argument("directory", type=Path, help="the --perf-history folder")
    parser.add_argument("--last", type=int, default=None, help="the newest N runs of each")
    parser.add_argument(
        "--markdown", action="store_true",
        help="print a table per machine for a CI job summary instead of the runs",
    )  # fmt: skip
    parser.add_argument(
        "--page", type=Path, default=None,
        help="also write the history as one self-contained HTML page (inline SVG) here",
    )  # fmt: skip
    parser.add_argument(
        "--commit-url", default=None,
        help="link commits on the page, e.g. https://github.com/ORG/REPO/commit/{sha}",
    )  # fmt: skip
    parser.add_argument(
        "--benchmark", default=None,
        help="only this benchmark's series (reads compacted packs' columns, no JSON: fast)",
    )  # fmt: skip
    parser.add_argument(
        "--machine", default=None, help="with --benchmark: only this machine id's series"
    )
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory}: no such folder (write one with --perf-history DIR)")
    try:
        table = (query(args.directory, args.benchmark, args.machine) if args.benchmark
                 else series(stored_records(args.directory, samples=False)))  # fmt: skip
    except HistoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # A job summary must stay under GitHub's 1 MiB: a sparkline of every run would not
    summary = markdown(table, args.last or SUMMARY_RUNS) if args.markdown else None
    print(summary or render(table, args.last), end="")
    if args.page is not None:
        atomic_write_text(args.page, page(table, args.last, args.commit_url))
        print(f"history page: {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
