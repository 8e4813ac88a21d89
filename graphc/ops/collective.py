"""Collective communication between processes: the ``graphc``-domain ``AllReduce`` of data-parallel training.

``AllReduce(x1, ..., xk) -> (y1, ..., yk)`` sums (or averages) each input over every process of the job.
The inputs are packed into one contiguous buffer per element type (or several, each at most
``bucket_bytes``) so that a step makes one call into the transport per buffer, not one per tensor.

The transport is a *communicator* (any object with ``rank``, ``size`` and ``allreduce_sum(buffer)``,
which sums a contiguous array over all processes in place); ``gc.distributed.init()`` installs one
that talks MPI. The op layer only holds the current one, so nothing here imports MPI.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..errors import DistributedError, node_label
from ..ir import DType, TensorType
from .registry import Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "collective"
DOMAIN = "graphc"
REDUCTIONS = ("mean", "sum")


class Communicator(Protocol):
    """What AllReduce needs from a transport."""

    rank: int
    size: int

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        """Replace ``buffer`` (contiguous) by its elementwise sum over all processes."""


_current: Communicator | None = None


def set_communicator(comm: Communicator | None) -> Communicator | None:
    """Make ``comm`` the transport of every AllReduce run in this process; returns the previous one."""
    global _current
    previous, _current = _current, comm
    return previous


def get_communicator() -> Communicator | None:
    return _current


def buckets(arrays: Sequence[np.ndarray], bucket_bytes: int = 0) -> list[list[int]]:
    """Indices of ``arrays`` grouped into packing buckets, in input order within each bucket.

    Arrays of one element type share buckets; a bucket is closed when the next array would take it past
    ``bucket_bytes`` (0: no cap, so one bucket per element type). An array larger than the cap has its own.
    """
    out: list[list[int]] = []
    open_bucket: dict[np.dtype, tuple[int, int]] = {}  # dtype -> (index in out, bytes so far)
    for i, a in enumerate(arrays):
        dt, nbytes = a.dtype, a.nbytes
        slot = open_bucket.get(dt)
        if slot is not None and (not bucket_bytes or slot[1] + nbytes <= bucket_bytes):
            out[slot[0]].append(i)
            open_bucket[dt] = (slot[0], slot[1] + nbytes)
        else:
            out.append([i])
            open_bucket[dt] = (len(out) - 1, nbytes)
    return out


def _allreduce_infer(ctx: InferContext) -> list:
    node = ctx.node
    if len(node.outputs) != ctx.n_inputs:
        ctx.fail(f"gives one output per input: {ctx.n_inputs} input(s) but {len(node.outputs)} output(s)")
    if node.attrs.get("reduction") not in REDUCTIONS:
        ctx.fail(f"attribute 'reduction' must be one of {', '.join(REDUCTIONS)}, got {node.attrs.get('reduction')!r}")
    if node.attrs.get("bucket_bytes", 0) < 0:
        ctx.fail(f"attribute 'bucket_bytes' must be >= 0 (0: no cap), got {node.attrs['bucket_bytes']}")
    out = []
    for i in range(ctx.n_inputs):
        t = ctx.type(i)
        if isinstance(t, TensorType) and t.dtype is not None and not t.dtype.is_float:
            ctx.fail(f"input {i} ('{node.inputs[i].name}') must be a floating-point tensor, got {t}")
        out.append(t)
    return out


def _allreduce_eval(node, *tensors):
    comm = _current
    if comm is None:
        raise DistributedError(f"{node_label(node)}: no communicator: call gc.distributed.init() in every "
                               f"process before running a graph built with gc.distributed")
    arrays = [np.asarray(x) for x in tensors]
    mean = node.attrs.get("reduction", "mean") == "mean"
    out: list[np.ndarray | None] = [None] * len(arrays)
    for idx in buckets(arrays, node.attrs.get("bucket_bytes", 0)):
        # One contiguous buffer per bucket: a single call moves every tensor in it.
        buf = np.concatenate([arrays[i].ravel() for i in idx])
        comm.allreduce_sum(buf)
        if mean and comm.size > 1:
            buf /= comm.size
        start = 0
        for i in idx:
            n = arrays[i].size
            out[i] = buf[start:start + n].reshape(arrays[i].shape)
            start += n
    return tuple(out)


register(OpDef("AllReduce", eval=_allreduce_eval, infer=_allreduce_infer, domain=DOMAIN, kind=Kind.OPAQUE,
               attrs={"reduction": Attr("string", "mean"), "bucket_bytes": Attr("int", 0)},
               inputs=(1, 2**31), outputs=(1, 2**31), family=FAMILY,
               doc="AllReduce(x1..xk) -> y1..yk: each input summed or averaged over every process of the job, "
                   "packed into one buffer per element type (or per bucket_bytes)."))

set_grads({}, {"AllReduce": "a collective across processes: differentiate first, then average the gradients "
                             "(gc.distributed.DistributedOptimizer)"}, domain=DOMAIN)
set_facts(DOMAIN, nondeterministic=("AllReduce",))  # its result depends on the other processes' inputs

__all__ = ["Communicator", "REDUCTIONS", "buckets", "get_communicator", "set_communicator"]
