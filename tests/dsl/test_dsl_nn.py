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
        conv = gc.layers.Conv2D(4, 3, padding="valid")
        c = conv(x)
        mp = gc.nn.max_pool(x, 2)
        ap = gc.nn.avg_pool(x, 2)
        d = gc.layers.Dense(5)
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
        layer = gc.layers.Conv1D(4, 3, groups=4, causal=True)
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
        bn = gc.layers.BatchNorm(momentum=0.5)
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
        emb = gc.layers.Embedding(3, 4)
        outs = [gc.layers.layer_norm(x), emb(ids), gc.nn.silu(x), gc.nn.softplus(x), gc.nn.gelu(x),
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
        y = gc.layers.causal_self_attention(x, n_heads=2)
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


# ---- gc.nn: functions of tensors the caller holds ------------------------------------------------
def _np_conv2d(x, w, stride, pads):
    """Cross-correlation NCHW x OIHW with (top, left, bottom, right) zero padding."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    kh, kw = w.shape[2:]
    oh, ow = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


@pytest.mark.parametrize("padding,stride,pads", [("VALID", 1, (0, 0, 0, 0)), ("SAME", 1, (1, 1, 1, 1)),
                                                 ("same", 2, (0, 0, 1, 1)), ("Same", 3, (0, 0, 0, 0)),
                                                 ("SAME", 4, (0, 0, 1, 1))])
def test_nn_conv2d_takes_a_filter_tensor_and_tensorflow_padding(padding, stride, pads):
    rng = np.random.default_rng(6)
    xb, wb = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [2, 3, 6, 6], name="x")
        w = gc.placeholder(gc.float64, [4, 3, 3, 3], name="w")
        y = gc.nn.conv2d(x, w, strides=stride, padding=padding)
    got = gc.Session(g).run(y, {x: xb, w: wb})
    assert got.shape[2] == (-(-6 // stride) if padding.lower() == "same" else 4)
    np.testing.assert_allclose(got, _np_conv2d(xb, wb, stride, pads), rtol=1e-12, atol=1e-12)


def test_nn_conv_pool_bias_moments_batch_normalization():
    rng = np.random.default_rng(7)
    xb = rng.standard_normal((2, 3, 5)).astype(np.float64)
    wb = rng.standard_normal((2, 3, 2))
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [2, 3, 5], name="x")
        c = gc.nn.conv1d(x, gc.constant(wb), padding="causal")
        c3 = gc.nn.conv3d(gc.reshape(x, [2, 3, 5, 1, 1]), gc.constant(wb.reshape(2, 3, 2, 1, 1)))
        mp = gc.nn.max_pool(x, 2, 1)
        ap = gc.nn.avg_pool(x, 3, 1, "SAME")
        b = gc.nn.bias_add(x, gc.constant(np.array([1.0, 2.0, 3.0])))
        mean, var = gc.nn.moments(x, [0, 2])
        bn = gc.nn.batch_normalization(x, gc.reshape(mean, [1, 3, 1]), gc.reshape(var, [1, 3, 1]), 0.5, 2.0, 1e-3)
        t = gc.nn.conv2d_transpose(gc.reshape(x, [2, 3, 5, 1]), gc.constant(np.ones((3, 1, 2, 1))), strides=[2, 1],
                                   padding="SAME")
    got = gc.Session(g).run([c, c3, mp, ap, b, mean, var, bn, t], {x: xb})
    padded = np.concatenate([np.zeros((2, 3, 1)), xb], 2)
    np.testing.assert_allclose(got[0], sum(np.einsum("ncl,oc->nol", padded[:, :, k:k + 5], wb[:, :, k])
                                           for k in range(2)), rtol=1e-12)
    np.testing.assert_allclose(got[1][..., 0, 0], sum(np.einsum("ncl,oc->nol", xb[:, :, k:k + 4], wb[:, :, k])
                                                      for k in range(2)), rtol=1e-12)
    np.testing.assert_allclose(got[2], np.maximum(xb[..., :-1], xb[..., 1:]))
    xp = np.pad(xb, ((0, 0), (0, 0), (1, 1)))
    counts = np.array([2, 3, 3, 3, 2])
    np.testing.assert_allclose(got[3], (xp[..., :-2] + xp[..., 1:-1] + xp[..., 2:]) / counts, rtol=1e-12)
    np.testing.assert_allclose(got[4], xb + np.array([1.0, 2.0, 3.0])[:, None])
    np.testing.assert_allclose(got[5], xb.mean((0, 2)), rtol=1e-12)
    np.testing.assert_allclose(got[6], xb.var((0, 2)), rtol=1e-12)
    want_bn = (xb - xb.mean((0, 2))[:, None]) / np.sqrt(xb.var((0, 2))[:, None] + 1e-3) * 2.0 + 0.5
    np.testing.assert_allclose(got[7], want_bn, rtol=1e-12)
    assert got[8].shape == (2, 1, 10, 1)
    np.testing.assert_allclose(got[8][:, 0, :, 0], np.repeat(xb.sum(1), 2, axis=1), rtol=1e-12)


def test_nn_conv_refuses_an_int_filter_count_and_names_the_layer():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [1, 3, 8, 8], name="x")
        with pytest.raises(GraphBuildError, match=r"filters must be a tensor of shape \[out_channels, in_channels / "
                                                  r"groups, kh, kw\].*gc.layers.conv2d"):
            gc.nn.conv2d(x, 16, 3)
        with pytest.raises(GraphBuildError, match="padding must be 'SAME', 'VALID'"):
            gc.nn.conv2d(x, gc.constant(np.ones((2, 3, 3, 3), np.float32)), padding="full")
        with pytest.raises(GraphBuildError, match="bias 'const.*' has 4 elements but input 'x' has 3 channels"):
            gc.nn.bias_add(x, np.ones(4, np.float32))


def test_layers_hold_the_variable_creating_forms_and_nn_has_no_aliases():
    assert not hasattr(gc.nn, "Dense") and not hasattr(gc.nn, "dense") and not hasattr(gc.nn, "max_pool2d")
    for name in ("Dense", "Conv1D", "Conv2D", "Conv3D", "BatchNorm", "LayerNorm", "Embedding", "GRUCell", "LSTMCell",
                 "dense", "conv2d", "rnn"):
        assert name in gc.layers.__all__


def test_gru_and_lstm_cells_against_numpy():
    rng = np.random.default_rng(8)
    xb = rng.standard_normal((2, 4, 3))
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, ["B", 4, 3], name="x")
        gru, lstm = gc.layers.GRUCell(5), gc.layers.LSTMCell(5)
        gru_out, gru_h = gc.layers.rnn(gru, x)
        lstm_out, (lstm_c, lstm_h) = gc.layers.rnn(lstm, x)
    sess = gc.Session(g)
    go, gh, lo, lh = sess.run([gru_out, gru_h, lstm_out, lstm_h], {x: xb})
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    w, u, b = (sess.variable(v) for v in (gru.w, gru.u, gru.b))
    h = np.zeros((2, 5))
    for t in range(4):
        xt = xb[:, t]
        z = sig(xt @ w[:, :5] + h @ u[:, :5] + b[:5])
        r = sig(xt @ w[:, 5:10] + h @ u[:, 5:10] + b[5:10])
        c = np.tanh(xt @ w[:, 10:] + (r * h) @ u[:, 10:] + b[10:])
        h = z * h + (1 - z) * c
        np.testing.assert_allclose(go[:, t], h, rtol=1e-12)
    np.testing.assert_allclose(gh, h, rtol=1e-12)
    w, u, b = (sess.variable(v) for v in (lstm.w, lstm.u, lstm.b))
    h = c = np.zeros((2, 5))
    for t in range(4):
        i, f, gg, o = np.split(xb[:, t] @ w + h @ u + b, 4, axis=-1)
        c = sig(f + 1.0) * c + sig(i) * np.tanh(gg)
        h = sig(o) * np.tanh(c)
        np.testing.assert_allclose(lo[:, t], h, rtol=1e-12)
    np.testing.assert_allclose(lh, h, rtol=1e-12)


# ---- run-time switches -----------------------------------------------------------------------------
def _dropout_graph(seed):
    g = gc.Graph(seed=seed)
    with g.as_default():
        x = gc.placeholder(gc.float32, [2000], name="x")
        keep_prob = gc.placeholder_with_default(1.0, [], name="keep_prob")
        training = gc.placeholder_with_default(False, [], name="training")
        y = gc.nn.dropout(x, 1.0 - keep_prob, training=training)
        dx = gc.gradients(gc.reduce_sum(y), x)
    return g, x, keep_prob, training, y, dx


def test_dropout_switches_at_run_time_and_masks_are_new_each_run_and_seeded():
    g, x, keep_prob, training, y, dx = _dropout_graph(seed=3)
    sess = gc.Session(g)
    xb = np.ones(2000, np.float32)
    np.testing.assert_array_equal(sess.run(y, {x: xb}), xb)  # the defaults: not training
    np.testing.assert_array_equal(sess.run(y, {x: xb, training: True}), xb)  # keep_prob 1
    on = {x: xb, training: True, keep_prob: 0.75}
    a, da = sess.run([y, dx], on)
    b = sess.run(y, on)
    assert 0.70 < (a != 0).mean() < 0.80 and not np.array_equal(a != 0, b != 0)
    np.testing.assert_allclose(a[a != 0], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(da, a)  # the backward pass uses the forward pass's mask
    # reproducible from Graph(seed): a new session of an equal graph draws the same masks run by run
    g2, x2, k2, t2, y2, _ = _dropout_graph(seed=3)
    s2 = gc.Session(g2)
    s2.run(y2, {x2: xb})
    s2.run(y2, {x2: xb, t2: True})
    np.testing.assert_array_equal(s2.run(y2, {x2: xb, t2: True, k2: 0.75}), a)
    np.testing.assert_array_equal(s2.run(y2, {x2: xb, t2: True, k2: 0.75}), b)
    g3, x3, k3, t3, y3, _ = _dropout_graph(seed=4)
    s3 = gc.Session(g3)
    s3.run(y3, {x3: xb}), s3.run(y3, {x3: xb})
    assert not np.array_equal(s3.run(y3, {x3: xb, t3: True, k3: 0.75}), a)


def test_batch_norm_training_as_a_boolean_tensor():
    rng = np.random.default_rng(9)
    xb = (rng.standard_normal((8, 3)) * 2 + 1).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 3], name="x")
        training = gc.placeholder_with_default(False, [], name="training")
        bn = gc.layers.BatchNorm(momentum=0.5)
        y = bn(x, training)
        upd = gc.group(*g.update_ops)
    sess = gc.Session(g)
    ev, _ = sess.run([y, upd], {x: xb})  # evaluation: running statistics, which stay as they are
    np.testing.assert_allclose(ev, xb / np.sqrt(1 + 1e-5), rtol=1e-5)
    np.testing.assert_array_equal(sess.variable(bn.mean), np.zeros(3, np.float32))
    tr, _ = sess.run([y, upd], {x: xb, training: True})
    np.testing.assert_allclose(tr, (xb - xb.mean(0)) / np.sqrt(xb.var(0) + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sess.variable(bn.mean), 0.5 * xb.mean(0), rtol=1e-5)


def test_run_time_switch_errors():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [4], name="x")
        with pytest.raises(GraphBuildError, match="`training` must be a Python bool or a boolean scalar tensor, got "
                                                  "'x'"):
            gc.nn.dropout(x, 0.5, training=x)
        with pytest.raises(GraphBuildError, match="the default value has shape \\[2\\], which does not fit"):
            gc.placeholder_with_default(np.zeros(2, np.float32), [3], name="p")


# ---- checked losses --------------------------------------------------------------------------------
def test_class_ids_out_of_range_are_refused_at_run_time():
    g = gc.Graph()
    with g.as_default():
        logits = gc.placeholder(gc.float32, ["N", 10], name="logits")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        loss = gc.nn.softmax_cross_entropy(logits, y)
        computed = gc.nn.softmax_cross_entropy(logits, y + 5)  # labels computed in the graph are checked too
    sess = gc.Session(g)
    lb = np.zeros((3, 10), np.float32)
    assert sess.run(loss, {logits: lb, y: np.array([0, 9, 3])}) == pytest.approx(np.log(10))
    for bad in (12, -1):
        with pytest.raises(gc.FeedError, match=rf"labels 'y' must be class ids in \[0, 10\) for logits 'logits' of "
                                               rf"shape \['N', 10\]; got {bad}"):
            sess.run(loss, {logits: lb, y: np.array([0, bad, 3])})
    with pytest.raises(gc.FeedError, match=r"must be class ids in \[0, 10\).*got 12"):
        sess.run(computed, {logits: lb, y: np.array([0, 7, 3])})


def test_one_hot_labels_are_refused_while_building_and_have_their_own_loss():
    rng = np.random.default_rng(10)
    lb = rng.standard_normal((4, 3)).astype(np.float32)
    soft = rng.dirichlet(np.ones(3), 4).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        logits = gc.placeholder(gc.float32, [4, 3], name="logits")
        onehot = gc.placeholder(gc.float32, [4, 3], name="onehot")
        with pytest.raises(GraphBuildError, match=r"labels 'onehot' must be integer class ids of shape \[4\] for "
                                                  r"logits 'logits' of shape \[4, 3\], got float32\[4,3\].*"
                                                  r"softmax_cross_entropy_with_soft_labels"):
            gc.nn.softmax_cross_entropy(logits, onehot)
        with pytest.raises(GraphBuildError, match=r"labels 'ids' of shape \[5\] do not fit logits 'logits' of "
                                                  r"shape \[4, 3\]"):
            gc.nn.softmax_cross_entropy(logits, gc.placeholder(gc.int64, [5], name="ids"))
        loss = gc.nn.softmax_cross_entropy_with_soft_labels(logits, onehot)
    got = gc.Session(g).run(loss, {logits: lb, onehot: soft})
    logp = lb - np.log(np.exp(lb).sum(1, keepdims=True))
    assert got == pytest.approx(-(soft * logp).sum(1).mean(), rel=1e-5)
