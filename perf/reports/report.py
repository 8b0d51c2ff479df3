"""The run's report: ``report.md``, ``summary.md``, ``report.json`` and PNG plots in one folder.

``report.md`` links the plots beside it; ``summary.md`` is the same text without them, for
``$GITHUB_STEP_SUMMARY`` (a job summary cannot show an artifact's images). Both stay under
GitHub's 1 MiB job-summary limit: past ``SUMMARY_LIMIT_BYTES`` table rows are left out (failures
and regressions last) with a note; ``report.json`` always has every row. Every file is written
under a temporary name and renamed into place, so a reader never sees half a report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf.baselines.regression import BaselineCheck
from perf.files import atomic_write_text
from perf.measurement import LatencyResult
from perf.reports.summary import HEADERS, row
from perf.stats.outcome import Outcome

# report.json format history: 1, first version. 2, adds "refused" (models that computed wrong
# numbers where they were to be benchmarked), "against" (--perf-against outcomes) and each
# result's "numerics". 3, one outcome vocabulary (perf/stats/outcome.py): "comparisons" holds
# every baseline check ({"id", "outcome", "message", "comparison"}), not only compared ones;
# "against" rows carry "outcome" in place of "status" and "verdict"; numerics "outcome".
# 4, adds "scenarios": a row per server-scenario run (scenario, rate_rps, achieved_rps, p50_ms,
# p95_ms, p99_ms, queue and service time, issue delay, flags).
# 5, results carry "gflop_per_call", "efficiency" (0-1, CPU) and "work"; the report carries
# "machine_peak" (GFLOP/s and GOP/s, and how they were measured); "scenarios" rows also come
# from the peak search ("peak", with its "points") and "offline", server rows carry
# "per_length" and their budget "verdict".
# 6, "against" rows (and side-by-side "comparisons") carry "explained" (the per-operator
# attribution, perf.stats.attribution, or null); results carry "profile" (--perf-profile, per op
# type, or null); server rows carry "bench" (their name in baselines and comparisons) and
# "contention"; "comparisons" include server rows, by that name.
# 7, "against" rows carry "b" (what B was: "working tree", or with --perf-compare A,B the
# variant B, "against" then being the variant A).
FORMAT_VERSION = 7
SUMMARY_LIMIT_BYTES = 900 * 1024  # GitHub rejects a job summary over 1 MiB
MAX_DISTRIBUTION_PLOTS = 24
CDF_PNG = "cdf.png"
REPORT_MD, SUMMARY_MD, REPORT_JSON, OVERVIEW_PNG = (
    "report.md",
    "summary.md",
    "report.json",
    "overview.png",
)
PLOTS_DIR = "plots"
LOAD_PNG = "load.png"
WHY_PNG = "why.png"
IMAGES = ("latency overview", "latency under load")  # shown in report.md; the rest are links
BULKY_KEYS = ("samples_ms", "segments")
_NOTE_RESERVE = 300  # bytes kept for each table's "rows left out" note
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

Comparisons = Sequence[tuple[str, BaselineCheck]]
Skipped = Sequence[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class ReportContent:
    """Everything one report shows: results, their comparisons, what was skipped or refused."""

    results: Sequence[LatencyResult] = ()
    comparisons: Comparisons = ()  # every --benchmark-compare check, by benchmark id
    run_info: Mapping[str, Any] | None = None
    skipped: Skipped = ()
    refused: Skipped = ()  # (id, why): models that computed wrong numbers here
    against: Sequence[Mapping[str, Any]] = ()  # ABOutcome.to_dict() rows of --perf-against
    scenarios: Sequence[Mapping[str, Any]] = ()  # ServerResult.to_dict() rows


def write_report(
    directory: Path, content: ReportContent, max_distribution_plots: int = MAX_DISTRIBUTION_PLOTS
) -> list[Path]:
    """Write the report files into ``directory`` (created if needed); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if content.run_info is None:
        content = dataclasses.replace(content, run_info=default_run_info())
    plots = _write_plots(directory, content.results, max_distribution_plots)
    if load_points(content.scenarios):
        from perf.reports.plots import plot_load

        plots.append(
            ("latency under load", plot_load(load_points(content.scenarios), directory / LOAD_PNG))
        )
    why = explained_rows(content)
    if why:
        from perf.reports.plots import plot_attribution

        plots.append(("why it changed, per op type", plot_attribution(why, directory / WHY_PNG)))
    server_rows = [r for r in content.scenarios if r.get("scenario") == "server"]
    if server_rows:
        from perf.reports.plots import plot_cdf

        plots.append(("latency CDF", plot_cdf(server_rows, directory / CDF_PNG)))
    links = [(label, path.relative_to(directory).as_posix()) for label, path in plots]
    texts = {
        REPORT_MD: markdown_summary(content, plots=links),
        SUMMARY_MD: markdown_summary(content, plots=None),
        REPORT_JSON: json.dumps(report_data(content), indent=2, default=str) + "\n",
    }
    written = [atomic_write_text(directory / name, text) for name, text in texts.items()]
    return written + [path for _, path in plots]


