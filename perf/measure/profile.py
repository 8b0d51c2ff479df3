"""Where a call's time goes: onnxruntime's own profiler, read per call and per node.

A session made with ``SessionOptions.enable_profiling`` writes a Chrome trace at
``end_profiling()``: one ``model_run`` event per call (cat ``Session``) and one
``<node name>_kernel_time`` event per node run (cat ``Node``, with ``op_name``, the provider,
input and output shapes and the intra-op threads that took part). Profiling adds per-node
overhead (onnxruntime issue #20238: large on small nodes), so profiled calls are never timed
calls: they explain a verdict, they do not make one.

What the profile cannot see: time outside node kernels (session overhead, input copies, the
gaps between nodes) is the call's ``model_run`` less its nodes; on GPU providers a node's
kernel time is the host-side launch unless onnxruntime was built with CUDA profiling, and
TensorRT runs the whole graph as one fused node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

KERNEL_SUFFIX = "_kernel_time"


@dataclasses.dataclass(frozen=True)
class NodeRun:
    """One node's run inside one call."""

    name: str
    op_type: str
    signature: str  # op type, input and output shapes: what matches nodes across graphs
    us: float
    threads: int  # intra-op threads that ran part of it (1 = the calling thread alone)
    provider: str


@dataclasses.dataclass(frozen=True)
class CallProfile:
    """One profiled call: its ``model_run`` and its nodes in execution order."""

    run_us: float
    nodes: tuple[NodeRun, ...]

    @property
    def outside_us(self) -> float:
        """What the node events do not cover: session overhead, copies, gaps between nodes."""
        return self.run_us - sum(node.us for node in self.nodes)


def parse_trace(events: Sequence[Mapping[str, Any]]) -> list[CallProfile]:
    """The calls of a trace, in order; each node event belongs to the ``model_run`` whose span
    holds its start (events of calls made before the first ``model_run`` are dropped)."""
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )
    nodes = sorted(
        (e for e in events
         if e.get("cat") == "Node" and str(e.get("name", "")).endswith(KERNEL_SUFFIX)),
        key=lambda e: e["ts"],
    )  # fmt: skip
    calls: list[list[NodeRun]] = [[] for _ in runs]
    index = 0
    for event in nodes:
        while index < len(runs) and event["ts"] > runs[index]["ts"] + runs[index]["dur"]:
            index += 1
        if index == len(runs):
            break
        if event["ts"] >= runs[index]["ts"]:
            calls[index].append(_node_run(event))
    return [CallProfile(float(run["dur"]), tuple(n)) for run, n in zip(runs, calls, strict=True)]


def _node_run(event: Mapping[str, Any]) -> NodeRun:
    args = event.get("args") or {}
    op_type = str(args.get("op_name", "?"))
    shapes = json.dumps([args.get("input_type_shape"), args.get("output_type_shape")])
    stats = args.get("thread_scheduling_stats") or {}
    helpers = (stats.get("sub_threads") or {}).values()
    threads = 1 + sum(1 for t in helpers if isinstance(t, Mapping) and t.get("num_run", 0) > 0)
    return NodeRun(
        name=str(event["name"])[: -len(KERNEL_SUFFIX)],
        op_type=op_type,
        signature=f"{op_type} {shapes}",
        us=float(event.get("dur", 0.0)),
        threads=threads,
        provider=str(args.get("provider", "")),
    )


class ProfiledSession:
    """A session that profiles every call; ``calls()`` ends profiling and reads the trace
    (once; the trace file is removed)."""

    def __init__(self, open_session: Callable[[Any], Any], inputs: Mapping[str, Any]) -> None:
        """``open_session(options_hook)``: makes the session, calling ``options_hook`` on its
        SessionOptions first (perf.measure.sessions.open_session's ``configure``)."""
        self._dir = tempfile.mkdtemp(prefix="perf-profile-")

        def profiling(options: Any) -> None:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(self._dir, "trace")

        self.session = open_session(profiling)
        self.feed = dict(inputs)
        self._calls: list[CallProfile] | None = None

    def __call__(self) -> Any:
        return self.session.run(None, self.feed)

    def calls(self) -> list[CallProfile]:
        if self._calls is None:
            path = Path(self.session.end_profiling())
            try:
                self._calls = parse_trace(json.loads(path.read_text()))
            finally:
                path.unlink(missing_ok=True)
                _remove_empty(Path(self._dir))
        return self._calls


def _remove_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: someone else's files, left alone
        directory.rmdir()


def node_providers(calls: Iterable[CallProfile]) -> dict[str, int]:
    """Nodes executed by each provider (each node once, however often it ran), most first."""
    nodes = {node.name: node.provider for call in calls for node in call.nodes if node.provider}
    return dict(Counter(nodes.values()).most_common())


