"""The MPI communicator of data-parallel training: ``init()``, this process's rank and the job's size.

``init()`` wraps mpi4py's COMM_WORLD in an ``MPICommunicator`` that counts and times every call it makes
(``stats()``), installs it as the transport of the ``graphc.AllReduce`` op, and makes an uncaught exception
in any rank abort the whole job (``MPI_Abort``) after printing the rank and the error, so that the other
ranks do not wait forever in their next collective.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from graphc.errors import DistributedError
from graphc.ops.collective import get_communicator, set_communicator


@dataclass
class CallStats:
    """Calls one communicator made into MPI, by kind ('allreduce', 'bcast', ...): count, bytes and seconds."""

    calls: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, kind: str, nbytes: int, seconds: float) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1
        self.bytes[kind] = self.bytes.get(kind, 0) + nbytes
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds

    def reset(self) -> None:
        self.calls.clear()
        self.bytes.clear()
        self.seconds.clear()


class MPICommunicator:
    """mpi4py's communicator behind the small interface graphc uses; every call is counted and timed."""

    def __init__(self, comm):
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self.stats = CallStats()

    def allreduce_sum(self, buffer: np.ndarray, kind: str = "allreduce") -> None:
        """Sum a contiguous array over all ranks, in place (one MPI_Allreduce, counted under ``kind``)."""
        if not buffer.flags.c_contiguous:
            raise DistributedError(f"allreduce_sum needs a contiguous buffer, got one of shape {buffer.shape} "
                                   f"and strides {buffer.strides}")
        t0 = time.perf_counter()
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        self.stats.record(kind, buffer.nbytes, time.perf_counter() - t0)

    def bcast(self, buffer: np.ndarray, root: int = 0) -> None:
        """Overwrite ``buffer`` on every rank with root's (one MPI_Bcast)."""
        t0 = time.perf_counter()
        self.comm.Bcast(buffer, root=root)
        self.stats.record("bcast", buffer.nbytes, time.perf_counter() - t0)

    def bcast_object(self, obj, root: int = 0):
        """A small picklable Python object from root (names and shapes, never model data)."""
        t0 = time.perf_counter()
        out = self.comm.bcast(obj, root=root)
        self.stats.record("bcast_object", 0, time.perf_counter() - t0)
        return out

    def barrier(self) -> None:
        t0 = time.perf_counter()
        self.comm.Barrier()
        self.stats.record("barrier", 0, time.perf_counter() - t0)

    def abort(self, code: int = 1) -> None:
        """End every process of the job (MPI_Abort): the only safe exit once one rank has failed."""
        self.comm.Abort(code)


def _install_abort_on_error(comm: MPICommunicator) -> None:
    """An uncaught exception prints 'rank R of S failed' with its traceback, then aborts the job."""

    def abort_job(etype, value, tb):
        import traceback

        try:
            # one write, then a moment for mpiexec to forward it: output a rank writes just before MPI_Abort
            # may be dropped when the job is torn down (the abort line went missing under load)
            sys.stdout.flush()
            sys.stderr.write(f"graphc.distributed: rank {comm.rank} of {comm.size} failed: "
                             f"{etype.__name__}: {value}\n"
                             f"graphc.distributed: aborting all {comm.size} ranks (MPI_Abort) because rank "
                             f"{comm.rank} failed\n" + "".join(traceback.format_exception(etype, value, tb)))
            sys.stderr.flush()
            time.sleep(0.5)
        finally:
            comm.abort(1)

    sys.excepthook = abort_job


def init(abort_on_error: bool = True) -> MPICommunicator:
    """Join the MPI job this process was started in (``mpiexec -n N python ...``); alone, a job of one.

    Returns the communicator (``.rank``, ``.size``); calling it again returns the same one.
    ``abort_on_error``: an uncaught exception in any rank aborts the whole job (see the module docstring).
    """
    current = get_communicator()
    if isinstance(current, MPICommunicator):
        return current
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(f"gc.distributed needs mpi4py and an MPI library ({e}): "
                               f"pip install -e '.[dist]' (mpi4py, and mpich for mpiexec)") from None
    comm = MPICommunicator(MPI.COMM_WORLD)
    set_communicator(comm)
    if abort_on_error and comm.size > 1:
        _install_abort_on_error(comm)
    return comm


def communicator() -> MPICommunicator:
    """The communicator ``init()`` made (DistributedError before ``init()``)."""
    comm = get_communicator()
    if comm is None:
        raise DistributedError("gc.distributed.init() has not been called in this process")
    return comm


def rank() -> int:
    """This process's rank (0 when ``init()`` has not been called: a single process)."""
    comm = get_communicator()
    return 0 if comm is None else comm.rank


def size() -> int:
    """The number of processes in the job (1 when ``init()`` has not been called)."""
    comm = get_communicator()
    return 1 if comm is None else comm.size


def is_root() -> bool:
    """True on rank 0, the rank that prints progress and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    comm = get_communicator()
    if comm is not None and comm.size > 1:
        comm.barrier()


def average(x) -> np.ndarray:
    """The mean over all ranks of a number or small array (for logging the loss, the accuracy)."""
    buf = np.array(x, dtype=np.float64, copy=True).reshape(-1)
    comm = get_communicator()
    if comm is not None and comm.size > 1:
        comm.allreduce_sum(buf, kind="average")  # counted apart from the gradients' all-reduce
        buf /= comm.size
    return buf.reshape(np.shape(x)) if np.ndim(x) else buf[0]


def stats() -> CallStats:
    """Calls this process made into MPI since ``init()`` (or the last ``stats().reset()``)."""
    return communicator().stats


__all__ = ["CallStats", "MPICommunicator", "average", "barrier", "communicator", "init", "is_root", "rank", "size",
           "stats"]
