"""How often is each gate wrong on this machine? A/A and A/B runs of the real suite, resumable.

    python -m perf.calibration --mode baseline --variant cnn/fp32 --max-time 20 \\
        --slower-tree ../slower --runs 20 --out baselines/calibration/baseline-cnn-fp32-20s
    python -m perf.calibration --mode against --variant cnn/fp32 --max-time 20 \\
        --slower-tree ../slower --runs 20 --out baselines/calibration/against-cnn-fp32-20s
    python -m perf.calibration index baselines/calibration     # a table of every series
    python -m perf.calibration spread baselines/calibration    # A/A drift, re-judged
    python -m perf.calibration changes baselines/calibration   # change points on real runs

``--slower-tree`` is a second checkout of this repository whose uncommitted change makes the
model really slower (a graph or config change, not a sleep); its ``HEAD`` is this tree's commit.
Every run is a fresh ``pytest perf/`` process on CPU, A/A and A/B alternating so that the
machine's drift hits both alike:

* ``--mode baseline`` (``--benchmark-compare``): first ``--baseline-runs`` runs of this tree
  record the stored baseline (``--perf-save-baseline``, each adds a run), then A/A runs compare
  this tree and A/B runs the slower tree with those stored runs;
* ``--mode against`` (``--perf-against HEAD``): A/A runs measure this tree's unchanged artifact
  against HEAD's (``--perf-against-unchanged``), A/B runs the slower tree against HEAD.

Each finished run is appended to ``OUT/runs.json`` (its verdict, per-quantile ratio and
interval, commit, machine class, contention) and ``OUT/summary.md`` is rewritten, atomically:
run the same command again to resume where it stopped. While a file ``OUT/PAUSE`` exists, the
next run waits, so that tests or other timing can use the machine between runs. A run during
which other processes kept a quarter of a core busy (the suite's contention flag) is redone, up
to three times; the spoiled run stays in ``runs.json`` marked ``redone``.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from perf.baselines.store import load_baseline
from perf.files import atomic_write_bytes
from perf.measure.contention import DEFAULT_THRESHOLD_CORES
from perf.measure.fingerprint import cpu_info, normalise_isa_flags
from perf.stats.change_points import change_points
from perf.stats.compare import RunSummary, compare_runs
from perf.stats.outcome import Outcome

CONFIG_KEYS = ("mode", "variant", "duration", "max_time", "baseline_runs", "slower_tree", "rate")
MAX_ATTEMPTS = 3  # per planned run, when other processes' load spoils it


def pytest_command(args: argparse.Namespace, json_path: Path) -> list[str]:
    """The run's pytest command: single-stream, or the server scenario at ``--rate``."""
    test = "test_server" if args.rate else "test_latency"
    server = ["--perf-scenario", "server", "--perf-rate", f"{args.rate:g}"] if args.rate else []
    return [
        sys.executable, "-m", "pytest", f"perf/test_latency.py::{test}", *server,
        "-p", "no:cacheprovider", "-q",
        "--perf-variants", args.variant, "--perf-providers", "cpu",
        "--perf-durations", args.duration, "--perf-concurrency", "0",
        "--perf-max-time", f"{args.max_time:g}",
        # The gates' error rates are measured, not the budgets: near capacity a budget breaks,
        # and a broken budget must not keep a run from being stored or judged
        "--perf-no-gate",
        "--perf-baselines", str(args.out / "baselines"),
        "--perf-cache", str(args.cache),
        "--benchmark-json", str(json_path),
    ]  # fmt: skip


def machine_class() -> str:
    flags = normalise_isa_flags(cpu_info().get("flags", []))
    isa = "avx512_vnni" if "avx512vnni" in flags else "avx2" if "avx2" in flags else "other"
    return f"{cpu_info().get('brand_raw', '?')} ({isa})"


def tree_commit(tree: Path) -> str:
    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=tree, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short=12", "HEAD") + ("+dirty" if dirty else "")


