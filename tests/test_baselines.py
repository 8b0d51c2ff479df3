"""Tests for perf.baselines.store: committed per-fingerprint baseline files."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from hypothesis import given, settings
from hypothesis import strategies as st

from perf.baselines import store
from perf.baselines.store import (
    BASELINE_FILE,
    FORMAT_VERSION,
    BaselineEntry,
    BaselineError,
    BaselineFile,
    baseline_dir,
    check_compatible,
    find_baseline,
    list_baselines,
    load_baseline,
    model_changed,
    save_baselines,
)
from perf.stats.compare import RunSummary, Segment

BENCH = "w2v2-base/fp32-cpu-3s"
OTHER = "cnn/int8-cpu-3s"
MACHINE: dict[str, Any] = {
    "cpu_model": "AMD EPYC 9R14 96-Core Processor",
    "cpu_arch": "X86_64",
    "logical_cores": 4,
    "physical_cores": 2,
    "usable_cores": 2,
    "isa_flags": ["avx", "avx2", "avx512f", "avx512vnni"],
    "memory_gib": 15.4,
    "os": "Linux",
    "platform": "Linux-6.1-x86_64",
    "python": "3.11.9",
    "gpu": None,
}
SOFTWARE: dict[str, Any] = {
    "onnxruntime_version": "1.20.1",
    "onnxruntime_distributions": {"onnxruntime": "1.20.1"},
    "onnxruntime_build": None,
    "providers": ["CPUExecutionProvider"],
    "numpy_version": "2.1.3",
}
SETTINGS: dict[str, Any] = {
    "provider": "CPUExecutionProvider",
    "provider_options": {},
    "intra_op_threads": None,
    "effective_intra_op_threads": 2,
    "spinning": True,
    "graph_optimization": "all",
    "duration_s": 3.0,
    "batch": 1,
}
RECORDED = "2026-11-24T20:53:01+00:00"
RUN = RunSummary({0.5: 11.5, 0.95: 12.2, 0.99: 12.25}, calls=3, seconds=1.5, recorded_at=RECORDED)


@pytest.fixture(autouse=True, scope="module")
def _locks_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Lock files live in the temp folder; keep this module's out of the real one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("locks")))
        yield


def _entry(samples: Any = (10.0, 11.5, 12.25), **changes: Any) -> BaselineEntry:
    fields: dict[str, Any] = {
        "settings": SETTINGS,
        "model_key": "3f2a9c01b7de4411",
        "samples_ms": samples,
        "segments": None,
        "runs": (),
        "summary": {"n": 3},
        "recorded_at": RECORDED,
        "run": {"python": "3.11.9", "command": "pytest perf/ --perf-save-baseline"},
    }
    fields.update(changes)
    return BaselineEntry(**fields)


def _save(root: Path, **entries: BaselineEntry) -> Path:
    return save_baselines(root, MACHINE, SOFTWARE, entries or {BENCH: _entry()})


def _other_machine() -> dict[str, Any]:
    return {**MACHINE, "cpu_model": "Intel(R) Xeon(R) Platinum 8488C"}


# Round trip and merging


def test_save_then_find_round_trips(tmp_path: Path) -> None:
    segments = [{"calls": 2, "seconds": 1.0}, {"calls": 1, "seconds": 0.5}]
    entry = _entry(segments=segments, runs=[RUN])
    path = save_baselines(tmp_path, MACHINE, SOFTWARE, {BENCH: entry})

    assert path == baseline_dir(tmp_path, MACHINE, SOFTWARE) / BASELINE_FILE
    baseline = find_baseline(tmp_path, MACHINE, SOFTWARE)
    assert baseline is not None
    assert baseline.path == path
    assert baseline.format_version == FORMAT_VERSION
    assert baseline.benchmarks == {BENCH: entry}
    assert baseline.machine == MACHINE
    assert baseline.software == SOFTWARE
    assert baseline.created_at == baseline.updated_at
    assert load_baseline(path) == baseline


def test_entry_dict_round_trip() -> None:
    entry = _entry(segments=[{"calls": 3, "seconds": 1.5}], runs=[RUN, RUN])
    assert BaselineEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    assert entry.samples_ms == (10.0, 11.5, 12.25)  # stored as tuples
    assert entry.segments == (Segment(3, 1.5),)
    assert entry.runs == (RUN, RUN)


def test_from_samples_fills_summary_and_run() -> None:
    entry = BaselineEntry.from_samples(SETTINGS, [3.0, 1.0, 2.0], model_key="k")

    assert entry.samples_ms == (3.0, 1.0, 2.0)  # call order kept
    assert entry.summary["n"] == 3
    assert entry.summary["percentiles"]["p50"]["value"] == 2.0
    assert set(entry.run) == {"python", "command"}
    assert entry.model_key == "k"


def test_saving_merges_replacing_only_the_same_names(tmp_path: Path) -> None:
    first = _save(tmp_path, **{BENCH: _entry(), OTHER: _entry((1.0,))})
    created = load_baseline(first).created_at  # type: ignore[union-attr]
    replacement = _entry((20.0, 21.0))
    third = "distilhubert/int8-cpu-3s"

    second = save_baselines(tmp_path, MACHINE, SOFTWARE, {BENCH: replacement, third: _entry()})

    baseline = load_baseline(second)
    assert second == first
    assert baseline is not None
    assert baseline.benchmarks == {BENCH: replacement, OTHER: _entry((1.0,)), third: _entry()}
    assert baseline.created_at == created


def _run_of(p50: float) -> RunSummary:
    return RunSummary({0.5: p50, 0.95: p50 * 1.1, 0.99: p50 * 1.2}, 100, 20.0, RECORDED)


def test_each_save_adds_a_run_and_keeps_the_last_ten(tmp_path: Path) -> None:
    for i in range(12):
        _save(tmp_path, **{BENCH: _entry(runs=[_run_of(10.0 + i)])})

    entry = load_baseline(baseline_dir(tmp_path, MACHINE, SOFTWARE) / BASELINE_FILE)
    assert entry is not None
    runs = entry.benchmarks[BENCH].runs
    assert [r.quantiles_ms[0.5] for r in runs] == [10.0 + i for i in range(2, 12)]  # oldest first


@pytest.mark.parametrize(
    "change",
    [{"model_key": "another model"}, {"settings": {**SETTINGS, "spinning": False}}],
    ids=["model", "settings"],
)
def test_runs_of_another_model_or_setting_are_dropped(tmp_path: Path, change: Any) -> None:
    _save(tmp_path, **{BENCH: _entry(runs=[_run_of(10.0)])})
    _save(tmp_path, **{BENCH: _entry(runs=[_run_of(11.0)])})

    _save(tmp_path, **{BENCH: _entry(runs=[_run_of(30.0)], **change)})

    baseline = find_baseline(tmp_path, MACHINE, SOFTWARE)
    assert baseline is not None
    assert [r.quantiles_ms[0.5] for r in baseline.entry(BENCH).runs] == [30.0]


def test_a_format_1_file_is_read_with_no_runs(tmp_path: Path) -> None:
    data = _valid_file()
    data["format_version"] = 1
    entry = data["benchmarks"][BENCH]
    del entry["segments"], entry["runs"]
    entry["probe_ms"] = [5.0, 5.0, 5.0]
    path = baseline_dir(tmp_path, MACHINE, SOFTWARE) / BASELINE_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))

    baseline = load_baseline(path)

    assert baseline is not None
    assert baseline.entry(BENCH).runs == ()
    assert baseline.entry(BENCH).segments is None


def test_file_is_readable_json(tmp_path: Path) -> None:
    text = _save(tmp_path).read_text()
    data = json.loads(text)

    assert data["format_version"] == FORMAT_VERSION == 2
    assert list(data) == sorted(data)
    assert text.startswith('{\n "benchmarks": {\n')
    assert '"samples_ms": [10.0, 11.5, 12.25]' in text  # a list of numbers on one line
    assert text.endswith("}\n")


def test_saving_nothing_or_the_unstorable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no benchmarks"):
        save_baselines(tmp_path, MACHINE, SOFTWARE, {})
    with pytest.raises(BaselineError, match="not storable as JSON"):
        _save(tmp_path, **{BENCH: _entry(settings={"model": object()})})
    assert find_baseline(tmp_path, MACHINE, SOFTWARE) is None


# Atomic writes


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_crash_mid_save_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = _save(tmp_path)
    before = path.read_bytes()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError, match="disk gone"):
        _save(tmp_path, **{OTHER: _entry((1.0,))})
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [BASELINE_FILE]


def test_a_crash_on_the_first_save_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        _save(tmp_path)
    monkeypatch.undo()

    assert find_baseline(tmp_path, MACHINE, SOFTWARE) is None
    assert os.listdir(baseline_dir(tmp_path, MACHINE, SOFTWARE)) == []


def test_temp_files_of_a_killed_writer_are_cleaned_up(tmp_path: Path) -> None:
    folder = baseline_dir(tmp_path, MACHINE, SOFTWARE)
    folder.mkdir(parents=True)
    (folder / f".{BASELINE_FILE}.abc123.tmp").write_text('{"half": ')

    _save(tmp_path)

    assert os.listdir(folder) == [BASELINE_FILE]


def test_a_malformed_file_is_not_overwritten(tmp_path: Path) -> None:
    path = baseline_dir(tmp_path, MACHINE, SOFTWARE) / BASELINE_FILE
    path.parent.mkdir(parents=True)
    path.write_text('{"format_version": 1, "benchmarks": {')

    with pytest.raises(BaselineError, match="not valid JSON"):
        _save(tmp_path)
    assert path.read_text() == '{"format_version": 1, "benchmarks": {'


def test_concurrent_savers_keep_each_others_entries(tmp_path: Path) -> None:
    names = [f"cnn/fp32-cpu-{i}s" for i in range(8)]
    errors: list[BaseException] = []

    def save(name: str) -> None:
        try:
            for _ in range(3):
                _save(tmp_path, **{name: _entry()})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    baseline = find_baseline(tmp_path, MACHINE, SOFTWARE)
    assert baseline is not None
    assert sorted(baseline.benchmarks) == sorted(names)


def test_a_held_lock_times_out_with_a_baseline_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = baseline_dir(tmp_path, MACHINE, SOFTWARE) / BASELINE_FILE
    monkeypatch.setattr(store, "LOCK_TIMEOUT_S", 0.05)
    lock_file = store._lock_path(path)
    assert lock_file.parent == Path(tempfile.gettempdir())  # not in the committed folder
    holder = FileLock(str(lock_file))
    result: list[BaseException] = []

    def save_elsewhere() -> None:  # another thread: the holder's lock is not re-entrant there
        try:
            _save(tmp_path)
        except BaselineError as exc:
            result.append(exc)

    with holder:
        thread = threading.Thread(target=save_elsewhere)
        thread.start()
        thread.join()

    assert len(result) == 1
    assert "another process has held its lock" in str(result[0])
    assert not path.exists()


# Loading: what "no baseline" and "broken baseline" look like


def test_a_missing_file_means_no_baseline_yet(tmp_path: Path) -> None:
    _save(tmp_path)
    assert load_baseline(tmp_path / "nowhere" / BASELINE_FILE) is None
    assert find_baseline(tmp_path, _other_machine(), SOFTWARE) is None
    assert find_baseline(tmp_path / "empty", MACHINE, SOFTWARE) is None


def _valid_file() -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "created_at": RECORDED,
        "updated_at": RECORDED,
        "fingerprint": {"machine": MACHINE, "software": SOFTWARE},
        "benchmarks": {BENCH: _entry(segments=[{"calls": 3, "seconds": 1.0}]).to_dict()},
    }


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value

    return edit


def _delete(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]

    return edit


ENTRY = re.escape(f"benchmarks[{BENCH!r}]")
HAND_EDITS = {
    "newer version": (_set("format_version", value=3), "format_version 3 is newer"),
    "version zero": (_set("format_version", value=0), "format_version 0 is unknown"),
    "version as text": (_set("format_version", value="1"), "format_version '1' is unknown"),
    "no version": (_delete("format_version"), "format_version is missing"),
    "negative sample": (
        _set("benchmarks", BENCH, "samples_ms", value=[10.0, -1.0]),
        rf"{ENTRY}.samples_ms must be a list of positive numbers \(item 1 is -1.0\)",
    ),
    "zero sample": (
        _set("benchmarks", BENCH, "samples_ms", value=[0]),
        rf"{ENTRY}.samples_ms must be a list of positive numbers",
    ),
    "empty samples": (
        _set("benchmarks", BENCH, "samples_ms", value=[]),
        r"samples_ms must be a list of positive numbers \(it is empty\)",
    ),
    "samples as text": (
        _set("benchmarks", BENCH, "samples_ms", value="10, 11"),
        r"samples_ms must be a list of positive numbers \(got str\)",
    ),
    "boolean sample": (
        _set("benchmarks", BENCH, "samples_ms", value=[True]),
        "samples_ms must be a list of positive numbers",
    ),
    "segment count": (
        _set("benchmarks", BENCH, "segments", value=[{"calls": 1, "seconds": 1.0}]),
        rf"{ENTRY}.segments hold 1 calls for 3 samples_ms",
    ),
    "run without quantiles": (
        _set("benchmarks", BENCH, "runs", value=[{"calls": 3, "seconds": 1.0}]),
        rf"{ENTRY}.runs\[0\] is not a run summary",
    ),
    "missing samples": (
        _delete("benchmarks", BENCH, "samples_ms"),
        rf"{ENTRY}.samples_ms is missing",
    ),
    "misspelt key": (
        _set("benchmarks", BENCH, "sample_ms", value=[1.0]),
        rf"{ENTRY} has unexpected key 'sample_ms'",
    ),
    "entry not an object": (_set("benchmarks", BENCH, value=[1.0]), rf"{ENTRY} must be an object"),
    "settings not an object": (
        _set("benchmarks", BENCH, "settings", value=None),
        rf"{ENTRY}.settings must be an object",
    ),
    "model key a number": (
        _set("benchmarks", BENCH, "model_key", value=7),
        rf"{ENTRY}.model_key must be a string or null",
    ),
    "bad time": (
        _set("benchmarks", BENCH, "recorded_at", value="yesterday"),
        rf"{ENTRY}.recorded_at must be an ISO 8601 time",
    ),
    "no machine": (_delete("fingerprint", "machine"), "fingerprint.machine is missing"),
    "software a list": (
        _set("fingerprint", "software", value=[]),
        "fingerprint.software must be an object",
    ),
    "no benchmarks": (_delete("benchmarks"), "benchmarks is missing"),
}


@pytest.mark.parametrize(("edit", "message"), HAND_EDITS.values(), ids=HAND_EDITS.keys())
def test_a_hand_edit_that_breaks_the_file_names_file_and_field(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = _valid_file()
    edit(data)
    path = tmp_path / BASELINE_FILE
    path.write_text(json.dumps(data))

    with pytest.raises(BaselineError, match=message) as raised:
        load_baseline(path)
    assert str(raised.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format_version": 1,', "not valid JSON"),
        ("[1, 2]", "must hold a JSON object with a format_version"),
        ('{"format_version": 1, "format_version": 1}', "has the key 'format_version' twice"),
        ('{"format_version": 1, "x": NaN}', "holds NaN, which is not a JSON number"),
    ],
)
def test_text_that_is_not_a_baseline_raises(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / BASELINE_FILE
    path.write_text(text)
    with pytest.raises(BaselineError, match=message):
        load_baseline(path)


def test_the_message_names_the_file_as_typed_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _save(Path("baselines"))
    data = json.loads(path.read_text())
    data["benchmarks"][BENCH]["samples_ms"][0] = -3.5
    path.write_text(json.dumps(data))

    with pytest.raises(BaselineError) as raised:
        find_baseline(Path("baselines"), MACHINE, SOFTWARE)
    assert str(raised.value) == (
        f"{path}: benchmarks['w2v2-base/fp32-cpu-3s'].samples_ms must be a list of positive "
        "numbers (item 0 is -3.5); fix the file, or delete it and re-record with "
        "pytest perf/ --perf-save-baseline"
    )


def test_a_file_in_another_fingerprints_folder_is_refused(tmp_path: Path) -> None:
    source = _save(tmp_path).parent
    target = baseline_dir(tmp_path, _other_machine(), SOFTWARE)
    shutil.copytree(source, target)

    with pytest.raises(BaselineError, match="its fingerprint hashes to"):
        find_baseline(tmp_path, _other_machine(), SOFTWARE)
    with pytest.raises(BaselineError, match="its fingerprint hashes to"):
        save_baselines(tmp_path, _other_machine(), SOFTWARE, {BENCH: _entry()})


def test_entries_are_checked_when_built_in_code() -> None:
    with pytest.raises(ValueError, match="samples_ms must be a list of positive numbers"):
        _entry(samples=[1.0, float("nan")])
    with pytest.raises(ValueError, match="segments hold 1 calls for 3 samples_ms"):
        _entry(segments=[{"calls": 1, "seconds": 1.0}])


# Folder naming


def test_folder_name_is_stable_and_ignores_unselected_fields(tmp_path: Path) -> None:
    folder = baseline_dir(tmp_path, MACHINE, SOFTWARE)
    reordered = dict(reversed(list(MACHINE.items())))
    noisy = {**reordered, "memory_gib": 64.0, "platform": "other", "python": "3.12.0"}

    assert baseline_dir(tmp_path, noisy, {**SOFTWARE, "numpy_version": "1.26"}) == folder
    assert folder.parent == tmp_path
    assert folder.name.startswith("amd-epyc-9r14-2c-avx512vnni-")
    assert len(folder.name.rsplit("-", 1)[1]) == 12


@pytest.mark.parametrize(
    ("machine", "software"),
    [
        ({**MACHINE, "cpu_model": "Intel(R) Xeon(R) Platinum 8488C"}, SOFTWARE),
        ({**MACHINE, "usable_cores": 4}, SOFTWARE),
        ({**MACHINE, "isa_flags": ["avx", "avx2"]}, SOFTWARE),
        ({**MACHINE, "gpu": {"names": ["NVIDIA H100"], "driver": "550", "cuda": "12.4"}}, SOFTWARE),
        (MACHINE, {**SOFTWARE, "onnxruntime_version": "1.21.0"}),
        (MACHINE, {**SOFTWARE, "onnxruntime_distributions": {"onnxruntime-gpu": "1.20.1"}}),
    ],
)
def test_a_relevant_difference_moves_the_folder(
    tmp_path: Path, machine: dict[str, Any], software: dict[str, Any]
) -> None:
    assert baseline_dir(tmp_path, machine, software) != baseline_dir(tmp_path, MACHINE, SOFTWARE)


def test_list_baselines_finds_every_fingerprint(tmp_path: Path) -> None:
    assert list_baselines(tmp_path / "none") == []
    _save(tmp_path)
    save_baselines(tmp_path, _other_machine(), SOFTWARE, {OTHER: _entry()})
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a baseline")

    listed = list_baselines(tmp_path)

    assert [b.path.parent.name for b in listed] == sorted(
        baseline_dir(tmp_path, m, SOFTWARE).name for m in (MACHINE, _other_machine())
    )
    assert all(isinstance(b, BaselineFile) for b in listed)


# Compatibility


def _stored(tmp_path: Path) -> BaselineFile:
    _save(tmp_path)
    baseline = find_baseline(tmp_path, MACHINE, SOFTWARE)
    assert baseline is not None
    return baseline


def test_the_same_setup_is_compatible(tmp_path: Path) -> None:
    current = {**SETTINGS, "intra_op_threads": 2, "provider_options": {}}  # explicit, same count
    assert check_compatible(_stored(tmp_path), BENCH, current, MACHINE, SOFTWARE) == []


def test_differences_are_listed_field_by_field(tmp_path: Path) -> None:
    current = {**SETTINGS, "effective_intra_op_threads": 4}
    software = {**SOFTWARE, "onnxruntime_version": "1.21.0"}

    diffs = check_compatible(_stored(tmp_path), BENCH, current, _other_machine(), software)

    assert diffs == [
        "cpu_model: baseline 'AMD EPYC 9R14 96-Core Processor' "
        "!= current 'Intel(R) Xeon(R) Platinum 8488C'",
        "onnxruntime_version: baseline '1.20.1' != current '1.21.0'",
        "intra_op_threads: baseline 2 != current 4",
    ]


@pytest.mark.parametrize(
    ("change", "diff"),
    [
        ({"provider": "CUDAExecutionProvider"}, "provider: baseline 'CPUExecutionProvider'"),
        ({"provider_options": {"arena": "1"}}, "provider_options: baseline {} != current"),
        ({"spinning": False}, "spinning: baseline True != current False"),
        ({"duration_s": 10.0}, "duration_s: baseline 3.0 != current 10.0"),
        ({"batch": 4}, "batch: baseline 1 != current 4"),
    ],
)
def test_each_run_setting_is_compared(tmp_path: Path, change: dict[str, Any], diff: str) -> None:
    diffs = check_compatible(_stored(tmp_path), BENCH, {**SETTINGS, **change}, MACHINE, SOFTWARE)
    assert len(diffs) == 1
    assert diffs[0].startswith(diff)


def test_model_key_is_reported_apart_not_refused(tmp_path: Path) -> None:
    baseline = _stored(tmp_path)

    assert check_compatible(baseline, BENCH, SETTINGS, MACHINE, SOFTWARE) == []
    assert model_changed(baseline, BENCH, "0000000000000000")
    assert not model_changed(baseline, BENCH, "3f2a9c01b7de4411")
    assert not model_changed(baseline, BENCH, None)  # unknown is not "changed"


def test_an_unknown_benchmark_is_a_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="has no benchmark"):
        check_compatible(_stored(tmp_path), "nope", SETTINGS, MACHINE, SOFTWARE)


# Exactness


positive_floats = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)


@pytest.fixture(scope="module")
def roundtrip_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roundtrip")


@settings(max_examples=60, deadline=None)
@given(samples=st.lists(positive_floats, min_size=1, max_size=50))
def test_any_positive_samples_round_trip_exactly(
    roundtrip_root: Path, samples: list[float]
) -> None:
    entry = _entry(samples, segments=[{"calls": len(samples), "seconds": 2.5}])
    save_baselines(roundtrip_root, MACHINE, SOFTWARE, {BENCH: entry})

    baseline = find_baseline(roundtrip_root, MACHINE, SOFTWARE)

    assert baseline is not None
    assert baseline.benchmarks[BENCH].samples_ms == tuple(samples)
    assert baseline.benchmarks[BENCH].segments == (Segment(len(samples), 2.5),)
