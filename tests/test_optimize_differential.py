"""Differential test of the optimizer: hypothesis builds random graphs, simplify() must not change results.

The graphs mix elementwise ops with broadcasting, reductions, MatMul, reshapes and transposes, constants
(so that folding has work), no-op spellings (x*1, x+0, Identity, Dropout, identity Transpose/Reshape),
duplicated nodes (CSE), BatchNormalization after MatMul and spelled-out softmax (patterns). Each graph runs
through the reference interpreter before and after ``simplify``, with verification after every pass on.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc.ops  # noqa: F401
from graphc.ir import DType, Graph, TensorType
from graphc.ops.interpret import run_graph
from graphc.ops.registry import get_opdef
from graphc.passes import infer_shapes, simplify

DIMS = st.integers(1, 4)


class Builder:
    """Grows a random graph one op at a time from hypothesis draws; every value is float32 with a static shape."""

    def __init__(self, draw):
        self.draw = draw
        self.g = Graph("random")
        self.pool = []
        self.rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def shape_of(self, v):
        return tuple(v.type.shape)

    def const(self, shape, lo=-1.0, hi=1.0, special=None):
        data = special if special is not None else self.rng.uniform(lo, hi, shape).astype(np.float32)
        return self.g.add_constant(np.asarray(data, np.float32).reshape(shape), "c")

    def add(self, op, inputs, attrs=None):
        node = self.g.add_node(op, inputs, attrs)
        get_opdef(node).complete_attrs(node)
        infer_shapes(self.g)  # cheap at this size; keeps every value's shape known for the next draw
        out = node.outputs[0]
        self.pool.append(out)
        return out

    def pick(self):
        return self.draw(st.sampled_from(self.pool))

    def broadcast_partner_shape(self, shape):
        k = self.draw(st.integers(0, len(shape)))
        suffix = list(shape[len(shape) - k:])
        return tuple(d if self.draw(st.booleans()) else 1 for d in suffix)

    # ---- steps ----
    def step(self):
        kind = self.draw(st.sampled_from(["unary", "binary", "binary", "noop", "reduce", "matmul", "reshape",
                                          "transpose", "duplicate", "const_chain", "softmax", "batchnorm"]))
        getattr(self, "s_" + kind)()

    def s_unary(self):
        self.add(self.draw(st.sampled_from(["Relu", "Neg", "Tanh", "Sigmoid", "Abs", "Identity"])), [self.pick()])

    def s_binary(self):
        x = self.pick()
        op = self.draw(st.sampled_from(["Add", "Sub", "Mul", "Div"]))
        same = [v for v in self.pool if self.shape_of(v) == self.shape_of(x)]
        if op != "Div" and self.draw(st.booleans()) and same:
            y = self.draw(st.sampled_from(same))
        else:
            y = self.const(self.broadcast_partner_shape(self.shape_of(x)), 0.5, 2.0)
        ins = [x, y] if self.draw(st.booleans()) or op == "Div" else [y, x]
        self.add(op, ins)

    def s_noop(self):
        x = self.pick()
        s = self.shape_of(x)
        choice = self.draw(st.sampled_from(["mul1", "add0", "dropout", "cast", "transpose", "reshape"]))
        part = self.broadcast_partner_shape(s)
        if choice == "mul1":
            self.add("Mul", [x, self.const(part, special=np.ones(part))])
        elif choice == "add0":
            self.add("Add", [self.const(part, special=np.zeros(part)), x])
        elif choice == "dropout":
            self.add("Dropout", [x])
        elif choice == "cast":
            self.add("Cast", [x], {"to": 1})
        elif choice == "transpose":
            self.add("Transpose", [x], {"perm": list(range(len(s)))})
        else:
            self.add("Reshape", [x, self.g.add_constant(np.array(s, np.int64), "shape")])

    def s_reduce(self):
        x = self.pick()
        s = self.shape_of(x)
        if not s:
            return self.s_unary()
        axes = self.draw(st.lists(st.integers(0, len(s) - 1), min_size=1, max_size=len(s), unique=True))
        op = self.draw(st.sampled_from(["ReduceSum", "ReduceMean", "ReduceMax"]))
        self.add(op, [x, self.g.add_constant(np.array(axes, np.int64), "axes")],
                 {"keepdims": int(self.draw(st.booleans()))})

    def s_matmul(self):
        x = self.pick()
        s = self.shape_of(x)
        if not s:
            return self.s_unary()
        self.add("MatMul", [x, self.const((s[-1], self.draw(DIMS)))])

    def s_reshape(self):
        x = self.pick()
        s = self.shape_of(x)
        choice = self.draw(st.sampled_from(["flatten", "unsqueeze", "squeeze", "reverse"]))
        if choice == "flatten" and s:
            self.add("Flatten", [x], {"axis": self.draw(st.integers(0, len(s)))})
        elif choice == "unsqueeze" and len(s) < 4:
            self.add("Unsqueeze", [x, self.g.add_constant(np.array([self.draw(st.integers(0, len(s)))], np.int64))])
        elif choice == "squeeze" and 1 in s:
            self.add("Squeeze", [x, self.g.add_constant(np.array([s.index(1)], np.int64))])
        else:
            self.add("Reshape", [x, self.g.add_constant(np.array(s[::-1] or [1], np.int64))])

    def s_transpose(self):
        x = self.pick()
        perm = self.draw(st.permutations(list(range(len(self.shape_of(x))))))
        self.add("Transpose", [x], {"perm": list(perm)})

    def s_duplicate(self):
        nodes = [n for n in self.g.nodes if len(n.outputs) == 1]
        if not nodes:
            return self.s_unary()
        n = self.draw(st.sampled_from(nodes))
        self.add(n.op_type, list(n.inputs), dict(n.attrs))

    def s_const_chain(self):
        c = self.const((self.draw(DIMS),))
        c2 = self.add(self.draw(st.sampled_from(["Neg", "Abs", "Sigmoid"])), [c])
        self.pool.remove(c2)  # a pure-constant value feeds a real one, so folding has something to do
        x = self.pick()
        if self.shape_of(x) and self.shape_of(x)[-1] == c.data.shape[0] or not self.shape_of(x):
            self.add("Add", [x, c2])
        else:
            total = self.add("ReduceSum", [c2])
            self.pool.remove(total)
            self.add("Mul", [x, total])

    def s_softmax(self):
        x = self.pick()
        s = self.shape_of(x)
        if not s:
            return self.s_unary()
        axes = self.g.add_constant(np.array([self.draw(st.integers(0, len(s) - 1))], np.int64), "axes")
        z = self.add("Sub", [x, self.add("ReduceMax", [x, axes])])
        e = self.add("Exp", [z])
        self.add("Div", [e, self.add("ReduceSum", [e, axes])])

    def s_batchnorm(self):
        x = self.pick()
        s = self.shape_of(x)
        if len(s) != 2:
            return self.s_matmul()
        y = self.add("MatMul", [x, self.const((s[-1], s[-1]))])
        c = s[-1]
        params = [self.const((c,), 0.5, 1.5), self.const((c,)), self.const((c,)), self.const((c,), 0.5, 1.5)]
        self.add("BatchNormalization", [y] + params)


@st.composite
def random_graphs(draw):
    b = Builder(draw)
    for i in range(draw(st.integers(1, 2))):
        shape = tuple(draw(st.lists(DIMS, min_size=1, max_size=3)))
        b.pool.append(b.g.add_input(f"x{i}", TensorType(DType.float32, shape)))
    for _ in range(draw(st.integers(1, 10))):
        b.step()
    outs = [b.pool[-1]] + draw(st.lists(st.sampled_from(b.pool), max_size=2))
    b.g.outputs = outs
    b.g.verify()
    return b.g


def _feeds(g, seed=0):
    rng = np.random.default_rng(seed)
    return {v: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_simplify_keeps_results(g):
    ref_graph = g.copy()
    feeds = _feeds(g)
    want = run_graph(ref_graph, {v: feeds[u] for v, u in zip(ref_graph.inputs, g.inputs)})
    names = [v.name for v in g.outputs]
    simplify(g, level=2, verify=True)
    assert [v.name for v in g.outputs] == names
    got = run_graph(g, feeds)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(b).max(initial=0))))
