"""Two gradient tricks in graphc: a straight-through estimator (a rounding quantizer whose gradient passes
straight through, once with gc.stop_gradient and once with gc.custom_gradient) trained to fit a target, and a
Hessian-vector product (the gradient of <gradient, v>) checked against the closed form.

    python docs/examples/ste_hvp.py [--steps 100]
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc


@gc.custom_gradient
def round_ste(x):
    """Rounds in the forward pass; the backward pass is the identity."""
    return gc.round(x), lambda dy: dy


def main(steps: int = 100, verbose: bool = True) -> dict:
    rng = np.random.default_rng(0)
    target = rng.uniform(-3, 3, 8)
    g = gc.Graph(seed=0)
    with g.as_default():
        # straight-through quantization: w is trained although round() has a zero derivative
        w = gc.Variable(np.zeros(8), name="w")                                 # float64 end to end
        q1 = w + gc.stop_gradient(gc.round(w) - w)
        q2 = round_ste(w)
        loss = gc.reduce_sum((q1 - target) ** 2) + gc.reduce_sum((q2 - target) ** 2)
        train = gc.optim.SGD(0.05).minimize(loss)
        # Hessian-vector product of f(x) = sum(exp(a x)) + (x^T A x) / 2: H v = a^2 exp(a x) v + A v
        x = gc.placeholder(gc.float64, [5], name="x")
        v = gc.placeholder(gc.float64, [5], name="v")
        a_mat = rng.standard_normal((5, 5))
        a_mat = a_mat + a_mat.T
        f = gc.reduce_sum(gc.exp(x * 0.5)) + 0.5 * gc.reduce_sum(x * gc.matmul(gc.constant(a_mat), x))
        (grad,) = gc.gradients(f, [x])
        (hvp,) = gc.gradients(gc.reduce_sum(grad * v), [x])
    with gc.Session(g) as sess:
        for i in range(steps):
            _, l = sess.run([train, loss])
            if verbose and i % 25 == 0:
                print(f"step {i}: loss {l:.3f}")
        quantized = sess.run(q1)
        xb, vb = rng.standard_normal(5), rng.standard_normal(5)
        got = sess.run(hvp, {x: xb, v: vb})
    want = 0.25 * np.exp(0.5 * xb) * vb + a_mat @ vb
    err = float(np.abs(got - want).max())
    if verbose:
        print(f"quantized weights {quantized} for targets {np.round(target, 2)}")
        print(f"Hessian-vector product: max error {err:.2e} against the closed form")
    return {"loss": float(l), "quantized": quantized, "target": target, "hvp_error": err}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    main(ap.parse_args().steps)
