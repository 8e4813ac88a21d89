"""gc.nn layers and initializers: values against NumPy, training/inference modes, causality, seeding."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphBuildError


@pytest.mark.parametrize("name", ["zeros", "ones", "normal", "uniform", "glorot_uniform", "glorot_normal",
                                  "he_uniform", "he_normal"])
def test_initializers_are_seeded_and_scaled(name):
    init = getattr(gc.initializers, name)
    a = init(seed=1)([200, 300])
    b = init(seed=1)([200, 300])
    assert a.dtype == np.float32 and a.shape == (200, 300)
    np.testing.assert_array_equal(a, b)
    want_std = {"zeros": 0, "ones": 0, "normal": 1.0, "uniform": 0.1 / np.sqrt(12), "glorot_uniform": np.sqrt(2 / 500),
                "glorot_normal": np.sqrt(2 / 500), "he_uniform": np.sqrt(2 / 200), "he_normal": np.sqrt(2 / 200)}[name]
    assert a.std() == pytest.approx(want_std, rel=0.05, abs=1e-9)


def test_variables_without_seed_follow_the_graph_seed():
    def make(seed):
        g = gc.Graph(seed=seed)
        with g.as_default():
            gc.Variable(gc.initializers.normal(), shape=[4], name="a")
            gc.Variable(gc.initializers.normal(), shape=[4], name="b")
        return g.initial_values

    v1, v2, v3 = make(0), make(0), make(1)
    np.testing.assert_array_equal(v1["a"], v2["a"])
    assert not np.array_equal(v1["a"], v1["b"]) and not np.array_equal(v1["a"], v3["a"])
    with pytest.raises(GraphBuildError, match="an initializer needs `shape=`"):
        with gc.Graph().as_default():
            gc.Variable(gc.initializers.zeros(), name="c")


def test_dense_conv_pool_against_numpy():
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 3, 6, 6], name="x")
        conv = gc.nn.Conv2D(4, 3, padding="valid")
        c = conv(x)
        mp = gc.nn.max_pool2d(x)
        ap = gc.nn.avg_pool2d(x)
        d = gc.nn.Dense(5)
        dy = d(gc.reshape(x, [-1, 108]))
    sess = gc.Session(g)
    got = sess.run([c, mp, ap, dy], {x: xb})
    w, b = sess.variable(conv.w), sess.variable(conv.b)
    want = np.zeros((2, 4, 4, 4), np.float32)
    for i in range(4):
        for j in range(4):
            want[:, :, i, j] = np.einsum("nchw,ochw->no", xb[:, :, i:i + 3, j:j + 3], w) + b
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], xb.reshape(2, 3, 3, 2, 3, 2).max((3, 5)))
    np.testing.assert_allclose(got[2], xb.reshape(2, 3, 3, 2, 3, 2).mean((3, 5)), rtol=1e-6)
    np.testing.assert_allclose(got[3], xb.reshape(2, 108) @ sess.variable(d.w) + sess.variable(d.b), rtol=1e-5)


def test_depthwise_causal_conv1d_sees_only_the_past():
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((1, 4, 10)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [1, 4, 10], name="x")
        layer = gc.nn.Conv1D(4, 3, groups=4, causal=True)
        y = layer(x)
    sess = gc.Session(g)
    out = sess.run(y, {x: xb})
    w, b = sess.variable(layer.w), sess.variable(layer.b)
    assert w.shape == (4, 1, 3) and out.shape == (1, 4, 10)
    padded = np.concatenate([np.zeros((1, 4, 2), np.float32), xb], axis=2)
    want = sum(padded[:, :, j:j + 10] * w[None, :, 0, j, None] for j in range(3)) + b[None, :, None]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_batch_norm_training_and_inference():
    rng = np.random.default_rng(2)
    xb = (rng.standard_normal((8, 3, 2, 2)) * 2 + 1).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 3, 2, 2], name="x")
        bn = gc.nn.BatchNorm(momentum=0.5)
        train_y = bn(x, training=True)
        infer_y = bn(x, training=False)
        upd = gc.group(*g.update_ops)
    sess = gc.Session(g)
    ty, _ = sess.run([train_y, upd], {x: xb})
    mu, var = xb.mean((0, 2, 3)), xb.var((0, 2, 3))
    np.testing.assert_allclose(ty, (xb - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sess.variable(bn.mean), 0.5 * mu, rtol=1e-5)
    np.testing.assert_allclose(sess.variable(bn.var), 0.5 + 0.5 * var, rtol=1e-5)
    iy = sess.run(infer_y, {x: xb})
    rm, rv = 0.5 * mu, 0.5 + 0.5 * var
    np.testing.assert_allclose(iy, (xb - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5), rtol=1e-4, atol=1e-5)


def test_layer_norm_embedding_activations():
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((2, 5)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 5], name="x")
        ids = gc.constant(np.array([[0, 2], [2, 1]]))
        emb = gc.nn.Embedding(3, 4)
        outs = [gc.nn.layer_norm(x), emb(ids), gc.nn.silu(x), gc.nn.softplus(x), gc.nn.gelu(x),
                gc.nn.log_softmax(x), gc.nn.softmax(x, 0)]
    sess = gc.Session(g)
    got = sess.run(outs, {x: xb})
    table = sess.variable(emb.table)
    from math import erf
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))(xb)
    e = np.exp(xb - xb.max(1, keepdims=True))
    want = [(xb - xb.mean(1, keepdims=True)) / np.sqrt(xb.var(1, keepdims=True) + 1e-5), table[[[0, 2], [2, 1]]],
            xb / (1 + np.exp(-xb)), np.log1p(np.exp(xb)), gelu, np.log(e / e.sum(1, keepdims=True)),
            np.exp(xb) / np.exp(xb).sum(0)]
    for i, (gv, wv) in enumerate(zip(got, want)):
        np.testing.assert_allclose(gv, wv, rtol=1e-4, atol=1e-5, err_msg=f"output {i}")


def test_dropout_training_flag():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [1000], name="x")
        on = gc.nn.dropout(x, 0.25, training=True)
        off = gc.nn.dropout(x, 0.25, training=False)
    assert off is x
    out = gc.Session(g).run(on, {x: np.ones(1000, np.float32)})
    kept = out != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)


def test_causal_self_attention_ignores_the_future():
    rng = np.random.default_rng(4)
    xb = rng.standard_normal((2, 6, 8)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["B", "T", 8], name="x")
        y = gc.nn.causal_self_attention(x, n_heads=2)
    sess = gc.Session(g)
    a = sess.run(y, {x: xb})
    changed = xb.copy()
    changed[:, 4:] += 5.0
    b = sess.run(y, {x: changed})
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-5, atol=1e-6)
    assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-2
    assert sess.run(y, {x: xb[:, :3]}).shape == (2, 3, 8)


def test_losses_against_numpy():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    p = rng.uniform(0.1, 0.9, (4, 3)).astype(np.float32)
    t = (rng.uniform(size=(4, 3)) > 0.5).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        outs = [gc.nn.softmax_cross_entropy(logits, labels), gc.nn.mse(p, t),
                gc.nn.binary_cross_entropy(p, t), gc.nn.binary_cross_entropy(logits, t, from_logits=True)]
    got = gc.Session(g).run(outs)
    ls = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    sig = 1 / (1 + np.exp(-logits))
    want = [-ls[np.arange(4), labels].mean(), ((p - t) ** 2).mean(),
            -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(), -(t * np.log(sig) + (1 - t) * np.log(1 - sig)).mean()]
    np.testing.assert_allclose(got, want, rtol=1e-5)
