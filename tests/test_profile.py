"""graphc/profile.py: the cost model, per-step timing through the executor's hook, the table and the
Chrome trace, and ``graphc profile``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from graphc.frontends.onnx import import_model
from graphc.cli import main
from graphc.ir import DType, Graph, Node, TensorType, Value
from graphc.profile import node_cost, profile, step_label
from graphc.runtime import get_backend


def _v(name, *shape, dtype=DType.float32):
    return Value(name, TensorType(dtype, tuple(shape)))


def test_conv_cost_counts_two_flops_per_multiply_add_plus_bias():
    x, w, b, y = _v("x", 1, 8, 32, 32), _v("w", 16, 4, 3, 3), _v("b", 16), _v("y", 1, 16, 30, 30)
    node = Node("Conv", [x, w, b], [y], {"group": 2})
    cost = node_cost(node)
    assert cost.flops == 2 * (16 * 30 * 30) * (4 * 3 * 3) + 16 * 30 * 30
    assert cost.bytes == 4 * (8 * 32 * 32 + 16 * 4 * 9 + 16 + 16 * 30 * 30)


def test_matmul_and_gemm_costs():
    a, b, y = _v("a", 3, 5, 7), _v("b", 7, 11), _v("y", 3, 5, 11)
    assert node_cost(Node("MatMul", [a, b], [y])).flops == 2 * 3 * 5 * 11 * 7
    a, w, c, y = _v("a", 64, 784), _v("w", 512, 784), _v("c", 512), _v("y", 64, 512)
    assert node_cost(Node("Gemm", [a, w, c], [y], {"transB": 1})).flops == 2 * 64 * 512 * 784 + 64 * 512
    at = _v("at", 784, 64)
    assert node_cost(Node("Gemm", [at, w], [y], {"transA": 1, "transB": 1})).flops == 2 * 64 * 512 * 784


def test_elementwise_reduction_and_data_movement_costs():
    x, c, y = _v("x", 4, 6), _v("c", 6), _v("y", 4, 6)
    assert node_cost(Node("Add", [x, c], [y])).flops == 24
    assert node_cost(Node("ReduceSum", [x], [_v("r", 4, 1)])).flops == 24
    reshaped = node_cost(Node("Reshape", [x, _v("s", 2, dtype=DType.int64)], [_v("z", 24)]))
    assert reshaped.flops == 0 and reshaped.bytes == 4 * 24 + 8 * 2 + 4 * 24


def test_unknown_shapes_give_unknown_cost():
    x = Value("x", TensorType(DType.float32, ("N", 4)))
    cost = node_cost(Node("Relu", [x], [Value("y", TensorType(DType.float32, ("N", 4)))]))
    assert cost.flops is None and cost.bytes is None


def test_fused_group_costs_its_body_flops_and_only_its_boundary_bytes():
    body = Graph("body")
    bx = body.add_input("x", TensorType(DType.float32, (8, 8)))
    bw = body.add_input("w", TensorType(DType.float32, (8, 8)))
    mm = body.add_node("MatMul", [bx, bw])
    mm.outputs[0].type = TensorType(DType.float32, (8, 8))
    relu = body.add_node("Relu", [mm.outputs[0]])
    relu.outputs[0].type = TensorType(DType.float32, (8, 8))
    body.outputs = [relu.outputs[0]]
    x, w, y = _v("x", 8, 8), _v("w", 8, 8), _v("y", 8, 8)
    node = Node("FusedGroup", [x, w], [y], {"body": body}, domain="graphc")
    assert node_cost(node).flops == 2 * 8 * 8 * 8 + 64
    assert node_cost(node).bytes == 3 * 64 * 4  # the MatMul's result never leaves the group
    assert step_label(node) == "FusedGroup[MatMul+Relu]"


def _small_model():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("ReduceSum", ["r"], ["y"], name="sum", keepdims=0)]
    w = helper.make_tensor("w", TensorProto.FLOAT, [16, 32], np.linspace(-1, 1, 512).astype(np.float32).tolist())
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], initializer=[w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_profile_times_every_step_of_every_run_and_turns_the_hook_off():
    exe = get_backend("numpy").prepare(import_model(_small_model()))
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    (expected,) = exe.run({"x": x})
    prof = profile(exe, {"x": x}, repeats=3, warmup=1)
    assert exe.step_timer is None
    assert [s.node.name for s in prof.steps] == ["mm", "relu", "sum"]
    assert all(len(s.times) == 3 and all(t > 0 for t in s.times) for s in prof.steps)
    assert len(prof.run_times) == 3
    for r, run in enumerate(prof.run_times):  # a run holds its steps
        assert sum(s.times[r] for s in prof.steps) <= run
    assert prof.steps[0].cost.flops == 2 * 4 * 32 * 16
    (again,) = exe.run({"x": x})
    np.testing.assert_array_equal(again, expected)
    table = prof.table()
    assert "mm" in table and "MatMul" in table and "by op:" in table and "us/step" in table
    assert sum(g["count"] for g in prof.by_op()) == 3


def test_chrome_trace_has_one_slice_per_step_and_run_in_order():
    exe = get_backend("numpy").prepare(import_model(_small_model()))
    prof = profile(exe, {"x": np.ones((4, 16), np.float32)}, repeats=2, warmup=0)
    trace = json.loads(json.dumps(prof.chrome_trace()))
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    runs = [e for e in slices if e["cat"] == "run"]
    steps = [e for e in slices if e["cat"] != "run"]
    assert len(runs) == 2 and len(steps) == 6
    for run in runs:  # each step lies inside its run, in schedule order
        inside = [e for e in steps if run["ts"] <= e["ts"] and e["ts"] + e["dur"] <= run["ts"] + run["dur"] + 1e-3]
        assert [e["name"] for e in inside] == ["mm", "relu", "sum"]
        assert all(a["ts"] + a["dur"] <= b["ts"] + 1e-3 for a, b in zip(inside, inside[1:]))
    assert steps[0]["args"]["flops"] == 2 * 4 * 32 * 16 and steps[0]["args"]["op"] == "MatMul"


def test_profile_refuses_an_executable_without_the_hook():
    from graphc.errors import GraphcError

    class Opaque:
        graph = None

        def run(self, feeds):
            return []

    with pytest.raises(GraphcError, match="no step_timer hook"):
        profile(Opaque(), {})


def test_graphc_profile_command_prints_the_table_and_writes_a_trace(tiny_cnn_path, tmp_path, capsys):
    trace = tmp_path / "trace.json"
    assert main(["profile", tiny_cnn_path, "--set", "N=2", "--repeats", "2", "--top", "3",
                 "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "steps; median of 2 runs" in out and "GFLOP" in out and "Conv" in out and "by op:" in out
    assert "more steps" in out  # --top 3 cuts the list
    events = json.loads(trace.read_text())["traceEvents"]
    assert sum(1 for e in events if e.get("cat") == "run") == 2


def test_attention_cost_counts_both_products_and_the_softmax():
    q, k, v, y = _v("q", 1, 4, 128, 64), _v("k", 1, 4, 128, 64), _v("v", 1, 4, 128, 64), _v("y", 1, 4, 128, 64)
    scores = 4 * 128 * 128
    assert node_cost(Node("Attention", [q, k, v], [y])).flops == 2 * scores * 64 * 2 + 5 * scores
    q3, k3, v3, y3 = _v("q", 1, 128, 256), _v("k", 1, 128, 256), _v("v", 1, 128, 256), _v("y", 1, 128, 256)
    node = Node("Attention", [q3, k3, v3], [y3], {"q_num_heads": 4, "kv_num_heads": 4})
    assert node_cost(node).flops == 2 * scores * 64 * 2 + 5 * scores
