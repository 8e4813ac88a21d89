"""graphc.autodiff.gradients: fan-out, broadcasting un-reduction (symbolic dims), higher order, errors.

Per-op finite-difference checks live in test_gradcheck.py; these tests cover the sweep itself.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.autodiff import differentiability, gradients
from graphc.errors import GradientError
from graphc.ir import DType, Graph, TensorType, Value
from graphc.ops import lookup
from graphc.ops.interpret import run_graph
from graphc.passes import infer_shapes

F64 = DType.float64


def op(g: Graph, op_type: str, *inputs, name: str | None = None, source: str | None = None, **attrs) -> Value:
    node = g.add_node(op_type, list(inputs), attrs, name=name, source=source)
    lookup("", op_type).complete_attrs(node)
    return node.outputs[0]


def scalar_loss(g: Graph, v: Value, name: str = "loss") -> Value:
    return op(g, "ReduceSum", v, keepdims=0, name=name)


def run(g: Graph, outputs, feeds):
    g.outputs = list(outputs)
    g.verify()
    return run_graph(g, feeds)


def test_fan_out_accumulates():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (3,)))
    y = op(g, "Add", op(g, "Mul", x, x), op(g, "Sin", x))  # x read three times
    loss = scalar_loss(g, y)
    infer_shapes(g)
    (dx,) = gradients(g, [loss], [x])
    xv = np.array([0.3, -1.2, 2.0])
    got = run(g, [dx], {x: xv})[0]
    np.testing.assert_allclose(got, 2 * xv + np.cos(xv))


def test_gradient_nodes_are_ordinary_registered_nodes_and_run_on_the_numpy_backend():
    from graphc.runtime.numpy.executor import NumpyBackend

    g = Graph()
    x = g.add_input("x", TensorType(F64, (2, 3)))
    w = g.add_input("w", TensorType(F64, (3, 4)))
    loss = scalar_loss(g, op(g, "Tanh", op(g, "MatMul", x, w)))
    infer_shapes(g)
    n_forward = len(g.nodes)
    dx, dw = gradients(g, [loss], [x, w])
    assert len(g.nodes) > n_forward
    assert all(lookup(n.domain, n.op_type) is not None for n in g.nodes)
    assert all(isinstance(v.type, TensorType) for n in g.nodes for v in n.outputs)
    g.outputs = [loss, dx, dw]
    g.verify()
    xv, wv = np.random.default_rng(0).normal(size=(2, 3)), np.random.default_rng(1).normal(size=(3, 4))
    ref = run_graph(g, {x: xv, w: wv})
    got = NumpyBackend.prepare(g).run({"x": xv, "w": wv})
    t = np.tanh(xv @ wv)
    np.testing.assert_allclose(got[2], xv.T @ (1 - t * t))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b)


def test_unbroadcast_with_a_symbolic_batch_dim():
    g = Graph()
    x = g.add_input("x", TensorType(F64, ("N", 3)))
    b = g.add_input("b", TensorType(F64, (3,)))
    c = g.add_input("c", TensorType(F64, ("N", 1)))
    loss = scalar_loss(g, op(g, "Mul", op(g, "Add", x, b), c))
    infer_shapes(g)
    db, dc = gradients(g, [loss], [b, c])
    assert db.type.shape == (3,) and dc.type.shape == ("N", 1)
    for n in (1, 4, 7):  # one graph, several batch sizes
        xv, cv = np.arange(3 * n, dtype=float).reshape(n, 3), np.linspace(1, 2, n).reshape(n, 1)
        got_db, got_dc = run(g, [db, dc], {x: xv, b: np.ones(3), c: cv})
        np.testing.assert_allclose(got_db, np.full(3, cv.sum()))
        np.testing.assert_allclose(got_dc, (xv + 1).sum(axis=1, keepdims=True))


def test_unbroadcast_between_two_symbols_decides_at_run_time():
    g = Graph()
    a = g.add_input("a", TensorType(F64, ("A", 3)))
    b = g.add_input("b", TensorType(F64, ("B", 3)))
    loss = scalar_loss(g, op(g, "Mul", a, b))
    infer_shapes(g)
    da, db = gradients(g, [loss], [a, b])
    av, bv = np.array([[1.0, 2.0, 3.0]]), np.arange(12, dtype=float).reshape(4, 3)  # A = 1 broadcasts
    got_da, got_db = run(g, [da, db], {a: av, b: bv})
    np.testing.assert_allclose(got_da, bv.sum(axis=0, keepdims=True))
    np.testing.assert_allclose(got_db, np.broadcast_to(av, (4, 3)))
    av2 = np.arange(12, dtype=float).reshape(4, 3)  # A = B = 4: nothing to sum
    got_da, got_db = run(g, [da, db], {a: av2, b: bv})
    np.testing.assert_allclose(got_da, bv)
    np.testing.assert_allclose(got_db, av2)


def test_second_order_of_x_cubed_is_6x():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (4,)))
    loss = scalar_loss(g, op(g, "Pow", x, g.add_constant(np.array(3.0), "three")))
    infer_shapes(g)
    (d1,) = gradients(g, [loss], [x])
    (d2,) = gradients(g, [scalar_loss(g, d1, "dsum")], [x])
    (d3,) = gradients(g, [scalar_loss(g, d2, "d2sum")], [x])
    xv = np.array([-1.5, 0.5, 1.0, 2.0])
    got = run(g, [d1, d2, d3], {x: xv})
    np.testing.assert_allclose(got[0], 3 * xv ** 2)
    np.testing.assert_allclose(got[1], 6 * xv)
    np.testing.assert_allclose(got[2], np.full(4, 6.0))


def test_second_order_through_sigmoid_and_matmul():
    """Hessian-vector product of sum(sigmoid(x @ w)) in x, against the closed form."""
    rng = np.random.default_rng(3)
    g = Graph()
    x = g.add_input("x", TensorType(F64, (2, 3)))
    w = g.add_constant(rng.normal(size=(3, 2)), "w")
    v = g.add_constant(rng.normal(size=(2, 3)), "v")
    loss = scalar_loss(g, op(g, "Sigmoid", op(g, "MatMul", x, w)))
    infer_shapes(g)
    (dx,) = gradients(g, [loss], [x])
    (hv,) = gradients(g, [scalar_loss(g, op(g, "Mul", dx, v), "dxv")], [x])
    xv = rng.normal(size=(2, 3))
    got = run(g, [hv], {x: xv})[0]
    s = 1 / (1 + np.exp(-(xv @ w.data)))
    want = ((s * (1 - s) * (1 - 2 * s)) * (v.data @ w.data)) @ w.data.T
    np.testing.assert_allclose(got, want)


def test_grad_ys_weights_the_outputs_and_xs_may_be_intermediates():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (3,)))
    h = op(g, "Exp", x)
    y = op(g, "Mul", h, h)
    infer_shapes(g)
    gy = g.add_input("gy", TensorType(F64, (3,)))
    dh, dx = gradients(g, [y], [h, x], grad_ys=[gy])
    xv, gv = np.array([0.1, -0.2, 0.3]), np.array([1.0, 2.0, -1.0])
    got_dh, got_dx = run(g, [dh, dx], {x: xv, gy: gv})
    np.testing.assert_allclose(got_dh, 2 * np.exp(xv) * gv)
    np.testing.assert_allclose(got_dx, 2 * np.exp(2 * xv) * gv)


def _variable(g: Graph, name: str, shape) -> Value:
    v = Value(g.unique_name(name), TensorType(F64, tuple(shape)))
    g.variables[v.name] = v
    return v


def test_no_path_error_names_the_loss_and_the_variable():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (3,)))
    w1 = _variable(g, "w1", (3,))
    w3 = _variable(g, "w3", (3,))
    loss = scalar_loss(g, op(g, "Mul", x, w1))
    op(g, "Neg", w3)  # w3 is used, but not by the loss
    infer_shapes(g)
    with pytest.raises(GradientError) as e:
        gradients(g, [loss], [w1, w3])
    msg = str(e.value)
    assert "no gradient path" in msg and "'loss'" in msg and "variable 'w3'" in msg
    dw1, dw3 = gradients(g, [loss], [w1, w3], unconnected="zero")
    g.outputs = [dw1, dw3]
    got = run_graph(g, {x: np.array([1.0, 2.0, 3.0]), w1: np.zeros(3), w3: np.zeros(3)})
    np.testing.assert_allclose(got[0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(got[1], np.zeros(3))
    assert gradients(g, [loss], [w3], unconnected="none") == [None]


def test_non_differentiable_op_error_names_the_op_node_and_source_line():
    g = Graph()
    w = _variable(g, "w", (2, 3))
    am = op(g, "ArgMax", w, name="am", source="train.py:12", axis=1)
    loss = scalar_loss(g, op(g, "Cast", am, to=DType.float64.value))
    infer_shapes(g)
    with pytest.raises(GradientError) as e:
        gradients(g, [loss], [w])
    msg = str(e.value)
    for fact in ("'loss'", "variable 'w'", "ArgMax node 'am'", "train.py:12", "not differentiable", "integer index"):
        assert fact in msg, (fact, msg)


def test_an_integer_cast_on_the_path_is_named():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (3,)))
    table = g.add_constant(np.arange(5.0), "table")
    idx = op(g, "Cast", x, name="to_index", to=DType.int64.value)
    loss = scalar_loss(g, op(g, "Gather", table, idx))
    infer_shapes(g)
    with pytest.raises(GradientError) as e:
        gradients(g, [loss], [x])
    assert "Cast node 'to_index'" in str(e.value) and "int64" in str(e.value)


def test_a_partly_cut_path_still_gives_the_gradient_of_the_rest():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (3,)))
    mask = op(g, "Cast", op(g, "Greater", x, g.add_constant(np.array(0.0), "zero")), to=DType.float64.value)
    loss = scalar_loss(g, op(g, "Mul", x, mask))  # d/dx through the mask is 0 almost everywhere
    infer_shapes(g)
    (dx,) = gradients(g, [loss], [x])
    got = run(g, [dx], {x: np.array([-1.0, 0.5, 2.0])})[0]
    np.testing.assert_allclose(got, [0.0, 1.0, 1.0])


def test_unused_gradient_nodes_are_pruned():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (3, 4)))
    w = g.add_constant(np.ones((4, 2)), "w")
    loss = scalar_loss(g, op(g, "MatMul", x, w))
    infer_shapes(g)
    before = len(g.nodes)
    gradients(g, [loss], [x])
    ops = [n.op_type for n in g.nodes[before:]]
    assert ops.count("MatMul") == 1, ops  # the constant weight gets no gradient computed


def test_dropout_gradient_uses_the_recorded_mask():
    g = Graph()
    x = g.add_input("x", TensorType(F64, (50,)))
    node = g.add_node("Dropout", [x, g.add_constant(np.array(0.5), "r"), g.add_constant(np.array(True), "t")],
                      {"seed": 0})
    lookup("", "Dropout").complete_attrs(node)
    loss = scalar_loss(g, node.outputs[0])
    infer_shapes(g)
    (dx,) = gradients(g, [loss], [x])
    assert len(node.outputs) == 2  # the mask output was declared so that the gradient can read it
    y, got = run(g, [node.outputs[0], dx], {x: np.ones(50)})
    np.testing.assert_allclose(got, y)  # y = x * mask * 2 and dy/dx = mask * 2, with x = 1


def test_differentiability_table_lists_declared_reasons():
    table = differentiability()
    assert table["MatMul"] == "differentiable"
    assert table["ArgMax"] == "its output is an integer index"
    assert "random" in table["RandomNormal"]
    assert "control flow" in table["Loop"]
