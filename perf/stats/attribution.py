"""Which operators moved: a profiled A/B's change per call, attributed to nodes and op types.

Input: rounds of profiled calls of A (REF, or a stored model) and B (the working tree), each
round a few calls of each side back to back (perf.scenarios.explain). Every quantity is a mean
per call, in ms, so the parts add up: the matched nodes' changes, the nodes only in B (added)
and only in A (removed), and the time outside node kernels sum to the change of the whole call.

Nodes are matched across the two graphs by name when both graphs have the same names, each with
the same op type and shapes (the exporter kept them stable); otherwise by aligning the two
execution orders on op type and input/output shapes (difflib's longest matching blocks), so an
inserted layer shows as added and does not shift every later node's match; where the orders
differ, a node both sides name alike (same op type) is still one node whose shapes changed.
``matching`` says which was used.

Each change has an interval from the rounds: per round the difference of the two sides' means,
then a Student t interval over rounds, Bonferroni-adjusted for the number of nodes (or op
types) so that noise in any one of many is unlikely to be named. Rounds are the replicates;
sessions are made anew every few rounds, so session effects are sampled, though rounds of one
session are not independent: the interval is somewhat narrow, as the A/B's tails are, and is
used only to keep noise from being named as a cause, never to gate. A change is *named* when
its interval excludes zero.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from scipy import stats


class NodeRun(Protocol):
    """One node's run in one call (perf.measure.profile.NodeRun)."""

    name: str
    op_type: str
    signature: str  # op type and shapes
    us: float


class CallProfile(Protocol):
    """One profiled call (perf.measure.profile.CallProfile)."""

    run_us: float
    nodes: Sequence[NodeRun]

    @property
    def outside_us(self) -> float: ...


BY_NAME = "node name"
BY_ORDER = "op type, shapes and execution order"
Rounds = Sequence[tuple[Sequence[CallProfile], Sequence[CallProfile]]]


@dataclasses.dataclass(frozen=True)
class Change:
    """A part of the call (a node, an op type, the time outside nodes) in A and B, ms per call,
    with the interval of B - A."""

    label: str
    op_type: str
    a_ms: float
    b_ms: float
    low_ms: float
    high_ms: float
    kind: str = "matched"  # matched, added (only in B), removed (only in A), outside, total

    @property
    def change_ms(self) -> float:
        return self.b_ms - self.a_ms

    @property
    def significant(self) -> bool:
        return self.low_ms > 0 or self.high_ms < 0

    def describe(self) -> str:
        what = {"added": " (only in B)", "removed": " (only in A)"}.get(self.kind, "")
        place = self.label if self.kind == "outside" else f"{self.op_type} {self.label}"
        return f"{self.change_ms:+.2f} ms in {place}{what}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "change_ms": self.change_ms,
                "significant": self.significant}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Attribution:
    matching: str
    total: Change  # the whole call (model_run)
    nodes: tuple[Change, ...]  # matched, added and removed nodes, largest change first
    op_types: tuple[Change, ...]  # the same, summed per op type (outside nodes last)
    outside: Change
    rounds: int
    calls: int  # profiled calls per side
    # Why the change is not split per node (no node events, control flow, graphs too unlike):
    # then only what can be told is shown, never a wrong attribution
    unattributed: str | None = None

    def named(self, limit: int = 5) -> list[Change]:
        """The largest changes the rounds can tell from noise, nodes and the outside time."""
        parts = [c for c in (*self.nodes, self.outside) if c.significant]
        return sorted(parts, key=lambda c: -abs(c.change_ms))[:limit]

    def line(self) -> str:
        """``+11.8 ms per call: +9.6 ms in Conv /encoder/convs.2, ..., +0.3 ms elsewhere``."""
        whole = (
            f"{self.total.change_ms:+.2f} ms per profiled call "
            f"(A {self.total.a_ms:.2f} ms, B {self.total.b_ms:.2f} ms): "
        )
        if self.unattributed and not self.nodes:
            return whole + f"not attributed per node: {self.unattributed}"
        named = self.named()
        rest = self.total.change_ms - sum(c.change_ms for c in named)
        parts = [c.describe() for c in named] + [f"{rest:+.2f} ms elsewhere"]
        return whole + ", ".join(parts)

    def op_type_line(self) -> str:
        """The op types whose change the rounds can tell from noise, largest first."""
        named = [c for c in self.op_types if c.significant and c.kind == "op_type"]
        parts = [f"{c.change_ms:+.2f} ms {c.label}" for c in named[:6]]
        return "by op type: " + (", ".join(parts) if parts else "no op type moved beyond noise")

    def to_dict(self) -> dict[str, Any]:
        return {
            "matching": self.matching,
            "rounds": self.rounds,
            "calls_per_side": self.calls,
            "total": self.total.to_dict(),
            "outside": self.outside.to_dict(),
            "nodes": [c.to_dict() for c in self.nodes],
            "op_types": [c.to_dict() for c in self.op_types],
            "unattributed": self.unattributed,
            "line": self.line(),
        }


