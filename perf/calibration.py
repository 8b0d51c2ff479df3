"""Does the baseline comparison survive this machine's noise?  A/A and A/B, side by side with
pytest-benchmark's own ``--benchmark-compare-fail=mean:5%``.

    python -m perf.calibration --runs 20 --variant w2v2-base/fp32 --out noise-proof/

1. One run records a baseline (``--perf-save-baseline``) and its pytest-benchmark JSON.
2. Then ``--runs`` pairs, interleaved so that machine drift hits both alike: an A/A run (the same
   model) and an A/B run with a real slowdown (``--perf-inject-delay``: ``--slowdown`` x the
   baseline's median, busy-waited inside every timed call). Each is a fresh ``pytest perf/``
   process with ``--benchmark-compare``; a run flags a regression when that test fails with
   "regressed against its baseline" (re-measurement of undecided results included).
3. pytest-benchmark's gate on the same runs: ``mean:5%`` fails when the run's mean exceeds the
   baseline run's mean by more than 5%, which is what ``--benchmark-compare-fail=mean:5%``
   computes from the same stored rounds (one round = one call here).

With ``--mode against`` the same experiment judges ``--perf-against HEAD`` instead, with no
stored baseline: A/A runs measure the working tree's unchanged artifact against HEAD's
(``--perf-against-unchanged``), A/B runs run from ``--slower-tree``, a checkout of this
repository whose uncommitted change makes the model really slower (a graph, not a sleep).

    python -m perf.calibration --mode against --variant cnn/fp32 --slower-tree ../slower

This is an experiment, not a test: it takes minutes per run on the real model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REGRESSED = "regressed against its baseline"


def pytest_command(args: argparse.Namespace, baselines: Path, json_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "perf/test_latency.py::test_latency",
        "-p", "no:cacheprovider", "-q",
        "--perf-variants", args.variant, "--perf-providers", "cpu",
        "--perf-durations", args.duration, "--perf-concurrency", "0",
        "--perf-max-time", str(args.max_time),
        "--perf-baselines", str(baselines), "--benchmark-json", str(json_path),
    ]  # fmt: skip


def run_pytest(command: list[str], log: Path) -> tuple[int, str]:
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    log.write_text(output)
    return completed.returncode, output


def mean_ms(json_path: Path) -> float:
    (bench,) = json.loads(json_path.read_text())["benchmarks"]
    return bench["stats"]["mean"] * 1e3


def median_ms(json_path: Path) -> float:
    (bench,) = json.loads(json_path.read_text())["benchmarks"]
    return statistics.median(bench["extra_info"]["samples_ms"])


def baseline_check(json_path: Path) -> dict[str, Any]:
    (bench,) = json.loads(json_path.read_text())["benchmarks"]
    return bench["extra_info"].get("baseline") or {}


def one_run(args: argparse.Namespace, kind: str, index: int, delay_ms: float) -> dict[str, Any]:
    json_path = args.out / f"{kind}-{index:02d}.json"
    command = [*pytest_command(args, args.out / "baselines", json_path), "--benchmark-compare"]
    if delay_ms:
        command += ["--perf-inject-delay", f"{delay_ms:.3f}"]
    started = time.perf_counter()
    code, output = run_pytest(command, args.out / f"{kind}-{index:02d}.log")
    if code not in (0, 1) or not json_path.exists():
        raise SystemExit(f"{kind} run {index} did not complete (exit {code}); see its log")
    mean = mean_ms(json_path)
    return {
        "kind": kind,
        "index": index,
        "suite_flags_regression": REGRESSED in output,
        "remeasured": baseline_check(json_path).get("remeasured", False),
        "comparison": (baseline_check(json_path).get("comparison") or {}).get("verdict"),
        "pytest_benchmark_mean5_flags": mean > args.baseline_mean * 1.05,
        "mean_ms": mean,
        "median_ms": median_ms(json_path),
        "seconds": time.perf_counter() - started,
    }


def against_run(args: argparse.Namespace, kind: str, index: int) -> dict[str, Any]:
    """One fresh ``pytest perf/ --perf-against HEAD`` process; its paired verdict."""
    json_path = (args.out / f"{kind}-{index:02d}.json").resolve()
    command = pytest_command(args, args.out.resolve() / "baselines", json_path)
    command += ["--perf-against", "HEAD", "--perf-cache", str(args.cache.resolve())]
    if kind == "aa":
        command.append("--perf-against-unchanged")
    cwd = Path.cwd() if kind == "aa" else args.slower_tree
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    (args.out / f"{kind}-{index:02d}.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode not in (0, 1) or not json_path.exists():
        raise SystemExit(f"{kind} run {index} did not complete (exit {completed.returncode})")
    (bench,) = json.loads(json_path.read_text())["benchmarks"]
    comparison = bench["extra_info"]["against"]["comparison"]
    return {
        "kind": kind,
        "index": index,
        "verdict": comparison["verdict"],
        "ratio": comparison["ratio"],
        "interval": [comparison["low"], comparison["high"]],
        "rounds": comparison["rounds"],
        "segments": comparison["segments"],
        "seconds": time.perf_counter() - started,
    }


def summarise_against(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def verdicts(kind: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in rows:
            if row["kind"] == kind:
                found[row["verdict"]] = found.get(row["verdict"], 0) + 1
        return found

    def ratios(kind: str) -> str:
        values = sorted(r["ratio"] for r in rows if r["kind"] == kind)
        return f"{values[0]:.3f}-{values[-1]:.3f}" if values else "-"

    aa, ab = verdicts("aa"), verdicts("ab")
    runs = sum(aa.values())
    return "\n".join([
        f"`--perf-against HEAD`, variant {args.variant}, {args.duration} of audio, CPU, "
        f"`--perf-max-time {args.max_time:g}`; A/B from {args.slower_tree}.",
        "",
        "| runs | A/A false verdicts (slower or faster) | A/A verdicts | A/A P50 ratios "
        "| A/B caught as slower | A/B verdicts | A/B P50 ratios |",
        "|---|---|---|---|---|---|---|",
        f"| {runs} | {aa.get('slower', 0) + aa.get('faster', 0)} / {runs} | {aa} "
        f"| {ratios('aa')} | {ab.get('slower', 0)} / {sum(ab.values())} | {ab} | {ratios('ab')} |",
    ])  # fmt: skip


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def count(kind: str, key: str) -> str:
        flagged = sum(r[key] for r in rows if r["kind"] == kind)
        total = sum(r["kind"] == kind for r in rows)
        return f"{flagged} / {total}"

    return "\n".join([
        f"Variant {args.variant}, {args.duration} of audio, CPU; baseline mean "
        f"{args.baseline_mean:.1f} ms, median {args.baseline_median:.1f} ms; A/B delay "
        f"{args.delay_ms:.1f} ms ({args.slowdown:.0%} of the median).",
        "",
        "| gate | A/A false regressions | A/B slowdowns caught |",
        "|---|---|---|",
        f"| this suite (`--benchmark-compare`) | {count('aa', 'suite_flags_regression')} "
        f"| {count('ab', 'suite_flags_regression')} |",
        f"| pytest-benchmark `--benchmark-compare-fail=mean:5%` "
        f"| {count('aa', 'pytest_benchmark_mean5_flags')} "
        f"| {count('ab', 'pytest_benchmark_mean5_flags')} |",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.calibration", description=__doc__)
    parser.add_argument("--variant", default="w2v2-base/fp32")
    parser.add_argument("--duration", default="3s")
    parser.add_argument("--runs", type=int, default=20, help="A/A runs and A/B runs, each")
    parser.add_argument("--slowdown", type=float, default=0.15)
    parser.add_argument("--max-time", type=float, default=60.0, help="--perf-max-time per run")
    parser.add_argument("--out", type=Path, default=Path("noise-proof"))
    parser.add_argument("--mode", choices=("baseline", "against"), default="baseline")
    parser.add_argument(
        "--slower-tree", type=Path, help="--mode against: a checkout with a slower model"
    )
    parser.add_argument("--cache", type=Path, default=Path("models"), help="model cache")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "against":
        return calibrate_against(args)

    baseline_json = args.out / "baseline.json"
    command = pytest_command(args, args.out / "baselines", baseline_json)
    code, _ = run_pytest([*command, "--perf-save-baseline"], args.out / "baseline.log")
    if code != 0:
        raise SystemExit(f"the baseline run failed (exit {code}); see {args.out}/baseline.log")
    args.baseline_mean = mean_ms(baseline_json)
    args.baseline_median = median_ms(baseline_json)
    args.delay_ms = args.slowdown * args.baseline_median
    print(f"baseline: mean {args.baseline_mean:.1f} ms; A/B delay {args.delay_ms:.1f} ms",
          flush=True)  # fmt: skip

    rows = []
    for index in range(1, args.runs + 1):
        for kind, delay in (("aa", 0.0), ("ab", args.delay_ms)):
            row = one_run(args, kind, index, delay)
            rows.append(row)
            print(json.dumps(row), flush=True)
            (args.out / "runs.json").write_text(json.dumps(rows, indent=1))
    summary = summarise(rows, args)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)
    return 0


def calibrate_against(args: argparse.Namespace) -> int:
    if args.slower_tree is None or not (args.slower_tree / "export").is_dir():
        raise SystemExit("--mode against needs --slower-tree: a checkout with a slower model")
    rows = []
    for index in range(1, args.runs + 1):
        for kind in ("aa", "ab"):
            rows.append(against_run(args, kind, index))
            print(json.dumps(rows[-1]), flush=True)
            (args.out / "runs.json").write_text(json.dumps(rows, indent=1))
    summary = summarise_against(rows, args)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
