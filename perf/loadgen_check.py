"""Does the suite's server scenario agree with MLPerf LoadGen? One model, one rate, both ways.

    python -m perf.loadgen_check --variant cnn/fp32 --rate 20 --seconds 60 [--out FILE]

Runs the same model (one session, one request at a time, 3 s of audio) under two independent
open-loop generators at the same Poisson rate: the suite's (perf.scenarios.server, its own
seeded schedule) and MLPerf LoadGen's Server scenario (the ``mlcommons-loadgen`` package, its
C++ scheduler and clock; requests queued to one worker thread, so LoadGen's issue thread never
waits for the model). Both count latency from each request's scheduled arrival. Prints both
P50 and P99 and their ratios; exit 1 when either differs by more than ``TOLERANCE`` (25%).
``--out`` appends the result as a JSON line, with the machine, so the agreement can be
committed with its data.

Why the suite keeps its own scheduler rather than LoadGen inside ``pytest perf/``: LoadGen
owns the process's run (its own threads, logs written to a folder, one test per
``StartTest``), has no notion of a session's input-length mix or of per-request queue and
service time, and its Python wheel is not on every platform the suite runs on. It is the
right *referee*: an independent implementation of the same scenario.
"""

from __future__ import annotations

import argparse
import datetime
import json
import queue
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOLERANCE = 0.25
_PERCENTILE_LINE = re.compile(r"^(\d+(?:\.\d+)?) percentile latency \(ns\)\s*:\s*(\d+)", re.M)


def parse_summary(text: str) -> dict[float, float]:
    """Percentile (e.g. 99.0) -> latency in ms, from LoadGen's ``mlperf_log_summary.txt``."""
    found = {float(p): int(ns) / 1e6 for p, ns in _PERCENTILE_LINE.findall(text)}
    if not found:
        raise ValueError("no 'percentile latency (ns)' lines in the LoadGen summary")
    return found


def loadgen_server(call: Callable[[], Any], rate_rps: float, seconds: float) -> dict[float, float]:
    """LoadGen's Server scenario at ``rate_rps`` for ``seconds``, one request at a time."""
    import mlperf_loadgen as lg

    pending: queue.Queue[Any] = queue.Queue()

    def worker() -> None:
        while (samples := pending.get()) is not None:
            for sample in samples:
                call()
                lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = rate_rps
    settings.server_target_latency_ns = 10**10  # validity is not what is compared here
    count = max(1, int(rate_rps * seconds))
    settings.min_query_count = settings.max_query_count = count
    settings.min_duration_ms = int(seconds * 1e3)
    settings.max_duration_ms = int(seconds * 3e3)
    sut = lg.ConstructSUT(pending.put, lambda: None)
    qsl = lg.ConstructQSL(count, count, lambda _s: None, lambda _s: None)
    with tempfile.TemporaryDirectory() as logs:
        output = lg.LogOutputSettings()
        output.outdir = logs
        output.copy_summary_to_stdout = False
        log_settings = lg.LogSettings()
        log_settings.log_output = output
        try:
            lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
        finally:
            pending.put(None)
            thread.join()
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        return parse_summary((Path(logs) / "mlperf_log_summary.txt").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perf.loadgen_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--variant", default="cnn/fp32")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="append the result here")
    args = parser.parse_args(argv)
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        parser.error("needs MLPerf LoadGen: pip install -e '.[loadgen]'")

    from export.cache import ModelCache
    from export.recipes import parse_variant_name
    from perf.measure.cases import PerfCase, case_inputs
    from perf.measure.fingerprint import machine_and_software
    from perf.measure.sessions import SessionSettings, open_session
    from perf.scenarios.server import measure_server
    from perf.scenarios.traffic import workload_for

    artifact = ModelCache().get(parse_variant_name(args.variant))
    model = artifact.directory / "model.onnx"
    case = PerfCase(args.variant, "cpu", 3.0)
    session = open_session(model, SessionSettings("cpu"))
    inputs = case_inputs(model, case, {})
    workload = workload_for(case, session.run, lambda length: case_inputs(model, length, {}))
    suite = measure_server(case, workload, args.rate, 1, args.seconds).to_dict()
    loadgen = loadgen_server(lambda: session.run(None, inputs), args.rate, args.seconds)
    result = {
        "variant": args.variant, "rate_rps": args.rate, "seconds": args.seconds,
        "suite": {"p50_ms": suite["p50_ms"], "p99_ms": suite["p99_ms"],
                  "requests": suite["requests"]},
        "loadgen": {"p50_ms": loadgen[50.0], "p99_ms": loadgen[99.0]},
        "machine": machine_and_software()["machine"].get("cpu_model"),
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    ratios = {q: result["suite"][q] / result["loadgen"][q] for q in ("p50_ms", "p99_ms")}
    result["ratios"] = ratios
    result["agree"] = all(abs(r - 1) <= TOLERANCE for r in ratios.values())
    print(json.dumps(result, indent=1))
    if args.out is not None:
        with args.out.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
