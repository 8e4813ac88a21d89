"""A small LeNet-style conv net on the 8x8 digits: conv-BN-ReLU-pool twice, then two dense layers.

    python -m graphc.models.lenet_digits [--backend numpy] [--steps 500] [--batch 64]

Batch norm runs in training mode (batch statistics, running averages updated by the step) for the
training graph and in inference mode for evaluation; both share the same variables.
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc

from .digits_data import batches, load_digits_split
from .training_loop import fit


class LeNet:
    """The layers, created once and applied to both the training and the inference input."""

    def __init__(self):
        self.conv1 = gc.layers.Conv2D(16, 3, padding="same", name="conv1")
        self.bn1 = gc.layers.BatchNorm(name="bn1")
        self.conv2 = gc.layers.Conv2D(32, 3, padding="same", name="conv2")
        self.bn2 = gc.layers.BatchNorm(name="bn2")
        self.fc1 = gc.layers.Dense(64, activation=gc.nn.relu, kernel_initializer=gc.initializers.he_uniform(),
                                   name="fc1")
        self.fc2 = gc.layers.Dense(10, name="fc2")

    def __call__(self, x, training: bool):
        h = gc.reshape(x, [-1, 1, 8, 8])
        h = gc.nn.max_pool(gc.nn.relu(self.bn1(self.conv1(h), training)), 2)  # [N, 16, 4, 4]
        h = gc.nn.max_pool(gc.nn.relu(self.bn2(self.conv2(h), training)), 2)  # [N, 32, 2, 2]
        return self.fc2(self.fc1(gc.reshape(h, [-1, 32 * 2 * 2])))


def build(lr: float = 3e-3, seed: int = 0):
    g = gc.Graph(seed=seed)
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 64], name="x")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        net = LeNet()
        loss = gc.nn.softmax_cross_entropy(net(x, training=True), y)
        step = gc.optim.Adam(lr).minimize(loss)
        logits = net(x, training=False)
        accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, -1), y), gc.float32))
    return g, dict(x=x, y=y, logits=logits, loss=loss, accuracy=accuracy, step=step)


def train(steps: int = 500, backend: str | None = None, batch_size: int = 64, seed: int = 0, log_every: int = 100,
          verbose: bool = True) -> dict:
    xtr, ytr, xte, yte = load_digits_split(seed=seed)
    g, t = build(seed=seed)
    sess = gc.Session(g, backend=backend)
    data = batches(xtr, ytr, batch_size, np.random.default_rng(seed))
    return fit(sess, t, data, steps, xte, yte, "lenet_digits", verbose, log_every)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="numpy, cpu or cuda (default: cpu where a C++ compiler is found)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    r = train(a.steps, a.backend, a.batch, a.seed)
    print(f"trained {a.steps} steps in {r['seconds']:.1f} s; test accuracy {r['test_accuracy'] * 100:.2f}%")


if __name__ == "__main__":
    main()