def op_type_breakdown(calls: Iterable[CallProfile]) -> list[dict[str, Any]]:
    """Per op type, over the calls: mean ms per call, share of the call, nodes of that type,
    runs per node per call, and mean threads; the time outside nodes as its own row."""
    calls = list(calls)
    if not calls:
        return []
    run_us = sum(c.run_us for c in calls) / len(calls)
    rows: dict[str, dict[str, Any]] = {}
    for call in calls:
        for node in call.nodes:
            row = rows.setdefault(
                node.op_type, {"us": 0.0, "runs": 0, "threads": 0, "names": set()}
            )
            row["us"] += node.us
            row["runs"] += 1
            row["threads"] += node.threads
            row["names"].add(node.name)
    table = [
        {
            "op_type": op_type,
            "ms": row["us"] / len(calls) / 1e3,
            "share": row["us"] / len(calls) / run_us if run_us > 0 else float("nan"),
            "nodes": len(row["names"]),
            "runs_per_node": row["runs"] / len(calls) / len(row["names"]),
            "threads": row["threads"] / row["runs"],
        }
        for op_type, row in rows.items()
    ]
    outside_us = sum(c.outside_us for c in calls) / len(calls)
    table.sort(key=lambda r: -r["ms"])
    table.append({
        "op_type": "(outside nodes)", "ms": outside_us / 1e3,
        "share": outside_us / run_us if run_us > 0 else float("nan"),
        "nodes": 0, "runs_per_node": 0.0, "threads": 0.0,
    })  # fmt: skip
    return table


PROFILE_SECONDS = 3.0  # of profiled calls per benchmark (--perf-profile), 5 to 50 calls


def breakdown(
    open_profiled: Callable[[], ProfiledSession], typical_ms: float, warmup_calls: int = 3
) -> list[dict[str, Any]]:
    """A fresh profiled session's per-op-type breakdown (``op_type_breakdown``) over about
    PROFILE_SECONDS of calls, after ``warmup_calls`` that are left out."""
    calls = max(5, min(50, int(PROFILE_SECONDS * 1e3 / max(typical_ms, 1e-3))))
    session = open_profiled()
    for _ in range(warmup_calls + calls):
        session()
    return op_type_breakdown(session.calls()[warmup_calls:])


def breakdown_lines(rows: Sequence[Mapping[str, Any]], provider: str, top: int = 8) -> list[str]:
    """The breakdown as lines for people: op type, ms and share of the call, nodes, threads."""
    lines = [
        f"  {r['op_type']:<28} {r['ms']:8.2f} ms {r['share']:6.1%}"
        + (f"  {r['nodes']} nodes x{r['runs_per_node']:g}, {r['threads']:.1f} threads"
           if r["nodes"] else "")
        for r in [*rows[:-1][:top], rows[-1]]
    ]  # fmt: skip
    if provider != "CPUExecutionProvider":
        lines.append(f"  ({provider}: {GPU_CAVEAT})")
    return lines


GPU_CAVEAT = (
    "node times are what the host sees (kernel launches) unless onnxruntime was built with "
    "CUDA profiling; TensorRT runs its part of the graph as one fused node"
)


def profile_change(
    stored: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per op type (and the time outside nodes), ms per call in a stored profile and now, and
    the change, largest first. Not interleaved: the machine's drift between the two scales
    every op type alike, so a cause stands out by moving more than its share of the call."""
    before = {row["op_type"]: row for row in stored}
    after = {row["op_type"]: row for row in now}
    rows = [
        {
            "op_type": op_type,
            "stored_ms": float(before.get(op_type, {}).get("ms", 0.0)),
            "now_ms": float(after.get(op_type, {}).get("ms", 0.0)),
            "stored_share": before.get(op_type, {}).get("share"),
            "now_share": after.get(op_type, {}).get("share"),
        }
        for op_type in dict.fromkeys([*before, *after])
    ]
    for row in rows:
        row["change_ms"] = row["now_ms"] - row["stored_ms"]
    return sorted(rows, key=lambda r: -abs(r["change_ms"]))


def profile_change_line(rows: Sequence[Mapping[str, Any]], top: int = 4) -> str:
    """``+9.60 ms Conv (31% -> 38% of the call), ...`` for the op types that moved most."""

    def share(value: float | None) -> str:
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.0%}"

    parts = [
        f"{r['change_ms']:+.2f} ms {r['op_type']} ({share(r['stored_share'])} -> "
        f"{share(r['now_share'])} of the call)"
        for r in rows[:top]
    ]
    return ", ".join(parts) + " (stored profile vs now, not interleaved: drift moves all alike)"
