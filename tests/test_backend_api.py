"""graphc behind onnx.backend.base.Backend: onnx's own BackendTest drives it unchanged."""
from __future__ import annotations

import unittest

import numpy as np
import onnx
import onnx.backend.test
from onnx import TensorProto, helper

import graphc.frontends.onnx.backend as graphc_backend


def test_backend_test_runner_drives_graphc():
    bt = onnx.backend.test.BackendTest(graphc_backend, __name__)
    bt.include(r"^test_(relu|add|add_bcast|sigmoid|abs|neg)_cpu$")
    suite = unittest.TestSuite()
    for case in bt.test_cases.values():
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    result = unittest.TextTestRunner(verbosity=0).run(suite)
    assert result.testsRun >= 6
    assert result.wasSuccessful(), result.failures + result.errors


def test_run_node():
    node = helper.make_node("Add", ["a", "b"], ["c"])
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    (c,) = graphc_backend.run_node(node, [a, np.ones(3, np.float32)])
    np.testing.assert_array_equal(c, a + 1)


def test_run_model_and_prepare():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([-1, 0, 2], np.float32)
    np.testing.assert_array_equal(graphc_backend.run_model(model, [x])[0], [0, 0, 2])
    rep = graphc_backend.prepare(model.SerializeToString())
    np.testing.assert_array_equal(rep.run({"x": x})[0], [0, 0, 2])
    assert graphc_backend.supports_device("CPU")
    assert not graphc_backend.supports_device("TPU")


def _fusable_model():
    nodes = [helper.make_node("Mul", ["x", "x"], ["a"]), helper.make_node("Add", ["a", "x"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_backend_prepare_compiles_at_O2_by_default_and_level_0_on_request():
    x = np.array([-2, -0.5, 0.5, 2], np.float32)
    rep = graphc_backend.prepare(_fusable_model())
    assert rep.plan.level == 2
    assert [n.op_type for n in rep.graph.nodes] == ["FusedGroup"]
    rep0 = graphc_backend.prepare(_fusable_model(), level=0)
    assert rep0.plan.level == 0 and [n.op_type for n in rep0.graph.nodes] == ["Mul", "Add", "Relu"]
    np.testing.assert_array_equal(rep.run([x])[0], rep0.run([x])[0])
    np.testing.assert_array_equal(rep.run([x])[0], np.maximum(x * x + x, 0))


def test_gc_prepare_compiles_a_graph_at_O2_by_default():
    import graphc as gc

    exe = gc.prepare(gc.import_onnx(_fusable_model()))
    assert exe.plan is not None and exe.plan.level == 2
    assert [n.op_type for n in exe.graph.nodes] == ["FusedGroup"]
    exe0 = gc.prepare(gc.import_onnx(_fusable_model()), level=0)
    assert exe0.plan.level == 0 and len(exe0.graph.nodes) == 3
