"""The DSL's tensors: operators, broadcasting, indexing, shape facts, source lines and build-time shape errors."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphBuildError, ShapeError


def run(fetches, feeds=None, graph=None):
    g = graph or (fetches[0] if isinstance(fetches, list) else fetches).graph
    return gc.Session(g).run(fetches, feeds or {})


def test_graph_is_an_ir_graph_used_through_as_default():
    g = gc.Graph()
    assert isinstance(g, gc.IRGraph)
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 3], name="x")
    assert x.graph is g and g.inputs == [x.value]
    with pytest.raises(GraphBuildError, match="no default graph"):
        gc.placeholder(gc.float32, [2], name="y")


def test_operators_and_broadcasting_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.uniform(1, 2, (3,)).astype(np.float32)
    m = rng.standard_normal((3, 5)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 3], name="x")
        y = gc.constant(b)
        w = gc.constant(m)
        outs = [x + y, x - 1, 2 - x, x * y, x / y, 1 / y, x @ w, y ** 2, 2.0 ** y, -x, x < 0, x >= y, abs(x),
                np.float32(3) * x]
    got = gc.Session(g).run(outs, {x: a})
    want = [a + b, a - 1, 2 - a, a * b, a / b, 1 / b, a @ m, b ** 2, 2.0 ** b, -a, a < 0, a >= b, np.abs(a), 3 * a]
    for gv, wv in zip(got, want):
        assert gv.dtype == wv.dtype
        np.testing.assert_allclose(gv, wv, rtol=1e-6)
    assert outs[0].dtype == gc.float32 and outs[10].dtype == gc.bool


def test_indexing_and_slicing_match_numpy():
    a = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 5, 6], name="x")
        idx = gc.constant(np.array([4, 0, 2]))
        cases = {
            "x[:, 1:5]": (x[:, 1:5], a[:, 1:5]),
            "x[..., None]": (x[..., None], a[..., None]),
            "x[0]": (x[0], a[0]),
            "x[:, -1]": (x[:, -1], a[:, -1]),
            "x[:, ::2, 1]": (x[:, ::2, 1], a[:, ::2, 1]),
            "x[:, ::-1]": (x[:, ::-1], a[:, ::-1]),
            "x[None, 1, 2:, -3:]": (x[None, 1, 2:, -3:], a[None, 1, 2:, -3:]),
            "x[:, idx]": (x[:, idx], a[:, [4, 0, 2]]),
        }
    got = gc.Session(g).run({k: t for k, (t, _) in cases.items()}, {x: a})
    for k, (t, want) in cases.items():
        np.testing.assert_array_equal(got[k], want, err_msg=k)
    assert cases["x[:, 1:5]"][0].shape == ("x_d0", 4, 6)
    assert cases["x[..., None]"][0].shape == ("x_d0", 5, 6, 1)


def test_shape_dtype_reshape_transpose_astype():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 2, 3], name="x")
        r = x.reshape(-1, 6)
        t = x.transpose(0, 2, 1)
        c = x.astype(gc.int32)
    assert x.shape == ("N", 2, 3) and x.dtype == gc.float32
    assert r.shape == ("N", 6) and t.shape == ("N", 3, 2) and c.dtype == gc.int32
    a = np.arange(12, dtype=np.float32).reshape(2, 2, 3) - 5.5
    got = gc.Session(g).run([r, t, c], {x: a})
    np.testing.assert_array_equal(got[0], a.reshape(-1, 6))
    np.testing.assert_array_equal(got[1], a.transpose(0, 2, 1))
    np.testing.assert_array_equal(got[2], a.astype(np.int32))


def test_math_reduction_and_shape_functions():
    a = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [3, 4], name="x")
        outs = [gc.exp(x), gc.reduce_sum(x, 1), gc.reduce_mean(x, [0, 1], keepdims=True), gc.reduce_max(x),
                gc.argmax(x, 1), gc.concat([x, x], 1), gc.stack([x, x], 0), gc.expand_dims(x, 0),
                gc.squeeze(gc.expand_dims(x, 1), 1), gc.where(x > 0, x, 0.0), gc.maximum(x, 0.5),
                gc.one_hot(gc.argmax(x, 1), 4), gc.split(x, 2, axis=1)[1], gc.tril(x), gc.clip(x, -0.5, 0.5),
                gc.sqrt(gc.abs(x)), gc.cumsum(x, 1), x.sum(0), x.mean(), gc.reduce_logsumexp(x, 1)]
    got = gc.Session(g).run(outs, {x: a})
    lse = np.log(np.exp(a).sum(1))
    want = [np.exp(a), a.sum(1), a.mean(keepdims=True), a.max(), a.argmax(1), np.concatenate([a, a], 1),
            np.stack([a, a]), a[None], a, np.where(a > 0, a, 0), np.maximum(a, 0.5), np.eye(4, dtype=np.float32)[a.argmax(1)],
            a[:, 2:], np.tril(a), np.clip(a, -0.5, 0.5), np.sqrt(np.abs(a)), np.cumsum(a, 1), a.sum(0), a.mean(), lse]
    for i, (gv, wv) in enumerate(zip(got, want)):
        np.testing.assert_allclose(gv, wv, rtol=1e-5, atol=1e-6, err_msg=f"output {i}")


def test_every_tensor_remembers_its_source_line():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2], name="x")  # line A
        y = gc.nn.relu(x) * 2  # line B
    here = __file__.rsplit("/", 1)[-1]
    assert x.source.endswith(f"{here}:{test_every_tensor_remembers_its_source_line.__code__.co_firstlineno + 3}")
    assert y.source.endswith(f"{here}:{test_every_tensor_remembers_its_source_line.__code__.co_firstlineno + 4}")
    assert y.op.inputs[0].producer.source == y.source  # relu's node is created on the same line


def test_shape_error_is_raised_while_building_and_quotes_the_line():
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, [None, 3], name="a")
        w = gc.constant(np.zeros((4, 5), np.float32), name="w")
        n_before = len(g.nodes)
        with pytest.raises(ShapeError) as e:
            y = a @ w  # the bad line  # noqa: F841
    msg = str(e.value)
    assert "MatMul node" in msg and "test_dsl_tensor.py:" in msg
    assert "y = a @ w  # the bad line" in msg
    assert "3" in msg and "4" in msg
    assert len(g.nodes) == n_before  # the failed node was not left in the graph


def test_broadcast_error_names_both_shapes():
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, [2, 3], name="a")
        b = gc.placeholder(gc.float32, [4], name="b")
        with pytest.raises(ShapeError, match=r"cannot broadcast shapes \[2,3\] and \[4\]"):
            a + b


def test_mixing_graphs_is_refused():
    g1, g2 = gc.Graph(), gc.Graph()
    with g1.as_default():
        a = gc.placeholder(gc.float32, [2], name="a")
    with g2.as_default():
        b = gc.placeholder(gc.float32, [2], name="b")
    with pytest.raises(GraphBuildError, match="belongs to graph"):
        a + b


def test_placeholder_dims_none_and_symbols():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, "T", 4], name="x")
        y = gc.placeholder(gc.float32, ["T"], name="y")
        z = x * y[:, None]
    assert x.shape[1] == "T" and isinstance(x.shape[0], str)
    assert z.shape == (x.shape[0], "T", 4)
    with pytest.raises(GraphBuildError, match="dim 0 must be"):
        with g.as_default():
            gc.placeholder(gc.float32, [-2], name="bad")


def test_truth_value_of_a_tensor_is_an_error():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2], name="x")
    with pytest.raises(GraphBuildError, match="truth value"):
        bool(x > 0)
