"""One immutable record per run: ``--perf-history DIR`` writes what the run measured, once.

A record is a JSON file ``DIR/<machine id>/<UTC time>-<commit>-<run id>.json``, written to a
scratch file and then hard-linked into place, so it appears whole or not at all and is never
overwritten: appends from any number of runners cannot conflict, a merge of two stores is the
union of their files (``gather``: checked first, a same-name record with other bytes refused),
and copying the same record twice changes nothing (same name, same bytes). It holds the commit
(sha, time, branch, dirty flag), the CI run where there is one
(GitHub Actions' variables), the machine and software fingerprints, the traffic scenarios'
rows and ``--perf-against`` outcomes, and per benchmark its
settings, model key, outcomes, percentiles with intervals and up to ``MAX_SAMPLES`` calls
(evenly thinned). Stored baselines (perf.baselines.store) stay the comparison's input; records
are the history a trend or change-point view reads.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from perf.files import atomic_write_bytes
from perf.measure.fingerprint import fingerprint_id
from perf.measurement import LatencyResult

RECORD_FORMAT = 1
MAX_SAMPLES = 2000
CI_VARIABLES = ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB", "GITHUB_WORKFLOW",
                "GITHUB_REF_NAME", "GITHUB_HEAD_REF", "GITHUB_BASE_REF", "GITHUB_SHA")  # fmt: skip


class HistoryError(ValueError):
    """A record that cannot be read: the message names the file and what is wrong."""


def git_state(root: Path) -> dict[str, Any]:
    """The commit the run measured: sha, commit time, branch, dirty flag (None outside git)."""

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    return {
        "sha": sha,
        "time": git("show", "-s", "--format=%cI", "HEAD") if sha else None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD") if sha else None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if sha else None,
    }


def thinned(samples: Sequence[float], limit: int = MAX_SAMPLES) -> list[float]:
    """At most ``limit`` samples, evenly spaced through the run (order kept)."""
    if len(samples) <= limit:
        return list(samples)
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)]


def benchmark_entry(result: LatencyResult, comparison: Mapping[str, Any] | None) -> dict:
    """What a record keeps of one measured benchmark."""
    return {
        "case": {**result.to_dict()["case"]},
        "settings": dict(result.settings),
        "model_key": result.model_key,
        "outcome": str(result.verdict),
        "comparison": None if comparison is None else dict(comparison),
        "latency_ms": result.summary.to_dict(),
        "sampling_seconds": result.samples.sampling_seconds,
        "contention": result.samples.disturbance(),
        "gflop_per_call": None if result.work is None else result.work["gflop_per_call"],
        "samples_ms": thinned(result.samples.samples_ms),
    }


def build_record(
    benchmarks: Mapping[str, Mapping[str, Any]],
    fingerprint: Mapping[str, Any],
    commit: Mapping[str, Any],
    scenarios: Sequence[Mapping[str, Any]] = (),
    against: Sequence[Mapping[str, Any]] = (),
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {
        "format": RECORD_FORMAT,
        "run_id": uuid.uuid4().hex,
        "recorded_at": now.isoformat(timespec="seconds"),
        "commit": dict(commit),
        "ci": {name: environ[name] for name in CI_VARIABLES if environ.get(name)},
        "machine_id": fingerprint_id(fingerprint),
        "fingerprint": dict(fingerprint),
        "benchmarks": {name: dict(b) for name, b in benchmarks.items()},
        "scenarios": [dict(row) for row in scenarios],
        "against": [dict(outcome) for outcome in against],  # --perf-against A/B outcomes
    }


def record_path(directory: Path, record: Mapping[str, Any]) -> Path:
    stamp = record["recorded_at"].replace("-", "").replace(":", "").replace("+0000", "Z")
    commit = (record["commit"].get("sha") or "nogit")[:12]
    return directory / record["machine_id"] / f"{stamp}-{commit}-{record['run_id'][:12]}.json"


def write_record(directory: Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` once; an existing file of that name is left as it is (same run)."""
    path = record_path(directory, record)
    if not path.exists():
        link_new(path, json.dumps(record, indent=1, sort_keys=True).encode())
    return path


def link_new(path: Path, data: bytes) -> bool:
    """Put ``data`` at ``path`` whole via a scratch file and a hard link; never overwrites.
    False when ``path`` already existed (its bytes are left as they are)."""
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    atomic_write_bytes(scratch, data)
    try:
        os.link(scratch, path)  # fails if the name exists: never overwrites
    except FileExistsError:
        return False
    finally:
        scratch.unlink(missing_ok=True)
    return True


def read_record(path: Path) -> dict[str, Any]:
    """One record file, checked; HistoryError names the file and what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise HistoryError(f"{path}: not a readable run record ({error})") from None
    return parse_record(data, str(path))


def parse_record(data: bytes, where: str) -> dict[str, Any]:
    """A record's bytes (a file's, or a pack's line), checked; HistoryError names ``where``."""
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HistoryError(f"{where}: not a readable run record ({error})") from None
    missing = [k for k in ("format", "run_id", "recorded_at", "commit", "benchmarks")
               if not isinstance(record, dict) or k not in record]  # fmt: skip
    if missing:
        raise HistoryError(f"{where}: not a run record (missing {', '.join(missing)})")
    if record["format"] != RECORD_FORMAT:
        raise HistoryError(
            f"{where}: record format {record['format']!r}; this suite reads {RECORD_FORMAT}"
        )
    return record


def record_files(directory: Path) -> list[Path]:
    """The record files of a store (``<machine id>/<name>.json``), in name order."""
    return sorted(directory.glob("*/*.json"))


def load_records(directory: Path, samples: bool = True) -> list[dict[str, Any]]:
    """Every record under ``directory``, oldest first; HistoryError names a bad file.
    ``samples=False`` drops each benchmark's calls as it is read (the history views need only
    the percentiles; 10,000 records of 5 x 2000 calls would hold 10^8 floats)."""
    records = [_read(path, samples) for path in record_files(directory)]
    unique = {r["run_id"]: r for r in records}
    return sorted(unique.values(), key=lambda r: (r["recorded_at"], r["run_id"]))


def _read(path: Path, samples: bool) -> dict[str, Any]:
    record = read_record(path)
    return record if samples else without_samples(record)


def without_samples(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with each benchmark's calls dropped (the history views need percentiles)."""
    for bench in record["benchmarks"].values():
        bench.pop("samples_ms", None)
    return record
