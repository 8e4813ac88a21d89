"""The NumPy backend's fast kernels agree with the ops' reference ``eval`` and run where expected."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphc.frontends.onnx.importer import import_model
from graphc.compiler import compile
from graphc.errors import GraphcError
from graphc.ops.interpret import run_graph
from graphc.runtime import get_backend
from graphc.runtime.numpy import threads
from graphc.runtime.numpy.kernels.conv import conv_runner
from graphc.runtime.numpy.kernels.elementwise import ELEMENTWISE


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _check(model, feeds, level=2, kinds=None, rtol=1e-5):
    graph = import_model(model)
    want = run_graph(graph, {v: feeds[v.name] for v in graph.inputs})
    exe = get_backend("numpy").prepare(compile(graph, level=level))
    assert exe.program is not None
    if kinds is not None:
        assert exe.program.kinds == kinds
    for _ in range(2):  # a second run reuses every buffer
        got = exe.run(feeds)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)
    return exe, got


class _Node:
    def __init__(self, **attrs):
        self.attrs = dict(attrs)
        self.op_type, self.domain = "Conv", ""


@pytest.mark.parametrize("group,kernel,stride,pad,dil", [
    (1, 3, 1, 1, 1), (1, 3, 2, 1, 1), (1, 1, 1, 0, 1), (1, 1, 2, 0, 1), (1, 7, 2, 3, 1), (1, 3, 1, 2, 2),
    (4, 1, 1, 0, 1), (2, 3, 1, 1, 1), (8, 3, 1, 1, 1), (8, 3, 2, 1, 1), (1, 3, 1, 0, 1),
    # grouped and depthwise: phase layouts for strides 2 and 3, dilations, no or wide padding
    (8, 3, 2, 2, 2), (8, 5, 3, 2, 1), (4, 3, 2, 0, 1), (2, 5, 2, 2, 2), (8, 3, 1, 3, 1), (8, 2, 2, 0, 1)])
def test_conv_runner_matches_eval(group, kernel, stride, pad, dil):
    from graphc.ops.conv import _conv_eval

    rng = np.random.default_rng(0)
    node = _Node(group=group, strides=[stride, stride], pads=[pad] * 4, kernel_shape=[kernel, kernel],
                 dilations=[dil, dil], auto_pad="NOTSET")
    x = rng.standard_normal((2, 8, 11, 13)).astype(np.float32)
    w = rng.standard_normal((8, 8 // group, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    want = _conv_eval(node, x, w, b)
    for w_const in (w, None):  # weights known when prepared, or fed at run time
        out = np.full(want.shape, np.nan, np.float32)
        run = conv_runner(node, x.shape, w.shape, want.shape, np.float32, w_const, b if w_const is not None else None)
        for _ in range(2):
            run(x, w, b, out)
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,pad", [(3, 1, 1), (7, 2, 3), (1, 2, 0)])
def test_wide_ungrouped_conv_takes_whole_rows_and_matches_eval(kernel, stride, pad, monkeypatch):
    from graphc.ops.conv import _conv_eval
    from graphc.runtime.numpy.kernels import conv

    used, rows_runner = [], conv._rows_runner
    monkeypatch.setattr(conv, "_rows_runner", lambda *a: used.append(1) or rows_runner(*a))
    rng = np.random.default_rng(5)
    node = _Node(group=1, strides=[stride] * 2, pads=[pad] * 4, kernel_shape=[kernel] * 2, dilations=[1, 1],
                 auto_pad="NOTSET")
    x = rng.standard_normal((2, 3, 9, 128)).astype(np.float32)
    w = rng.standard_normal((5, 3, kernel, kernel)).astype(np.float32)
    want = _conv_eval(node, x, w)
    out = np.full(want.shape, np.nan, np.float32)
    conv_runner(node, x.shape, w.shape, want.shape, np.float32, w)(x, w, None, out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert used == [1]


@pytest.mark.parametrize("op", sorted(k for k in ELEMENTWISE if k not in ("Identity", "Clip", "LeakyRelu", "Gelu")))
def test_elementwise_kernel_matches_eval_in_place(op):
    from graphc.ops import lookup

    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 3.0, (3, 50)).astype(np.float32) * np.where(rng.random((3, 50)) < 0.3, -1, 1).astype(
        np.float32)
    if op in ("Log", "Sqrt"):
        x = np.abs(x)
    y = rng.uniform(0.5, 2.0, (3, 50)).astype(np.float32)
    opdef = lookup("", op)
    lo = opdef.inputs[0]
    args = [x, y][:max(lo, 1) if opdef.inputs[1] < 2 else 2]

    class N:
        op_type, domain, attrs = op, "", {}
    want = opdef.eval(N, *args)
    apply = ELEMENTWISE[op](N, np.dtype(np.float32))
    out = args[0].copy()
    apply(out, out, *[a.copy() for a in args[1:]])  # in place over its first input, as plans run it
    np.testing.assert_allclose(out, want, rtol=2e-6, atol=1e-7)


def test_erf_and_gelu_kernels_match_eval():
    from graphc.ops import lookup
    from graphc.ops.elementwise import _erf_exact

    x = np.concatenate([np.linspace(-6, 6, 20001), [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    out = x.copy()
    ELEMENTWISE["Erf"](None, np.dtype(np.float32))(out, out)
    np.testing.assert_allclose(out, _erf_exact(x.astype(np.float64)), rtol=0, atol=2e-7)
    assert np.isnan(out[-1])

    class N:
        op_type, domain, attrs = "Gelu", "", {"approximate": "none"}
    y = x[:-3].reshape(-1, 1)  # finite values, 2-D
    got = np.empty_like(y)
    ELEMENTWISE["Gelu"](N, np.dtype(np.float32))(got, y)
    np.testing.assert_allclose(got, lookup("", "Gelu").eval(N, y), rtol=1e-6, atol=1e-6)  # |x| * (both erf errors)


def test_conv_relu_residual_group_runs_fused_and_matches():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3
    m = _model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                helper.make_node("Add", ["c", "x"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
                helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
               [("x", [1, 4, 9, 9])], ["y"], [("w", w)])
    exe, _ = _check(m, {"x": rng.standard_normal((1, 4, 9, 9)).astype(np.float32)})
    assert exe.program.kinds == ["kernel"] * len(exe.program.kinds)
    assert any(n.op_type == "FusedGroup" for n in exe.program.nodes)


def test_elementwise_group_in_chunks_matches_and_does_not_alias_outputs():
    from graphc.runtime.numpy.kernels import fused

    rng = np.random.default_rng(3)
    m = _model([helper.make_node("Mul", ["x", "x"], ["a"]), helper.make_node("Tanh", ["a"], ["b"]),
                helper.make_node("Sigmoid", ["b"], ["c"]), helper.make_node("Sub", ["c", "x"], ["d"]),
                helper.make_node("Add", ["d", "bias"], ["y"])],
               [("x", [3, 300, 7])], ["y"], [("bias", rng.standard_normal(7).astype(np.float32))])
    feeds = {"x": rng.standard_normal((3, 300, 7)).astype(np.float32)}
    old = fused.CHUNK_ELEMENTS
    fused.CHUNK_ELEMENTS = 500  # several chunks and a shorter last one
    try:
        exe, first = _check(m, feeds)
    finally:
        fused.CHUNK_ELEMENTS = old
    second = exe.run(feeds)
    assert first[0] is not second[0] and not np.shares_memory(first[0], second[0])


@pytest.mark.parametrize("n_threads", [2, 3])
def test_threaded_elementwise_group_is_bitwise_the_single_threaded_result(n_threads, monkeypatch):
    from graphc.runtime.numpy.kernels import fused

    rng = np.random.default_rng(5)
    m = _model([helper.make_node("Mul", ["x", "z"], ["a"]), helper.make_node("Tanh", ["a"], ["b"]),
                helper.make_node("Exp", ["b"], ["c"]), helper.make_node("Sub", ["c", "x"], ["d"]),
                helper.make_node("Sigmoid", ["d"], ["e"]), helper.make_node("Mul", ["e", "b"], ["f"]),
                helper.make_node("Add", ["f", "bias"], ["y"])],
               [("x", [1, 411, 9]), ("z", [411, 9])], ["y"], [("bias", rng.standard_normal(9).astype(np.float32))])
    feed_sets = [{"x": rng.standard_normal((1, 411, 9)).astype(np.float32),
                  "z": rng.standard_normal((411, 9)).astype(np.float32)} for _ in range(2)]
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 40)  # 4 rows of 9 per chunk along axis 1, a shorter last one
    monkeypatch.setattr(fused, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(fused, "get_num_threads", lambda: 1)
    exe, _ = _check(m, feed_sets[0])
    single = [exe.run(feeds)[0].copy() for feeds in feed_sets]
    pooled = []
    real_pool = fused._pool
    monkeypatch.setattr(fused, "_pool", lambda n: pooled.append(n) or real_pool(n))
    monkeypatch.setattr(fused, "get_num_threads", lambda: n_threads)
    for k in range(4):  # the same executable, now splitting its chunks over threads; feeds alternate so
        got = exe.run(feed_sets[k % 2])[0]  # a recycled output buffer holds the other set's result
        assert got.tobytes() == single[k % 2].tobytes()
    assert pooled and set(pooled) == {n_threads - 1}
    monkeypatch.setattr(fused, "PARALLEL_MIN_ELEMENTS", 10 ** 9)  # too small a group: never threaded
    pooled.clear()
    small, _ = _check(m, feed_sets[1])
    assert small.run(feed_sets[1])[0].tobytes() == single[1].tobytes() and not pooled


def test_mlp_and_views_run_on_kernels_and_reuse_no_output_memory():
    rng = np.random.default_rng(4)
    w1 = rng.standard_normal((16, 8)).astype(np.float32)
    m = _model([helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                helper.make_node("Reshape", ["r", "shape"], ["y"]), helper.make_node("Softmax", ["y"], ["p"])],
               [("x", [4, 8])], ["p", "y"], [("w1", w1)])
    m.graph.initializer.append(numpy_helper.from_array(np.array([2, 32], np.int64), "shape"))
    exe, got = _check(m, {"x": rng.standard_normal((4, 8)).astype(np.float32)}, level=0)
    assert set(exe.program.kinds) == {"kernel"}
    again = exe.run({"x": np.zeros((4, 8), np.float32)})
    assert not np.shares_memory(got[1], again[1]) and not np.allclose(got[1], again[1])


def test_fast_and_reference_paths_agree_on_a_light_cnn():
    from graphc.models.light import NAMES, path, with_random_weights
    import onnx

    assert "squeezenet" in NAMES
    model, feeds = with_random_weights(onnx.load(path("squeezenet")), seed=0)
    graph = import_model(model)
    named = {v.name: x for v, x in zip(graph.inputs, feeds)}
    plan = compile(graph, level=2)
    fast = get_backend("numpy").prepare(plan).run(named)
    slow = get_backend("numpy").prepare(plan, fast=False).run(named)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))


def test_thread_count_is_settable_and_checked(monkeypatch):
    before = threads.get_num_threads()
    if before is None:
        pytest.skip("NumPy is not built against OpenBLAS here")
    try:
        threads.set_num_threads(1)
        assert threads.get_num_threads() == 1
    finally:
        threads.set_num_threads(before)
    with pytest.raises(GraphcError, match="positive integer"):
        threads.set_num_threads(0)
    monkeypatch.setenv(threads.ENV_VAR, "two")
    monkeypatch.setattr(threads, "_env_applied", False)
    with pytest.raises(GraphcError, match="GRAPHC_NUM_THREADS"):
        threads.apply_env()


@pytest.mark.parametrize("op,kernel,stride,pads,ceil,dil", [
    ("MaxPool", [3, 3], [2, 2], [0, 0, 0, 0], 0, [1, 1]), ("MaxPool", [3, 3], [2, 2], [1, 1, 1, 1], 0, [1, 1]),
    ("MaxPool", [3, 2], [1, 2], [1, 0, 0, 1], 1, [1, 1]), ("MaxPool", [2, 2], [2, 2], [0, 0, 0, 0], 0, [1, 1]),
    ("MaxPool", [3, 3], [2, 1], [2, 2, 2, 2], 0, [2, 2]), ("AveragePool", [3, 3], [2, 2], [1, 1, 1, 1], 1, None),
    ("AveragePool", [2, 2], [2, 2], [0, 0, 0, 0], 0, None)])
def test_pool_kernels_match_eval(op, kernel, stride, pads, ceil, dil):
    attrs = dict(kernel_shape=kernel, strides=stride, pads=pads, ceil_mode=ceil)
    if dil is not None:
        attrs["dilations"] = dil
    m = _model([helper.make_node(op, ["x"], ["y"], **attrs)], [("x", [2, 5, 13, 12])], ["y"])
    x = np.random.default_rng(4).standard_normal((2, 5, 13, 12)).astype(np.float32)
    exe, got = _check(m, {"x": x}, kinds=["kernel"], rtol=1e-6)
    if op == "MaxPool":  # a maximum is exact whatever the order of the passes
        graph = import_model(m)
        np.testing.assert_array_equal(got[0], run_graph(graph, {graph.inputs[0]: x})[0])
