"""An If whose condition is known is replaced by the branch it takes (graphc/passes/branches.py): folded from
constants at compile time, from sizes when a plan's dims are bound (a shape check in the model), or from an
input the compiler was given a value for (``specialize_inputs``; ``branching_inputs`` finds such inputs).
Values stay equal to the interpreter's, on both branches, nested Ifs, branch outputs that are outer values or
constants, and names the branch shares with the graph."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.compiler import bind, branching_inputs, specialize_inputs
from graphc.compiler import compile as compile_graph
from graphc.errors import GraphcError


def _branch(name: str, nodes, outputs) -> onnx.GraphProto:
    return oh.make_graph(nodes, name, [], [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in outputs])


def _model(cond_nodes, cond_inputs, extra_inits=()) -> onnx.ModelProto:
    """y, z = If(cond): then (Relu(x) * 2 with an inner If on the same condition, x) else (Exp(x) named as a
    graph value, the constant 7); ``cond_nodes`` make 'cond' from ``cond_inputs`` and x."""
    inner = oh.make_node("If", ["cond"], ["t2"], name="inner",
                         then_branch=_branch("it", [oh.make_node("Neg", ["t1"], ["n"])], ["n"]),
                         else_branch=_branch("ie", [oh.make_node("Abs", ["t1"], ["n"])], ["n"]))
    then_b = _branch("then", [oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Mul", ["r", "two"], ["t1"]), inner],
                     ["t2", "x"])
    seven = oh.make_node("Constant", [], ["seven"], value=oh.make_tensor("c7", TP.FLOAT, [2, 3], [7.0] * 6))
    else_b = _branch("else", [oh.make_node("Exp", ["x"], ["e"]), seven], ["e", "seven"])
    nodes = [*cond_nodes, oh.make_node("Exp", ["x"], ["e"], name="graph_exp"),  # 'e' is also a name in else
             oh.make_node("If", ["cond"], ["y", "z"], name="top", then_branch=then_b, else_branch=else_b),
             oh.make_node("Add", ["y", "e"], ["w"])]
    inits = [oh.make_tensor("two", TP.FLOAT, [], [2.0]), *extra_inits]
    g = oh.make_graph(nodes, "branches", [oh.make_tensor_value_info("x", TP.FLOAT, [2, 3]), *cond_inputs],
                      [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in ("w", "z")], inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])


X = np.array([[-1.0, 0.5, 2.0], [3.0, -0.25, 0.0]], np.float32)


def _reference(m, feeds):
    return gc.prepare(gc.import_onnx(m), backend="numpy", level=0).run(feeds)


@pytest.mark.parametrize("flag", [True, False])
def test_a_constant_condition_inlines_the_branch_at_compile_time(flag):
    m = _model([oh.make_node("Identity", ["flag"], ["cond"])], [],
               [oh.make_tensor("flag", TP.BOOL, [], [flag])])
    plan = compile_graph(gc.import_onnx(m))
    assert "If" not in plan.graph.op_histogram()
    for got, want in zip(gc.prepare(plan, backend="numpy").run({"x": X}), _reference(m, {"x": X})):
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("mode", [0, 1])
def test_an_input_that_decides_an_if_is_found_and_specialized(mode):
    m = _model([oh.make_node("Equal", ["mode", "one"], ["cond"])], [oh.make_tensor_value_info("mode", TP.INT64, [])],
               [oh.make_tensor("one", TP.INT64, [], [1])])
    plan = compile_graph(gc.import_onnx(m))
    assert [v.name for v in branching_inputs(plan.graph)] == ["mode"]
    fixed = specialize_inputs(plan, {"mode": np.int64(mode)})
    assert "If" not in fixed.graph.op_histogram() and [v.name for v in fixed.graph.inputs] == ["x"]
    got = gc.prepare(fixed, backend="numpy").run({"x": X})
    for g, w in zip(got, _reference(m, {"x": X, "mode": np.array(mode, np.int64)})):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    with pytest.raises(GraphcError, match="cannot specialize input 'x'"):
        specialize_inputs(plan, {"x": np.zeros(5, np.float32)})


def test_inputs_that_do_not_decide_alone_are_not_branching_inputs():
    # the condition reads the data (a ReduceSum of x): no input decides it alone
    m = _model([oh.make_node("ReduceSum", ["x"], ["s"], keepdims=0), oh.make_node("Greater", ["s", "zero"], ["cond"])],
               [], [oh.make_tensor("zero", TP.FLOAT, [], [0.0])])
    assert branching_inputs(compile_graph(gc.import_onnx(m)).graph) == []


def test_a_shape_check_folds_when_the_dims_are_bound():
    """cond = Size(x) == 6 on x[N, 3]: unknown when compiled, True once N = 2 is bound."""
    m = _model([oh.make_node("Size", ["x"], ["n"]), oh.make_node("Equal", ["n", "six"], ["cond"])], [],
               [oh.make_tensor("six", TP.INT64, [], [6])])
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    plan = compile_graph(gc.import_onnx(m))
    assert "If" in plan.graph.op_histogram()
    bound = bind(plan, {"N": 2})
    assert "If" not in bound.graph.op_histogram()
    got = gc.prepare(plan, backend="numpy").run({"x": X})
    for g, w in zip(got, _reference(m, {"x": X})):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_zero_dimensional_results_fold():
    """NumPy returns scalars, not 0-d arrays, for ops on 0-d arrays (Not of a constant): they fold too."""
    g = oh.make_graph([oh.make_node("Not", ["t"], ["f"]), oh.make_node("Cast", ["f"], ["y"], to=TP.FLOAT)], "not",
                      [], [oh.make_tensor_value_info("y", TP.FLOAT, [])], [oh.make_tensor("t", TP.BOOL, [], [True])])
    plan = compile_graph(gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])))
    assert plan.graph.nodes == [] or all(n.op_type == "Identity" for n in plan.graph.nodes)
    assert gc.prepare(plan, backend="numpy").run({})[0] == 0.0