def run_once(args: argparse.Namespace, kind: str, index: int) -> dict[str, Any]:
    """One fresh pytest process; its outcome as a row of runs.json."""
    name = f"{kind}-{index:02d}"
    json_path = args.out / f"{name}.json"
    command = pytest_command(args, json_path)
    tree = args.slower_tree if kind == "ab" else Path.cwd()
    if kind == "save":
        command.append("--perf-save-baseline")
    elif args.mode == "baseline":
        command.append("--benchmark-compare")
    else:
        command += ["--perf-against", "HEAD"]
        command += ["--perf-against-unchanged"] if kind == "aa" else []
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tree)
    (args.out / f"{name}.log").write_text(done.stdout + done.stderr)
    if done.returncode not in (0, 1) or not json_path.exists():
        raise SystemExit(f"{name} did not complete (exit {done.returncode}); see its log")
    if kind == "save" and done.returncode != 0:
        raise SystemExit(f"{name} did not save a baseline run (exit 1); see its log")
    (bench,) = json.loads(json_path.read_text())["benchmarks"]
    json_path.unlink()  # its samples are in the log's summary; the row keeps what is judged
    extra = bench["extra_info"]
    return {
        "kind": kind,
        "index": index,
        "exit": done.returncode,
        **_judged(extra, kind, args.mode),
        "median_ms": _median(extra.get("samples_ms", [])),
        "commit": tree_commit(tree),
        "machine": args.machine,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _judged(extra: dict[str, Any], kind: str, mode: str) -> dict[str, Any]:
    sampled = (extra.get("perf") or {}).get("sampling", {}).get("contention")
    contention = sampled or (extra.get("server") or {}).get("contention") or {}
    busy = {
        "other_cores_busy": contention.get("other_cores_busy"),
        "peak_other_cores_busy": contention.get("peak_other_cores_busy"),
    }
    if kind == "save":
        return {"verdict": "saved", **busy}
    if mode == "against":
        against = extra["against"]
        comparison = against.get("comparison") or {}
        return {
            "verdict": against["outcome"],
            "ratio": comparison.get("ratio"),
            "interval": [comparison.get("low"), comparison.get("high")],
            "rounds": comparison.get("rounds"),
            "segments": comparison.get("segments"),
            "other_cores_busy": (against.get("contention") or {}).get("other_cores_busy"),
        }
    check = extra["baseline"]
    comparison = check.get("comparison") or {}
    changes = {
        c["label"]: {"ratio": c["ratio"], "interval": [c["ratio_low"], c["ratio_high"]],
                     "change": c["change"]}
        for c in comparison.get("changes", [])
    }  # fmt: skip
    p50 = changes.get("P50", {})
    side_by_side = (check.get("interleaved") or {}).get("comparison") or {}
    return {
        "verdict": check["outcome"],
        "decided_by": "side by side" if side_by_side else "stored runs",
        "comparison_verdict": comparison.get("verdict"),
        # The ratio that decided: the side-by-side one for a changed model, else the stored runs'.
        "ratio": side_by_side.get("ratio", p50.get("ratio")),
        "interval": [side_by_side["low"], side_by_side["high"]]
        if side_by_side
        else p50.get("interval"),
        "stored_runs_ratio": p50.get("ratio"),
        "quantiles": changes,
        "baseline_runs": comparison.get("baseline_runs"),
        **busy,
    }


def _median(samples: list[float]) -> float | None:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] if ordered else None


