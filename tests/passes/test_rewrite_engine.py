"""The rewrite engine: pattern matching (commutative, bound names), private interiors, output names."""
from __future__ import annotations

import numpy as np

from graphc.ir import Graph
from graphc.passes.rewrite import P, Rule, all_equal, apply_rules
from passes_util import check_pass, f32, finish, ops

# (x * 2) * 3 -> x * 6: a rule that only fires when the inner Mul is read by the outer one alone
_RULE = Rule("fold_mul_mul", lambda ed, m: ed.op("Mul", m["x"], ed.const(m.const("a") * m.const("b"))),
             P("Mul", P("Mul", P.any("x"), P.const("a")), P.const("b")))


def _mul_chain(share_inner=False, swap=False):
    g = Graph()
    x = g.add_input("x", f32(4))
    two, three = g.add_constant(np.float32(2), "two"), g.add_constant(np.float32(3), "three")
    inner = g.add_node("Mul", [two, x] if swap else [x, two], name="inner").outputs[0]
    outer = g.add_node("Mul", [three, inner] if swap else [inner, three], name="outer").outputs[0]
    outs = [outer] + ([inner] if share_inner else [])
    return finish(g, *outs)


def test_commutative_inputs_match_in_either_order():
    for swap in (False, True):
        g = _mul_chain(swap=swap)
        assert check_pass(g, lambda g: apply_rules(g, [_RULE]))
        assert ops(g) == ["Mul"]
        assert float(g.nodes[0].inputs[1].data) == 6.0


def test_a_matched_inner_node_read_elsewhere_blocks_the_rewrite():
    g = _mul_chain(share_inner=True)
    assert not check_pass(g, lambda g: apply_rules(g, [_RULE]))
    assert ops(g) == ["Mul", "Mul"]


def test_graph_output_keeps_its_name_when_replaced():
    g = _mul_chain()
    name = g.outputs[0].name
    apply_rules(g, [_RULE])
    assert g.outputs[0].name == name and g.outputs[0].producer is g.nodes[0]


def test_bound_name_must_be_the_same_value():
    g = Graph()
    x, y = g.add_input("x", f32(3)), g.add_input("y", f32(3))
    s1 = g.add_node("Sub", [x, y], name="s1").outputs[0]
    s2 = g.add_node("Sub", [x, x], name="s2").outputs[0]
    finish(g, s1, s2)
    rule = Rule("x_minus_x", lambda ed, m: ed.op("Mul", m["x"], ed.const(np.float32(0))),
                P("Sub", P.any("x"), P.any("x")))
    fired = {}
    check_pass(g, lambda g: apply_rules(g, [rule], applied=fired))
    assert fired == {"x_minus_x": 1} and ops(g) == ["Sub", "Mul"]


def test_declined_rule_leaves_no_trace():
    g = _mul_chain()
    n_consts = len(g.constants)
    rule = Rule("declines", lambda ed, m: (ed.op("Neg", m["x"]), None)[1], P("Mul", P.any("x"), P.const("c")))
    assert not apply_rules(g, [rule])
    assert ops(g) == ["Mul", "Mul"] and len(g.constants) == n_consts


def test_all_equal_predicate():
    assert all_equal(1.0)(np.ones((2, 2), np.float32)) and not all_equal(1.0)(np.array([1.0, 2.0]))
    assert not all_equal(0.0)(np.array([], np.float32)) and all_equal(0.0)(np.zeros(3, np.int64))
