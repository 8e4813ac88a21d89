"""The training loop the digits models share: run the step on each batch, log the loss, score the test set."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np

import graphc as gc


def fit(sess, t: dict, data: Iterator, steps: int, x_test: np.ndarray, y_test: np.ndarray, desc: str,
        verbose: bool = True, log_every: int = 100, average: Callable | None = None) -> dict:
    """Run ``t["step"]`` on ``steps`` batches from ``data``, then ``t["accuracy"]`` on the test set.

    ``t`` holds the tensors x, y, step, loss and accuracy. At each logged step ``average`` (when given, e.g.
    the mean over MPI ranks, which every rank must join) replaces the loss that is shown. Returns the losses,
    the test accuracy, the training seconds, the session and ``t``.
    """
    losses = []
    start = time.perf_counter()
    bar = gc.progress(steps, desc=desc, disable=not verbose)
    for i in bar:
        xb, yb = next(data)
        _, loss = sess.run([t["step"], t["loss"]], {t["x"]: xb, t["y"]: yb})
        losses.append(float(loss))
        logged = i % log_every == 0 or i == steps - 1
        if average is not None and logged:
            loss = average(loss)
        if verbose and logged:
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.write(f"step {i:5d}  loss {loss:.4f}")
    seconds = time.perf_counter() - start
    acc = float(sess.run(t["accuracy"], {t["x"]: x_test, t["y"]: y_test}))
    return {"losses": losses, "test_accuracy": acc, "seconds": seconds, "session": sess, "tensors": t}
