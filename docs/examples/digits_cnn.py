"""TensorFlow 1's "deep MNIST" in graphc on the 8x8 digits: two convolutions with filter variables the program
holds (gc.nn.conv2d, "SAME" padding), max pooling, a dense layer with dropout fed through a keep_prob placeholder
(1.0 unless fed), Adam, save and restore of the variables.

    python docs/examples/digits_cnn.py [--steps 300]
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import graphc as gc
from graphc.models.digits_data import batches, load_digits_split


def weight(shape, name):
    return gc.Variable(gc.initializers.normal(0.0, 0.1), shape=shape, name=name)


def bias(n, name):
    return gc.Variable(np.full(n, 0.1, np.float32), name=name)


def main(steps: int = 300, verbose: bool = True) -> dict:
    xtr, ytr, xte, yte = load_digits_split()
    g = gc.Graph(seed=0)
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 64], name="x")
        y = gc.placeholder(gc.int64, [None], name="y")
        keep_prob = gc.placeholder_with_default(1.0, [], name="keep_prob")
        image = gc.reshape(x, [-1, 1, 8, 8])                                          # NCHW
        w1, w2 = weight([16, 1, 3, 3], "conv1/w"), weight([32, 16, 3, 3], "conv2/w")  # OIHW filters
        h = gc.nn.relu(gc.nn.bias_add(gc.nn.conv2d(image, w1, strides=1, padding="SAME"), bias(16, "conv1/b")))
        h = gc.nn.max_pool(h, ksize=2, strides=2, padding="SAME")                     # [N, 16, 4, 4]
        h = gc.nn.relu(gc.nn.bias_add(gc.nn.conv2d(h, w2, strides=1, padding="SAME"), bias(32, "conv2/b")))
        h = gc.nn.max_pool(h, ksize=2, strides=2, padding="SAME")                     # [N, 32, 2, 2]
        h = gc.nn.relu(gc.reshape(h, [-1, 128]) @ weight([128, 64], "fc1/w") + bias(64, "fc1/b"))
        h = gc.nn.dropout(h, rate=1.0 - keep_prob)
        logits = h @ weight([64, 10], "fc2/w") + bias(10, "fc2/b")
        loss = gc.nn.softmax_cross_entropy(logits, y)
        train = gc.optim.Adam(1e-2).minimize(loss)
        accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, 1), y), gc.float32))
    path = os.path.join(tempfile.mkdtemp(), "cnn.npz")
    with gc.Session(g) as sess:
        data = batches(xtr, ytr, 64, np.random.default_rng(0))
        for i in range(steps):
            xb, yb = next(data)
            _, l = sess.run([train, loss], {x: xb, y: yb, keep_prob: 0.75})
            if verbose and i % 100 == 0:
                print(f"step {i}: loss {l:.3f}")
        trained = sess.run(accuracy, {x: xte, y: yte})                                # keep_prob defaults to 1
        sess.save(path)
    with gc.Session(g) as fresh:
        fresh.restore(path)
        restored = fresh.run(accuracy, {x: xte, y: yte})
    if verbose:
        print(f"test accuracy {trained:.3f} (restored: {restored:.3f})")
    return {"loss": float(l), "accuracy": float(trained), "restored_accuracy": float(restored)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    main(ap.parse_args().steps)
