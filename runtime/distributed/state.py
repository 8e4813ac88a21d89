"""Keeping the ranks' Session state in step: broadcast the variables from rank 0; checkpoints on rank 0 only."""
from __future__ import annotations

import os

import numpy as np

from graphc.errors import DistributedError
from graphc.ops.collective import get_communicator

from .comm import communicator, is_root


def broadcast_variables(sess, root: int = 0) -> None:
    """Give every rank root's values of all of ``sess``'s variables (optimizer slots included).

    The variables travel packed, one buffer (one MPI_Bcast) per element type. First the ranks check that
    they hold the same variables (names, shapes, dtypes): a rank whose graph differs raises a
    DistributedError that names the difference, rather than receiving bytes it would misread.
    """
    comm = get_communicator()
    if comm is None or comm.size == 1:
        return
    comm = communicator()
    names = sorted(sess.state)
    mine = [(n, tuple(sess.state[n].shape), str(sess.state[n].dtype)) for n in names]
    theirs = comm.bcast_object(mine, root=root)
    if theirs != mine:
        def show(items):
            items = sorted(items)
            return ", ".join(f"{n} {d}{list(sh)}" for n, sh, d in items[:4]) + (
                f" and {len(items) - 4} more" if len(items) > 4 else "") if items else "none"

        raise DistributedError(f"broadcast_variables: rank {comm.rank}'s variables differ from rank {root}'s; "
                               f"only on rank {comm.rank}: {show(set(mine) - set(theirs))}; only on rank {root}: "
                               f"{show(set(theirs) - set(mine))} (every rank must build the same graph)")
    by_dtype: dict[str, list[str]] = {}
    for n in names:
        by_dtype.setdefault(str(sess.state[n].dtype), []).append(n)
    for dtype, group in sorted(by_dtype.items()):
        buf = np.concatenate([np.ascontiguousarray(sess.state[n]).ravel() for n in group]) if comm.rank == root \
            else np.empty(sum(sess.state[n].size for n in group), dtype=dtype)
        comm.bcast(buf, root=root)
        start = 0
        for n in group:
            shape, size = sess.state[n].shape, sess.state[n].size
            sess.state[n] = buf[start:start + size].reshape(shape).copy()
            start += size


def save_checkpoint(sess, path: str | os.PathLike) -> bool:
    """Write ``sess``'s variables (``Session.save``) on rank 0 only; True where this rank wrote the file."""
    if not is_root():
        return False
    sess.save(path)
    return True


__all__ = ["broadcast_variables", "save_checkpoint"]
