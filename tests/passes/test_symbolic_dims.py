"""Symbolic dims through shape inference: products stay symbolic (4*N) and cancel again (N*4/4 is N)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from graphc.ir import Graph
from graphc.ir.dims import dim_factors, dim_from_factors, product_of
from graphc.passes import simplify
from passes_util import check_pass, f32, finish, ops


def test_products_are_canonical_and_read_back():
    assert dim_from_factors(4, Counter({"N": 1})) == "4*N"
    assert dim_from_factors(1, Counter({"T": 1, "N": 1})) == "N*T"
    assert dim_from_factors(6, Counter()) == 6 and dim_from_factors(0, Counter({"N": 1})) == 0
    assert dim_factors("4*N") == (4, Counter({"N": 1})) and dim_factors("N") == (1, Counter({"N": 1}))
    assert product_of(["2*N", 3, "N"]) == (6, Counter({"N": 2}))


def test_flatten_then_reshape_gives_the_symbol_back():
    g = Graph()
    x = g.add_input("x", f32("N", 4, 5))
    a = g.add_node("Flatten", [x], {"axis": 2}, name="flat").outputs[0]
    b = g.add_node("Reshape", [a, g.add_constant(np.array([-1, 20], np.int64))], name="r").outputs[0]
    c = g.add_node("Reshape", [b, g.add_constant(np.array([-1, 4, 5], np.int64))], name="r2").outputs[0]
    finish(g, c, a)
    assert a.type.shape == ("4*N", 5)
    assert b.type.shape == ("N", 20)
    assert c.type.shape == ("N", 4, 5)


def test_simplify_removes_a_reshape_round_trip_on_a_symbolic_batch():
    g = Graph()
    x = g.add_input("x", f32("N", 4, 5))
    a = g.add_node("Flatten", [x], {"axis": 2}, name="flat").outputs[0]
    b = g.add_node("Reshape", [a, g.add_constant(np.array([-1, 4, 5], np.int64))], name="r").outputs[0]
    y = g.add_node("Relu", [b], name="relu").outputs[0]
    finish(g, y)
    assert check_pass(g, lambda g: simplify(g).changed)
    assert ops(g) == ["Relu"]
