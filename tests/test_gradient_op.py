"""ONNX's Gradient operator (ai.onnx.preview.training), computed by graphc's own autodiff at import."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import graphc as gc
from graphc.errors import GraphcError


def _model(nodes, inputs, outputs, xs, y, extra_inputs=()):
    grad = helper.make_node("Gradient", list(xs) + list(extra_inputs), [f"d{y}_d{x}" for x in xs],
                            domain="ai.onnx.preview.training", xs=list(xs), y=y, name="grad")
    g = helper.make_graph(list(nodes) + [grad], "m",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs]
                          + [helper.make_tensor_value_info(f"d{y}_d{x}", TensorProto.FLOAT, None) for x in xs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                               helper.make_opsetid("ai.onnx.preview.training", 1)])


def _numeric(f, xs, k, eps=1e-3):
    x = [a.astype(np.float64) for a in xs]
    g = np.zeros_like(x[k])
    for i in np.ndindex(x[k].shape):
        hi = [a.copy() for a in x]
        lo = [a.copy() for a in x]
        hi[k][i] += eps
        lo[k][i] -= eps
        g[i] = (f(*hi).sum() - f(*lo).sum()) / (2 * eps)
    return g


@pytest.mark.parametrize("level", [0, 2])
def test_gradient_of_a_small_network_matches_finite_differences(level):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["t"]),
             helper.make_node("Mul", ["t", "t"], ["y"])]
    model = _model(nodes, [("x", [2, 3]), ("w", [3, 4])], ["y"], ["x", "w"], "y")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    graph = gc.import_onnx(model)
    assert not any(n.op_type == "Gradient" for n in graph.nodes)
    y, dx, dw = gc.prepare(graph, level=level).run({"x": x, "w": w})
    f = lambda a, b: np.tanh(a @ b) ** 2  # noqa: E731
    np.testing.assert_allclose(y, f(x, w), rtol=1e-5)
    np.testing.assert_allclose(dx, _numeric(f, [x, w], 0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(dw, _numeric(f, [x, w], 1), rtol=1e-3, atol=1e-4)
    assert [v.name for v in graph.outputs] == ["y", "dy_dx", "dy_dw"]


def test_an_x_that_y_does_not_depend_on_gets_zeros():
    model = _model([helper.make_node("Neg", ["a"], ["y"])], [("a", [3]), ("b", [2])], ["y"], ["a", "b"], "y")
    _, da, db = gc.run(model, {"a": np.ones(3, np.float32), "b": np.ones(2, np.float32)})
    np.testing.assert_array_equal(da, -np.ones(3))
    np.testing.assert_array_equal(db, np.zeros(2))


def test_a_bad_gradient_node_is_a_clear_error():
    model = _model([helper.make_node("Neg", ["a"], ["y"])], [("a", [3])], ["y"], ["a"], "nope")
    with pytest.raises(GraphcError, match="y names 'nope'"):
        gc.import_onnx(model)
