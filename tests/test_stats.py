"""Parameter counting: initializers and constant-built weights count, shape arguments do not."""
from __future__ import annotations

import numpy as np

import graphc.ops  # noqa: F401
from graphc.ir import DType, Graph, TensorType
from graphc.passes import infer_shapes
from graphc.passes.stats import parameter_count, weight_values


def test_constant_built_weights_count_and_shape_args_do_not():
    g = Graph()
    x = g.add_input("x", TensorType(DType.float32, ("N", 4)))
    shape = g.add_constant(np.array([4, 3], np.int64), "w_shape")
    w = g.add_node("ConstantOfShape", [shape], {"value": np.array([0.5], np.float32)}, name="make_w").outputs[0]
    b = g.add_constant(np.zeros(3, np.float32), "b")
    y = g.add_node("MatMul", [x, w], name="mm").outputs[0]
    g.outputs = g.add_node("Add", [y, b], name="add").outputs
    infer_shapes(g)
    assert {v.name for v in weight_values(g)} == {w.name, "b"}
    assert parameter_count(g) == 4 * 3 + 3
