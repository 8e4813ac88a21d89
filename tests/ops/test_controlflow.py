"""Control flow (If, Loop, Scan, SequenceMap): bodies that read enclosing values, body shape inference,
opset-8 Scan, and values against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.importer import import_model
from graphc.errors import ShapeError
from graphc.ir import DType, Graph, TensorType
from graphc.ir.types import SequenceType
from graphc.ops import lookup
from graphc.ops.interpret import node_captures, outer_values, run_graph
from graphc.passes import infer_shapes
from graphc.runtime.numpy.executor import NumpyExecutable

RNG = np.random.default_rng(7)
F32, I64 = DType.float32, DType.int64


def vi(name, elem=TP.FLOAT, shape=None):
    return oh.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, opset=17, inits=()):
    g = oh.make_graph(nodes, "g", inputs, [onnx.ValueInfoProto(name=o) if isinstance(o, str) else o for o in outputs],
                      initializer=list(inits))
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])


def run_ours(m, feeds):
    g = import_model(m)
    return g, NumpyExecutable(g).run(feeds)


def run_ort(m, feeds):
    return ort.InferenceSession(m.SerializeToString()).run(None, feeds)


def assert_matches_ort(m, feeds):
    g, ours = run_ours(m, feeds)
    for a, b in zip(ours, run_ort(m, feeds)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return g, ours


def loop_body(extra_nodes=(), capture="a"):
    """Body: y_out = y_in + <capture>; scan output y_out * y_out; condition passed through."""
    return oh.make_graph(
        [oh.make_node("Add", ["y_in", capture], ["y_out"]), oh.make_node("Mul", ["y_out", "y_out"], ["sq"]),
         *extra_nodes],
        "body", [vi("i", TP.INT64, []), vi("c", TP.BOOL, []), vi("y_in", TP.FLOAT, None)],
        [vi("c", TP.BOOL, []), vi("y_out"), vi("sq")])


def loop_model():
    # 'a' is read only by the loop body: the executor must keep it alive until the Loop runs.
    return model([oh.make_node("Exp", ["x"], ["a"]),
                  oh.make_node("Loop", ["M", "cond", "x"], ["yf", "sqs"], body=loop_body())],
                 [vi("M", TP.INT64, []), vi("cond", TP.BOOL, []), vi("x", TP.FLOAT, ["N", 3])], ["yf", "sqs"])


def test_loop_with_captured_value_matches_onnxruntime():
    x = RNG.random((2, 3), dtype=np.float32)
    g, (yf, sqs) = assert_matches_ort(loop_model(), {"M": np.array(4), "cond": np.array(True), "x": x})
    np.testing.assert_allclose(yf, x + 4 * np.exp(x), rtol=1e-6)
    loop = g.nodes[1]
    assert [v.name for v in node_captures(loop)] == ["a"]
    assert g.outputs[0].type == TensorType(F32, ("N", 3))
    assert g.outputs[1].type.shape[1:] == ("N", 3) and isinstance(g.outputs[1].type.shape[0], str)


def test_loop_zero_iterations_gives_empty_scan_output_with_known_dims():
    x = RNG.random((2, 3), dtype=np.float32)
    _, (yf, sqs) = run_ours(loop_model(), {"M": np.array(0), "cond": np.array(True), "x": x})
    np.testing.assert_array_equal(yf, x)
    assert sqs.shape == (0, 2, 3) and sqs.dtype == np.float32


def test_loop_condition_from_body_stops_even_without_cond_input():
    body = oh.make_graph(
        [oh.make_node("Add", ["y_in", "one"], ["y_out"]), oh.make_node("Less", ["y_out", "lim"], ["c_out"])],
        "body", [vi("i", TP.INT64, []), vi("c", TP.BOOL, []), vi("y_in", TP.FLOAT, [])],
        [vi("c_out", TP.BOOL, []), vi("y_out", TP.FLOAT, []), vi("y_in", TP.FLOAT, [])])
    m = model([oh.make_node("Loop", ["M", "", "y0"], ["yf", "ys"], body=body)],
              [vi("M", TP.INT64, []), vi("y0", TP.FLOAT, [])], ["yf", "ys"],
              inits=[oh.make_tensor("one", TP.FLOAT, [], [1.0]), oh.make_tensor("lim", TP.FLOAT, [], [3.0])])
    _, (yf, ys) = assert_matches_ort(m, {"M": np.array(10), "y0": np.array(0, np.float32)})
    assert yf == 3.0 and ys.tolist() == [0.0, 1.0, 2.0]  # scalars stack to a vector


def test_loop_state_that_grows_gets_a_symbolic_dim():
    body = oh.make_graph([oh.make_node("Concat", ["s_in", "piece"], ["s_out"], axis=0)], "body",
                         [vi("i", TP.INT64, []), vi("c", TP.BOOL, []), vi("s_in", TP.FLOAT, None)],
                         [vi("c", TP.BOOL, []), vi("s_out")])
    m = model([oh.make_node("Loop", ["M", "cond", "s0"], ["sf"], body=body)],
              [vi("M", TP.INT64, []), vi("cond", TP.BOOL, []), vi("s0", TP.FLOAT, [2])], ["sf"],
              inits=[oh.make_tensor("piece", TP.FLOAT, [1], [5.0])])
    g, (sf,) = assert_matches_ort(m, {"M": np.array(3), "cond": np.array(True), "s0": np.zeros(2, np.float32)})
    assert sf.shape == (5,)
    body_g = g.nodes[0].attrs["body"]
    state_in = body_g.inputs[2].type
    assert state_in.dtype == F32 and len(state_in.shape) == 1 and isinstance(state_in.shape[0], str)
    out = g.outputs[0].type
    assert out.dtype == F32 and len(out.shape) == 1 and isinstance(out.shape[0], str)


def test_nested_body_reads_a_value_two_scopes_out():
    # Loop body -> If branch -> reads 'a' of the main graph (listed only in the branch's captures).
    then_b = oh.make_graph([oh.make_node("Add", ["y_in", "a"], ["t"])], "then", [], [vi("t")])
    else_b = oh.make_graph([oh.make_node("Sub", ["y_in", "a"], ["e"])], "else", [], [vi("e")])
    body = oh.make_graph(
        [oh.make_node("If", ["c"], ["y_out"], then_branch=then_b, else_branch=else_b)],
        "body", [vi("i", TP.INT64, []), vi("c", TP.BOOL, []), vi("y_in", TP.FLOAT, None)],
        [vi("c", TP.BOOL, []), vi("y_out")])
    m = model([oh.make_node("Neg", ["x"], ["a"]), oh.make_node("Loop", ["M", "cond", "x"], ["yf"], body=body)],
              [vi("M", TP.INT64, []), vi("cond", TP.BOOL, []), vi("x", TP.FLOAT, [4])], ["yf"])
    x = RNG.random(4, dtype=np.float32)
    g, (yf,) = assert_matches_ort(m, {"M": np.array(3), "cond": np.array(True), "x": x})
    np.testing.assert_allclose(yf, x - 3 * x, rtol=1e-6)
    body_g = g.nodes[1].attrs["body"]
    assert [v.name for v in outer_values(body_g)] == ["a"]
    # the reference interpreter gives the same
    got = run_graph(g, {g.inputs[0]: np.array(3), g.inputs[1]: np.array(True), g.inputs[2]: x})
    np.testing.assert_allclose(got[0], yf)


def test_if_joins_branch_shapes_and_picks_a_branch():
    then_b = oh.make_graph([oh.make_node("Add", ["x", "x"], ["t"])], "then", [], [vi("t")])
    else_b = oh.make_graph([oh.make_node("Concat", ["x", "x"], ["e"], axis=1)], "else", [], [vi("e")])
    m = model([oh.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b)],
              [vi("c", TP.BOOL, []), vi("x", TP.FLOAT, ["N", 3])], ["y"])
    x = RNG.random((2, 3), dtype=np.float32)
    g, (y,) = assert_matches_ort(m, {"c": np.array(False), "x": x})
    assert y.shape == (2, 6)
    t = g.outputs[0].type
    assert t.dtype == F32 and t.shape[0] == "N" and isinstance(t.shape[1], str)
    _, (y,) = assert_matches_ort(m, {"c": np.array(True), "x": x})
    np.testing.assert_allclose(y, 2 * x)


def test_if_branches_of_different_element_types_fail_inference():
    then_b = oh.make_graph([oh.make_node("Identity", ["x"], ["t"])], "then", [], [vi("t")])
    else_b = oh.make_graph([oh.make_node("Identity", ["k"], ["e"])], "else", [], [vi("e", TP.INT64)])
    m = model([oh.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b)],
              [vi("c", TP.BOOL, []), vi("x", TP.FLOAT, [2]), vi("k", TP.INT64, [2])], ["y"])
    with pytest.raises(ShapeError, match="then_branch gives float32 but else_branch gives int64"):
        import_model(m)


def test_scan_axes_and_directions_match_onnxruntime():
    body = oh.make_graph([oh.make_node("Add", ["s_in", "e"], ["s_out"]), oh.make_node("Mul", ["s_out", "e2"], ["o"])],
                         "sb", [vi("s_in", TP.FLOAT, [3]), vi("e", TP.FLOAT, [3]), vi("e2", TP.FLOAT, [3])],
                         [vi("s_out", TP.FLOAT, [3]), vi("o", TP.FLOAT, [3])])
    m = model([oh.make_node("Scan", ["s0", "X", "X2"], ["sf", "O"], body=body, num_scan_inputs=2,
                            scan_input_axes=[1, 0], scan_input_directions=[1, 0], scan_output_axes=[-1],
                            scan_output_directions=[1])],
              [vi("s0", TP.FLOAT, [3]), vi("X", TP.FLOAT, [3, "T"]), vi("X2", TP.FLOAT, ["T", 3])], ["sf", "O"])
    feeds = {"s0": RNG.random(3, dtype=np.float32), "X": RNG.random((3, 5), dtype=np.float32),
             "X2": RNG.random((5, 3), dtype=np.float32)}
    g, (sf, o) = assert_matches_ort(m, feeds)
    assert g.outputs[1].type == TensorType(F32, (3, "T"))


def test_opset8_scan_with_batch_and_sequence_lens():
    body = oh.make_graph([oh.make_node("Add", ["s_in", "e"], ["s_out"]), oh.make_node("Neg", ["s_out"], ["o"])],
                         "sb", [vi("s_in", TP.FLOAT, [2]), vi("e", TP.FLOAT, [2])],
                         [vi("s_out", TP.FLOAT, [2]), vi("o", TP.FLOAT, [2])])
    m = model([oh.make_node("Scan", ["lens", "s0", "X"], ["sf", "O"], body=body, num_scan_inputs=1, directions=[1])],
              [vi("lens", TP.INT32, [3]), vi("s0", TP.FLOAT, [3, 2]), vi("X", TP.FLOAT, [3, 4, 2])], ["sf", "O"],
              opset=8)
    x = RNG.random((3, 4, 2), dtype=np.float32)
    s0 = RNG.random((3, 2), dtype=np.float32)
    lens = np.array([4, 2, 0], np.int32)
    g, (sf, o) = run_ours(m, {"lens": lens, "s0": s0, "X": x})
    np.testing.assert_allclose(sf, s0 + np.stack([x[0].sum(0), x[1, :2].sum(0), np.zeros(2)]), rtol=1e-6)
    # backward over the first 2 steps of row 1, padded with zeros after
    np.testing.assert_allclose(o[1, :2], -(s0[1] + np.cumsum(x[1, :2][::-1], axis=0)), rtol=1e-6)
    assert (o[1, 2:] == 0).all() and (o[2] == 0).all()
    assert g.outputs[1].type == TensorType(F32, (3, 4, 2))


def test_sequence_map_with_a_tensor_input():
    body = oh.make_graph([oh.make_node("Add", ["e", "t"], ["o"])], "b", [vi("e"), vi("t")], [vi("o")])
    m = model([oh.make_node("SequenceMap", ["s", "t"], ["out"], body=body)],
              [oh.make_tensor_sequence_value_info("s", TP.FLOAT, None), vi("t", TP.FLOAT, [3])], ["out"])
    seq = [RNG.random(3, dtype=np.float32), RNG.random(3, dtype=np.float32)]
    t = RNG.random(3, dtype=np.float32)
    g, (out,) = run_ours(m, {"s": seq, "t": t})
    assert len(out) == 2
    for a, e in zip(out, seq):
        np.testing.assert_allclose(a, e + t)
    assert isinstance(g.outputs[0].type, SequenceType) and g.outputs[0].type.elem.dtype == F32


def _loop_graph(n_state_inputs: int) -> Graph:
    body = Graph("body")
    body.add_input("i", TensorType(I64, ()))
    c = body.add_input("c", TensorType(DType.bool, ()))
    y = body.add_input("y", TensorType(F32, None))
    body.outputs = [c, y]
    g = Graph("main")
    m = g.add_input("M", TensorType(I64, ()))
    ys = [g.add_input(f"y{k}", TensorType(F32, ("B", 4))) for k in range(n_state_inputs)]
    node = g.add_node("Loop", [m, None, *ys], {"body": body}, num_outputs=max(n_state_inputs, 1))
    lookup("", "Loop").complete_attrs(node)
    g.outputs = list(node.outputs)
    return g


def test_loop_inference_types_body_inputs_from_initial_values():
    g = _loop_graph(1)
    infer_shapes(g)
    body = g.nodes[0].attrs["body"]
    assert body.inputs[2].type == TensorType(F32, ("B", 4))
    assert g.outputs[0].type == TensorType(F32, ("B", 4))


def test_loop_body_arity_mismatch_is_a_shape_error():
    g = _loop_graph(2)
    with pytest.raises(ShapeError, match="takes 3 inputs, but the node gives it 4"):
        infer_shapes(g)


def test_scan_bad_axis_is_a_shape_error():
    body = Graph("b")
    e = body.add_input("e", TensorType(F32, (3,)))
    body.outputs = [e]
    g = Graph("main")
    x = g.add_input("x", TensorType(F32, ("T", 3)))
    node = g.add_node("Scan", [x], {"body": body, "num_scan_inputs": 1, "scan_input_axes": [2]})
    lookup("", "Scan").complete_attrs(node)
    with pytest.raises(ShapeError, match=r"scan_input_axes\[0\] = 2 is out of range"):
        infer_shapes(g)
