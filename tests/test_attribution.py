"""Why is it slower: onnxruntime traces read per call, and a profiled A/B's change attributed to
the nodes and op types that moved (synthetic profiles: known answers, no clock)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from perf.measure.profile import (
    CallProfile,
    NodeRun,
    ProfiledSession,
    op_type_breakdown,
    parse_trace,
)
from perf.measure.sessions import SessionSettings, open_session
from perf.stats.attribution import BY_NAME, BY_ORDER, attribute, match_nodes

# A graph: (name, op type, shapes) in execution order, and each node's true time in us
GRAPH = [("conv0", "Conv", "[1,1,48000]"), ("gelu0", "Gelu", "[1,512,9599]"),
         ("conv1", "Conv", "[1,512,9599]"), ("mm0", "MatMul", "[1,149,512]"),
         ("ln", "LayerNormalization", "[1,149,512]"), ("mm1", "MatMul", "[1,149,512]")]  # fmt: skip
TIMES = {"conv0": 900.0, "gelu0": 200.0, "conv1": 3000.0, "mm0": 400.0, "ln": 50.0, "mm1": 400.0}


def _call(
    graph: list[tuple[str, str, str]], times: dict[str, float], rng: np.random.Generator,
    outside_us: float = 300.0, noise: float = 0.03,
) -> CallProfile:  # fmt: skip
    nodes = tuple(
        NodeRun(name, op, f"{op} {shape}", times[name] * float(np.exp(rng.normal(0, noise))), 1,
                "CPUExecutionProvider")
        for name, op, shape in graph
    )  # fmt: skip
    return CallProfile(sum(n.us for n in nodes) + outside_us, nodes)


def _rounds(a_graph, a_times, b_graph, b_times, seed=0, rounds=12, calls=4):
    rng = np.random.default_rng(seed)
    return [
        ([_call(a_graph, a_times, rng) for _ in range(calls)],
         [_call(b_graph, b_times, rng) for _ in range(calls)])
        for _ in range(rounds)
    ]  # fmt: skip


def test_one_slower_node_is_named_and_nothing_else() -> None:
    slower = {**TIMES, "conv1": 3600.0}  # +0.6 ms in one Conv

    why = attribute(_rounds(GRAPH, TIMES, GRAPH, slower))

    assert why.matching == BY_NAME
    (named,) = why.named()
    assert (named.label, named.op_type, named.kind) == ("conv1", "Conv", "matched")
    assert named.change_ms == pytest.approx(0.6, abs=0.05)
    assert named.low_ms > 0
    assert float(why.line().split(" ms ")[0]) == pytest.approx(0.6, abs=0.05)
    assert f"{named.change_ms:+.2f} ms in Conv conv1" in why.line()
    conv = next(c for c in why.op_types if c.label == "Conv")
    assert conv.significant and f"{conv.change_ms:+.2f} ms Conv" in why.op_type_line()


def test_the_parts_add_up_to_the_whole_call() -> None:
    slower = {**TIMES, "conv1": 3600.0, "mm0": 300.0}
    why = attribute(_rounds(GRAPH, TIMES, GRAPH, slower))
    parts = sum(c.change_ms for c in why.nodes) + why.outside.change_ms
    assert parts == pytest.approx(why.total.change_ms, abs=1e-9)
    by_type = sum(c.change_ms for c in why.op_types)  # the outside row is among them, last
    assert by_type == pytest.approx(why.total.change_ms, abs=1e-9)


def test_an_inserted_layer_is_added_and_later_nodes_keep_their_match() -> None:
    # The exporter renumbers names after an insertion: names cannot match, execution order can
    inserted = [*GRAPH[:4], ("mm_new", "MatMul", "[1,149,512]"), *GRAPH[4:]]
    renamed = [(f"node_{i}", op, shape) for i, (_, op, shape) in enumerate(inserted)]
    b_times = {f"node_{i}": {**TIMES, "mm_new": 400.0}[name]
               for i, (name, _, _) in enumerate(inserted)}  # fmt: skip

    why = attribute(_rounds(GRAPH, TIMES, renamed, b_times))

    assert why.matching == BY_ORDER
    added = [c for c in why.nodes if c.kind == "added"]
    assert len(added) == 1 and added[0].op_type == "MatMul"
    assert added[0].a_ms == 0 and added[0].b_ms == pytest.approx(0.4, rel=0.05)
    assert all(c.kind == "matched" for c in why.nodes if c is not added[0])
    assert why.named()[0] is added[0]
    assert "(only in B)" in why.line()
    conv1 = next(c for c in why.nodes if c.label == "node_2 (A: conv1)")
    assert not conv1.significant


def test_a_removed_node_is_only_in_a() -> None:
    fewer = [g for g in GRAPH if g[0] != "ln"]
    pairs, matching = match_nodes(_call(GRAPH, TIMES, np.random.default_rng(0)),
                                  _call(fewer, TIMES, np.random.default_rng(0)))  # fmt: skip
    assert matching == BY_ORDER
    assert ("ln", None, "LayerNormalization") in pairs


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_an_unchanged_model_names_no_node_in_most_runs(seed: int) -> None:
    # 6 nodes, 3% per-call noise: the Bonferroni-adjusted intervals keep noise from being
    # named; over 25 seeds at most a couple may name one (5% family-wise per run)
    why = attribute(_rounds(GRAPH, TIMES, GRAPH, TIMES, seed=seed))
    nodes_named = [c for c in why.named() if c.kind != "outside"]
    assert len(nodes_named) <= 1


def test_unchanged_runs_rarely_name_anything_over_many_seeds() -> None:
    named = sum(bool(attribute(_rounds(GRAPH, TIMES, GRAPH, TIMES, seed=s)).named())
                for s in range(60))  # fmt: skip
    assert named <= 6  # 5% family-wise per run for nodes, plus the outside and total lines


def test_one_round_is_refused() -> None:
    with pytest.raises(ValueError, match="two rounds or more"):
        attribute(_rounds(GRAPH, TIMES, GRAPH, TIMES, rounds=1))


# --- the trace -----------------------------------------------------------------------------------


def _event(cat: str, name: str, ts: int, dur: int, **args: object) -> dict:
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, "ph": "X", "args": args}


def test_node_events_belong_to_the_model_run_that_holds_them() -> None:
    shapes = {"input_type_shape": [{"float": [1, 8]}], "output_type_shape": [{"float": [1, 8]}]}
    threads = {"sub_threads": {"1": {"num_run": 2}, "2": {"num_run": 0}}}
    events = [
        _event("Session", "session_initialization", 0, 50),
        _event("Node", "early_kernel_time", 60, 5, op_name="Add"),  # before any call: dropped
        _event("Session", "model_run", 100, 40),
        _event("Node", "a_kernel_time", 102, 10, op_name="MatMul", provider="CPUExecutionProvider",
               thread_scheduling_stats=threads, **shapes),
        _event("Node", "b_fence_before", 113, 0, op_name="Relu"),  # not a kernel: ignored
        _event("Node", "b_kernel_time", 113, 20, op_name="Relu"),
        _event("Session", "model_run", 200, 30),
        _event("Node", "a_kernel_time", 201, 12, op_name="MatMul", **shapes),
    ]  # fmt: skip

    first, second = parse_trace(json.loads(json.dumps(events)))

    assert [n.name for n in first.nodes] == ["a", "b"] and [n.name for n in second.nodes] == ["a"]
    assert first.run_us == 40 and first.outside_us == 10
    assert first.nodes[0].threads == 2  # the calling thread and one helper that ran
    assert first.nodes[0].signature == second.nodes[0].signature != first.nodes[1].signature
    assert first.nodes[0].provider == "CPUExecutionProvider"


def test_the_breakdown_per_op_type_covers_the_call() -> None:
    rng = np.random.default_rng(0)
    rows = op_type_breakdown([_call(GRAPH, TIMES, rng) for _ in range(5)])
    assert rows[-1]["op_type"] == "(outside nodes)"
    assert math.isclose(sum(r["share"] for r in rows), 1.0)
    assert rows[0]["op_type"] == "Conv" and rows[0]["nodes"] == 2
    assert [r["ms"] for r in rows[:-1]] == sorted((r["ms"] for r in rows[:-1]), reverse=True)


# --- what cannot be attributed is said, never attributed wrongly ------------------------------


def test_a_side_without_node_events_is_compared_as_a_whole_call_only() -> None:
    fused = _rounds(GRAPH, TIMES, [], {})  # B: a provider that reports no per-node events

    why = attribute(fused)

    assert why.nodes == () and why.op_types == (why.outside,)
    assert "the profile of B holds no per-node events" in (why.unattributed or "")
    assert "not attributed per node: the profile of B holds no per-node events" in why.line()


def test_graphs_too_unlike_are_attributed_per_op_type_only() -> None:
    # every node of B has other shapes (a wholesale rewrite): order matching pairs nothing
    rewritten = [(f"n{i}", op, "[1,2,3]") for i, (_, op, _) in enumerate(GRAPH)]
    times = {f"n{i}": TIMES[name] * 1.5 for i, (name, _, _) in enumerate(GRAPH)}

    why = attribute(_rounds(GRAPH, TIMES, rewritten, times))

    assert why.nodes == () and why.unattributed is not None
    assert why.unattributed.startswith("the two graphs share too few nodes (0 of 6 matched")
    conv = next(c for c in why.op_types if c.label == "Conv")
    assert conv.change_ms == pytest.approx(0.5 * (900 + 3000) / 1e3, rel=0.05)  # still right
    assert "by op type: " in why.op_type_line()


def _loop_model(path: Path, trips: int) -> Path:
    """y = x @ W, ``trips`` times in a Loop: control flow whose body runs inside the Loop."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_in", "w"], ["x_out"], name="body_matmul"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [64, 64])],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], name="loop", body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])],
        [numpy_helper.from_array(np.array(trips, np.int64), "trips"),
         numpy_helper.from_array(np.array(True), "cond"),
         numpy_helper.from_array(np.eye(64, dtype=np.float32), "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_control_flow_is_named_and_its_body_not_counted_twice(tmp_path: Path) -> None:
    settings = SessionSettings(provider="cpu", intra_op_threads=1, spinning=False)
    feed = {"x": np.ones((64, 64), np.float32)}
    rounds = []
    for trips in (4, 4, 4):
        sides = []
        for path in (_loop_model(tmp_path / "a.onnx", 4), _loop_model(tmp_path / "b.onnx", 8)):
            session = ProfiledSession(functools.partial(open_session, path, settings), feed)
            for _ in range(trips):
                session()
            sides.append(session.calls())
        rounds.append((sides[0], sides[1]))

    why = attribute(rounds)

    assert "A has control flow (Loop)" in (why.unattributed or "")
    assert why.nodes == () and why.op_types == (why.outside,)
    assert why.total.change_ms > 0  # B runs its body twice as often: the whole call says so