def markdown_summary(
    content: ReportContent,
    plots: Sequence[tuple[str, str]] | None = None,
    limit_bytes: int = SUMMARY_LIMIT_BYTES,
) -> str:
    """GitHub-flavoured markdown: run info, the latency table, comparisons, skips, plots.

    ``plots``: (label, relative path) pairs to link; ``None`` says they are in the artifact.
    """
    tables = [
        _latency_table(content.results),
        _profile_table(content.results),
        _refused_table(content.refused),
        _against_table(content.against),
        _why_table(explained_rows(content)),
        _scenarios_table(content.scenarios),
        _peak_table(content.scenarios),
        _offline_table(content.scenarios),
        _matrix_table(content.scenarios),
        _comparison_table(content.comparisons),
        _skipped_table(content.skipped),
    ]
    head = _header(content)
    tail = _plots_section(plots)
    room = limit_bytes - _size(head) - _size(tail) - sum(t.fixed_bytes for t in tables)
    parts = [head]
    for table in tables:
        text, used = table.render(room)
        room -= used
        parts.append(text)
    parts.append(tail)
    return "\n".join(part for part in parts if part)


def report_data(content: ReportContent) -> dict[str, Any]:
    """The JSON report: every result's ``to_dict()`` without per-call samples."""
    return {
        "format_version": FORMAT_VERSION,
        "generated": _now(),
        "run_info": dict(content.run_info or {}),
        "results": [_without_samples(r.to_dict()) for r in content.results],
        "skipped": [{"id": case_id, "reason": reason} for case_id, reason in content.skipped],
        "refused": [{"id": case_id, "reason": reason} for case_id, reason in content.refused],
        "against": [dict(outcome) for outcome in content.against],
        "scenarios": [dict(row) for row in content.scenarios],
        "comparisons": [{"id": case_id, **c.to_dict()} for case_id, c in content.comparisons],
        "machine_peak": next(
            (r.work["machine_peak"] for r in content.results if r.work and r.work["machine_peak"]),
            None,
        ),
    }


def default_run_info() -> dict[str, Any]:
    """Machine, GPU, onnxruntime build and date, from perf.measure.fingerprint."""
    from perf.measure.fingerprint import machine_fingerprint, software_fingerprint

    machine = machine_fingerprint()
    software = software_fingerprint()
    gpu = machine.get("gpu") or {}
    distributions = software.get("onnxruntime_distributions") or {}
    return {
        "machine": f"{machine['cpu_model']}, {machine['usable_cores']} usable cores, "
        f"{machine['memory_gib']} GiB, {machine['platform']}",
        "gpu": ", ".join(gpu.get("names", [])) or "none",
        "onnxruntime": ", ".join(f"{k} {v}" for k, v in distributions.items())
        or software["onnxruntime_version"],
        "providers": ", ".join(software.get("providers", [])),
        "python": machine["python"],
        "date": _now(),
    }


def skipped_from_report(report: Any) -> tuple[str, str] | None:
    """(benchmark id, reason) from a skipped pytest ``TestReport``; None for any other report.

    A test with an empty parametrization (``[NOTSET]``, e.g. throughput with
    ``--perf-concurrency 0``) was not a configuration and gives None too.
    """
    if not getattr(report, "skipped", False):
        return None
    nodeid = str(report.nodeid)
    match = re.search(r"\[(.*)\]$", nodeid)
    if match and match.group(1) == "NOTSET":
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr
    reason = str(reason).removeprefix("Skipped: ")
    return (match.group(1) if match else nodeid), reason


