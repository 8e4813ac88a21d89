"""TensorFlow 1's first tutorial in graphc: softmax regression on the 8x8 digits, trained by plain gradient
descent, saved, restored into a fresh session and evaluated.

    python docs/examples/softmax_regression.py [--steps 300]
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import graphc as gc
from graphc.models.digits_data import batches, load_digits_split


def main(steps: int = 300, verbose: bool = True) -> dict:
    xtr, ytr, xte, yte = load_digits_split()
    g = gc.Graph(seed=0)
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 64], name="x")            # tf.placeholder(tf.float32, [None, 64])
        y = gc.placeholder(gc.int64, [None], name="y")
        w = gc.Variable(np.zeros((64, 10), np.float32), name="w")
        b = gc.Variable(np.zeros(10, np.float32), name="b")
        logits = x @ w + b
        loss = gc.nn.softmax_cross_entropy(logits, y)                    # sparse_softmax_cross_entropy_with_logits
        train = gc.optim.SGD(0.5).minimize(loss)                         # GradientDescentOptimizer(0.5)
        accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, 1), y), gc.float32))
    path = os.path.join(tempfile.mkdtemp(), "softmax.npz")
    with gc.Session(g) as sess:
        data = batches(xtr, ytr, 100, np.random.default_rng(0))
        for i in range(steps):
            xb, yb = next(data)
            _, l = sess.run([train, loss], {x: xb, y: yb})
            if verbose and i % 100 == 0:
                print(f"step {i}: loss {l:.3f}")
        sess.save(path)                                                  # tf.train.Saver().save
        trained = sess.run(accuracy, {x: xte, y: yte})
    with gc.Session(g) as fresh:
        fresh.restore(path)                                              # tf.train.Saver().restore
        restored = fresh.run(accuracy, {x: xte, y: yte})
    if verbose:
        print(f"test accuracy {trained:.3f} (restored: {restored:.3f})")
    return {"loss": float(l), "accuracy": float(trained), "restored_accuracy": float(restored)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    main(ap.parse_args().steps)
