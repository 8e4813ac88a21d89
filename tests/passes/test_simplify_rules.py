"""Algebraic simplification: each rule on a tiny graph, outputs compared before and after."""
from __future__ import annotations

import numpy as np
import pytest

from graphc.ir import DType, Graph, TensorType
from graphc.passes.simplify import simplify_algebra
from passes_util import check_pass, f32, finish, ops


def _unary(op, attrs=None, shape=(2, 3), extra=()):
    g = Graph()
    x = g.add_input("x", f32(*shape))
    ins = [x] + [g.add_constant(np.asarray(e)) for e in extra]
    y = g.add_node(op, ins, attrs, name="n").outputs[0]
    z = g.add_node("Neg", [y], name="neg").outputs[0]
    return finish(g, z)


@pytest.mark.parametrize("op, attrs, extra", [
    ("Identity", None, ()),
    ("Dropout", None, ()),
    ("Cast", {"to": 1}, ()),
    ("Reshape", None, (np.array([2, 3], np.int64),)),
    ("Expand", None, (np.array([1, 3], np.int64),)),
    ("Transpose", {"perm": [0, 1]}, ()),
    ("Mul", None, (np.float32(1),)),
    ("Div", None, (np.ones(3, np.float32),)),
    ("Add", None, (np.zeros((1, 3), np.float32),)),
    ("Sub", None, (np.float32(0),)),
])
def test_no_op_goes(op, attrs, extra):
    g = _unary(op, attrs, extra=extra)
    applied = {}
    assert check_pass(g, simplify_algebra, applied=applied)
    assert ops(g) == ["Neg"] and sum(applied.values()) == 1


@pytest.mark.parametrize("op, attrs, extra", [
    ("Cast", {"to": 11}, ()),                            # float32 -> float64 changes the type
    ("Mul", None, (np.ones((4, 2, 3), np.float32),)),    # x*1 that broadcasts x up stays
    ("Add", None, (np.float32(1e-9),)),
    ("Sub", None, (np.zeros((2, 2, 3), np.float32),)),
    ("Transpose", {"perm": [1, 0]}, ()),
])
def test_real_work_stays(op, attrs, extra):
    g = _unary(op, attrs, extra=extra)
    assert not check_pass(g, simplify_algebra)
    assert ops(g) == [op, "Neg"]


def test_training_dropout_stays():
    g = Graph()
    x = g.add_input("x", f32(2, 3))
    ratio, train = g.add_constant(np.float32(0.5)), g.add_constant(np.array(True))
    y = g.add_node("Dropout", [x, ratio, train], name="d").outputs[0]
    finish(g, y)
    assert not simplify_algebra(g) and ops(g) == ["Dropout"]


def test_reshape_chain_becomes_one_reshape_with_symbolic_batch():
    g = Graph()
    x = g.add_input("x", f32("N", 4, 6))
    a = g.add_node("Unsqueeze", [x, g.add_constant(np.array([1], np.int64))], name="u").outputs[0]
    b = g.add_node("Flatten", [a], {"axis": 2}, name="f").outputs[0]
    c = g.add_node("Reshape", [b, g.add_constant(np.array([0, 3, 8], np.int64))], name="r").outputs[0]
    finish(g, c)
    assert check_pass(g, simplify_algebra)
    assert ops(g) == ["Reshape"] and g.nodes[0].inputs[1].data.tolist() == [0, 3, 8]
    assert g.outputs[0].type.shape == ("N", 3, 8)


def test_reshape_chain_back_to_the_input_shape_goes():
    g = Graph()
    x = g.add_input("x", f32(2, 3, 4))
    a = g.add_node("Reshape", [x, g.add_constant(np.array([6, 4], np.int64))], name="r1").outputs[0]
    b = g.add_node("Reshape", [a, g.add_constant(np.array([2, 3, 4], np.int64))], name="r2").outputs[0]
    c = g.add_node("Relu", [b], name="relu").outputs[0]
    finish(g, c)
    assert check_pass(g, simplify_algebra) and ops(g) == ["Relu"]


def test_reshape_read_twice_is_not_merged_into_the_chain():
    g = Graph()
    x = g.add_input("x", f32(2, 3, 4))
    a = g.add_node("Reshape", [x, g.add_constant(np.array([6, 4], np.int64))], name="r1").outputs[0]
    b = g.add_node("Reshape", [a, g.add_constant(np.array([24], np.int64))], name="r2").outputs[0]
    finish(g, b, a)
    assert not check_pass(g, simplify_algebra) and ops(g) == ["Reshape", "Reshape"]


def test_transpose_chain_composes():
    g = Graph()
    x = g.add_input("x", f32(2, 3, 4))
    a = g.add_node("Transpose", [x], {"perm": [1, 2, 0]}, name="t1").outputs[0]
    b = g.add_node("Transpose", [a], {"perm": [0, 2, 1]}, name="t2").outputs[0]
    c = g.add_node("Transpose", [b], None, name="t3").outputs[0]  # no perm: reverse
    finish(g, c)
    assert check_pass(g, simplify_algebra)
    assert ops(g) == ["Transpose"]


def test_transpose_and_its_inverse_go():
    g = Graph()
    x = g.add_input("x", f32(2, 3, 4))
    a = g.add_node("Transpose", [x], {"perm": [1, 2, 0]}, name="t1").outputs[0]
    b = g.add_node("Transpose", [a], {"perm": [2, 0, 1]}, name="t2").outputs[0]
    c = g.add_node("Exp", [b], name="exp").outputs[0]
    finish(g, c)
    assert check_pass(g, simplify_algebra) and ops(g) == ["Exp"]


def test_identity_between_input_and_output_stays_to_keep_the_names():
    g = Graph()
    x = g.add_input("x", TensorType(DType.float32, (2,)))
    y = g.add_node("Identity", [x], name="y").outputs[0]
    finish(g, y)
    assert not simplify_algebra(g)
    assert ops(g) == ["Identity"] and g.outputs[0].name == "y"


def test_identity_feeding_an_output_gives_the_output_name_to_its_input():
    g = Graph()
    x = g.add_input("x", f32(2))
    e = g.add_node("Exp", [x], name="e").outputs[0]
    y = g.add_node("Identity", [e], name="y").outputs[0]
    finish(g, y)
    assert check_pass(g, simplify_algebra)
    assert ops(g) == ["Exp"] and g.outputs[0].name == "y"
