"""Each rank's share of a dataset: ``shard(x, y)`` gives this rank its contiguous, equally long slice."""
from __future__ import annotations

import numpy as np

from graphc.errors import DistributedError

from .comm import rank as _rank
from .comm import size as _size


def shard_slice(n: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s part of ``n`` samples: ``n // size`` of them, contiguous (the last ``n % size`` are
    left out so that every rank takes the same number of steps; ranks that ran out would stall the rest)."""
    if size < 1 or not 0 <= rank < size:
        raise DistributedError(f"shard: rank must be in [0, size), got rank {rank} of size {size}")
    per = n // size
    if per == 0:
        raise DistributedError(f"shard: {n} sample(s) cannot give each of {size} ranks at least one")
    return slice(rank * per, (rank + 1) * per)


def shard(*arrays: np.ndarray, rank: int | None = None, size: int | None = None):
    """This rank's slice of each array (all cut along their first axis, which must be equally long).

    ``rank`` and ``size`` default to the job's (``gc.distributed.init()``); one array gives one array,
    several a tuple. Used on a whole dataset it gives each rank its shard; used on a global batch, each
    rank its part of the batch.
    """
    if not arrays:
        raise DistributedError("shard: no arrays given")
    rank = _rank() if rank is None else rank
    size = _size() if size is None else size
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise DistributedError(f"shard: the arrays must have the same length along axis 0, got "
                               f"{[len(a) for a in arrays]}")
    s = shard_slice(lengths.pop(), rank, size)
    out = tuple(a[s] for a in arrays)
    return out[0] if len(out) == 1 else out


__all__ = ["shard", "shard_slice"]
