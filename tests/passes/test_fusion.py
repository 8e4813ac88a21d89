"""Fusion: groups follow from op kinds and post-dominators; every unfused edge says why; results do not change."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passes_util import f32, finish, run
from graphc.errors import InvalidGraphError
from graphc.ir import Graph
from graphc.passes.fusion import MAX_GROUP_OPS, REASONS, fuse
from graphc.passes.manager import random_feeds


def _fuse_and_compare(g: Graph, **kw):
    feeds = random_feeds(g, seed=3)
    before = run(g, feeds)
    ref = g.copy()
    report = fuse(g, **kw)
    g.verify()
    after = run(g, feeds)
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(ref.nodes) == report.nodes_before
    assert len(g.nodes) == report.nodes_after
    return report


def _groups(g: Graph) -> list[list[str]]:
    return [[n.op_type for n in node.attrs["body"].nodes] for node in g.nodes if node.op_type == "FusedGroup"]


def _reason(report, producer: str, consumer: str) -> tuple[str, str]:
    hits = [(e.reason, e.detail) for e in report.unfused if e.producer == producer and e.consumer == consumer]
    assert hits, f"no unfused edge {producer} -> {consumer} in {report.unfused}"
    return hits[0]


def _conv_block():
    g = Graph()
    x = g.add_input("x", f32(1, 3, 8, 8))
    w = g.add_constant(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = g.add_constant(np.random.default_rng(1).standard_normal((1, 4, 1, 1)).astype(np.float32), "b")
    c = g.add_node("Conv", [x, w], {"pads": [1, 1, 1, 1]}, name="conv").outputs[0]
    a = g.add_node("Add", [c, b], name="bias").outputs[0]
    r = g.add_node("Relu", [a], name="relu").outputs[0]
    return g, r


def test_conv_takes_bias_and_activation_as_epilogue():
    g, r = _conv_block()
    finish(g, r)
    report = _fuse_and_compare(g)
    assert _groups(g) == [["Conv", "Add", "Relu"]]
    (node,) = g.nodes
    assert node.domain == "graphc" and node.attrs["kind"] == "out_fusable"
    assert report.groups[0].ops == ["Conv", "Add", "Relu"] and not report.unfused
    assert g.outputs[0] is r and r.producer is node  # the graph output keeps its Value and name
    assert "w" in g.constants and "b" not in g.constants  # the weight is a body input; the small bias moved in


def test_residual_add_joins_the_second_conv_and_the_shared_value_is_explained():
    g = Graph()
    x = g.add_input("x", f32(1, 4, 6, 6))
    w1 = g.add_constant(np.full((4, 4, 1, 1), 0.1, np.float32), "w1")
    w2 = g.add_constant(np.full((4, 4, 1, 1), 0.2, np.float32), "w2")
    r0 = g.add_node("Relu", [x], name="r0").outputs[0]
    c1 = g.add_node("Conv", [r0, w1], name="c1").outputs[0]
    r1 = g.add_node("Relu", [c1], name="r1").outputs[0]
    c2 = g.add_node("Conv", [r1, w2], name="c2").outputs[0]
    s = g.add_node("Add", [c2, r0], name="res").outputs[0]
    out = g.add_node("Relu", [s], name="r2").outputs[0]
    finish(g, out)
    report = _fuse_and_compare(g)
    assert sorted(_groups(g)) == [["Conv", "Add", "Relu"], ["Conv", "Relu"]]
    assert _reason(report, "r0", "c1")[0] == "kind"
    reason, detail = _reason(report, "r0", "res")
    assert reason == "multiple consumers" and "c1" in detail and "out-fusable" in detail
    assert _reason(report, "r1", "c2") == ("kind", "Conv 'c2' is out-fusable: it takes the ops after it as an "
                                                   "epilogue, never the ops before it")


def test_elementwise_chain_becomes_one_group():
    g = Graph()
    x = g.add_input("x", f32(2, 5))
    v = x
    for op in ("Exp", "Neg", "Sigmoid", "Tanh", "Relu"):
        v = g.add_node(op, [v]).outputs[0]
    y = g.add_node("Mul", [v, x]).outputs[0]
    finish(g, y)
    _fuse_and_compare(g)
    assert _groups(g) == [["Exp", "Neg", "Sigmoid", "Tanh", "Relu", "Mul"]]
    assert g.nodes[0].attrs["kind"] == "broadcast"


def test_reduction_takes_a_prologue_but_no_epilogue():
    g = Graph()
    x = g.add_input("x", f32(3, 4))
    sq = g.add_node("Mul", [x, x], name="sq").outputs[0]
    axes = g.add_constant(np.array([1], np.int64), "axes")
    s = g.add_node("ReduceSum", [sq, axes], name="sum").outputs[0]
    y = g.add_node("Sqrt", [s], name="sqrt").outputs[0]
    finish(g, y)
    report = _fuse_and_compare(g)
    assert _groups(g) == [["Mul", "ReduceSum"]]
    reason, detail = _reason(report, "sum", "sqrt")
    assert reason == "kind" and "reductions take no epilogue" in detail


def test_broadcast_up_is_a_shape_reason():
    g = Graph()
    x = g.add_input("x", f32(1, 4, 5, 5))
    p = g.add_input("p", f32(1, 4, 1, 1))
    s = g.add_node("Sigmoid", [p], name="gate").outputs[0]
    y = g.add_node("Mul", [s, x], name="scale").outputs[0]
    finish(g, y)
    report = _fuse_and_compare(g)
    assert _groups(g) == []
    reason, detail = _reason(report, "gate", "scale")
    assert reason == "shape" and "broadcasts %gate" in detail


def test_graph_output_read_again_is_not_fused():
    g = Graph()
    x = g.add_input("x", f32(4))
    a = g.add_node("Relu", [x], name="a").outputs[0]
    b = g.add_node("Exp", [a], name="b").outputs[0]
    finish(g, a, b)
    report = _fuse_and_compare(g)
    assert _groups(g) == []
    assert _reason(report, "a", "b")[0] == "graph output"


def test_one_out_fusable_op_per_group():
    g = Graph()
    x = g.add_input("x", f32(2, 3))
    w1 = g.add_constant(np.ones((3, 4), np.float32), "w1")
    w2 = g.add_constant(np.ones((3, 4), np.float32) * 2, "w2")
    m1 = g.add_node("MatMul", [x, w1], name="m1").outputs[0]
    m2 = g.add_node("MatMul", [x, w2], name="m2").outputs[0]
    s = g.add_node("Add", [m1, m2], name="add").outputs[0]
    finish(g, s)
    report = _fuse_and_compare(g)
    assert _groups(g) == [["MatMul", "Add"]]
    reason, detail = _reason(report, "m2", "add")
    assert reason == "kind" and "two out-fusable ops" in detail


def test_opaque_ops_and_injective_chains():
    g = Graph()
    x = g.add_input("x", f32(1, 4, 6, 6))
    p = g.add_node("MaxPool", [x], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="pool").outputs[0]
    r = g.add_node("Relu", [p], name="relu").outputs[0]
    shape = g.add_constant(np.array([1, 2, 2, 3, 3], np.int64), "shape")
    a = g.add_node("Reshape", [r, shape], name="split_channels").outputs[0]
    t = g.add_node("Transpose", [a], {"perm": [0, 2, 1, 3, 4]}, name="shuffle").outputs[0]
    back = g.add_constant(np.array([1, 4, 3, 3], np.int64), "back")
    y = g.add_node("Reshape", [t, back], name="merge").outputs[0]
    finish(g, y)
    report = _fuse_and_compare(g)
    assert _groups(g) == [["Reshape", "Transpose", "Reshape"]]
    assert g.nodes[-1].attrs["kind"] == "injective"
    reason, detail = _reason(report, "pool", "relu")
    assert reason == "kind" and "MaxPool 'pool' is opaque" in detail
    reason, detail = _reason(report, "relu", "split_channels")
    assert reason == "kind" and "injective" in detail


def test_size_limit_splits_a_long_chain():
    g = Graph()
    v = g.add_input("x", f32(3))
    for i in range(MAX_GROUP_OPS + 10):
        v = g.add_node("Relu" if i % 2 else "Neg", [v], name=f"op{i}").outputs[0]
    finish(g, v)
    report = _fuse_and_compare(g)
    sizes = sorted(len(ops) for ops in _groups(g))
    assert sizes == [10, MAX_GROUP_OPS]
    assert [e.reason for e in report.unfused] == ["size limit"]


def test_explain_lists_every_unfused_edge_with_a_known_reason():
    g, r = _conv_block()
    p = g.add_node("MaxPool", [r], {"kernel_shape": [2, 2]}, name="pool").outputs[0]
    finish(g, p)
    report = fuse(g)
    text = report.explain()
    assert "fused_relu [out_fusable]: Conv + Add + Relu" in text
    assert "Relu 'relu' -> MaxPool 'pool' (%relu): kind: MaxPool 'pool' is opaque" in text
    assert all(e.reason in REASONS for e in report.unfused)
    assert report.reason_counts() == {"kind": 1}


def test_fusing_twice_changes_nothing_more():
    g, r = _conv_block()
    finish(g, r)
    fuse(g)
    before = [n.name for n in g.nodes]
    report = fuse(g)
    assert [n.name for n in g.nodes] == before and not report.groups


def test_a_non_convex_grouping_would_be_refused(monkeypatch):
    """The final topological sort is the safety net: a group that a path leaves and re-enters is a cycle."""
    import graphc.passes.fusion as fusion

    g = Graph()
    x = g.add_input("x", f32(4))
    a = g.add_node("Neg", [x], name="a").outputs[0]
    m = g.add_node("MaxPool", [g.add_node("Unsqueeze", [a, g.add_constant(np.array([0, 1], np.int64))],
                                          name="u").outputs[0]], {"kernel_shape": [1]}, name="pool").outputs[0]
    sq = g.add_node("Squeeze", [m, g.add_constant(np.array([0, 1], np.int64))], name="sq").outputs[0]
    y = g.add_node("Add", [a, sq], name="y").outputs[0]
    finish(g, y)
    real_run = fusion._Fuser.run

    def bad_run(self):
        real_run(self)
        merged = fusion._Group([0, len(self.nodes) - 1], fusion.Kind.BROADCAST, None)  # a and y, not pool
        self.group[0] = self.group[len(self.nodes) - 1] = merged

    monkeypatch.setattr(fusion._Fuser, "run", bad_run)
    with pytest.raises(InvalidGraphError, match="cycle"):
        fuse(g)


# ---- differential: random graphs, fused vs not ---------------------------------------------------
_UNARY = ("Relu", "Neg", "Exp", "Sigmoid", "Tanh", "Abs")
_BINARY = ("Add", "Mul", "Sub", "Max")


def _random_graph(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph()
    # every value has dims in {1, 2} then {1, 4}, {1, 4}: any two broadcast together
    x = g.add_input("x", f32(2, 4, 4))
    vals = [x, g.add_input("y", f32(1, 4, 1))]
    for i in range(int(rng.integers(4, 14))):
        kind = rng.integers(0, 5)
        a = vals[int(rng.integers(0, len(vals)))]
        if kind == 0:
            v = g.add_node(_UNARY[int(rng.integers(0, len(_UNARY)))], [a], name=f"n{i}").outputs[0]
        elif kind == 1:
            b = vals[int(rng.integers(0, len(vals)))]
            v = g.add_node(_BINARY[int(rng.integers(0, len(_BINARY)))], [a, b], name=f"n{i}").outputs[0]
        elif kind == 2 and a.type is not None:
            w = g.add_constant(rng.standard_normal((a.type.shape[-1], 4)).astype(np.float32), f"w{i}")
            v = g.add_node("MatMul", [a, w], name=f"n{i}").outputs[0]
        elif kind == 3:
            axes = g.add_constant(np.array([int(rng.integers(-1, 1))], np.int64), f"axes{i}")
            v = g.add_node("ReduceSum", [a, axes], name=f"n{i}").outputs[0]
        else:
            v = g.add_node("Transpose", [a], {"perm": [0, 2, 1]}, name=f"n{i}").outputs[0]
        finish_types(g)
        vals.append(v)
    outs = [vals[-1]] + ([vals[-3]] if rng.integers(0, 2) and len(vals) > 4 else [])
    return finish(g, *dict.fromkeys(outs))


def finish_types(g: Graph) -> None:
    from graphc.ops.registry import get_opdef
    from graphc.passes import infer_shapes

    for n in g.nodes:
        get_opdef(n).complete_attrs(n)
    infer_shapes(g)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_random_graphs_compute_the_same_after_fusion(seed):
    g = _random_graph(seed)
    _fuse_and_compare(g)
