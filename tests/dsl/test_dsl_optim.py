"""Optimizers against closed-form updates, learning-rate schedules, and global-norm clipping."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc

W0 = np.array([0.5, -1.0, 2.0], np.float32)
C = np.array([0.3, -0.2, 0.1], np.float32)


def linear_problem(opt, steps: int = 1):
    """loss = sum(w * c + 0.5 w^2): gradient g = c + w. Returns the successive values of w."""
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(W0, name="w")
        loss = gc.reduce_sum(w * C + w * w * 0.5)
        step = opt.minimize(loss)
    sess = gc.Session(g)
    ws = []
    for _ in range(steps):
        sess.run(step)
        ws.append(sess.variable(w).copy())
    return ws


def grads_of(w):
    return C + w


def test_sgd_single_step():
    (w1,) = linear_problem(gc.optim.SGD(0.1))
    np.testing.assert_allclose(w1, W0 - 0.1 * grads_of(W0), rtol=1e-6)


def test_sgd_weight_decay():
    (w1,) = linear_problem(gc.optim.SGD(0.1, weight_decay=0.5))
    np.testing.assert_allclose(w1, W0 - 0.1 * (grads_of(W0) + 0.5 * W0), rtol=1e-6)


def test_momentum_two_steps():
    w1, w2 = linear_problem(gc.optim.Momentum(0.1, momentum=0.9), steps=2)
    v1 = grads_of(W0)
    np.testing.assert_allclose(w1, W0 - 0.1 * v1, rtol=1e-6)
    v2 = 0.9 * v1 + grads_of(w1)
    np.testing.assert_allclose(w2, w1 - 0.1 * v2, rtol=1e-6)


def test_nesterov_single_step():
    (w1,) = linear_problem(gc.optim.Nesterov(0.1, momentum=0.9))
    gr = grads_of(W0)
    v1 = gr
    np.testing.assert_allclose(w1, W0 - 0.1 * (gr + 0.9 * v1), rtol=1e-6)


def adam_reference(w, steps, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    m = np.zeros_like(w, dtype=np.float64)
    v = np.zeros_like(w, dtype=np.float64)
    w = w.astype(np.float64)
    out = []
    for t in range(1, steps + 1):
        gr = C + w
        m = b1 * m + (1 - b1) * gr
        v = b2 * v + (1 - b2) * gr * gr
        mh, vh = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w - lr * (mh / (np.sqrt(vh) + eps) + wd * w)
        out.append(w.copy())
    return out


def test_adam_first_step_moves_each_weight_by_lr():
    (w1,) = linear_problem(gc.optim.Adam(0.01))
    # the first Adam step is lr * sign(g) (up to eps)
    np.testing.assert_allclose(w1, W0 - 0.01 * np.sign(grads_of(W0)), rtol=1e-5)


def test_adam_three_steps_match_the_formula():
    got = linear_problem(gc.optim.Adam(0.05, beta1=0.8, beta2=0.99), steps=3)
    want = adam_reference(W0, 3, 0.05, 0.8, 0.99)
    for gv, wv in zip(got, want):
        np.testing.assert_allclose(gv, wv, rtol=1e-5)


def test_adamw_decouples_weight_decay():
    got = linear_problem(gc.optim.AdamW(0.05, weight_decay=0.1), steps=2)
    want = adam_reference(W0, 2, 0.05, wd=0.1)
    for gv, wv in zip(got, want):
        np.testing.assert_allclose(gv, wv, rtol=1e-5)


def test_rmsprop_two_steps():
    w1, w2 = linear_problem(gc.optim.RMSProp(0.01, rho=0.9, epsilon=1e-8), steps=2)
    s = 0.1 * grads_of(W0) ** 2
    np.testing.assert_allclose(w1, W0 - 0.01 * grads_of(W0) / (np.sqrt(s) + 1e-8), rtol=1e-5)
    s = 0.9 * s + 0.1 * grads_of(w1) ** 2
    np.testing.assert_allclose(w2, w1 - 0.01 * grads_of(w1) / (np.sqrt(s) + 1e-8), rtol=1e-5)


@pytest.mark.parametrize("schedule", [
    gc.optim.StepDecay(0.1, step_size=2, gamma=0.5),
    gc.optim.Cosine(0.1, total_steps=4, min_lr=0.01),
    gc.optim.Warmup(0.1, warmup_steps=3),
    gc.optim.Warmup(gc.optim.Cosine(0.1, total_steps=5), warmup_steps=2),
])
def test_schedules_in_the_graph_match_their_values_and_drive_sgd(schedule):
    ws = linear_problem(gc.optim.SGD(schedule), steps=6)
    prev = W0
    for t, w in enumerate(ws):
        np.testing.assert_allclose(w, prev - schedule(t) * grads_of(prev), rtol=1e-5, atol=1e-7)
        prev = w


def test_schedule_values():
    assert [gc.optim.StepDecay(1.0, 2, 0.5)(t) for t in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    cos = gc.optim.Cosine(1.0, 4)
    assert cos(0) == 1.0 and abs(cos(2) - 0.5) < 1e-12 and cos(4) == 0.0 and cos(10) == 0.0
    assert [gc.optim.Warmup(1.0, 4)(t) for t in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_global_norm_clipping():
    g = gc.Graph()
    with g.as_default():
        a = gc.constant(np.array([3.0, 0.0], np.float32))
        b = gc.constant(np.array([[4.0]], np.float32))
        (ca, cb), norm = gc.optim.clip_by_global_norm([a, b], 1.0)
        (ua, ub), _ = gc.optim.clip_by_global_norm([a, b], 10.0)
    got = gc.Session(g).run([ca, cb, norm, ua, ub])
    np.testing.assert_allclose(got[2], 5.0)
    np.testing.assert_allclose(got[0], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(got[1], [[0.8]], rtol=1e-6)
    np.testing.assert_allclose(got[3], [3.0, 0.0])
    np.testing.assert_allclose(got[4], [[4.0]])


def test_clip_norm_option_of_an_optimizer():
    (w1,) = linear_problem(gc.optim.SGD(1.0, clip_norm=0.1))
    gr = grads_of(W0)
    np.testing.assert_allclose(w1, W0 - gr * (0.1 / np.linalg.norm(gr)), rtol=1e-5)


def test_minimize_defaults_to_the_trainable_variables_the_loss_reads():
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(np.float32(1.0), name="w")
        frozen = gc.Variable(np.float32(2.0), name="frozen", trainable=False)
        unused = gc.Variable(np.float32(3.0), name="unused")
        loss = w * frozen
        step = gc.optim.SGD(0.5).minimize(loss)
    sess = gc.Session(g)
    sess.run(step)
    assert sess.variable(w) == pytest.approx(1.0 - 0.5 * 2.0)
    assert sess.variable(frozen) == 2.0 and sess.variable(unused) == 3.0
    assert math.isclose(sess.variable("sgd/step"), 1.0)


# ---- float64 end to end ------------------------------------------------------------------------------
def _float64_run(opt, steps=5):
    w0, c = W0.astype(np.float64), C.astype(np.float64)
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(w0, name="w")
        loss = gc.reduce_sum(w * c + w * w * 0.5)
        step = opt.minimize(loss)
    sess = gc.Session(g)
    out = []
    for _ in range(steps):
        sess.run(step)
        out.append(sess.variable(w).copy())
    assert out[-1].dtype == np.float64
    return g, w0, c, out


def _numpy_updates(kind, w, c, steps, lr, **k):
    m = v = np.zeros_like(w)
    out = []
    for t in range(1, steps + 1):
        gr = c + w
        if kind == "sgd":
            w = w - lr * gr
        elif kind == "momentum":
            v = k["mu"] * v + gr
            w = w - lr * v
        elif kind == "rmsprop":
            v = k["rho"] * v + (1 - k["rho"]) * gr * gr
            w = w - lr * gr / (np.sqrt(v) + k["eps"])
        else:  # adam, in the optimizer's arrangement of the bias corrections
            m = k["b1"] * m + (1 - k["b1"]) * gr
            v = k["b2"] * v + (1 - k["b2"]) * gr * gr
            w = w - m * (lr / (1 - k["b1"] ** t)) / (np.sqrt(v) / np.sqrt(1 - k["b2"] ** t) + k["eps"])
        out.append(w)
    return out


@pytest.mark.parametrize("kind,make,kw", [
    ("sgd", lambda: gc.optim.SGD(1e-6), {}),
    ("sgd", lambda: gc.optim.SGD(0.1), {}),
    ("momentum", lambda: gc.optim.Momentum(0.1, momentum=0.7), {"mu": 0.7}),
    ("rmsprop", lambda: gc.optim.RMSProp(0.01, rho=0.8, epsilon=1e-7), {"rho": 0.8, "eps": 1e-7}),
    ("adam", lambda: gc.optim.Adam(0.05, beta1=0.8, beta2=0.99, epsilon=1e-7), {"b1": 0.8, "b2": 0.99, "eps": 1e-7}),
])
def test_float64_models_train_in_float64_end_to_end(kind, make, kw):
    opt = make()
    g, w0, c, got = _float64_run(opt)
    want = _numpy_updates(kind, w0, c, 5, opt.learning_rate, **kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # every update constant is float64 (none is a float32 value cast up)
    consts = [c for c in g.constants.values() if c.data.dtype == np.float32 and c.data.size == 1]
    assert all(float(c.data) in (0.0, 1.0) for c in consts), [(c.name, c.data) for c in consts]


def test_learning_rate_as_a_placeholder():
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(W0, name="w")
        lr = gc.placeholder(gc.float32, [], name="lr")
        step = gc.optim.SGD(lr).minimize(gc.reduce_sum(w * C + w * w * 0.5))
    sess = gc.Session(g)
    sess.run(step, {lr: 0.1})
    w1 = W0 - np.float32(0.1) * grads_of(W0)
    np.testing.assert_allclose(sess.variable(w), w1, rtol=1e-6)
    sess.run(step, {lr: 0.0})
    np.testing.assert_allclose(sess.variable(w), w1, rtol=1e-6)
    with pytest.raises(gc.GraphcError, match="learning_rate must be a number, a gc.optim.Schedule or a scalar float "
                                             "tensor"):
        gc.optim.SGD("fast")
