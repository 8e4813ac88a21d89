"""The program the MPI tests launch with ``mpiexec -n 2``; also imported in-process for the one-process reference.

    python mpi_worker.py train OUT_DIR STEPS     every rank trains on its half of each global batch
    python mpi_worker.py fail OUT_DIR STEPS      rank 1 raises at step 3 while rank 0 goes on training
    python mpi_worker.py mismatch OUT_DIR STEPS  rank 1 builds a graph with another optimizer, then broadcasts

``train`` writes OUT_DIR/rank{R}.npz: each optimizer's variables after every step (``{opt}/{var}`` stacked
over the steps) and the number of MPI calls of each kind; the ranks start from different initial values
(seeded by rank) so that the test also sees ``broadcast_variables`` at work.
"""
from __future__ import annotations

import os
import sys

import numpy as np

import graphc as gc

OPTIMIZERS = {
    "sgd": lambda: gc.optim.SGD(0.1),
    "momentum": lambda: gc.optim.Momentum(0.05, nesterov=True, clip_norm=1.0),
    "adam": lambda: gc.optim.Adam(0.01),
}
GLOBAL_BATCH = 32


def build(optimizer: str, seed: int, distributed: bool):
    """A float64 two-layer classifier: (graph, x, y, loss, step)."""
    rng = np.random.default_rng(seed)
    g = gc.Graph(seed=seed)
    with g.as_default():
        x = gc.placeholder(gc.float64, ["N", 6], name="x")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        w1 = gc.Variable(rng.standard_normal((6, 16)) * 0.5, name="w1")
        b1 = gc.Variable(np.zeros(16), name="b1")
        w2 = gc.Variable(rng.standard_normal((16, 3)) * 0.5, name="w2")
        b2 = gc.Variable(np.zeros(3), name="b2")
        logits = gc.tanh(x @ w1 + b1) @ w2 + b2
        loss = gc.nn.softmax_cross_entropy(logits, y)
        opt = OPTIMIZERS[optimizer]()
        if distributed:
            opt = gc.distributed.DistributedOptimizer(opt)
        step = opt.minimize(loss)
    return g, x, y, loss, step


def global_batches(steps: int):
    """The same global batches in every process."""
    rng = np.random.default_rng(1234)
    for _ in range(steps):
        xb = rng.standard_normal((GLOBAL_BATCH, 6))
        yb = (xb[:, 0] > 0).astype(np.int64) + (xb[:, 1] > 0.5)
        yield xb, yb


def trajectory(optimizer: str, steps: int, distributed: bool, fail_at: int | None = None) -> dict[str, np.ndarray]:
    """Each variable's value after every step; with ``distributed``, on this rank's half of each batch."""
    rank = gc.distributed.rank() if distributed else 0
    g, x, y, loss, step = build(optimizer, seed=100 + rank, distributed=distributed)
    sess = gc.Session(g)
    if distributed:
        gc.distributed.broadcast_variables(sess)
    names = sorted(g.trainable)
    seen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i, (xb, yb) in enumerate(global_batches(steps)):
        if fail_at is not None and i == fail_at and rank == 1:
            raise ValueError(f"rank 1 hit a bad batch at step {i}")
        if distributed:
            xb, yb = gc.distributed.shard(xb, yb)
        sess.run(step, {x: xb, y: yb})
        for n in names:
            seen[n].append(sess.variable(n).copy())
    return {n: np.stack(v) for n, v in seen.items()}


def main(argv: list[str]) -> None:
    mode, out_dir, steps = argv[0], argv[1], int(argv[2])
    comm = gc.distributed.init()
    if mode == "fail":
        trajectory("sgd", steps, distributed=True, fail_at=3)
        return
    if mode == "mismatch":
        g = build("adam" if comm.rank == 1 else "sgd", seed=0, distributed=True)[0]
        gc.distributed.broadcast_variables(gc.Session(g))
        return
    result = {}
    for name in OPTIMIZERS:
        before = dict(comm.stats.calls)
        for var, values in trajectory(name, steps, distributed=True).items():
            result[f"{name}/{var}"] = values
        for kind, n in comm.stats.calls.items():
            result[f"{name}/calls/{kind}"] = np.array(n - before.get(kind, 0))
    result["size"] = np.array(comm.size)
    np.savez(os.path.join(out_dir, f"rank{comm.rank}.npz"), **result)


if __name__ == "__main__":
    main(sys.argv[1:])
