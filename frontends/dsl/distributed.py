"""``gc.distributed``: data-parallel training of DSL graphs over MPI (needs the ``dist`` extra).

This module is the DSL's side: ``allreduce`` (the DSL call for graphc.AllReduce) and DistributedOptimizer.
It also re-exports graphc.runtime.distributed (the communicator, sharding, variable broadcast and checkpoints),
which sits below the frontends and knows nothing of the DSL, so ``gc.distributed`` offers both.

``DistributedOptimizer(opt)`` wraps any ``gc.optim`` optimizer: its ``minimize`` differentiates as the
wrapped optimizer would, passes all the gradients through one ``AllReduce`` node (one packed buffer, or a
few ``bucket_bytes``-capped ones, per step) that averages them over the ranks, then applies the wrapped
optimizer's update to the averages. Every rank then takes the same step, so their variables stay equal.
"""
from __future__ import annotations

from typing import Sequence

from graphc.runtime.distributed import *  # noqa: F401,F403  (gc.distributed.init, shard, broadcast_variables...)
from graphc.runtime.distributed import __all__ as _comm_names
from graphc.errors import GraphBuildError
from graphc.ops.collective import DOMAIN, REDUCTIONS

from .graph import Operation
from .optim import Optimizer
from .tensor import Tensor, apply_op


def allreduce(tensors: Sequence[Tensor], reduction: str = "mean", bucket_bytes: int = 0,
              name: str | None = None) -> list[Tensor]:
    """Sum or average each tensor over all ranks, in one ``graphc.AllReduce`` node; one output per input."""
    tensors = list(tensors)
    if not tensors:
        raise GraphBuildError("gc.distributed.allreduce: no tensors given")
    if reduction not in REDUCTIONS:
        raise GraphBuildError(f"gc.distributed.allreduce: reduction must be one of {', '.join(REDUCTIONS)}, "
                              f"got {reduction!r}")
    outs = apply_op("AllReduce", tensors, {"reduction": reduction, "bucket_bytes": int(bucket_bytes)},
                    num_outputs=len(tensors), domain=DOMAIN, name=name)
    return outs if isinstance(outs, list) else [outs]


class DistributedOptimizer:
    """A gc.optim optimizer whose updates use gradients averaged over every rank of the job.

    ``bucket_bytes`` caps the size of one packed buffer (0: one buffer per element type, so one
    all-reduce per step for a float32 model). Attributes not defined here (``slots``, ``step``,
    ``learning_rate``...) are the wrapped optimizer's.
    """

    def __init__(self, optimizer: Optimizer, bucket_bytes: int = 0):
        if not isinstance(optimizer, Optimizer):
            raise GraphBuildError(f"DistributedOptimizer wraps a gc.optim optimizer (Adam, SGD, ...), "
                                  f"got {type(optimizer).__name__}")
        if bucket_bytes < 0:
            raise GraphBuildError(f"DistributedOptimizer: bucket_bytes must be >= 0 (0: no cap), got {bucket_bytes}")
        self.optimizer = optimizer
        self.bucket_bytes = int(bucket_bytes)

    def compute_gradients(self, loss: Tensor, var_list: Sequence[Tensor] | None = None) -> list[tuple[Tensor, Tensor]]:
        """The wrapped optimizer's (gradient, variable) pairs, with each gradient averaged over the ranks."""
        pairs = self.optimizer.compute_gradients(loss, var_list)
        with loss.graph.as_default():
            averaged = allreduce([gr for gr, _ in pairs], "mean", self.bucket_bytes,
                                 name=f"{self.optimizer.name}/allreduce_gradients")
        return [(a, v) for a, (_, v) in zip(averaged, pairs)]

    def apply_gradients(self, grads_and_vars: Sequence[tuple[Tensor, Tensor]]) -> Operation:
        """The wrapped optimizer's update (the gradients are used as given: average them first)."""
        return self.optimizer.apply_gradients(grads_and_vars)

    def minimize(self, loss: Tensor, var_list: Sequence[Tensor] | None = None) -> Operation:
        """One training step: local gradients, one all-reduce that averages them, the wrapped update."""
        return self.apply_gradients(self.compute_gradients(loss, var_list))

    def __getattr__(self, name: str):
        if name == "optimizer":  # not set yet (unpickling, a failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({type(self.optimizer).__name__}, bucket_bytes={self.bucket_bytes})"


__all__ = ["DistributedOptimizer", "allreduce", *_comm_names]
