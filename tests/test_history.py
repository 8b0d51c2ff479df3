"""Run records: written once, merged as a union of files, read back; end to end with pytester."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from perf import history
from perf.baselines.history import (
    MAX_SAMPLES,
    HistoryError,
    build_record,
    load_records,
    record_path,
    thinned,
    write_record,
)
from perf.baselines.record_store import compact, gather, pack_files, query, stored_records
from tests import test_plugin
from tests.test_plugin import Suite, output

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite

FINGERPRINT = {"machine": {"cpu_model": "Test CPU", "usable_cores": 2, "isa_flags": ["avx2"]},
               "software": {"onnxruntime_version": "1.0"}}  # fmt: skip


def _record(sha: str, p50: float, environ: dict[str, str] | None = None) -> dict:
    bench = {"latency_ms": {"p50": p50}, "samples_ms": [p50] * 3}
    commit = {"sha": sha, "time": None, "branch": "main", "dirty": False}
    return build_record({"cnn/fp32-cpu-3s": bench}, FINGERPRINT, commit, environ=environ or {})


def _store_bytes(store: Path) -> dict[Path, bytes]:
    return {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def _three_runners(tmp_path: Path) -> list[Path]:
    """Three runners' stores, two runs each, on one machine (same machine folder)."""
    runners = [tmp_path / f"runner{i}" for i in range(3)]
    for i, store in enumerate(runners):
        for run in range(2):
            write_record(store, _record(f"{i}{run}" * 20, 20.0 + i + run / 10))
    return runners


def test_gather_makes_one_store_of_three_runners_and_a_repeat_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runners, store = _three_runners(tmp_path), tmp_path / "history"
    sources = {p.name: p.read_bytes() for r in runners for p in r.rglob("*.json")}

    assert history.main(["gather", *map(str, runners), "--into", str(store)]) == 0
    assert capsys.readouterr().out == f"{store}: 6 record(s) added, 0 already there\n"
    gathered = _store_bytes(store)
    assert {p.name: data for p, data in gathered.items()} == sources  # each once, same bytes
    assert len(load_records(store)) == 6

    again = gather(runners, store)  # a fourth gather: the same records
    assert (len(again.added), len(again.present)) == (0, 6)
    assert _store_bytes(store) == gathered
    assert not list(store.rglob("*.tmp"))


def test_gather_refuses_a_tampered_record_naming_it_and_leaves_the_store_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runners, store = _three_runners(tmp_path), tmp_path / "history"
    gather(runners[:2], store)
    before = _store_bytes(store)
    tampered = sorted(runners[1].rglob("*.json"))[0]
    text = tampered.read_text()
    tampered.write_text(text.replace('"p50": 21.', '"p50": 12.'))
    assert tampered.read_text() != text

    with pytest.raises(HistoryError, match=r"differs from .*refusing to overwrite") as error:
        gather(runners, store)  # runner 2's new records come after it and are not linked in
    assert str(tampered) in str(error.value) and str(store) in str(error.value)
    assert _store_bytes(store) == before

    assert history.main(["gather", *map(str, runners), "--into", str(store)]) == 2
    assert tampered.name in capsys.readouterr().err
    assert _store_bytes(store) == before


def test_gather_checks_each_record_before_linking_it_in(tmp_path: Path) -> None:
    runners, store = _three_runners(tmp_path), tmp_path / "history"
    bad = runners[2] / "m" / "bad.json"
    bad.parent.mkdir()
    bad.write_text('{"format": 1}')

    with pytest.raises(HistoryError, match=r"bad\.json: not a run record"):
        gather(runners, store)
    assert not store.exists() or not _store_bytes(store)