def attribute(rounds: Rounds, confidence: float = 0.95) -> Attribution:
    """The change from A to B per call, part by part; needs two rounds or more."""
    if len(rounds) < 2 or any(not a or not b for a, b in rounds):
        raise ValueError("attribution needs two rounds or more, each with calls of A and B")
    a_first, b_first = rounds[0][0][0], rounds[0][1][0]
    pairs, matching = match_nodes(a_first, b_first)
    a_means = [_node_means(a) for a, _ in rounds]
    b_means = [_node_means(b) for _, b in rounds]
    parts: list[tuple[str, str, str, np.ndarray, np.ndarray]] = []
    for a_name, b_name, op_type in pairs:
        a = np.array([m.get(a_name, 0.0) for m in a_means]) if a_name else np.zeros(len(rounds))
        b = np.array([m.get(b_name, 0.0) for m in b_means]) if b_name else np.zeros(len(rounds))
        kind = "matched" if a_name and b_name else "added" if b_name else "removed"
        label = _label(a_name, b_name)
        parts.append((label, op_type, kind, a, b))
    # One interval per part, each at a Bonferroni-adjusted level, so that with many nodes the
    # chance of naming any unchanged one stays within 1 - confidence
    each = _adjusted(confidence, len(parts))
    nodes = tuple(sorted((_change(*p, each) for p in parts), key=lambda c: -abs(c.change_ms)))
    outside = _change(
        "outside nodes (session overhead, copies, gaps)", "", "outside",
        np.array([_mean([c.outside_us for c in a]) for a, _ in rounds]) / 1e3,
        np.array([_mean([c.outside_us for c in b]) for _, b in rounds]) / 1e3, confidence,
    )  # fmt: skip
    total = _change(
        "the call", "", "total",
        np.array([_mean([c.run_us for c in a]) for a, _ in rounds]) / 1e3,
        np.array([_mean([c.run_us for c in b]) for _, b in rounds]) / 1e3, confidence,
    )  # fmt: skip
    op_types = (*_by_op_type(parts, confidence), outside)
    unattributed = _unattributable(rounds) or _unlike(pairs, matching)
    if unattributed and not unattributed.startswith(TOO_UNLIKE):
        nodes, op_types = (), (outside,)  # per-op-type sums would be as wrong as the nodes
    elif unattributed:
        nodes = ()  # op types hold whatever the nodes are called
    return Attribution(
        matching, total, nodes, op_types, outside,
        rounds=len(rounds), calls=sum(len(a) for a, _ in rounds), unattributed=unattributed,
    )  # fmt: skip


CONTROL_FLOW = frozenset({"Loop", "If", "Scan"})
TOO_UNLIKE = "the two graphs share too few nodes"
MIN_MATCHED_SHARE = 0.5  # of the larger graph's nodes, matched by op type and shapes


def _unattributable(rounds: Rounds) -> str | None:
    """Why no node can be attributed: a side without node events, or control flow."""
    for side, calls in (("A", [c for a, _ in rounds for c in a]),
                        ("B", [c for _, b in rounds for c in b])):  # fmt: skip
        if not any(call.nodes for call in calls):
            return (
                f"the profile of {side} holds no per-node events (a provider that reports "
                "none, or one fused node); only the whole call is compared"
            )
        flow = sorted({n.op_type for call in calls for n in call.nodes} & CONTROL_FLOW)
        if flow:
            return (
                f"{side} has control flow ({', '.join(flow)}): its body's nodes run inside "
                "that node's time, so per-node parts would count them twice; only the whole "
                "call and the time outside nodes are compared"
            )
    return None


def _unlike(pairs: list[tuple[str | None, str | None, str]], matching: str) -> str | None:
    """Why nodes matched by execution order cannot be trusted: too few of them matched."""
    if matching == BY_NAME:
        return None
    matched = sum(1 for a, b, _ in pairs if a and b)
    largest = max(sum(1 for a, _, _ in pairs if a), sum(1 for _, b, _ in pairs if b))
    if largest and matched / largest >= MIN_MATCHED_SHARE:
        return None
    return (
        f"{TOO_UNLIKE} ({matched} of {largest} matched by name, op type and shapes) to pair "
        "them; per op type only"
    )


