"""Gradients users shape: gc.stop_gradient, gc.custom_gradient, and the one policy of round/floor/ceil/sign."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GradientError, GraphBuildError


def test_round_floor_ceil_sign_share_one_documented_zero_gradient_policy():
    xb = np.array([-1.7, -0.2, 0.4, 2.5])
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [4], name="x")
        fns = [gc.round, gc.floor, gc.ceil, gc.sign]
        ys = [f(x) for f in fns]
        grads = [gc.gradients(gc.reduce_sum(y * 3.0), x) for y in ys]
    sess = gc.Session(g)
    vals = sess.run(ys + grads, {x: xb})
    np.testing.assert_array_equal(vals[0], np.round(xb))
    for f, gv in zip(fns, vals[4:]):
        np.testing.assert_array_equal(gv, np.zeros(4))
        assert "Gradient policy" in f.__doc__ and "zero" in f.__doc__


def test_stop_gradient_and_a_straight_through_estimator():
    xb = np.array([0.3, 1.6, -2.4])
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [3], name="x")
        ste = x + gc.stop_gradient(gc.round(x) - x)
        d_ste = gc.gradients(gc.reduce_sum(ste * ste), x)  # d/dx of round(x)^2 through the estimator: 2 round(x)
        d_stop = gc.gradients(gc.reduce_sum(gc.stop_gradient(x * x) + x), x)
    v, ds, dp = gc.Session(g).run([ste, d_ste, d_stop], {x: xb})
    np.testing.assert_array_equal(v, np.round(xb))
    np.testing.assert_array_equal(ds, 2 * np.round(xb))
    np.testing.assert_array_equal(dp, np.ones(3))


def test_custom_gradient_is_written_with_gc_ops_and_differentiates_again():
    @gc.custom_gradient
    def clipped_square(x, w):
        y = x * x * w

        def grad(dy):
            return gc.clip(dy * 2.0 * x * w, -1.0, 1.0), dy * x * x

        return y, grad

    xb, wb = np.array([0.1, 0.4, 3.0]), np.array([1.0, 2.0, 0.5])
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [3], name="x")
        w = gc.Variable(wb, name="w")
        y = clipped_square(x, w)
        dx, dw = gc.gradients(gc.reduce_sum(y), [x, w])
        ddx = gc.gradients(gc.reduce_sum(dw), x)  # d/dx sum(x^2) = 2x, through the custom rule's own ops
    out = gc.Session(g).run([y, dx, dw, ddx], {x: xb})
    np.testing.assert_allclose(out[0], xb * xb * wb)
    np.testing.assert_allclose(out[1], np.clip(2 * xb * wb, -1, 1))
    np.testing.assert_allclose(out[2], xb * xb)
    np.testing.assert_allclose(out[3], 2 * xb)
    assert {n.op_type for n in g.nodes} <= {"Mul", "Clip", "Identity", "ReduceSum", "Add"} | {"Expand", "Reshape",
                                                                                              "ConstantOfShape"}


def test_custom_gradient_errors_name_the_function():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [2], name="x")
        with pytest.raises(GraphBuildError, match="custom_gradient 'bad' must return \\(y, grad_fn\\)"):
            gc.custom_gradient(_bad)(x)
        y = gc.custom_gradient(_two)(x)
        with pytest.raises(GradientError, match="custom_gradient '_two': its gradient function returned 2 "
                                                "gradient\\(s\\) for 1 tensor input"):
            gc.gradients(gc.reduce_sum(y), x)


def _bad(t):
    return t


_bad.__name__ = "bad"


def _two(t):
    return t * 2.0, lambda dy: (dy, dy)