def summarise(all_rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows = [r for r in all_rows if not r.get("redone")]
    redone = len(all_rows) - len(rows)
    gate = "`--benchmark-compare`" if args.mode == "baseline" else "`--perf-against HEAD`"
    scenario = f", server scenario at {args.rate:g} req/s" if args.rate else ""
    lines = [
        f"{gate}, `{args.variant}`{scenario}, {args.duration} of audio, CPU, `--perf-max-time "
        f"{args.max_time:g}`; A/B from a tree with a slower model ({args.slower_tree.name}).",
        f"Machine: {args.machine}. Commits: "
        + ", ".join(sorted({r["commit"] for r in rows if r["kind"] != "save"})),
    ]
    if args.mode == "baseline":
        lines.append(f"Stored runs: {sum(r['kind'] == 'save' for r in rows)}.")
    lines.append(
        f"Runs redone because other processes kept >= {DEFAULT_THRESHOLD_CORES} cores busy "
        f"(the suite's contention flag; kept in runs.json with `redone`): {redone}."
    )
    lines += [
        "",
        "| kind | runs | verdicts | false or caught | P50 ratios (min-max) | contended runs |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("aa", "ab"):
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        verdicts = collections.Counter(r["verdict"] for r in mine)
        if kind == "aa":
            score = f"{verdicts['slower'] + verdicts['faster']} / {len(mine)} false"
        else:
            score = f"{verdicts['slower']} / {len(mine)} caught"
        ratios = sorted(r["ratio"] for r in mine if r.get("ratio") is not None)
        span = f"{ratios[0]:.3f}-{ratios[-1]:.3f}" if ratios else "-"
        busy = sum(contended(r) for r in mine)
        label = "A/A" if kind == "aa" else "A/B"
        lines.append(f"| {label} | {len(mine)} | {dict(verdicts)} | {score} | {span} | {busy} |")
    return "\n".join(lines) + "\n"


def contended(row: dict[str, Any]) -> bool:
    """The suite's own contention rule (the run's average or its busiest segment): such a run
    is not judged, or stored, by the suite."""
    busiest = max(row.get("other_cores_busy") or 0.0, row.get("peak_other_cores_busy") or 0.0)
    return busiest >= DEFAULT_THRESHOLD_CORES


def _write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Every run, kept or redone; summary.md counts the kept ones and says how many were redone."""
    atomic_write_bytes(args.out / "runs.json", (json.dumps(rows, indent=1) + "\n").encode())
    atomic_write_bytes(args.out / "summary.md", summarise(rows, args).encode())


def _plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    saves = (
        [("save", i) for i in range(1, args.baseline_runs + 1)] if args.mode == "baseline" else []
    )
    return saves + [(kind, i) for i in range(1, args.runs + 1) for kind in ("aa", "ab")]


def _resume(args: argparse.Namespace) -> list[dict[str, Any]]:
    config = {key: str(getattr(args, key)) for key in CONFIG_KEYS}
    config_path = args.out / "config.json"
    if config_path.exists():
        # Keys added later were absent (None) in earlier series
        stored = {key: "None" for key in CONFIG_KEYS} | json.loads(config_path.read_text())
        if stored != config:
            raise SystemExit(
                f"{args.out} holds a calibration with other settings ({stored}); "
                "use another --out, or the same settings to resume it"
            )
    else:
        atomic_write_bytes(config_path, json.dumps(config, indent=1).encode())
    runs = args.out / "runs.json"
    return json.loads(runs.read_text()) if runs.exists() else []


def _wait_while_paused(out: Path) -> None:
    while (out / "PAUSE").exists():
        time.sleep(5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m perf.calibration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mode", choices=("baseline", "against"), required=True)
    parser.add_argument("--variant", default="cnn/fp32")
    parser.add_argument("--duration", default="3s")
    parser.add_argument("--runs", type=int, default=20, help="A/A runs and A/B runs, each")
    parser.add_argument("--baseline-runs", type=int, default=5, help="--mode baseline: stored")
    parser.add_argument("--max-time", type=float, default=120.0, help="--perf-max-time per run")
    parser.add_argument(
        "--rate", type=float, default=None, help="req/s: the server scenario at this rate"
    )
    parser.add_argument("--slower-tree", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("models"), help="model cache")
    args = parser.parse_args(argv)
    if not (args.slower_tree / "perf" / "test_latency.py").is_file():
        parser.error(f"--slower-tree {args.slower_tree} is not a checkout of this repository")
    args.out, args.cache = args.out.resolve(), args.cache.resolve()
    args.slower_tree = args.slower_tree.resolve()
    args.machine = machine_class()
    return args


def index_table(root: Path) -> str:
    """One markdown row per calibration folder under ``root`` (those with a config.json)."""
    lines = [
        "| folder | gate | model, cap | machine | A/A false | A/A verdicts | A/B caught "
        "| A/B verdicts | A/B ratios | redone |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(p.parent for p in root.glob("*/config.json")):
        config = json.loads((folder / "config.json").read_text())
        rows = (
            json.loads((folder / "runs.json").read_text())
            if (folder / "runs.json").exists()
            else []
        )
        kept = [r for r in rows if not r.get("redone")]
        aa = collections.Counter(r["verdict"] for r in kept if r["kind"] == "aa")
        ab = collections.Counter(r["verdict"] for r in kept if r["kind"] == "ab")
        ratios = sorted(r["ratio"] for r in kept if r["kind"] == "ab" and r.get("ratio"))
        span = f"{ratios[0]:.3f}-{ratios[-1]:.3f}" if ratios else "-"
        gate = "--benchmark-compare" if config["mode"] == "baseline" else "--perf-against HEAD"
        machine = next((r["machine"] for r in rows if r.get("machine")), "-")
        lines.append(
            f"| `{folder.name}` | `{gate}` | `{config['variant']}`, "
            f"{float(config['max_time']):g} s "
            f"| {machine} | {aa['slower'] + aa['faster']} / {aa.total()} | {dict(aa)} "
            f"| {ab['slower']} / {ab.total()} | {dict(ab)} | {span} "
            f"| {sum(1 for r in rows if r.get('redone'))} |"
        )
    return "\n".join(lines) + "\n"


def spread_table(root: Path) -> str:
    """How far A/A runs landed from their stored runs in each stored-baseline series (root mean
    square and extremes of the log ratio per quantile), and how many of them the current rule
    (perf.stats.compare) calls slower or faster when re-judged from the recorded ratios. The
    drift floor was chosen from these same data: the re-judged column shows the rule is
    consistent with them, not that it holds on new runs; only new series show that."""
    lines = [
        "| folder | A/A runs | P50 log ratio rms [min, max] | P95 rms | P99 rms "
        "| recorded false | re-judged false |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(p.parent for p in root.glob("*/config.json")):
        stored = _stored_runs(folder)
        rows = [
            r for r in _rows(folder) if r["kind"] == "aa" and not r.get("redone")
            and r.get("quantiles")
        ]  # fmt: skip
        if not stored or not rows:
            continue
        logs = {q: [math.log(r["quantiles"][q]["ratio"]) for r in rows] for q in QUANTILES}
        rms = {q: math.sqrt(sum(x * x for x in v) / len(v)) for q, v in logs.items()}
        recorded = sum(r["verdict"] in ("slower", "faster") for r in rows)
        rejudged = [compare_runs(stored, _current(stored, r)).verdict for r in rows]
        false = sum(v in (Outcome.SLOWER, Outcome.FASTER) for v in rejudged)
        lines.append(
            f"| `{folder.name}` | {len(rows)} | {rms['P50']:.3f} [{min(logs['P50']):+.3f}, "
            f"{max(logs['P50']):+.3f}] | {rms['P95']:.3f} | {rms['P99']:.3f} "
            f"| {recorded} / {len(rows)} | {false} / {len(rows)} |"
        )
    return "\n".join(lines) + "\n"


QUANTILES = {"P50": 0.5, "P95": 0.95, "P99": 0.99}


def changes_table(root: Path) -> str:
    """Change-point detection (perf.stats.change_points) on each series' real runs: its A/A
    runs alone, in the order they ran (every change point found is false), and its A/A runs
    followed by its A/B runs (a real slower graph; the change belongs at the first A/B run).
    The runs of a series alternated in time; the second series puts them in two blocks."""
    lines = [
        "| series | A/A runs | false change points in A/A | A/A then A/B: change points "
        "(first A/B run = the change) |",
        "|---|---|---|---|",
    ]
    false = found = series_count = 0
    for folder in sorted(p.parent for p in root.glob("*/runs.json")):
        rows = [r for r in _rows(folder) if not r.get("redone") and r.get("median_ms")]
        aa = [r["median_ms"] for r in rows if r["kind"] == "aa"]
        ab = [r["median_ms"] for r in rows if r["kind"] == "ab"]
        if len(aa) < 6 or len(ab) < 3:
            continue
        series_count += 1
        in_aa = change_points(aa)
        both = change_points(aa + ab)
        at = [c.index for c in both]
        hit = bool(at) and abs(at[0] - len(aa)) <= 1
        false += len(in_aa)
        found += hit
        where = ", ".join(f"run {i + 1} (x{c.ratio:.3f})" for i, c in zip(at, both, strict=True))
        lines.append(f"| {folder.name} | {len(aa)} | {len(in_aa)} | {where or 'none'}; the "
                     f"change is at run {len(aa) + 1} |")  # fmt: skip
    lines.append(f"\n{series_count} series: {false} false change points in their A/A runs; the "
                 f"change found within one run of the first A/B run in {found}.")  # fmt: skip
    return "\n".join(lines) + "\n"


def _rows(folder: Path) -> list[dict[str, Any]]:
    path = folder / "runs.json"
    return json.loads(path.read_text()) if path.exists() else []


def _stored_runs(folder: Path) -> list[RunSummary]:
    """The series' stored runs (its one benchmark), as A/A runs were judged against them."""
    for path in sorted((folder / "baselines").glob("*/baseline.json")):
        baseline = load_baseline(path)
        if baseline is not None and len(baseline.benchmarks) == 1:
            return list(baseline.entry(next(iter(baseline.benchmarks))).runs)
    return []


def _current(stored: list[RunSummary], row: dict[str, Any]) -> RunSummary:
    """The A/A run's quantiles, from its recorded ratios to the stored runs' geometric mean."""
    quantiles = {}
    for label, q in QUANTILES.items():
        mean_log = sum(math.log(run.quantiles_ms[q]) for run in stored) / len(stored)
        quantiles[q] = math.exp(mean_log) * row["quantiles"][label]["ratio"]
    return RunSummary(quantiles, calls=1, seconds=stored[0].seconds)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tables = {"index": index_table, "spread": spread_table, "changes": changes_table}
    if argv[:1] and argv[0] in tables:
        root = Path(argv[1] if len(argv) > 1 else "baselines/calibration")
        print(tables[argv[0]](root), end="")
        return 0
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = _resume(args)
    for kind, index in _plan(args):
        tries = [r for r in rows if (r["kind"], r["index"]) == (kind, index)]
        while len(tries) < MAX_ATTEMPTS and all(r.get("redone") for r in tries):
            _wait_while_paused(args.out)
            row = run_once(args, kind, index)
            row["redone"] = contended(row) and len(tries) + 1 < MAX_ATTEMPTS
            rows.append(row)
            tries.append(row)
            _write(args, rows)
            print(json.dumps(row), flush=True)
    print(summarise(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
