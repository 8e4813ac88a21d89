"""Sequence and optional ops: element-type inference, errors, and values against onnx's reference evaluator."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.errors import ExecutionError, ShapeError
from graphc.ir import DType, Graph, TensorType
from graphc.ir.types import OptionalType, SequenceType
from graphc.ops import lookup
from graphc.passes import infer_shapes
from oputil import T

F32, I64 = DType.float32, DType.int64
RNG = np.random.default_rng(1)

def build(ops: list) -> tuple[Graph, list]:
    """ops: list of (op, [input refs], attrs); refs are TensorTypes/SequenceTypes (new graph inputs), arrays
    (constants) or ints (the output of an earlier op). Returns the graph and every op's output value."""
    g = Graph("t")
    outs = []
    for op, refs, attrs in ops:
        ins = []
        for j, r in enumerate(refs):
            if r is None:
                ins.append(None)
            elif isinstance(r, int):
                ins.append(outs[r])
            elif isinstance(r, np.ndarray):
                ins.append(g.add_constant(r, f"c{len(outs)}_{j}"))
            else:
                ins.append(g.add_input(f"x{len(outs)}_{j}", r))
        n = g.add_node(op, ins, attrs)
        lookup("", op).complete_attrs(n)
        outs.append(n.outputs[0])
    g.outputs = [outs[-1]]
    infer_shapes(g)
    return g, outs


def is_fresh(d) -> bool:
    return isinstance(d, str) and d.startswith("unk__")


# ---- inference -----------------------------------------------------------------------------------------
def test_construct_insert_at_keep_element_types():
    _, (seq, ins, at, n) = build([
        ("SequenceConstruct", [T(F32, "N", 3), T(F32, "N", 3)], {}),
        ("SequenceInsert", [0, T(F32, "N", 4)], {}),
        ("SequenceAt", [1, np.array(0, np.int64)], {}),
        ("SequenceLength", [1], {}),
    ])
    assert seq.type == SequenceType(T(F32, "N", 3))
    elem = ins.type.elem
    assert elem.shape[0] == "N" and is_fresh(elem.shape[1])  # 3 and 4 differ: a fresh dim
    assert at.type == elem
    assert n.type == T(I64)


def test_split_to_sequence_and_concat_from_sequence_shapes():
    _, (s1, c1) = build([("SplitToSequence", [T(F32, "N", 6)], {"axis": 1, "keepdims": 0}),
                         ("ConcatFromSequence", [0], {"axis": 0, "new_axis": 1})])
    assert s1.type == SequenceType(T(F32, "N"))
    assert c1.type.shape[1] == "N" and is_fresh(c1.type.shape[0])
    _, (s2,) = build([("SplitToSequence", [T(F32, "N", 6), np.array(2, np.int64)], {"axis": 1})])
    assert s2.type == SequenceType(T(F32, "N", 2))
    _, (e,) = build([("SequenceEmpty", [], {"dtype": TP.INT32})])
    assert e.type == SequenceType(TensorType(DType.int32, None))


def test_optional_types():
    _, (o, h, g) = build([("Optional", [T(F32, 2)], {}), ("OptionalHasElement", [0], {}),
                          ("OptionalGetElement", [0], {})])
    assert o.type == OptionalType(T(F32, 2))
    assert h.type == T(DType.bool)
    assert g.type == T(F32, 2)
    _, (o2,) = build([("Optional", [], {"type": SequenceType(T(F32, 3))})])
    assert o2.type == OptionalType(SequenceType(T(F32, 3)))


def test_errors():
    with pytest.raises(ShapeError, match="one element type, got float32 and int64"):
        build([("SequenceConstruct", [T(F32, 2), T(I64, 2)], {})])
    with pytest.raises(ShapeError, match="input 0 must be a sequence"):
        build([("SequenceAt", [T(F32, 2), np.array(0, np.int64)], {})])
    with pytest.raises(ShapeError, match=r"split \[2, 2\] adds up to 4, but dim 0 of \[5\] is 5"):
        build([("SplitToSequence", [T(F32, 5), np.array([2, 2], np.int64)], {})])
    with pytest.raises(ShapeError, match="needs the type attribute"):
        build([("Optional", [], {})])


# ---- values ------------------------------------------------------------------------------------------------
def seq_model(nodes, inputs, outputs, opset=21):
    return oh.make_model(oh.make_graph(nodes, "t", inputs, outputs), opset_imports=[oh.make_opsetid("", opset)])


