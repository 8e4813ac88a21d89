"""Binding a plan's symbolic dims folds the shape arithmetic they decide (Shape -> Gather -> Concat -> Reshape,
Slice bounds, ConstantOfShape), so that the CUDA backend (static shapes) runs such plans; ``gc.prepare`` passes
backend options through."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.cli import main
from graphc.compiler import bind
from graphc.compiler import compile as compile_graph
from graphc.errors import GraphcError

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


def _i64(name, vals):
    return oh.make_tensor(name, TP.INT64, [len(vals)], vals)


def _shape_math(spatial=8):
    """x[N,3,s,s] -> y = Reshape(Relu(x), [3N, -1]), w = (x + ConstantOfShape(Shape(x), 1))[: N/2]."""
    nodes = [oh.make_node("Shape", ["x"], ["s"], name="shape"),
             oh.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
             oh.make_node("Mul", ["n", "three"], ["n3"], name="n3"),
             oh.make_node("Concat", ["n3", "minus1"], ["target"], name="target", axis=0),
             oh.make_node("Relu", ["x"], ["r"], name="relu"),
             oh.make_node("Reshape", ["r", "target"], ["y"], name="reshape"),
             oh.make_node("ConstantOfShape", ["s"], ["ones"], name="ones",
                          value=oh.make_tensor("v", TP.FLOAT, [1], [1.0])),
             oh.make_node("Add", ["x", "ones"], ["z"], name="plus_one"),
             oh.make_node("Div", ["n", "two"], ["half"], name="half"),
             oh.make_node("Slice", ["z", "zero", "half", "zero"], ["w"], name="first_half")]
    inits = [_i64("zero", [0]), _i64("minus1", [-1]), _i64("three", [3]), _i64("two", [2])]
    graph = oh.make_graph(nodes, "shape_math", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 3, spatial, spatial])],
                          [oh.make_tensor_value_info(n, TP.FLOAT, None) for n in ("y", "w")], inits)
    return gc.import_onnx(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)]))


def _only_shape(spatial=8):
    """x is read only through its shape: y = ConstantOfShape(Shape(x), 2)."""
    nodes = [oh.make_node("Shape", ["x"], ["s"], name="shape"),
             oh.make_node("ConstantOfShape", ["s"], ["y"], name="fill",
                          value=oh.make_tensor("v", TP.FLOAT, [1], [2.0]))]
    graph = oh.make_graph(nodes, "only_shape", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", spatial])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    return gc.import_onnx(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)]))


def _x(n, spatial=8, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, spatial, spatial)).astype(np.float32)


def _want(x):
    return [np.maximum(x, 0).reshape(3 * x.shape[0], -1), (x + 1)[: x.shape[0] // 2]]


def _ops(graph):
    out = []
    for n in graph.nodes:
        out += [m.op_type for m in n.attrs["body"].nodes] if n.op_type == "FusedGroup" else [n.op_type]
    return out


def test_binding_folds_the_shape_arithmetic_and_leaves_the_plan_as_it_was():
    plan = compile_graph(_shape_math())
    before = _ops(plan.graph)
    assert {"Shape", "Gather", "Concat", "Div", "ConstantOfShape"} <= set(before) and plan.memory is None
    bound = bind(plan, {"N": 4})
    bound.graph.verify()
    assert set(_ops(bound.graph)) == {"Relu", "Reshape", "Add", "Slice"}
    (reshape,) = [m for n in bound.graph.nodes for m in (n.attrs["body"].nodes if "body" in n.attrs else [n])
                  if m.op_type == "Reshape"]
    assert reshape.inputs[1].data.tolist() == [12, -1]  # a constant inside the group's body
    assert [tuple(v.type.shape) for v in bound.graph.outputs] == [(12, 64), (2, 3, 8, 8)]
    assert bound.memory is not None and _ops(plan.graph) == before  # the symbolic plan is untouched
    assert bind(plan, {"N": 4}) is bound and bind(plan, {"N": 6}) is not bound


@pytest.mark.parametrize("check_memory", [False, True], ids=["fast", "check-memory"])
def test_the_numpy_backend_runs_a_folded_binding_per_fed_size(check_memory):
    exe = gc.prepare(compile_graph(_shape_math()), check_memory=check_memory)
    for n in (4, 2, 6):
        x = _x(n, seed=n)
        for got, want in zip(exe.run({"x": x}), _want(x)):
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_an_input_read_only_through_its_shape_stays_an_input_of_the_bound_plan():
    plan = compile_graph(_only_shape())
    bound = bind(plan, {"N": 3})
    assert [v.name for v in bound.graph.inputs] == ["x"] and not bound.graph.nodes
    np.testing.assert_array_equal(gc.prepare(plan).run({"x": np.zeros((3, 8), np.float32)})[0],
                                  np.full((3, 8), 2.0, np.float32))


@needs_gxx
@pytest.mark.parametrize("spatial", [8, 40], ids=["folded-fill", "fill-kernel"])  # 40: too large to fold
def test_the_cuda_backend_runs_a_symbolic_plan_whose_graph_computes_shapes(monkeypatch, tmp_path, spatial):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    graph = _shape_math(spatial)
    exe = gc.prepare(graph, backend="cuda")
    for n in (4, 2):
        x = _x(n, spatial, seed=n)
        for got, want in zip(exe.run({"x": x}), _want(x)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    (y,) = gc.prepare(_only_shape(), backend="cuda").run({"x": np.zeros((5, 8), np.float32)})
    np.testing.assert_array_equal(y, np.full((5, 8), 2.0, np.float32))


@needs_gxx
def test_graphc_run_binds_a_saved_symbolic_plan_on_the_cuda_backend(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    plan_path = str(tmp_path / "plan.onnx")
    compile_graph(_shape_math()).save(plan_path)
    x = _x(4)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    assert main(["run", plan_path, "--set", "N=4", "--input", f"x={tmp_path / 'x.npy'}", "--backend", "cuda",
                 "--output-dir", str(out)]) == 0
    for name, want in zip(("y", "w"), _want(x)):
        np.testing.assert_allclose(np.load(out / f"{name}.npy"), want, rtol=1e-6)


# ---- gc.prepare options ---------------------------------------------------------------------------
def _matmul():
    inputs = [oh.make_tensor_value_info("a", TP.FLOAT, [4, 8]), oh.make_tensor_value_info("b", TP.FLOAT, [8, 3])]
    graph = oh.make_graph([oh.make_node("MatMul", ["a", "b"], ["c"], name="mm")], "mm", inputs,
                          [oh.make_tensor_value_info("c", TP.FLOAT, [4, 3])])
    return gc.import_onnx(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)]))


@needs_gxx
@pytest.mark.parametrize("tf32", [False, True])
def test_prepare_passes_tf32_to_the_cuda_backend(monkeypatch, tmp_path, tf32):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    exe = gc.prepare(_matmul(), backend="cuda", tf32=tf32)
    gemms = [s.call for s in exe.prepared().lowered.steps if s.call is not None]
    assert gemms and all(g.tf32 == tf32 for g in gemms)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32)
    np.testing.assert_allclose(exe.run({"a": a, "b": b})[0], a @ b, rtol=1e-2 if tf32 else 1e-5, atol=1e-5)


def test_prepare_refuses_an_option_the_backend_does_not_take():
    with pytest.raises(GraphcError, match=r"backend 'numpy' takes no option 'tf32'; its options are memory_limit, "
                                          r"check_memory, fast"):
        gc.prepare(_matmul(), tf32=True)


def test_prepare_passes_numpy_options_and_the_memory_limit():
    exe = gc.prepare(compile_graph(_matmul()), check_memory=True, memory_limit="1MB")
    assert exe.check_memory and exe.memory_limit == 1 << 20
    with pytest.raises(GraphcError, match="memory"):
        gc.prepare(_matmul(), memory_limit=16).run({"a": np.ones((4, 8), np.float32), "b": np.ones((8, 3), np.float32)})