@dataclass(frozen=True)
class _Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    important: Sequence[bool]  # rows kept first when the table must be cut
    intro: str = ""

    @property
    def head(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.intro:
            lines += [self.intro, ""]
        return "\n".join([*lines, _md_row(self.headers), _md_row(["---"] * len(self.headers))])

    @property
    def fixed_bytes(self) -> int:
        return _size(self.head) + _NOTE_RESERVE if self.rows else 0

    def render(self, room: int) -> tuple[str, int]:
        """The table with as many rows as fit in ``room`` bytes; (text, row bytes used)."""
        if not self.rows:
            return "", 0
        lines = [_md_row(r) for r in self.rows]
        keep, used = _fit(lines, self.important, room)
        body = [line for line, kept in zip(lines, keep, strict=True) if kept]
        text = "\n".join([self.head, *body]) + "\n"
        left_out = len(lines) - len(body)
        if left_out:
            text += (
                f"\n_{left_out} of {len(lines)} rows left out to stay under GitHub's 1 MiB "
                f"job-summary limit (failures and regressions are kept); report.json in the "
                f"perf-report artifact has every row._\n"
            )
        return text, used


def _fit(lines: Sequence[str], important: Sequence[bool], room: int) -> tuple[list[bool], int]:
    order = [i for i in range(len(lines)) if important[i]]
    order += [i for i in range(len(lines)) if not important[i]]
    keep, used = [False] * len(lines), 0
    for i in order:
        cost = _size(lines[i]) + 1
        if used + cost > room:
            break
        keep[i], used = True, used + cost
    return keep, used


def _latency_table(results: Sequence[LatencyResult]) -> _Table:
    return _Table(
        title=f"Latency ({len(results)} benchmarks)",
        headers=HEADERS,
        rows=[row(r) for r in results],
        important=[r.verdict == "fail" for r in results],
        intro="Per-call latency in milliseconds (ms); load is the session creation time in "
        "seconds; P99 with its 95% confidence interval.",
    )


def _comparison_table(comparisons: Comparisons) -> _Table:
    return _Table(
        title="Against the stored baseline",
        headers=("configuration", "change", "baseline -> current (ms), ratio [95% CI]"),
        rows=[(case_id, _outcome(c), _check_details(c)) for case_id, c in comparisons],
        important=[c.outcome is not Outcome.SAME for _, c in comparisons],
    )


def _profile_table(results: Sequence[LatencyResult]) -> _Table:
    """--perf-profile: each benchmark's op types, the heaviest first, and the time outside."""
    cells = [
        (r.case.id, p["op_type"], f"{p['ms']:.2f}", f"{p['share']:.1%}",
         str(p["nodes"]) if p["nodes"] else "-", f"{p['threads']:.1f}" if p["nodes"] else "-")
        for r in results if r.profile
        for p in [*r.profile[:-1][:8], r.profile[-1]]
    ]  # fmt: skip
    return _Table(
        title="Where the time goes, per op type (--perf-profile)",
        headers=("configuration", "op type", "ms per call", "share", "nodes", "threads"),
        rows=cells,
        important=[False] * len(cells),
        intro="From onnxruntime's profiler over calls made after the timed samples (profiling "
        "adds per-node overhead); 'outside nodes' is session overhead, copies and gaps.",
    )


def _refused_table(refused: Skipped) -> _Table:
    return _Table(
        title=f"Refused: wrong numbers on this machine, not benchmarked ({len(refused)})",
        headers=("configuration", "numerics check"),
        rows=[(case_id, reason) for case_id, reason in refused],
        important=[True] * len(refused),
    )


def _against_table(against: Sequence[Mapping[str, Any]]) -> _Table:
    def change(outcome: Mapping[str, Any]) -> str:
        comparison = outcome.get("comparison")
        if not comparison:
            return outcome["reason"]
        low, high = comparison.get("low"), comparison.get("high")
        interval = "n/a" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"
        return (
            f"x{comparison['ratio']:.3f} {interval} over {comparison['rounds']} rounds in "
            f"{comparison['segments']} segments"
        )

    ref = against[0]["against"] if against else ""
    pairs = any(o.get("b", "working tree") != "working tree" for o in against)
    title = (
        "A/B of variants (B / A, P50)" if pairs else f"A/B against {ref} (working tree / REF, P50)"
    )
    return _Table(
        title=title,
        headers=("configuration", "verdict", "change"),
        rows=[(o["id"], o["outcome"], change(o)) for o in against],
        important=[o["outcome"] not in ("same", "unchanged") for o in against],
    )


def explained_rows(content: ReportContent) -> list[Mapping[str, Any]]:
    """Every A/B with a per-operator attribution (--perf-against, and changed models measured
    side by side with their stored ones), as ABOutcome.to_dict() rows."""
    side_by_side = [c.interleaved for _, c in content.comparisons if c.interleaved]
    return [row for row in (*content.against, *side_by_side) if row.get("explained")]


def _why_table(rows: Sequence[Mapping[str, Any]]) -> _Table:
    """Per explained A/B: the whole call, the parts the rounds tell from noise, the rest."""
    cells: list[tuple[str, ...]] = []
    for outcome in rows:
        why = outcome["explained"]
        named = [c for c in (*why["nodes"], why["outside"]) if c["significant"]]
        named.sort(key=lambda c: -abs(c["change_ms"]))
        for part in (why["total"], *named[:8], *why["op_types"][:6]):
            cells.append((outcome["id"], _part(part), f"{part['a_ms']:.2f}", f"{part['b_ms']:.2f}",
                          f"{part['change_ms']:+.2f} [{part['low_ms']:+.2f}, "
                          f"{part['high_ms']:+.2f}]"))  # fmt: skip
    return _Table(
        title="Why it changed: per node and op type (profiled, ms per call, B - A)",
        headers=("configuration", "part", "A ms", "B ms", "change ms [95% CI]"),
        rows=cells,
        important=[True] * len(cells),
        intro="Profiled after the timed A/B (profiling adds overhead, so the profiled change "
        "differs from the timed one); nodes listed only where the rounds tell the change from "
        "noise; then the op types; the parts add up to the whole call.",
    )


def _part(part: Mapping[str, Any]) -> str:
    kind = part["kind"]
    if kind in ("total", "outside"):
        return part["label"]
    if kind == "op_type":
        return f"all {part['label']}"
    suffix = {"added": " (only in B)", "removed": " (only in A)"}.get(kind, "")
    return f"{part['op_type']} {part['label']}{suffix}"


def _scenarios_table(rows: Sequence[Mapping[str, Any]]) -> _Table:
    rows = [r for r in rows if r.get("scenario") == "server"]
    cells: list[tuple[str, ...]] = []
    important: list[bool] = []
    for r in rows:
        cells.append((
            r["id"], f"{r['rate_rps']:g} req/s", f"{r['achieved_rps']:.2f} req/s",
            _ms(r["p50_ms"]), _ms(r["p95_ms"]), _ms(r["p99_ms"]), r.get("verdict", "-"),
            "; ".join(r["flags"]) or "-",
        ))  # fmt: skip
        important.append(bool(r["flags"]) or r.get("verdict") == "fail")
        for length in r.get("per_length", []):
            cells.append((
                f"{r['id']}: {length['length']} (weight {length['weight']:g})", "",
                f"{length['requests']} requests", _ms(length["p50_ms"]), _ms(length["p95_ms"]),
                _ms(length["p99_ms"]), "", "",
            ))  # fmt: skip
            important.append(False)
    return _Table(
        title="Server scenario (Poisson arrivals; latency from each request's scheduled time)",
        headers=("configuration", "offered", "achieved", "P50", "P95", "P99", "budget", "flags"),
        rows=cells,
        important=important,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _peak_table(rows: Sequence[Mapping[str, Any]]) -> _Table:
    rows = [r for r in rows if r.get("scenario") == "peak"]
    return _Table(
        title="Peak rate whose P99 is proven under the SLO (Poisson arrivals; LoadGen's "
        "early-stopping rule)",
        headers=("configuration", "SLO", "peak rate", "below", "points", "stopped", "budget"),
        rows=[
            (
                r["id"],
                f"P99 <= {r['slo_ms']:g} ms",
                f"{r['peak_rps']:.3g} req/s",
                "-"
                if r["peak_rps_interval"][1] is None
                else f"{r['peak_rps_interval'][1]:.3g} req/s",
                str(len(r["points"])),
                r["stopped"],
                r.get("verdict", "-"),
            )
            for r in rows
        ],
        important=[r["peak_rps"] == 0 for r in rows],
    )


def _offline_table(rows: Sequence[Mapping[str, Any]]) -> _Table:
    rows = [r for r in rows if r.get("scenario") == "offline"]
    return _Table(
        title="Offline (every request there from the start, batched calls back to back)",
        headers=OFFLINE_HEADERS,
        rows=[_offline_cells(r) for r in rows],
        important=[False] * len(rows),
    )


OFFLINE_HEADERS = ("configuration", "batch", "calls", "clips/s", "audio s per s", "call P50",
                   "call P99")  # fmt: skip


def _offline_cells(r: Mapping[str, Any]) -> tuple[str, ...]:
    rates = f"{r['clips_per_s']:.2f}", f"{r['audio_seconds_per_s']:.1f}"
    return (r["id"], str(r["batch"]), str(r["calls"]), *rates, _ms(r["call_p50_ms"]),
            _ms(r["call_p99_ms"]))  # fmt: skip


def _matrix_table(rows: Sequence[Mapping[str, Any]]) -> _Table:
    rows = [r for r in rows if r.get("scenario") == "tail-matrix"]
    cells = [
        (r["id"], f"{r['rate_rps']:g} req/s", run["setting"]["label"], _ms(run["p50_ms"]),
         _ms(run["p99_ms"]), "; ".join(run["flags"]) or "-",
         "best" if r["best"] and r["best"]["label"] == run["setting"]["label"] else "")
        for r in rows
        for run in r["runs"]
    ]  # fmt: skip
    return _Table(
        title="Tail settings (the server scenario under each session setting)",
        headers=("configuration", "offered", "setting", "P50", "P99", "flags", ""),
        rows=cells,
        important=[cell[-1] == "best" for cell in cells],
    )


def load_points(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every open-loop run at one rate: server rows, and each point of a peak search."""
    points: list[Mapping[str, Any]] = []
    for scenario in rows:
        if scenario.get("scenario") == "peak":
            points += [{**p, "id": scenario["id"]} for p in scenario["points"]]
        elif scenario.get("scenario") == "server":
            points.append(scenario)
    return points


def _skipped_table(skipped: Skipped) -> _Table:
    return _Table(
        title=f"Skipped ({len(skipped)})",
        headers=("configuration", "reason"),
        rows=[(case_id, reason) for case_id, reason in skipped],
        important=[False] * len(skipped),
    )


def _header(content: ReportContent) -> str:
    lines = ["# Latency report", ""]
    info = content.run_info or {}
    lines += [f"- **{key}**: {_escape(_info_value(value))}" for key, value in info.items()]
    counts = _counts(content.results, content.comparisons, content.skipped)
    if content.refused:
        counts = (
            counts.removesuffix(".") + f"; **{len(content.refused)} refused** (wrong numbers here)."
        )
    return "\n".join([*lines, "", counts, ""])


def _counts(results: Sequence[LatencyResult], comparisons: Comparisons, skipped: Skipped) -> str:
    verdicts: dict[str, int] = {}
    for result in results:
        verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
    parts = [f"{n} {verdict}" for verdict, n in sorted(verdicts.items())]
    text = f"**{len(results)} benchmarks**" + (f": {', '.join(parts)}" if parts else "")
    text += f"; {len(skipped)} skipped"
    if comparisons:
        outcomes = Counter(str(c.outcome) for _, c in comparisons)
        counted = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        text += f"; against the baseline: {counted}"
    return text + "."


def _plots_section(plots: Sequence[tuple[str, str]] | None) -> str:
    if plots is None:
        return "Plots and `report.json` are in the `perf-report` artifact of this run.\n"
    if not plots:
        return ""
    lines = ["## Plots", ""]
    lines += [f"![{label}]({path})\n" for label, path in plots if label in IMAGES]
    lines += [f"- [{_escape(label)}]({path})" for label, path in plots if label not in IMAGES]
    return "\n".join(lines) + "\n"


def _write_plots(
    directory: Path, results: Sequence[LatencyResult], max_distribution_plots: int
) -> list[tuple[str, Path]]:
    if not results:
        return []
    from perf.reports.plots import plot_distribution, plot_overview

    written = [("latency overview", plot_overview(results, directory / OVERVIEW_PNG))]
    chosen = sorted(results, key=lambda r: r.verdict != "fail")[: max(max_distribution_plots, 0)]
    for i, result in enumerate(chosen):
        name = f"{i:03d}-{_UNSAFE_FILE_CHARS.sub('_', result.case.id)}.png"
        path = plot_distribution(result, directory / PLOTS_DIR / name)
        written.append((f"{result.case.id} latency distribution", path))
    return written


def _outcome(check: BaselineCheck) -> str:
    return f"**{check.outcome}**" if check.outcome is not Outcome.SAME else str(check.outcome)


def _check_details(check: BaselineCheck) -> str:
    if check.comparison is None or check.interleaved:
        return check.message
    return "<br>".join(c.format() for c in check.comparison.changes)


def _without_samples(data: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in data.items() if k not in BULKY_KEYS}
    if isinstance(data.get("sampling"), dict):
        data["sampling"] = {k: v for k, v in data["sampling"].items() if k not in BULKY_KEYS}
    return data


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_escape(str(cell)) for cell in cells) + " |"


def _escape(text: str) -> str:
    """A table cell on one line: pipes escaped, newlines as <br>."""
    return text.replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")


def _info_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def _size(text: str) -> int:
    return len(text.encode("utf-8")) + 1


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