def match_nodes(
    a: CallProfile, b: CallProfile
) -> tuple[list[tuple[str | None, str | None, str]], str]:
    """(A's node or None, B's node or None, op type) for every node of either call, and how
    they were matched (BY_NAME or BY_ORDER)."""
    a_nodes = _first_runs(a)
    b_nodes = _first_runs(b)
    a_by_name = {n.name: n for n in a_nodes}
    same_names = a_by_name.keys() == {n.name for n in b_nodes}
    if same_names and all(a_by_name[n.name].signature == n.signature for n in b_nodes):
        return [(n.name, n.name, n.op_type) for n in b_nodes], BY_NAME
    matcher = difflib.SequenceMatcher(
        a=[n.signature for n in a_nodes], b=[n.signature for n in b_nodes], autojunk=False
    )
    pairs: list[tuple[str | None, str | None, str]] = [
        (a_nodes[i].name, b_nodes[j].name, b_nodes[j].op_type)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag == "equal"
        for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
    ]  # fmt: skip
    a_paired, b_paired = {a for a, _, _ in pairs}, {b for _, b, _ in pairs}
    a_left = [n for n in a_nodes if n.name not in a_paired]
    b_left = [n for n in b_nodes if n.name not in b_paired]
    return pairs + _pair_by_name(a_left, b_left), BY_ORDER


def _pair_by_name(
    a_nodes: Sequence[NodeRun], b_nodes: Sequence[NodeRun]
) -> list[tuple[str | None, str | None, str]]:
    """Nodes the execution orders left unpaired: one whose name and op type the other side has
    too is one node (its shapes or neighbours changed); the rest are only in A or B."""
    b_names = {(n.name, n.op_type) for n in b_nodes}
    a_names = {(n.name, n.op_type) for n in a_nodes}
    pairs = [(n.name, n.name if (n.name, n.op_type) in b_names else None, n.op_type)
             for n in a_nodes]  # fmt: skip
    return pairs + [(None, n.name, n.op_type) for n in b_nodes
                    if (n.name, n.op_type) not in a_names]  # fmt: skip


def _label(a_name: str | None, b_name: str | None) -> str:
    """B's name; A's too where a matched node was renamed."""
    if a_name and b_name and a_name != b_name:
        return f"{b_name} (A: {a_name})"
    return b_name or a_name or "?"


def _first_runs(call: CallProfile) -> list[NodeRun]:
    """Each node once, at its first run in the call (a node inside a loop runs again)."""
    seen: dict[str, NodeRun] = {}
    for node in call.nodes:
        seen.setdefault(node.name, node)
    return list(seen.values())


def _node_means(calls: Sequence[CallProfile]) -> dict[str, float]:
    """Mean ms per call of each node over ``calls`` (a node's runs within a call summed)."""
    totals: dict[str, float] = {}
    for call in calls:
        for node in call.nodes:
            totals[node.name] = totals.get(node.name, 0.0) + node.us
    return {name: us / len(calls) / 1e3 for name, us in totals.items()}


def _by_op_type(
    parts: list[tuple[str, str, str, np.ndarray, np.ndarray]], confidence: float
) -> list[Change]:
    grouped: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for _label, op_type, _kind, a, b in parts:
        sum_a, sum_b = grouped.get(op_type, (np.zeros_like(a), np.zeros_like(b)))
        grouped[op_type] = (sum_a + a, sum_b + b)
    each = _adjusted(confidence, len(grouped))
    changes = [_change(op, op, "op_type", a, b, each) for op, (a, b) in grouped.items()]
    return sorted(changes, key=lambda c: -abs(c.change_ms))


def _change(
    label: str, op_type: str, kind: str, a: np.ndarray, b: np.ndarray, confidence: float
) -> Change:
    differences = b - a
    mean = float(np.mean(differences))
    spread = float(np.std(differences, ddof=1)) / math.sqrt(len(differences))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(differences) - 1)) * spread
    return Change(label, op_type, float(np.mean(a)), float(np.mean(b)), mean - half,
                  mean + half, kind)  # fmt: skip


def _adjusted(confidence: float, parts: int) -> float:
    return 1 - (1 - confidence) / max(1, parts)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
