"""An op that reads one value twice must not be run in place over it (issue: Sum(y, y, y) gave 4y).

The variadic fold writes ``out = y + y`` and then adds the third operand: if ``out`` is ``y``'s buffer,
that third read sees 2y. The memory plan refuses such an input as an in-place target, and so does the
scratch-buffer reuse inside a fused elementwise group.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import graphc as gc
from passes_util import f32, finish
from graphc.ir import Graph
from graphc.passes.memory import inplace_candidates, plan_memory


def _sum3_model():
    nodes = [helper.make_node("Mul", ["x", "x"], ["y"]), helper.make_node("Sum", ["y", "y", "y"], ["s"]),
             helper.make_node("Relu", ["s"], ["r"])]
    g = helper.make_graph(nodes, "sum3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, [3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("level", [0, 1, 2])
def test_sum_of_one_value_three_times_is_three_times_it(level):
    x = np.array([1, -1, 2], np.float32)
    exe = gc.prepare(gc.compile(gc.import_onnx(_sum3_model()), level=level), backend="numpy")
    (r,) = exe.run({"x": x})
    np.testing.assert_array_equal(r, [3, 3, 12])  # onnxruntime: [3, 3, 12]


def test_a_repeated_operand_is_no_in_place_candidate():
    g = Graph()
    x = g.add_input("x", f32(256))
    y = g.add_node("Neg", [x], name="y").outputs[0]
    s = g.add_node("Sum", [y, y, y], name="s")
    t = g.add_node("Add", [y, s.outputs[0]], name="t")
    finish(g, t.outputs[0])
    assert inplace_candidates(s) == []
    plan = plan_memory(g)
    assert "s" not in plan.inplace
    assert plan.inplace.get("t") in ("y", "s")  # both die at t, each read once there


def test_training_step_of_a_cube_uses_three_w_squared():
    g = gc.Graph()
    w0 = np.array([1.0, -1.0, 2.0], np.float32)
    with g.as_default():
        w = gc.Variable(w0, name="w")
        step = gc.optim.SGD(0.1).minimize(gc.reduce_sum(w * w * w))  # gradient: Sum(w*w, w*w, w*w)
    sess = gc.Session(g, backend="numpy")
    sess.run(step)
    np.testing.assert_allclose(sess.run(w), w0 - 0.1 * 3 * w0 ** 2, rtol=1e-6)
