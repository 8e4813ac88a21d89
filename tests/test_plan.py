"""Plans on disk: a saved plan is a valid ONNX model that loads back, unchanged, without re-optimizing."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from graphc.frontends.onnx import import_model
from graphc.compiler import bind, compile
from graphc.errors import GraphcError, PlanFormatError
from graphc.ir import DType, Graph, TensorType
from graphc.plan import LEGACY_DOMAIN, PLAN_FORMAT, Plan, is_plan, load_plan
from graphc.models import light
from graphc.runtime import get_backend


def _f32(*shape):
    return TensorType(DType.float32, shape)


def _block_graph() -> Graph:
    g = Graph()
    x = g.add_input("x", _f32("N", 3, 6, 6))
    rng = np.random.default_rng(0)
    w = g.add_constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = g.add_constant(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "b")
    c = g.add_node("Conv", [x, w], {"pads": [1, 1, 1, 1]}, name="conv").outputs[0]
    r = g.add_node("Relu", [g.add_node("Add", [c, b], name="bias").outputs[0]], name="relu").outputs[0]
    p = g.add_node("GlobalAveragePool", [r], name="gap").outputs[0]
    y = g.add_node("Flatten", [p], name="flat").outputs[0]
    g.outputs = [y]
    from graphc.ops.registry import get_opdef
    from graphc.passes import infer_shapes

    for n in g.nodes:
        get_opdef(n).complete_attrs(n)
    infer_shapes(g)
    return g


def _roundtrip(plan: Plan, tmp_path) -> tuple[Plan, onnx.ModelProto]:
    path = str(tmp_path / "plan.onnx")
    plan.save(path)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert is_plan(path)
    return load_plan(path), model


def test_a_fused_plan_saves_as_valid_onnx_and_loads_back(tmp_path):
    graph = _block_graph()
    plan = compile(graph, level=2, sets={"N": 2})
    loaded, model = _roundtrip(plan, tmp_path)
    fused = [n for n in model.graph.node if n.domain == "graphc"]
    assert [n.op_type for n in fused] == ["FusedGroup"]
    body = next(a.g for a in fused[0].attribute if a.name == "body")
    assert [n.op_type for n in body.node] == ["Conv", "Relu"]  # simplification moved the Add into the bias
    assert {o.domain: o.version for o in model.opset_import}["graphc"] == 1
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["graphc.plan.format"] == str(PLAN_FORMAT)
    assert json.loads(meta["graphc.memory"])["peak_bytes"] == plan.memory.peak_bytes
    # nothing is lost, nothing is recomputed
    assert [n.name for n in loaded.graph.nodes] == plan.schedule
    assert [(v.name, v.type) for v in loaded.graph.values()] == [(v.name, v.type) for v in plan.graph.values()]
    assert loaded.memory == plan.memory
    assert loaded.fusion.to_dict() == plan.fusion.to_dict()
    assert loaded.level == 2 and loaded.options == {"input_shapes": {}, "sets": {"N": 2}}
    loaded.graph.verify()
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    want = get_backend("numpy").prepare(graph).run({"x": x})[0]
    got = get_backend("numpy").prepare(loaded, check_memory=True).run({"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_loading_does_not_optimize_again(tmp_path, monkeypatch):
    plan = compile(_block_graph(), level=2, sets={"N": 1})
    path = str(tmp_path / "p.onnx")
    plan.save(path)
    import graphc.passes.fusion as fusion
    import graphc.passes.pipeline as pipeline

    def refuse(*a, **k):
        raise AssertionError("load_plan optimized the graph again")

    monkeypatch.setattr(fusion, "fuse", refuse)
    monkeypatch.setattr(pipeline, "simplify", refuse)
    assert len(load_plan(path).graph.nodes) == len(plan.graph.nodes)


def test_a_symbolic_plan_runs_for_any_binding(tmp_path):
    graph = _block_graph()
    plan = compile(graph, level=2)
    assert plan.memory is None and plan.symbols == ["N"]
    loaded, _ = _roundtrip(plan, tmp_path)
    assert loaded.symbols == ["N"]
    exe = get_backend("numpy").prepare(loaded, check_memory=True)
    ref = get_backend("numpy").prepare(graph)
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 6, 6)).astype(np.float32)
        np.testing.assert_allclose(exe.run({"x": x})[0], ref.run({"x": x})[0], rtol=1e-5, atol=1e-6)
    bound = bind(loaded, {"N": 3})
    assert bound.graph.inputs[0].type == _f32(3, 3, 6, 6) and bound.memory.peak_bytes > 0
    assert bind(loaded, {"N": 3}) is bound


def _save_model(model: onnx.ModelProto, tmp_path, name="m.onnx") -> str:
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def test_a_plan_of_another_format_is_refused_with_the_reason(tmp_path):
    plan = compile(_block_graph(), level=1, sets={"N": 1})
    model = plan.to_onnx()
    for p in model.metadata_props:
        if p.key == "graphc.plan.format":
            p.value = str(PLAN_FORMAT + 1)
        if p.key == "graphc.version":
            p.value = "9.9.9"
    path = _save_model(model, tmp_path, "future.onnx")
    with pytest.raises(PlanFormatError, match=rf"written by graphc 9\.9\.9 in plan format {PLAN_FORMAT + 1}, "
                                              rf"but this graphc \(.*\) reads plan format {PLAN_FORMAT} only"):
        load_plan(path)


def test_a_plan_with_ops_this_version_lacks_is_refused(tmp_path):
    model = compile(_block_graph(), level=0, sets={"N": 1}).to_onnx()
    model.graph.node[0].op_type = "Teleport"
    model.graph.node[0].domain = "graphc"
    with pytest.raises(PlanFormatError, match="uses ops this graphc .* does not know: graphc.Teleport"):
        load_plan(_save_model(model, tmp_path))


def test_an_ordinary_model_is_not_a_plan(tiny_cnn_path):
    assert not is_plan(tiny_cnn_path)
    with pytest.raises(PlanFormatError, match="not a graphc plan"):
        load_plan(tiny_cnn_path)


def test_an_op_onnx_cannot_spell_goes_to_the_legacy_domain(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)  # opset 11: softmax over dims 1.. as one
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 11)])
    graph = import_model(model)
    assert graph.nodes[0].attrs.get("legacy_coerce_2d") == 1
    loaded, saved = _roundtrip(compile(graph, level=0), tmp_path)
    (sm,) = [n for n in saved.graph.node if n.op_type == "Softmax"]
    assert sm.domain == LEGACY_DOMAIN
    node = loaded.graph.nodes[0]
    assert (node.domain, node.attrs["legacy_coerce_2d"], node.opset) == ("", 1, 11)
    xv = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    e = np.exp(xv.reshape(2, 12) - xv.reshape(2, 12).max(axis=1, keepdims=True))
    want = (e / e.sum(axis=1, keepdims=True)).reshape(2, 3, 4)
    np.testing.assert_allclose(get_backend("numpy").prepare(loaded).run({"x": xv})[0], want, rtol=1e-5)


def test_uniform_constants_are_stored_compactly(tmp_path):
    g = Graph()
    x = g.add_input("x", _f32(1, 512))
    w = g.add_constant(np.full((512, 512), 0.02, np.float32), "w")
    g.outputs = [g.add_node("MatMul", [x, w], name="mm").outputs[0]]
    from graphc.passes import infer_shapes

    infer_shapes(g)
    path = str(tmp_path / "p.onnx")
    compile(g, level=0).save(path)
    import os

    assert os.path.getsize(path) < 10_000  # not the 1 MiB of the weight
    loaded = load_plan(path)
    assert list(loaded.graph.constants) == ["w"]
    np.testing.assert_array_equal(loaded.graph.constants["w"].data, w.data)


def test_subgraphs_and_their_captures_survive(tmp_path):
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, [3])
    else_out = helper.make_tensor_value_info("e", TensorProto.FLOAT, [3])
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [then_out])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [else_out])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)
    model = helper.make_model(helper.make_graph([node], "g", [cond, x], [y]),
                              opset_imports=[helper.make_opsetid("", 21)])
    loaded, _ = _roundtrip(compile(import_model(model), level=2), tmp_path)
    exe = get_backend("numpy").prepare(loaded)
    xv = np.array([-1.0, 0.5, 2.0], np.float32)
    np.testing.assert_array_equal(exe.run({"c": np.array(True), "x": xv})[0], np.maximum(xv, 0))
    np.testing.assert_array_equal(exe.run({"c": np.array(False), "x": xv})[0], -xv)


def test_a_light_cnn_plan_round_trips(tmp_path):
    model, feeds = light.with_random_weights(onnx.load(light.path("shufflenet")))
    graph = import_model(model)
    loaded, saved = _roundtrip(compile(graph, level=2), tmp_path)
    assert sum(n.op_type == "FusedGroup" for n in saved.graph.node) == len(loaded.fusion.groups) > 10
    want = get_backend("numpy").prepare(graph).run(feeds)
    got = get_backend("numpy").prepare(loaded, check_memory=True).run(feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))


def test_binding_a_symbol_the_plan_lacks_says_which_are_open():
    plan = compile(_block_graph(), level=0, sets={"N": 2})
    assert bind(plan, {"N": 2}) is plan  # bound when compiled to the same size: nothing to do
    with pytest.raises(GraphcError, match=r"cannot set N, B: .*open symbols: none; bound when compiled: N=2"):
        bind(plan, {"N": 3, "B": 1})


def test_the_facade_offers_compile_and_load_plan(tmp_path):
    import graphc as gc

    plan = gc.compile(_block_graph(), level=2, sets={"N": 1})
    plan.save(str(tmp_path / "p.onnx"))
    loaded = gc.load_plan(str(tmp_path / "p.onnx"))
    x = np.ones((1, 3, 6, 6), np.float32)
    np.testing.assert_allclose(gc.prepare(loaded).run({"x": x})[0], gc.prepare(plan).run({"x": x})[0])
