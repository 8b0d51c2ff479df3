"""Old run records compacted without loss, and a history query that stays fast at any size.

``compact`` folds each machine's loose record files into one immutable pack, written once like a
record and named by its content (so two runners compacting the same records make the same pack,
and a merge of stores is still a union of files):

* ``pack-<id>.jsonl.gz``: every record's file name and exact text, one per line: lossless,
  ``unpack`` gives the files back byte for byte;
* ``pack-<id>.npz``: per benchmark, the columns a history view reads (P50, P99 and its
  interval, calls, outcome, and which run), so that a query for one benchmark reads its arrays
  alone and no JSON (numpy's npz loads each array only when it is asked for).

The packed files are then removed. A run found both loose and packed (gathered again after a
compaction) is one run: readers keep one per run id.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perf.baselines.history import (
    HistoryError,
    link_new,
    load_records,
    parse_record,
    read_record,
    record_files,
    without_samples,
)

PACK_PREFIX = "pack-"
PACK_RECORDS, PACK_COLUMNS = ".jsonl.gz", ".npz"
RUN_FIELDS = ("run_id", "recorded_at", "sha", "dirty")
BENCH_FIELDS = ("run", "p50", "p99", "p99_low", "p99_high", "n", "outcome")


def pack_files(directory: Path) -> list[Path]:
    """The record packs of a store (``<machine id>/pack-<id>.jsonl.gz``), in name order."""
    return sorted(directory.glob(f"*/{PACK_PREFIX}*{PACK_RECORDS}"))


def packed_records(pack: Path) -> Iterator[tuple[str, bytes]]:
    """(file name, exact bytes) of every record in ``pack``; HistoryError names a bad pack."""
    try:
        with gzip.open(pack, "rt", encoding="utf-8") as lines:
            for line in lines:
                entry = json.loads(line)
                yield entry["name"], entry["text"].encode()
    except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise HistoryError(f"{pack}: not a readable record pack ({error})") from None


def compact(directory: Path) -> list[Path]:
    """Every machine's loose records under ``directory`` into one new pack each (the packs
    made); the packed files are removed only once their pack is whole on disk."""
    made = []
    for machine in sorted({path.parent for path in record_files(directory)}):
        loose = sorted(machine.glob("*.json"))
        texts = [(path.name, path.read_bytes()) for path in loose]
        records = [parse_record(data, str(machine / name)) for name, data in texts]  # checked
        made.append(_write_pack(machine, texts, records))
        for path in loose:
            path.unlink()
    return made


def _write_pack(machine: Path, texts: Sequence[tuple[str, bytes]], records: list[dict]) -> Path:
    lines = b"".join(
        json.dumps({"name": name, "text": data.decode()}).encode() + b"\n" for name, data in texts
    )
    pack_id = hashlib.sha256(lines).hexdigest()[:16]
    path = machine / f"{PACK_PREFIX}{pack_id}{PACK_RECORDS}"
    link_new(_columns_path(path), _columns(records))
    link_new(path, gzip.compress(lines, mtime=0))  # last: a pack without columns never shows
    return path


def _columns(records: list[dict[str, Any]]) -> bytes:
    runs = {field: [] for field in RUN_FIELDS}
    benches: dict[str, dict[str, list[Any]]] = {}
    for index, record in enumerate(records):
        commit = record["commit"]
        for field, value in zip(RUN_FIELDS, (record["run_id"], record["recorded_at"],
                                             commit.get("sha") or "", bool(commit.get("dirty"))),
                                strict=True):  # fmt: skip
            runs[field].append(value)
        for name, bench in record["benchmarks"].items():
            columns = benches.setdefault(name, {field: [] for field in BENCH_FIELDS})
            for field, value in zip(BENCH_FIELDS, _bench_values(index, bench), strict=True):
                columns[field].append(value)
    arrays = {f"run_{field}": np.asarray(values) for field, values in runs.items()}
    arrays["benchmarks"] = np.asarray(list(benches), dtype=str)
    for i, columns in enumerate(benches.values()):
        arrays |= {f"b{i}_{field}": np.asarray(values) for field, values in columns.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # deterministic: entries carry no time stamp
    return buffer.getvalue()


def _bench_values(run: int, bench: dict[str, Any]) -> tuple[Any, ...]:
    latency = bench["latency_ms"]
    p50, p99 = latency["percentiles"]["p50"], latency["percentiles"]["p99"]

    def number(value: float | None) -> float:
        return np.nan if value is None else float(value)

    return (run, number(p50["value"]), number(p99["value"]), number(p99.get("low")),
            number(p99.get("high")), int(latency.get("n") or 0), str(bench["outcome"]))  # fmt: skip


def unpack(pack: Path, into: Path) -> list[Path]:
    """The records of ``pack`` as files again under ``into/<machine id>/`` (write-once: a
    file already there is left as it is); the paths written."""
    written = []
    for name, data in packed_records(pack):
        target = into / pack.parent.name / name
        if link_new(target, data):
            written.append(target)
    return written


def packed_rows(pack: Path, benchmark: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(benchmark, history row) of a pack's columns, only ``benchmark``'s when given; rows as
    perf.history.series makes them, plus each run's ``run_id``."""
    columns_path = _columns_path(pack)
    try:
        with np.load(columns_path, allow_pickle=False) as columns:
            names = list(columns["benchmarks"])
            wanted = names if benchmark is None else [n for n in names if n == benchmark]
            runs = {field: columns[f"run_{field}"] for field in RUN_FIELDS}
            for name in wanted:
                i = names.index(name)
                bench = {field: columns[f"b{i}_{field}"] for field in BENCH_FIELDS}
                for k in range(len(bench["run"])):
                    yield name, _row(runs, bench, k)
    except (OSError, ValueError, KeyError) as error:
        raise HistoryError(f"{columns_path}: not readable columns of a pack ({error})") from None