def test_a_record_is_written_once_and_never_overwritten(tmp_path: Path) -> None:
    record = _record("a" * 40, 20.0)
    path = write_record(tmp_path, record)
    first = path.read_bytes()

    record["benchmarks"]["cnn/fp32-cpu-3s"]["latency_ms"]["p50"] = 99.0  # same run id and time
    assert write_record(tmp_path, record) == path

    assert path.read_bytes() == first
    assert path.name.endswith(f"-{'a' * 12}-{record['run_id'][:12]}.json")
    assert path.parent.name == record["machine_id"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_ci_variables_and_commit_are_kept() -> None:
    record = _record("b" * 40, 20.0, {"GITHUB_RUN_ID": "42", "GITHUB_JOB": "perf", "HOME": "/x"})

    assert record["ci"] == {"GITHUB_RUN_ID": "42", "GITHUB_JOB": "perf"}
    assert record["commit"]["sha"] == "b" * 40 and record["format"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("{not json", "not a readable run record"), ('{"format": 1}', "missing run_id"),
     ('{"format": 9, "run_id": "x", "recorded_at": "t", "commit": {}, "benchmarks": {}}',
      "record format 9")],
)  # fmt: skip
def test_a_bad_record_is_named(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "r.json").write_text(text)

    with pytest.raises(HistoryError, match=expected) as error:
        load_records(tmp_path)
    assert "r.json" in str(error.value)


def test_samples_are_thinned_evenly_in_order() -> None:
    samples = [float(i) for i in range(10 * MAX_SAMPLES)]

    kept = thinned(samples)

    assert len(kept) == MAX_SAMPLES and kept == sorted(kept)
    assert kept[0] == 0.0 and kept[1] == 10.0
    assert thinned([1.0, 2.0]) == [1.0, 2.0]


def test_a_run_with_perf_history_writes_its_record(suite: Suite) -> None:
    store = suite.pytester.path / "history"

    result = suite.run(f"--perf-history={store}", "--perf-max-time=1")

    assert result.ret == 0, output(result)
    (record,) = load_records(store)
    assert f"run record: {record_path(store, record)}" in output(result)
    bench = record["benchmarks"]["tiny/fp32-cpu-3s"]
    assert bench["outcome"] in ("pass", "not gated")
    assert bench["latency_ms"]["percentiles"]["p99"]["value"] > 0
    assert 0 < len(bench["samples_ms"]) <= MAX_SAMPLES
    assert bench["gflop_per_call"] > 0  # the work column reached the record too
    assert "GFLOP, " in output(result) and "% of peak" in output(result)
    assert record["commit"]["sha"] is None  # the pytester folder is not a git checkout
    assert json.loads(record_path(store, record).read_text()) == record


def _measured(sha: str, p50: float, dirty: bool = False) -> dict:
    bench = {
        "latency_ms": {"n": 400, "percentiles": {
            "p50": {"value": p50, "low": p50 - 1, "high": p50 + 1},
            "p99": {"value": p50 * 1.5, "low": p50 * 1.4, "high": None}}},
        "outcome": "pass",
    }  # fmt: skip
    commit = {"sha": sha, "time": None, "branch": "main", "dirty": dirty}
    return build_record({"cnn/fp32-cpu-3s": bench}, FINGERPRINT, commit, environ={})


