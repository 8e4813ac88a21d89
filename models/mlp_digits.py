"""A multilayer perceptron on the 8x8 digits, trained with the DSL and a Session.

    python -m graphc.models.mlp_digits [--backend numpy] [--steps 600] [--batch 128]
    mpiexec -n 4 python -m graphc.models.mlp_digits --distributed     # data-parallel over 4 ranks (the dist extra)

Prints the loss as it falls and the final test accuracy (the target is >= 96%). With ``--distributed``
each rank trains on its shard of the data with ``--batch / ranks`` samples a step, the gradients are
averaged over the ranks every step, and only rank 0 prints (and writes ``--checkpoint``).
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc

from .digits_data import batches, load_digits_split
from .training_loop import fit


def build(hidden: int = 128, lr: float = 3e-3, seed: int = 0, distributed: bool = False):
    """The graph and its handles: placeholders x, y; logits, loss, accuracy and the training step.

    ``distributed``: the step averages the gradients over the MPI ranks (gc.distributed.DistributedOptimizer).
    """
    g = gc.Graph(seed=seed)
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 64], name="x")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        h = gc.layers.dense(x, hidden, activation=gc.nn.relu, kernel_initializer=gc.initializers.he_uniform(),
                            name="fc1")
        logits = gc.layers.dense(h, 10, name="fc2")
        loss = gc.nn.softmax_cross_entropy(logits, y)
        accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, -1), y), gc.float32))
        opt = gc.optim.Adam(lr)
        step = (gc.distributed.DistributedOptimizer(opt) if distributed else opt).minimize(loss)
    return g, dict(x=x, y=y, logits=logits, loss=loss, accuracy=accuracy, step=step)


def train(steps: int = 600, backend: str | None = None, batch_size: int = 128, seed: int = 0, log_every: int = 100,
          verbose: bool = True, distributed: bool = False) -> dict:
    """Train; returns {'losses': [...], 'test_accuracy': float, 'seconds': float}.

    ``distributed``: join the MPI job (``mpiexec -n N``); ``batch_size`` is then the global batch, split
    over the ranks, and the logged losses are averaged over them.
    """
    xtr, ytr, xte, yte = load_digits_split(seed=seed)
    g, t = build(seed=seed, distributed=distributed)
    sess = gc.Session(g, backend=backend)
    rank, ranks = 0, 1
    if distributed:
        comm = gc.distributed.init()
        rank, ranks = comm.rank, comm.size
        gc.distributed.broadcast_variables(sess)  # every rank starts from rank 0's initial values
        xtr, ytr = gc.distributed.shard(xtr, ytr)  # and trains on its own part of the data
        if batch_size % ranks:
            raise SystemExit(f"--batch {batch_size} does not split evenly over {ranks} ranks")
        batch_size //= ranks
        verbose = verbose and rank == 0
    data = batches(xtr, ytr, batch_size, np.random.default_rng([seed, rank]) if distributed
                   else np.random.default_rng(seed))
    return fit(sess, t, data, steps, xte, yte, "mlp_digits", verbose, log_every,
               average=gc.distributed.average if distributed else None)  # every rank joins the average


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="numpy, cpu or cuda (default: cpu where a C++ compiler is found)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distributed", action="store_true",
                    help="data-parallel over the MPI ranks of `mpiexec -n N` (--batch is the global batch)")
    ap.add_argument("--checkpoint", metavar="PATH", help="write the trained variables (.npz; rank 0 only)")
    a = ap.parse_args(argv)
    r = train(a.steps, a.backend, a.batch, a.seed, distributed=a.distributed)
    if a.checkpoint:
        if a.distributed:
            gc.distributed.save_checkpoint(r["session"], a.checkpoint)
        else:
            r["session"].save(a.checkpoint)
    if gc.distributed.is_root():
        ranks = f" on {gc.distributed.size()} ranks" if a.distributed else ""
        print(f"trained {a.steps} steps{ranks} in {r['seconds']:.1f} s; test accuracy "
              f"{r['test_accuracy'] * 100:.2f}%")


if __name__ == "__main__":
    main()
