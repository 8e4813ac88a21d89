"""Memory planning: liveness, in-place reuse, the arena layout, and running with the planned sharing."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from passes_util import f32, finish
from graphc.compiler import compile, memory_for
from graphc.errors import ExecutionError
from graphc.ir import Graph
from graphc.passes.memory import ALIGNMENT, check_plan, inplace_candidates, plan_memory, schedule
from graphc.models import light
from graphc.runtime import get_backend

KB = 1024  # float32[256]: exactly 1 KiB, a multiple of the alignment


def _chain():
    g = Graph()
    x = g.add_input("x", f32(256))
    a = g.add_node("Neg", [x], name="a").outputs[0]
    b = g.add_node("Exp", [a], name="b").outputs[0]
    c = g.add_node("Relu", [b], name="c").outputs[0]
    return finish(g, c)


def test_an_elementwise_chain_runs_in_place_in_one_buffer():
    plan = plan_memory(_chain())
    assert plan.inplace == {"b": "a", "c": "b"}  # a is read from x, the graph input: never overwritten
    assert set(plan.offsets.values()) == {0}
    assert plan.peak_bytes == KB and plan.naive_bytes == 3 * KB
    assert plan.lifetimes == {"a": (0, 1), "b": (1, 2), "c": (2, 3)}  # step 3: returned
    assert not check_plan(plan)


def test_without_in_place_two_buffers_alternate():
    plan = plan_memory(_chain(), inplace=False)
    assert not plan.inplace
    assert plan.offsets["a"] == plan.offsets["c"] != plan.offsets["b"]
    assert plan.peak_bytes == plan.live_peak_bytes == 2 * KB


def test_values_alive_together_never_share_bytes():
    g = Graph()
    x = g.add_input("x", f32(256))
    a = g.add_node("Neg", [x], name="a").outputs[0]
    b = g.add_node("Exp", [x], name="b").outputs[0]
    c = g.add_node("Add", [a, b], name="c").outputs[0]
    d = g.add_node("Mul", [c, a], name="d").outputs[0]  # a lives on past c: c may not overwrite it
    finish(g, d)
    plan = plan_memory(g)
    assert plan.inplace == {"c": "b", "d": "c"}
    assert not plan.overlapping("a", "b") and not plan.overlapping("a", "c")
    assert plan.peak_bytes == 2 * KB
    assert not check_plan(plan)


def test_in_place_candidates_follow_the_op():
    g = Graph()
    x = g.add_input("x", f32(1, 2, 4, 4))
    bias = g.add_input("bias", f32(1, 2, 1, 1))
    w = g.add_constant(np.ones((2, 2, 1, 1), np.float32), "w")
    conv = g.add_node("Conv", [x, w])
    add = g.add_node("Add", [bias, conv.outputs[0]])
    flat = g.add_node("Flatten", [add.outputs[0]])
    finish(g, flat.outputs[0])
    assert inplace_candidates(conv) == []  # a convolution reads neighbours of what it writes
    assert inplace_candidates(add) == [1]  # only the input with the output's shape
    assert inplace_candidates(flat) == [0]  # the same bytes, reinterpreted


def test_check_plan_finds_a_broken_layout():
    plan = plan_memory(_chain(), inplace=False)
    plan.offsets["b"] = plan.offsets["a"]
    assert check_plan(plan) == ["'a' (steps 0-1) and 'b' (steps 1-2) share bytes while both alive",
                                "'b' (steps 1-2) and 'c' (steps 2-3) share bytes while both alive"]


def test_schedule_computes_weights_next_to_their_use():
    g = Graph()
    x = g.add_input("x", f32(1, 256))
    shape = g.add_constant(np.array([256, 256], np.int64), "shape")
    weights = [g.add_node("ConstantOfShape", [shape], {"value": np.array([0.01], np.float32)}, name=f"w{i}")
               for i in range(4)]
    v = x
    for i, w in enumerate(weights):
        v = g.add_node("MatMul", [v, w.outputs[0]], name=f"mm{i}").outputs[0]
    finish(g, v)
    order = schedule(g)
    assert [n.name for n in order] == ["w0", "mm0", "w1", "mm1", "w2", "mm2", "w3", "mm3"]
    as_built = plan_memory(g)
    depth_first = plan_memory(g, order)
    assert as_built.peak_bytes >= 4 * 256 * KB
    assert depth_first.peak_bytes < 2 * 256 * KB + 2 * KB
    assert depth_first.naive_bytes == as_built.naive_bytes


def test_offsets_are_aligned():
    g = Graph()
    x = g.add_input("x", f32(3))
    a = g.add_node("Neg", [x]).outputs[0]
    b = g.add_node("Exp", [x]).outputs[0]
    c = g.add_node("Add", [a, b]).outputs[0]
    finish(g, c)
    plan = plan_memory(g)
    assert all(o % ALIGNMENT == 0 for o in plan.offsets.values())
    assert plan.sizes == {"Neg": 12, "Exp": 12, "Add": 12}
    assert plan.peak_bytes == 2 * ALIGNMENT


def test_resnet50_peak_is_at_most_a_third_of_the_naive_total(monkeypatch):
    monkeypatch.delenv("GRAPHC_VERIFY")  # the spot checks would run resnet50 after every pass
    from graphc.frontends.onnx import import_model

    plan = compile(import_model(light.path("resnet50")), level=2)
    mem = plan.memory
    assert mem.peak_bytes * 3 <= mem.naive_bytes, mem.summary()
    assert mem.live_peak_bytes <= mem.peak_bytes
    assert not check_plan(mem)


def _symbolic_mlp():
    g = Graph()
    x = g.add_input("x", f32("N", 16))
    w = g.add_constant(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32), "w")
    h = g.add_node("MatMul", [x, w], name="h").outputs[0]
    r = g.add_node("Relu", [h], name="r").outputs[0]
    y = g.add_node("MatMul", [r, w], name="y").outputs[0]
    return finish(g, g.add_node("Tanh", [y], name="t").outputs[0])


def test_a_symbolic_plan_is_planned_per_binding_and_cached(monkeypatch):
    monkeypatch.delenv("GRAPHC_VERIFY")
    plan = compile(_symbolic_mlp(), level=2)
    assert plan.memory is None and plan.symbols == ["N"]
    m2, m5 = memory_for(plan, {"N": 2}), memory_for(plan, {"N": 5})
    assert m2.sizes["r"] == 2 * 16 * 4 and m5.sizes["r"] == 5 * 16 * 4  # r: the MatMul+Relu group
    assert memory_for(plan, {"N": 2}) is m2
    exe = get_backend("numpy").prepare(plan, check_memory=True)
    ref = get_backend("numpy").prepare(_symbolic_mlp())
    for n in (2, 5, 3):
        x = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
        np.testing.assert_allclose(exe.run({"x": x})[0], ref.run({"x": x})[0], rtol=1e-5, atol=1e-6)
    assert memory_for(plan, {"N": 3}) is not None


def _light_plan(name: str):
    from graphc.frontends.onnx import import_model

    model, feeds = light.with_random_weights(onnx.load(light.path(name)))
    graph = import_model(model)
    return graph, compile(graph, level=2), feeds


def test_running_with_the_planned_sharing_gives_the_same_outputs(monkeypatch):
    monkeypatch.delenv("GRAPHC_VERIFY")
    graph, plan, feeds = _light_plan("squeezenet")
    want = get_backend("numpy").prepare(graph).run(feeds)
    got = get_backend("numpy").prepare(plan, check_memory=True).run(feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_plan_that_shares_live_bytes_is_caught_when_run(monkeypatch):
    monkeypatch.delenv("GRAPHC_VERIFY")
    _, plan, feeds = _light_plan("squeezenet")
    for name in plan.memory.offsets:
        plan.memory.offsets[name] = 0
    plan.memory.peak_bytes = max(plan.memory.sizes.values())
    with pytest.raises(ExecutionError, match="memory plan conflict at .*still alive"):
        get_backend("numpy").prepare(plan, check_memory=True).run(feeds)
    get_backend("numpy").prepare(plan).run(feeds)  # unchecked runs do not use the plan yet


def test_check_memory_from_the_environment(monkeypatch):
    monkeypatch.delenv("GRAPHC_VERIFY")
    monkeypatch.setenv("GRAPHC_CHECK_MEMORY", "1")
    plan = compile(_chain(), level=0)
    exe = get_backend("numpy").prepare(plan)
    assert exe.check_memory
    x = np.linspace(-1, 1, 256, dtype=np.float32)
    np.testing.assert_allclose(exe.run({"x": x})[0], np.maximum(np.exp(-x), 0), rtol=1e-6)