def _row(runs: dict[str, np.ndarray], bench: dict[str, np.ndarray], k: int) -> dict[str, Any]:
    run = int(bench["run"][k])
    sha = str(runs["sha"][run]) or None

    def value(array: np.ndarray) -> float | None:
        number = float(array[k])
        return None if np.isnan(number) else number

    return {
        "run_id": str(runs["run_id"][run]), "when": str(runs["recorded_at"][run]),
        "commit": commit_label(sha, bool(runs["dirty"][run])), "sha": sha,
        "p50": value(bench["p50"]),
        "p99": {"value": value(bench["p99"]), "low": value(bench["p99_low"]),
                "high": value(bench["p99_high"])},
        "n": int(bench["n"][k]), "outcome": str(bench["outcome"][k]),
    }  # fmt: skip


def commit_label(sha: str | None, dirty: bool) -> str:
    """A run's commit as the history shows it: 8 digits, ``+`` when the tree was dirty."""
    return (sha or "no git")[:8] + ("+" if dirty else "")


# (machine id, benchmark) -> rows, oldest first
Series = dict[tuple[str, str], list[dict[str, Any]]]


def record_rows(record: dict[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    """((machine id, benchmark), history row) for each benchmark of one record."""
    commit = record["commit"]
    label = commit_label(commit.get("sha"), bool(commit.get("dirty")))
    for name, bench in record["benchmarks"].items():
        pct = bench["latency_ms"]["percentiles"]
        yield (record.get("machine_id", "?"), name), {
            "run_id": record["run_id"], "when": record["recorded_at"], "commit": label,
            "sha": commit.get("sha"), "p50": pct["p50"]["value"], "p99": pct["p99"],
            "n": bench["latency_ms"].get("n"), "outcome": bench["outcome"],
        }  # fmt: skip


def as_series(rows: Iterator[tuple[tuple[str, str], dict[str, Any]]]) -> Series:
    """Rows grouped per machine and benchmark, one per run id, oldest first."""
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for key, row in rows:
        table.setdefault(key, {})[row["run_id"]] = row
    return {key: sorted(by_run.values(), key=lambda r: (r["when"], r["run_id"]))
            for key, by_run in table.items()}  # fmt: skip


def stored_records(directory: Path, samples: bool = True) -> list[dict[str, Any]]:
    """Every run of a store, loose or packed, one per run id, oldest first (HistoryError names
    a bad file); ``samples=False`` drops each benchmark's calls as it is read."""
    records = {r["run_id"]: r for r in load_records(directory, samples)}
    for pack in pack_files(directory):
        for name, data in packed_records(pack):
            record = parse_record(data, f"{pack} ({name})")
            records.setdefault(record["run_id"], record if samples else without_samples(record))
    return sorted(records.values(), key=lambda r: (r["recorded_at"], r["run_id"]))


def query(directory: Path, benchmark: str, machine: str | None = None) -> Series:
    """One benchmark's series on every machine (or on ``machine``): its packs' columns (no JSON
    read) and the loose records. Fast at any size once old records are compacted."""

    def mine(path: Path) -> bool:
        return machine in (None, path.parent.name)

    def rows() -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        for pack in filter(mine, pack_files(directory)):
            for name, row in packed_rows(pack, benchmark):
                yield (pack.parent.name, name), row
        for path in filter(mine, record_files(directory)):
            yield from ((key, row) for key, row in record_rows(read_record(path))
                        if key[1] == benchmark)  # fmt: skip

    return as_series(rows())


@dataclasses.dataclass(frozen=True)
class Gathered:
    added: list[Path]  # new in the store
    present: list[Path]  # already there with the same bytes

    def describe(self, into: Path) -> str:
        return f"{into}: {len(self.added)} record(s) added, {len(self.present)} already there"


def gather(sources: Sequence[Path], into: Path) -> Gathered:
    """The union of the stores ``sources`` (e.g. downloaded artifacts) into the store ``into``:
    loose records and packs alike (a pack is named by its content, so the same pack made on
    two runners is one file).

    Every file is checked before any is linked in, so a refused gather leaves ``into`` as it
    was: a bad record, or a name already held (in ``into`` or an earlier source) by different
    bytes, raises HistoryError naming both files. The same name with the same bytes is the same
    record and changes nothing."""
    planned: dict[Path, Path] = {}  # target -> its source, read again when linked in
    present: list[Path] = []
    for source in sources:
        for path in store_files(source):
            target = into / path.relative_to(source)
            held = planned.get(target) or (target if target.exists() else None)
            if held is None:
                _check(path)
                planned[target] = path
            elif held.read_bytes() == path.read_bytes():
                present.append(target)
            else:
                raise HistoryError(
                    f"{path}: differs from {held}, a record of the same name; "
                    "records are write-once, refusing to overwrite"
                )
    added = [target for target, path in planned.items() if link_new(target, path.read_bytes())]
    return Gathered(added, present)


def store_files(directory: Path) -> list[Path]:
    """Every file a store is made of: loose records and both files of each pack."""
    packs = [p for pack in pack_files(directory) for p in (_columns_path(pack), pack)]
    return record_files(directory) + packs


def _check(path: Path) -> None:
    """A store file is whole and readable, before it joins a store (HistoryError if not)."""
    if path.name.endswith(PACK_RECORDS):
        for name, data in packed_records(path):
            parse_record(data, f"{path} ({name})")
    elif path.suffix == PACK_COLUMNS:
        next(packed_rows(path.with_suffix(PACK_RECORDS)), None)
    else:
        read_record(path)


def _columns_path(pack: Path) -> Path:
    return pack.with_suffix("").with_suffix(PACK_COLUMNS)