def test_the_history_command_prints_each_series_with_a_sparkline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i, p50 in enumerate((20.0, 20.5, 30.0)):
        record = _measured(f"{i}" * 40, p50, dirty=i == 2)
        record["recorded_at"] = f"2026-12-0{i + 1}T00:00:00+00:00"
        write_record(tmp_path, record)

    assert history.main([str(tmp_path), "--last", "2"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cnn/fp32-cpu-3s on machine ") and out[0].endswith(": 2 run(s)")
    assert "11111111 " in out[1] and "P50 20.5 ms" in out[1] and "[28.7, n/a]" in out[1]
    assert "22222222+" in out[2]  # a dirty tree is marked
    assert out[3] == "  P50 ▁█"
    assert history.sparkline([1.0, 1.0]) == "▁▁" and history.sparkline([]) == ""


def test_the_history_command_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        history.main([str(tmp_path / "none")])
    assert exit_.value.code == 2


def test_the_history_command_names_the_commit_where_p50_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(16):
        p50 = (20.0 if i < 8 else 25.0) * (1 + 0.01 * (i % 3))
        record = _measured(f"{i:x}" * 40, p50)
        record["recorded_at"] = f"2026-12-01T00:{i:02d}:00+00:00"
        write_record(tmp_path, record)

    assert history.main([str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert "change at 88888888: P50 x1.2" in out  # the first run of the slower commit
    assert "8 runs before, 8 after" in out


def _stepped_history(tmp_path: Path) -> Path:
    for i in range(16):
        p50 = (20.0 if i < 8 else 25.0) * (1 + 0.01 * (i % 3))
        record = _measured(f"{i:x}" * 40, p50)
        record["recorded_at"] = f"2026-12-01T00:{i:02d}:00+00:00"
        write_record(tmp_path / "store", record)
    return tmp_path / "store"


def test_the_history_page_draws_each_series_and_its_change_point(tmp_path: Path) -> None:
    from html.parser import HTMLParser

    store = _stepped_history(tmp_path)
    page = tmp_path / "history.html"

    assert history.main([str(store), "--page", str(page),
                         "--commit-url", "https://example.org/c/{sha}"]) == 0  # fmt: skip

    text = page.read_text()
    tags: list[str] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list) -> None:
            tags.append(tag)

    Tags().feed(text)
    assert tags.count("svg") == 1 and tags.count("circle") == 16
    assert tags.count("polyline") == 2  # P50 and P99
    assert "<script" not in text and "http-equiv" not in text  # self-contained, nothing fetched
    assert 'class="change"' in text and ">x1.2" in text
    assert '<a href="https://example.org/c/' + "8" * 40 + '">88888888</a>' in text


BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Every request goes to a closed port: a page that needed one would not render.
HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=900,600",
            "--enable-logging=stderr", "--proxy-server=127.0.0.1:9")  # fmt: skip


def _browser(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page``; skips where no browser is installed."""
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser: apt install chromium to render the page in a test")
    command = [browser, *HEADLESS, *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


class _Elements(HTMLParser):
    """The rendered DOM's start tags: (tag, attributes)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))

    def classes(self, tag: str) -> list[str | None]:
        return [attrs.get("class") for name, attrs in self.found if name == tag]


def test_the_history_page_renders_in_a_real_browser(tmp_path: Path) -> None:
    """Chromium's DOM after loading the page: the series and the change point are drawn, and
    nothing needed a script or a request (every request would go to a closed port)."""
    page = tmp_path / "history.html"
    history.main([str(_stepped_history(tmp_path)), "--page", str(page)])

    done = _browser(page, "--dump-dom")
    shot = tmp_path / "shot.png"
    _browser(page, f"--screenshot={shot}")

    dom = _Elements(done.stdout)
    assert dom.classes("svg") == [None] and dom.classes("polyline") == ["p50", "p99"]
    assert dom.classes("line").count("change") == 1 and dom.classes("circle").count(None) == 16
    assert "x1.2" in done.stdout  # the change point's label
    assert not [tag for tag, attrs in dom.found if tag == "script" or "src" in attrs]
    assert "Uncaught" not in done.stderr  # Chromium logs a script error as "Uncaught ..."
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_job_summary_table_has_a_row_per_benchmark_with_its_last_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert history.main([str(_stepped_history(tmp_path)), "--markdown"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("### Latency history on machine ")
    assert "| benchmark | runs | last P50 | last P99 [95% CI] | P50, last runs |" in out
    (row,) = [line for line in out.splitlines() if line.startswith("| cnn/fp32-cpu-3s |")]
    assert "| 16 |" in row and "change at 88888888: P50 x1.2" in row


def test_bench_scale_synthesises_a_store_every_series_reads_back_from(tmp_path: Path) -> None:
    from perf import history_scale

    history_scale.synthesise(tmp_path, records=40, machines=2, benchmarks=3, samples=5)

    rows = history.series(load_records(tmp_path))
    scale = history_scale.measure(tmp_path, last=4, packed=True)
    assert (scale.records, scale.series) == (40, 6)
    assert scale.page_bytes == len(history.page(rows, 4).encode())
    assert scale.query_s is not None and not load_records(tmp_path)  # every record packed
    assert {len(r) for r in rows.values()} == {20}  # round-robin over the machines
    assert "40 records, 6 series: load_records " in scale.describe()


def test_the_history_views_read_records_without_their_calls(tmp_path: Path) -> None:
    write_record(tmp_path, _record("c" * 40, 20.0))

    (full,) = load_records(tmp_path)
    (light,) = load_records(tmp_path, samples=False)

    assert full["benchmarks"]["cnn/fp32-cpu-3s"]["samples_ms"] == [20.0] * 3
    assert "samples_ms" not in light["benchmarks"]["cnn/fp32-cpu-3s"]
    assert light["benchmarks"]["cnn/fp32-cpu-3s"]["latency_ms"] == {"p50": 20.0}


def _measured_store(store: Path, runs: int = 12) -> list[dict]:
    records = []
    for i in range(runs):
        record = _measured(f"{i:x}" * 40, 20.0 + (5.0 if i >= runs // 2 else 0.0), dirty=i == 3)
        record["recorded_at"] = f"2026-11-{i + 1:02d}T00:00:00+00:00"
        write_record(store, record)
        records.append(record)
    return records


def test_compacting_loses_nothing_and_unpacking_gives_the_files_back(tmp_path: Path) -> None:
    store, restored = tmp_path / "store", tmp_path / "restored"
    _measured_store(store)
    before = _store_bytes(store)
    views = history.series(stored_records(store, samples=False))

    assert history.main(["compact", str(store)]) == 0

    (pack,) = pack_files(store)
    assert not load_records(store)  # no loose record left
    assert stored_records(store) == sorted(
        (json.loads(data) for data in before.values()), key=lambda r: r["recorded_at"]
    )
    assert history.series(stored_records(store, samples=False)) == views
    assert history.main(["unpack", str(pack), "--into", str(restored)]) == 0
    assert _store_bytes(restored) == before  # byte for byte
    assert history.main(["compact", str(store)]) == 0 and pack_files(store) == [pack]


def test_a_query_reads_one_benchmark_from_the_packs_as_from_the_records(tmp_path: Path) -> None:
    records = _measured_store(tmp_path)
    from_records = history.series(records)
    compact(tmp_path)
    again = _measured("f" * 40, 31.0)  # a run gathered after compacting: loose beside the pack
    again["recorded_at"] = "2026-12-01T00:00:00+00:00"
    write_record(tmp_path, again)
    write_record(tmp_path / "dup", records[0])  # and one already packed, gathered again
    gather([tmp_path / "dup"], tmp_path)

    (rows,) = query(tmp_path, "cnn/fp32-cpu-3s").values()

    (expected,) = from_records.values()
    assert len(rows) == len(expected) + 1  # the packed run gathered again counts once
    assert rows[:-1] == expected and rows[-1]["p50"] == 31.0
    assert rows[3]["commit"].endswith("+") and rows[0]["p99"]["high"] is None
    assert query(tmp_path, "no/such-bench") == {}


def test_packs_gather_like_records_and_a_history_query_is_fast_from_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runners = [tmp_path / f"runner{i}" for i in range(2)]
    _measured_store(runners[0])
    shutil.copytree(runners[0], runners[1])
    compact(runners[0])
    later = time.time() + 86_400
    with pytest.MonkeyPatch.context() as patch:  # a day later, on another runner
        patch.setattr(time, "time", lambda: later)
        compact(runners[1])  # the same records: the same pack, byte for byte
    store = tmp_path / "store"

    assert history.main(["gather", *map(str, runners), "--into", str(store)]) == 0
    assert history.main([str(store), "--benchmark", "cnn/fp32-cpu-3s"]) == 0

    assert len(list(store.rglob("pack-*"))) == 2  # its records and its columns, once
    out = capsys.readouterr().out
    assert "2 record(s) added, 2 already there" in out
    assert "cnn/fp32-cpu-3s on machine " in out and ": 12 run(s)" in out
    assert "change at 66666666: P50 x1.2" in out


def test_a_job_summary_shows_the_last_runs_whatever_the_history_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _measured_store(tmp_path, runs=30)

    assert history.main([str(tmp_path), "--markdown"]) == 0

    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| cnn")]
    sparkline = row.split(" | ")[4]
    assert len(sparkline) == history.SUMMARY_RUNS  # not 30: GitHub caps a summary at 1 MiB
