"""Committed latency baselines: one JSON file per machine and onnxruntime build.

    baselines/<slug>-<id>/baseline.json

``slug`` names the machine for people (``fingerprint_slug``); ``id`` hashes MACHINE_FIELDS and
SOFTWARE_FIELDS only, so samples are compared only with samples from the same CPU model, usable
cores, ISA extensions, GPUs and onnxruntime build. Other fingerprint fields (memory, OS, numpy)
are stored for people and do not move the folder.

A missing file means "no baseline yet" (``None``). A file that is there but cannot be trusted
(invalid JSON, an unknown format_version, a missing key, a hand edit that left a negative
sample) raises BaselineError naming the file, the field and a fix, and is never overwritten.
Saving merges into the file under a file lock and replaces it atomically (temp file in the same
folder, fsync, ``os.replace``), so a crash leaves the old file or the new one, never a mix.

Format history (``format_version``; as in pyperf, bumped whenever a reader must know about a
change, and older versions keep being read):

1. The first version::

       {"format_version": 1, "created_at": ISO, "updated_at": ISO,
        "fingerprint": {"machine": {...}, "software": {...}},
        "benchmarks": {"<benchmark id>": {
            "settings": {...}, "model_key": str | null, "samples_ms": [positive, ...],
            "probe_ms": [positive, ... one per sample] | null, "summary": {...},
            "recorded_at": ISO, "run": {"python": ..., "command": ...}}}}

2. Runs: ``probe_ms`` gone (the machine-speed probe was removed: it did not track drift on
   AVX2 runners, where its median moved +-45% between runs); ``segments``
   (``[{"calls": int, "seconds": float}]``, the latest run's sessions, calls adding up to its
   samples) and ``runs`` added: the summaries
   (``{"quantiles_ms": {"0.5": ms, ...}, "calls", "seconds", "recorded_at"}``) of the last
   MAX_BASELINE_RUNS runs saved for this benchmark and model, oldest first, which is what a
   comparison uses (perf.stats.compare). Version 1 entries are read with no runs and null
   segments; a comparison refuses them and says to record again.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import math
import numbers
import platform
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from perf.files import atomic_write_text, scratch_prefix
from perf.measure.fingerprint import field_value, fingerprint_id, fingerprint_slug
from perf.stats.compare import MAX_BASELINE_RUNS, RunSummary, Segment
from perf.stats.percentiles import LatencySummary

FORMAT_VERSION = 2
BASELINE_FILE = "baseline.json"
# What selects the folder; check_compatible also reports these.
MACHINE_FIELDS = ("cpu_model", "usable_cores", "isa_flags", "gpu.names")
SOFTWARE_FIELDS = ("onnxruntime_version", "onnxruntime_distributions")
# Run settings a comparison needs to be equal; intra_op_threads is the effective count.
SETTING_FIELDS = (
    "provider",
    "provider_options",
    "intra_op_threads",
    "spinning",
    "duration_s",
    "batch",
    "measuring_code",  # perf/measure/sampling.py: runs timed by other code are not alike
    # Traffic scenarios' rows (absent, so equal, for single-stream ones)
    "scenario",
    "workers",
    "mix",
    "scenario_code",  # the open-loop scheduler's code, as measuring_code
)
FIX_HINT = "fix the file, or delete it and re-record with pytest perf/ --perf-save-baseline"
LOCK_TIMEOUT_S = 60.0

_ID_FIELDS = tuple(f"machine.{f}" for f in MACHINE_FIELDS) + tuple(
    f"software.{f}" for f in SOFTWARE_FIELDS
)
_FILE_KEYS = ("benchmarks", "created_at", "fingerprint", "format_version", "updated_at")
_FINGERPRINT_KEYS = ("machine", "software")
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
# A list of numbers spread over lines by json.dumps(indent=...); JSON strings hold no raw newlines.
_NUMBER_LIST = re.compile(rf"\[\n *({_NUMBER}(?:,\n *{_NUMBER})*)\n *\]")


class BaselineError(ValueError):
    """A baseline file that cannot be read or written; the message names the file and a fix."""


class _Invalid(ValueError):
    """One field's problem, before the file it is in is known."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}" if field else problem)
        self.field = field
        self.problem = problem

    def within(self, prefix: str) -> _Invalid:
        if not self.field:
            return _Invalid(prefix, self.problem)
        joiner = "" if self.field.startswith("[") else "."
        return _Invalid(f"{prefix}{joiner}{self.field}", self.problem)