def tvi(name, dtype, shape):
    return oh.make_tensor_value_info(name, dtype, shape)


def svi(name, dtype):
    return oh.make_value_info(name, oh.make_sequence_type_proto(oh.make_tensor_type_proto(dtype, None)))


def assert_same(got, want):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b)
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want)


def check(m, feeds: dict):
    got = GraphcBackend.prepare(m).run(list(feeds.values()))
    want = ReferenceEvaluator(m).run(None, feeds)
    for a, b in zip(got, want):
        assert_same(a, b)
    return got


def test_split_insert_erase_concat_roundtrip():
    x = RNG.standard_normal((7, 3)).astype(np.float32)
    nodes = [
        oh.make_node("SplitToSequence", ["x", "k"], ["s"], axis=0),           # chunks of 3: 3, 3, 1
        oh.make_node("SequenceInsert", ["s", "x", "m1"], ["s2"]),              # insert before the last
        oh.make_node("SequenceErase", ["s2", "zero"], ["s3"]),                 # drop the first
        oh.make_node("SequenceAt", ["s3", "m1"], ["last"]),
        oh.make_node("ConcatFromSequence", ["s3"], ["cat"], axis=0),
        oh.make_node("SequenceLength", ["s3"], ["n"]),
    ]
    inits = [onnx.numpy_helper.from_array(np.array(3, np.int64), "k"),
             onnx.numpy_helper.from_array(np.array(-1, np.int64), "m1"),
             onnx.numpy_helper.from_array(np.array(0, np.int64), "zero")]
    m = seq_model(nodes, [tvi("x", TP.FLOAT, [7, 3])],
                  [svi("s3", TP.FLOAT), tvi("last", TP.FLOAT, None), tvi("cat", TP.FLOAT, None),
                   tvi("n", TP.INT64, None)])
    m.graph.initializer.extend(inits)
    s3, last, cat, n = check(m, {"x": x})
    assert [a.shape[0] for a in s3] == [3, 7, 1] and int(n) == 3
    assert np.array_equal(cat, np.concatenate([x[3:6], x, x[6:]]))


def test_split_without_split_input_and_stack():
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    nodes = [oh.make_node("SplitToSequence", ["x"], ["s"], axis=1, keepdims=0),
             oh.make_node("ConcatFromSequence", ["s"], ["y"], axis=-1, new_axis=1)]
    m = seq_model(nodes, [tvi("x", TP.FLOAT, [2, 4])], [svi("s", TP.FLOAT), tvi("y", TP.FLOAT, None)])
    s, y = check(m, {"x": x})
    assert len(s) == 4 and s[0].shape == (2,) and np.array_equal(y, x)


def test_sequence_inputs_of_different_sizes_and_optional_roundtrip():
    seq = [RNG.standard_normal((n, 2)).astype(np.float32) for n in (1, 3, 2)]
    nodes = [oh.make_node("Optional", ["s"], ["o"]),
             oh.make_node("OptionalHasElement", ["o"], ["has"]),
             oh.make_node("OptionalGetElement", ["o"], ["back"]),
             oh.make_node("SequenceAt", ["back", "one"], ["mid"])]
    m = seq_model(nodes, [oh.make_value_info("s", oh.make_sequence_type_proto(
        oh.make_tensor_type_proto(TP.FLOAT, ["N", 2])))],
        [tvi("has", TP.BOOL, None), tvi("mid", TP.FLOAT, None)])
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1, np.int64), "one"))
    has, mid = GraphcBackend.prepare(m).run([seq])
    assert bool(has) and np.array_equal(mid, seq[1])


def test_out_of_range_position_names_the_node():
    nodes = [oh.make_node("SequenceConstruct", ["x", "x"], ["s"]), oh.make_node("SequenceAt", ["s", "p"], ["y"])]
    m = seq_model(nodes, [tvi("x", TP.FLOAT, [2]), tvi("p", TP.INT64, [])], [tvi("y", TP.FLOAT, None)])
    rep = GraphcBackend.prepare(m)
    assert np.array_equal(rep.run([np.ones(2, np.float32), np.array(-2, np.int64)])[0], np.ones(2))
    with pytest.raises(ExecutionError, match="SequenceAt node .*position 2 is out of range for a sequence of 2"):
        rep.run([np.ones(2, np.float32), np.array(2, np.int64)])
