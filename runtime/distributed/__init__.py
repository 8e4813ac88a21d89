"""Data-parallel training over MPI: the communicator, sharding, variable broadcast and checkpoints (needs the
``dist`` extra: mpi4py and mpich). ``gc.distributed`` is graphc/frontends/dsl/distributed.py, which adds the
DSL's DistributedOptimizer and ``allreduce`` to these names (this package, part of the runtime, sits below the
frontends).

    comm = gc.distributed.init()                          # rank and size from MPI
    step = gc.distributed.DistributedOptimizer(gc.optim.Adam(1e-3)).minimize(loss)
    sess = gc.Session(g)
    gc.distributed.broadcast_variables(sess)              # every rank starts from rank 0's values
    xs, ys = gc.distributed.shard(x_train, y_train)       # this rank's part of the data

Launch with ``mpiexec -n 4 python train.py``. Each step all-reduces the gradients in one packed buffer;
only rank 0 should print and save (``gc.distributed.is_root()``, ``save_checkpoint``). Collectives
(training steps, ``average``, ``broadcast_variables``, ``barrier``) must be called by every rank in the same
order: one called under ``if is_root():`` leaves rank 0 waiting for the others forever.
"""
from __future__ import annotations

from .comm import CallStats, MPICommunicator, average, barrier, communicator, init, is_root, rank, size, stats
from .data import shard, shard_slice
from .state import broadcast_variables, save_checkpoint

__all__ = ["CallStats", "MPICommunicator", "average", "barrier",
           "broadcast_variables", "communicator", "init", "is_root", "rank", "save_checkpoint", "shard", "shard_slice",
           "size", "stats"]
