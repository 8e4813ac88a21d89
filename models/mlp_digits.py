"""A multilayer perceptron on the 8x8 digits, trained with the DSL and a Session.

    python -m models.mlp_digits [--backend numpy] [--steps 600] [--batch 128]

Prints the loss as it falls and the final test accuracy (the target is >= 96%).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc

from .digits_data import batches, load_digits_split


def build(hidden: int = 128, lr: float = 3e-3, seed: int = 0):
    """The graph and its handles: placeholders x, y; logits, loss, accuracy and the training step."""
    g = gc.Graph(seed=seed)
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 64], name="x")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        h = gc.nn.dense(x, hidden, activation=gc.nn.relu, kernel_initializer=gc.initializers.he_uniform(), name="fc1")
        logits = gc.nn.dense(h, 10, name="fc2")
        loss = gc.nn.softmax_cross_entropy(logits, y)
        accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, -1), y), gc.float32))
        step = gc.optim.Adam(lr).minimize(loss)
    return g, dict(x=x, y=y, logits=logits, loss=loss, accuracy=accuracy, step=step)


def train(steps: int = 600, backend: str = "numpy", batch_size: int = 128, seed: int = 0, log_every: int = 100,
          verbose: bool = True) -> dict:
    """Train; returns {'losses': [...], 'test_accuracy': float, 'seconds': float}."""
    xtr, ytr, xte, yte = load_digits_split(seed=seed)
    g, t = build(seed=seed)
    sess = gc.Session(g, backend=backend)
    data = batches(xtr, ytr, batch_size, np.random.default_rng(seed))
    losses = []
    start = time.perf_counter()
    bar = gc.progress(steps, desc="mlp_digits", disable=not verbose)
    for i in bar:
        xb, yb = next(data)
        _, loss = sess.run([t["step"], t["loss"]], {t["x"]: xb, t["y"]: yb})
        losses.append(float(loss))
        if verbose and (i % log_every == 0 or i == steps - 1):
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.write(f"step {i:5d}  loss {loss:.4f}")
    seconds = time.perf_counter() - start
    acc = float(sess.run(t["accuracy"], {t["x"]: xte, t["y"]: yte}))
    return {"losses": losses, "test_accuracy": acc, "seconds": seconds, "session": sess, "tensors": t}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    r = train(a.steps, a.backend, a.batch, a.seed)
    print(f"trained {a.steps} steps in {r['seconds']:.1f} s; test accuracy {r['test_accuracy'] * 100:.2f}%")


if __name__ == "__main__":
    main()
