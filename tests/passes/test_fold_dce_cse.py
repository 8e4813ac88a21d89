"""Constant folding (with its size budget), dead-code elimination and common-subexpression elimination."""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Graph, TensorType
from graphc.passes.cse import eliminate_common_subexpressions
from graphc.passes.dce import eliminate_dead_code
from graphc.passes.fold import fold_constants
from passes_util import check_pass, f32, finish, ops


def test_constant_chain_folds_and_keeps_output_name():
    g = Graph()
    x = g.add_input("x", f32(3))
    a = g.add_constant(np.array([1, 2, 3], np.float32), "a")
    b = g.add_node("Mul", [a, a], name="sq").outputs[0]
    c = g.add_node("Neg", [b], name="neg").outputs[0]
    y = g.add_node("Add", [x, c], name="add").outputs[0]
    finish(g, y, c)  # c is also a graph output: it must stay, as a constant under its name
    assert check_pass(g, fold_constants)
    assert ops(g) == ["Add"]
    assert g.outputs[1].name == "neg" and g.outputs[1].is_constant
    np.testing.assert_array_equal(g.outputs[1].data, [-1, -4, -9])


def test_shape_of_a_static_input_folds():
    g = Graph()
    x = g.add_input("x", f32(2, 6))
    s = g.add_node("Shape", [x], name="shape").outputs[0]
    half = g.add_node("Div", [s, g.add_constant(np.array([1, 2], np.int64))], name="half").outputs[0]
    target = g.add_node("Concat", [half, g.add_constant(np.array([2], np.int64))], {"axis": 0},
                        name="target").outputs[0]
    y = g.add_node("Reshape", [x, target], name="reshape").outputs[0]
    finish(g, y)
    assert check_pass(g, fold_constants)
    assert ops(g) == ["Reshape"] and g.nodes[0].inputs[1].data.tolist() == [2, 3, 2]


def test_folding_does_not_inflate_the_model():
    g = Graph()
    x = g.add_input("x", f32(100, 100))
    small = g.add_constant(np.arange(100, dtype=np.float32), "small")
    big = g.add_node("Expand", [small, g.add_constant(np.array([100, 100], np.int64))], name="expand").outputs[0]
    y = g.add_node("Add", [x, big], name="add").outputs[0]
    finish(g, y)
    assert not check_pass(g, fold_constants)
    assert ops(g) == ["Expand", "Add"]


def test_large_weights_made_by_constant_of_shape_fold():
    g = Graph()
    x = g.add_input("x", f32(1, 8, 34, 34))
    shape = g.add_constant(np.array([16, 8, 3, 3], np.int64), "w_shape")
    w = g.add_node("ConstantOfShape", [shape], {"value": np.array([0.02], np.float32)}, name="w").outputs[0]
    y = g.add_node("Conv", [x, w], name="conv").outputs[0]
    # the same ConstantOfShape size feeding an elementwise op is not worth folding
    z = g.add_node("ConstantOfShape", [g.add_constant(np.array([1, 16, 32, 32], np.int64))],
                   {"value": np.array([1.0], np.float32)}, name="ones").outputs[0]
    out = g.add_node("Mul", [y, z], name="mul").outputs[0]
    finish(g, out)
    assert check_pass(g, fold_constants)
    assert ops(g) == ["Conv", "ConstantOfShape", "Mul"]
    assert g.nodes[0].inputs[1].data.shape == (16, 8, 3, 3)


def test_random_ops_do_not_fold():
    g = Graph()
    r = g.add_node("RandomNormal", [], {"shape": [2], "dtype": 1, "seed": 1.0}, name="r").outputs[0]
    finish(g, r)
    assert not fold_constants(g) and ops(g) == ["RandomNormal"]


def test_dead_code_goes_and_outputs_stay():
    g = Graph()
    x = g.add_input("x", f32(3))
    g.add_constant(np.zeros(2, np.float32), "unused")
    dead = g.add_node("Exp", [x], name="dead").outputs[0]
    g.add_node("Neg", [dead], name="dead2")
    y = g.add_node("Relu", [x], name="relu").outputs[0]
    finish(g, y)
    assert check_pass(g, eliminate_dead_code)
    assert ops(g) == ["Relu"] and not g.constants
    assert not eliminate_dead_code(g)


def test_cse_merges_equal_nodes_and_equal_small_constants():
    g = Graph()
    x = g.add_input("x", f32(2, 3))
    ax1 = g.add_constant(np.array([0], np.int64), "axes1")
    ax2 = g.add_constant(np.array([0], np.int64), "axes2")
    u1 = g.add_node("Unsqueeze", [x, ax1], name="u1").outputs[0]
    u2 = g.add_node("Unsqueeze", [x, ax2], name="u2").outputs[0]
    t1 = g.add_node("Transpose", [x], {"perm": [1, 0]}, name="t1").outputs[0]
    t2 = g.add_node("Transpose", [x], {"perm": [0, 1]}, name="t2").outputs[0]  # different attrs: kept
    y = g.add_node("Add", [u1, u2], name="add").outputs[0]
    finish(g, y, t1, t2)
    assert check_pass(g, eliminate_common_subexpressions)
    assert ops(g) == ["Unsqueeze", "Transpose", "Transpose", "Add"]


def test_cse_keeps_two_graph_outputs_apart():
    g = Graph()
    x = g.add_input("x", TensorType(DType.float32, (3,)))
    a = g.add_node("Exp", [x], name="a").outputs[0]
    b = g.add_node("Exp", [x], name="b").outputs[0]
    finish(g, a, b)
    assert not check_pass(g, eliminate_common_subexpressions)
    # a duplicate that is an output, of a twin that is not: the twin takes the output's name
    g = Graph()
    x = g.add_input("x", f32(3))
    a = g.add_node("Exp", [x], name="a").outputs[0]
    b = g.add_node("Exp", [x], name="b").outputs[0]
    c = g.add_node("Neg", [a], name="c").outputs[0]
    finish(g, c, b)
    assert check_pass(g, eliminate_common_subexpressions)
    assert ops(g) == ["Exp", "Neg"] and [v.name for v in g.outputs] == ["c", "b"]


def test_variable_updates_are_never_removed_merged_or_folded():
    g = Graph()
    x = g.add_input("x", f32(2))
    var = g.add_input("w", f32(2))
    c = g.add_constant(np.ones(2, np.float32), "one")
    g.add_node("Assign", [var, c], domain="graphc", name="a1")
    g.add_node("Assign", [var, c], domain="graphc", name="a2")
    y = g.add_node("Relu", [x], name="relu").outputs[0]
    finish(g, y)
    assert not fold_constants(g) and not eliminate_common_subexpressions(g)
    eliminate_dead_code(g)
    assert ops(g) == ["Assign", "Assign", "Relu"]