@dataclass(frozen=True)
class BaselineEntry:
    """One benchmark's stored run: its settings, per-call samples and what recorded them."""

    settings: dict[str, Any]
    model_key: str | None  # the model cache's content key; None for torch eager rows
    samples_ms: tuple[float, ...]
    segments: tuple[Segment, ...] | None  # None: a format-1 entry, recorded without segments
    runs: tuple[RunSummary, ...]  # the runs a comparison uses, oldest first (the latest last)
    summary: dict[str, Any]  # LatencySummary.to_dict(), for people reading the file
    recorded_at: str
    run: dict[str, Any]  # {"python": ..., "command": ...}
    # Where the latest run's time went, per op type (perf.measure.profile.breakdown rows), so
    # that a later regression judged on these runs alone can name what moved; None: not kept
    profile: tuple[dict[str, Any], ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", _object(self.settings, "settings"))
        if self.model_key is not None and not isinstance(self.model_key, str):
            raise _Invalid("model_key", "must be a string or null")
        samples = _latencies(self.samples_ms, "samples_ms")
        object.__setattr__(self, "samples_ms", samples)
        object.__setattr__(self, "segments", _segments(self.segments, len(samples)))
        object.__setattr__(self, "runs", _runs(self.runs))
        object.__setattr__(self, "summary", _object(self.summary, "summary"))
        _check_timestamp(self.recorded_at, "recorded_at")
        object.__setattr__(self, "run", _object(self.run, "run"))
        object.__setattr__(self, "profile", _profile(self.profile))

    @classmethod
    def from_samples(
        cls,
        settings: Mapping[str, Any],
        samples_ms: Sequence[float],
        *,
        model_key: str | None = None,
        segments: Sequence[Segment] | None = None,
        seconds: float = 0.0,
        profile: Sequence[Mapping[str, Any]] | None = None,
    ) -> BaselineEntry:
        """An entry recorded now by this process, with its summary computed from the samples."""
        now = _now()
        return cls(
            settings=dict(settings),
            model_key=model_key,
            samples_ms=tuple(samples_ms),
            segments=None if segments is None else tuple(segments),
            runs=(RunSummary.of(samples_ms, seconds, now),),
            summary=LatencySummary.from_samples(samples_ms).to_dict(),
            recorded_at=now,
            run={"python": platform.python_version(), "command": shlex.join(sys.argv)},
            profile=None if profile is None else tuple(dict(row) for row in profile),
        )

    @classmethod
    def from_dict(cls, data: Any) -> BaselineEntry:
        """Raises ValueError naming the field (relative to the entry) that is wrong."""
        if isinstance(data, Mapping) and "probe_ms" in data and "segments" not in data:
            data = {**{k: v for k, v in data.items() if k != "probe_ms"}, "segments": None}
            data["runs"] = []
        if isinstance(data, Mapping) and "profile" not in data:  # recorded before profiles
            data = {**data, "profile": None}
        _check_keys(data, _ENTRY_KEYS)
        return cls(**{key: data[key] for key in _ENTRY_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": copy.deepcopy(self.settings),
            "model_key": self.model_key,
            "samples_ms": list(self.samples_ms),
            "segments": None if self.segments is None else [s.to_dict() for s in self.segments],
            "runs": [run.to_dict() for run in self.runs],
            "summary": copy.deepcopy(self.summary),
            "recorded_at": self.recorded_at,
            "run": copy.deepcopy(self.run),
            "profile": None if self.profile is None else [dict(row) for row in self.profile],
        }

    def after(self, earlier: BaselineEntry | None) -> BaselineEntry:
        """This entry with ``earlier``'s runs before its own, when they measured the same model
        with the same settings (otherwise they are history of something else and are dropped)."""
        if earlier is None or earlier.model_key != self.model_key:
            return self
        if earlier.settings != self.settings:
            return self
        runs = (*earlier.runs, *self.runs)[-MAX_BASELINE_RUNS:]
        return dataclasses.replace(self, runs=runs, profile=self.profile or earlier.profile)


_ENTRY_KEYS = tuple(sorted(field.name for field in dataclasses.fields(BaselineEntry)))


@dataclass(frozen=True)
class BaselineFile:
    """A loaded ``baseline.json``: one machine and onnxruntime build, many benchmarks."""

    path: Path
    format_version: int
    fingerprint: dict[str, dict[str, Any]]  # {"machine": {...}, "software": {...}}
    benchmarks: dict[str, BaselineEntry]
    created_at: str
    updated_at: str

    @property
    def machine(self) -> dict[str, Any]:
        return self.fingerprint["machine"]

    @property
    def software(self) -> dict[str, Any]:
        return self.fingerprint["software"]

    @property
    def id(self) -> str:
        """The fingerprint id the stored fingerprint hashes to (the folder name's suffix)."""
        return baseline_id(self.machine, self.software)

    def entry(self, benchmark_id: str) -> BaselineEntry:
        try:
            return self.benchmarks[benchmark_id]
        except KeyError:
            raise KeyError(f"{_display(self.path)} has no benchmark {benchmark_id!r}") from None

    @classmethod
    def from_dict(cls, path: Path, data: Any) -> BaselineFile:
        """Raises BaselineError naming ``path``, the field and a fix."""
        try:
            return _file_from_dict(Path(path), data)
        except _Invalid as problem:
            raise BaselineError(f"{_display(path)}: {problem}; {FIX_HINT}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "fingerprint": copy.deepcopy(self.fingerprint),
            "benchmarks": {name: entry.to_dict() for name, entry in self.benchmarks.items()},
        }


def baseline_id(machine_fp: Mapping[str, Any], software_fp: Mapping[str, Any]) -> str:
    """12 hex digits over MACHINE_FIELDS and SOFTWARE_FIELDS."""
    return fingerprint_id({"machine": machine_fp, "software": software_fp}, _ID_FIELDS)


def baseline_dir(root: Path, machine_fp: Mapping[str, Any], software_fp: Mapping[str, Any]) -> Path:
    """``root/<slug>-<id>``, e.g. ``baselines/amd-epyc-9r14-2c-avx512vnni-3f2a9c01b7de``."""
    return Path(root) / f"{fingerprint_slug(machine_fp)}-{baseline_id(machine_fp, software_fp)}"


def load_baseline(path: Path) -> BaselineFile | None:
    """The file at ``path``; None when there is none yet. Raises BaselineError when unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{_display(path)}: cannot be read ({exc}); {FIX_HINT}") from exc
    return BaselineFile.from_dict(path, _parse_json(path, text))


def find_baseline(
    root: Path, machine_fp: Mapping[str, Any], software_fp: Mapping[str, Any]
) -> BaselineFile | None:
    """The baseline for this fingerprint under ``root``; None when there is none yet."""
    path = baseline_dir(root, machine_fp, software_fp) / BASELINE_FILE
    return _load_own(path, baseline_id(machine_fp, software_fp))


def list_baselines(root: Path) -> list[BaselineFile]:
    """Every baseline under ``root``, by folder name. Raises BaselineError for an unusable one."""
    root = Path(root)
    if not root.is_dir():
        return []
    paths = sorted(folder / BASELINE_FILE for folder in root.iterdir() if folder.is_dir())
    return [baseline for baseline in map(load_baseline, paths) if baseline is not None]


def check_compatible(
    baseline: BaselineFile,
    benchmark_id: str,
    current_settings: Mapping[str, Any],
    current_machine: Mapping[str, Any],
    current_software: Mapping[str, Any],
) -> list[str]:
    """``"field: baseline X != current Y"`` for each relevant field that differs; [] if none.

    The model_key is not among them: see model_changed. Raises KeyError for an unknown benchmark.
    """
    entry = baseline.entry(benchmark_id)
    return [
        *_diffs(baseline.machine, current_machine, MACHINE_FIELDS, field_value),
        *_diffs(baseline.software, current_software, SOFTWARE_FIELDS, field_value),
        *_diffs(entry.settings, current_settings, SETTING_FIELDS, _setting),
    ]


def model_changed(baseline: BaselineFile, benchmark_id: str, current_model_key: str | None) -> bool:
    """Whether both model keys are known and differ: same name, different model."""
    stored = baseline.entry(benchmark_id).model_key
    return stored is not None and current_model_key is not None and stored != current_model_key


def save_baselines(
    root: Path,
    machine_fp: Mapping[str, Any],
    software_fp: Mapping[str, Any],
    entries: Mapping[str, BaselineEntry],
) -> Path:
    """Merge ``entries`` into this fingerprint's file (same names replaced); return its path.

    Raises BaselineError, leaving the file as it was, when the existing file is unusable.
    """
    entries = _checked_entries(entries)
    path = baseline_dir(root, machine_fp, software_fp) / BASELINE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        existing = _load_own(path, baseline_id(machine_fp, software_fp))
        old = existing.benchmarks if existing else {}
        now = _now()
        merged = BaselineFile(
            path=path,
            format_version=FORMAT_VERSION,
            fingerprint={"machine": dict(machine_fp), "software": dict(software_fp)},
            benchmarks={**old, **{name: e.after(old.get(name)) for name, e in entries.items()}},
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        text = _serialise(merged)
        BaselineFile.from_dict(path, _parse_json(path, text))  # never write what would not load
        _remove_stale_scratch(path)
        atomic_write_text(path, text, durable=True)
    return path


def _file_from_dict(path: Path, data: Any) -> BaselineFile:
    _check_version(data)  # first: a newer version may have other keys
    _check_keys(data, _FILE_KEYS)
    _check_keys(data["fingerprint"], _FINGERPRINT_KEYS, "fingerprint")
    fingerprint = {
        key: _object(data["fingerprint"][key], f"fingerprint.{key}") for key in _FINGERPRINT_KEYS
    }
    benchmarks = _object(data["benchmarks"], "benchmarks")
    for key in ("created_at", "updated_at"):
        _check_timestamp(data[key], key)
    return BaselineFile(
        path=path,
        format_version=data["format_version"],
        fingerprint=fingerprint,
        benchmarks={name: _entry(name, value) for name, value in benchmarks.items()},
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def _entry(name: str, data: Any) -> BaselineEntry:
    try:
        return BaselineEntry.from_dict(data)
    except _Invalid as problem:
        raise problem.within(f"benchmarks[{name!r}]") from None


def _check_version(data: Any) -> None:
    if not isinstance(data, Mapping):
        raise _Invalid("", "must hold a JSON object with a format_version")
    if "format_version" not in data:
        raise _Invalid("format_version", "is missing")
    version = data["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Invalid(
            "format_version", f"{version!r} is unknown (this suite writes {FORMAT_VERSION})"
        )
    if version > FORMAT_VERSION:
        raise _Invalid(
            "format_version",
            f"{version} is newer than this checkout reads ({FORMAT_VERSION}); update the checkout",
        )


def _check_keys(data: Any, expected: Sequence[str], field: str = "") -> None:
    if not isinstance(data, Mapping):
        raise _Invalid(field, "must be an object")
    missing = [key for key in expected if key not in data]
    if missing:
        raise _Invalid(_join(field, missing[0]), "is missing")
    unexpected = sorted(set(data) - set(expected))
    if unexpected:
        raise _Invalid(
            field, f"has unexpected key {unexpected[0]!r} (expected {', '.join(expected)})"
        )


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(field, "must be an object")
    return dict(value)


def _latencies(value: Any, field: str) -> tuple[float, ...]:
    expected = "must be a list of positive numbers"
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise _Invalid(field, f"{expected} (got {type(value).__name__})")
    values = tuple(value)
    if not values:
        raise _Invalid(field, f"{expected} (it is empty)")
    for index, item in enumerate(values):
        if not _is_positive(item):
            raise _Invalid(field, f"{expected} (item {index} is {item!r})")
    return tuple(float(item) for item in values)


def _segments(value: Any, n_samples: int) -> tuple[Segment, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise _Invalid("segments", "must be a list of {calls, seconds} objects")
    segments = []
    for index, item in enumerate(value):
        if isinstance(item, Segment):
            segments.append(item)
            continue
        if not isinstance(item, Mapping) or set(item) != {"calls", "seconds"}:
            raise _Invalid(f"segments[{index}]", "must be an object with calls and seconds")
        calls, seconds = item["calls"], item["seconds"]
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise _Invalid(f"segments[{index}].calls", f"must be a positive integer, got {calls!r}")
        if not _is_positive(seconds) and seconds != 0:
            raise _Invalid(f"segments[{index}].seconds", f"must be >= 0, got {seconds!r}")
        segments.append(Segment(calls, float(seconds)))
    total = sum(s.calls for s in segments)
    if total != n_samples:
        raise _Invalid("segments", f"hold {total} calls for {n_samples} samples_ms")
    return tuple(segments)


def _runs(value: Any) -> tuple[RunSummary, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise _Invalid("runs", "must be a list of run summaries")
    runs = []
    for index, item in enumerate(value):
        if isinstance(item, RunSummary):
            runs.append(item)
            continue
        try:
            _check_keys(item, ("calls", "quantiles_ms", "recorded_at", "seconds"))
            runs.append(RunSummary.from_dict(item))
        except (ValueError, TypeError, AttributeError, _Invalid) as exc:
            raise _Invalid(f"runs[{index}]", f"is not a run summary ({exc})") from None
    return tuple(runs)


def _profile(value: Any) -> tuple[dict[str, Any], ...] | None:
    """Per-op-type rows, each with an op type and its ms per call."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise _Invalid("profile", "must be a list of per-op-type rows or null")
    rows = tuple(_object(row, f"profile[{i}]") for i, row in enumerate(value))
    for i, row in enumerate(rows):
        if not isinstance(row.get("op_type"), str) or not _is_number(row.get("ms")):
            raise _Invalid(f"profile[{i}]", "needs an op_type (text) and its ms (a number)")
    return rows


def _is_number(value: Any) -> bool:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value)


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _check_timestamp(value: Any, field: str) -> None:
    try:
        dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _Invalid(
            field, "must be an ISO 8601 time such as 2026-11-24T20:53:01+00:00"
        ) from None


def _setting(settings: Mapping[str, Any], field: str) -> Any:
    if field == "intra_op_threads" and settings.get("effective_intra_op_threads") is not None:
        return settings["effective_intra_op_threads"]
    return settings.get(field)


def _diffs(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    fields: Iterable[str],
    get: Callable[[Mapping[str, Any], str], Any],
) -> list[str]:
    diffs = []
    for field in fields:
        before, after = _plain(get(baseline, field)), _plain(get(current, field))
        if before != after:
            diffs.append(f"{field}: baseline {before!r} != current {after!r}")
    return diffs


def _plain(value: Any) -> Any:
    """As stored in JSON: tuples become lists, so a loaded value equals the one saved."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _checked_entries(entries: Mapping[str, BaselineEntry]) -> dict[str, BaselineEntry]:
    if not entries:
        raise ValueError("no benchmarks to save")
    for name, entry in entries.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"benchmark ids must be non-empty strings, got {name!r}")
        if not isinstance(entry, BaselineEntry):
            raise TypeError(
                f"benchmark {name!r}: expected a BaselineEntry, got {type(entry).__name__}"
            )
    return dict(entries)


def _load_own(path: Path, expected_id: str) -> BaselineFile | None:
    baseline = load_baseline(path)
    if baseline is not None and baseline.id != expected_id:
        raise BaselineError(
            f"{_display(path)}: its fingerprint hashes to {baseline.id}, not to the {expected_id} "
            f"its folder is named for (moved or hand-edited?); {FIX_HINT}"
        )
    return baseline


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BaselineError(
            f"{_display(path)}: not valid JSON ({exc.msg} at {where}); {FIX_HINT}"
        ) from None
    except _Invalid as problem:
        raise BaselineError(f"{_display(path)}: {problem}; {FIX_HINT}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Invalid("", f"has the key {key!r} twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _Invalid("", f"holds {name}, which is not a JSON number")


def _serialise(baseline: BaselineFile) -> str:
    try:
        text = json.dumps(baseline.to_dict(), indent=1, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BaselineError(
            f"{_display(baseline.path)}: not written, not storable as JSON ({exc})"
        ) from exc
    return _compact_number_lists(text) + "\n"


def _compact_number_lists(text: str) -> str:
    """One line per list of numbers, so thousands of samples do not take thousands of lines."""
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\n *", ", ", m.group(1)) + "]", text)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = FileLock(str(_lock_path(path)), timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise BaselineError(
            f"{_display(path)}: another process has held its lock ({lock.lock_file}) for over "
            f"{LOCK_TIMEOUT_S:g} s; let it finish or stop it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _lock_path(path: Path) -> Path:
    """In the temp folder, not beside the file: the baselines/ folder is committed."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"latency-suite-baseline-{digest}.lock"


def _remove_stale_scratch(path: Path) -> None:
    """Temp files of a writer killed mid-save; only lock holders write them."""
    for stale in path.parent.glob(f"{scratch_prefix(path)}*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _display(path: Path) -> str:
    """The path relative to the working directory when under it, as people type it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
