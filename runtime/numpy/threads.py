"""graphc's thread count: one process-wide number that every thread pool graphc uses follows.

``set_num_threads(n)`` sets it; ``get_num_threads()`` reads it back; ``GRAPHC_NUM_THREADS`` in the
environment sets it when a backend first prepares a graph (``apply_env``). The pools that follow it:

- the BLAS's (NumPy's OpenBLAS, or whichever BLAS NumPy carries): matrix products of both CPU backends;
- the compiled CPU backend's own pool (``runtime/cpu/device.py``): it reads the count at every launch and
  takes that many threads at most (no OpenMP runtime: its kernels are compiled with ``-fopenmp-simd`` only);
- graphc's own chunk threads for big fused elementwise groups (``kernels/fused.py``, read each step);
- any OpenMP runtime another library loaded into the process (its default count, so that it agrees).

The BLAS and OpenMP libraries are found and driven through threadpoolctl (a dependency), which
knows OpenBLAS, MKL, BLIS, FlexiBLAS and the OpenMP runtimes. A library loaded after the count was
set gets it when graphc next looks (``sync``).

Once the compiled CPU backend runs a matrix product (``single_threaded_blas``), the BLAS stays at one thread in
this process: the backend cuts products into pieces its pool shares, each a one-thread BLAS call, so one pool of
threads runs everything (OpenBLAS's own pool stalls beside any other runnable thread).

Until the count is set it is the BLAS's own count (OpenBLAS starts with ``OPENBLAS_NUM_THREADS`` or
``OMP_NUM_THREADS``, else every CPU), or every CPU where NumPy carries no BLAS threadpoolctl knows.
"""
from __future__ import annotations

import numbers
import os
import threading

import numpy as np  # (loads NumPy's BLAS into this process before threadpoolctl looks for it)
from threadpoolctl import ThreadpoolController

from graphc.errors import GraphcError

ENV_VAR = "GRAPHC_NUM_THREADS"

#: The thread pools graphc's count drives (threadpoolctl's ``user_api`` names).
APIS = ("blas", "openmp")

_lock = threading.RLock()
_count: int | None = None  # set by set_num_threads / GRAPHC_NUM_THREADS; None: follow the BLAS
_blas: list | None = None  # threadpoolctl's controllers of the BLAS libraries loaded (read for the default)
_env_applied = False
#: True once the compiled CPU backend runs its matrix products itself (split over its own pool, each
#: piece a one-thread BLAS call): the BLAS is then kept at one thread, so that two pools never run at once.
_blas_single = False


def _check(n) -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, (bool, np.bool_)) or n < 1:  # NumPy integers pass
        raise GraphcError(f"the thread count must be a positive integer (1 or more), got {n!r}")
    return int(n)


def _blas_controllers() -> list:
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas


def _default() -> int:
    """The count before anyone set one: the (first) BLAS's own, else every CPU."""
    for lib in _blas_controllers():
        n = lib.num_threads
        if isinstance(n, int) and n >= 1:
            return n
    return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (n >= 1) in graphc's thread pools: the BLAS's matrix products, the CPU backend's
    pool and the chunk threads of big fused elementwise groups."""
    global _count, _blas
    n = _check(n)
    with _lock:
        _count = n
        controller = ThreadpoolController()  # a fresh look at the libraries loaded now
        controller.limit(limits={api: _pool_count(api, n) for api in APIS})  # a call, not a context: they stay
        _blas = list(controller.select(user_api="blas").lib_controllers)


def get_num_threads() -> int:
    """The thread count graphc's pools use now (see the module's docstring for the default)."""
    n = _count
    return n if n is not None else _default()


def sync() -> None:
    """Give the count to every BLAS and OpenMP library loaded since it was set, so all pools agree; the ones
    that have it already are left alone."""
    global _blas
    with _lock:
        controller = ThreadpoolController()
        _blas = list(controller.select(user_api="blas").lib_controllers)
        n = get_num_threads()
        for api in APIS:
            want = _pool_count(api, n)
            for lib in controller.select(user_api=api).lib_controllers:
                if lib.num_threads != want:
                    lib.set_num_threads(want)


def _pool_count(api: str, n: int) -> int:
    return 1 if api == "blas" and _blas_single else n


def single_threaded_blas() -> None:
    """Keep the BLAS at one thread from now on in this process, graphc's count still driving the CPU backend's
    pool and the chunk threads: called by the compiled CPU backend, whose matrix products split over its pool
    (each piece one BLAS call). One pool of threads, which spins briefly and then sleeps between launches: two
    pools spinning against each other, or OpenBLAS's own pool, stall whenever another process wants a core
    (#15's "under load")."""
    global _blas_single, _blas, _count
    with _lock:
        if _blas_single:
            return
        before = get_num_threads()  # the BLAS's own count when none was set: graphc's count keeps it
        _blas_single = True
        if _count is None:
            _count = before
        controller = ThreadpoolController()
        controller.limit(limits=1, user_api="blas")
        _blas = list(controller.select(user_api="blas").lib_controllers)


def apply_env() -> None:
    """Apply ``GRAPHC_NUM_THREADS`` once per process (called when a backend prepares a graph)."""
    global _env_applied
    if _env_applied:
        return
    with _lock:
        if _env_applied:
            return
        raw = os.environ.get(ENV_VAR, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                n = None
            if n is None or n < 1:  # refused at every prepare until it is fixed
                raise GraphcError(f"{ENV_VAR} must be a positive integer (1 or more), got {ENV_VAR}='{raw}'")
            set_num_threads(n)
        _env_applied = True


__all__ = ["APIS", "ENV_VAR", "apply_env", "get_num_threads", "set_num_threads", "single_threaded_blas", "sync"]
