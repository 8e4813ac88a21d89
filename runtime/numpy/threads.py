"""Thread count of the NumPy backend: OpenBLAS (the BLAS bundled with NumPy) via its own C entry points.

``set_num_threads(n)`` sets how many threads matrix products use; ``get_num_threads()`` reads it back.
``GRAPHC_NUM_THREADS`` in the environment sets it when the backend first prepares a graph. The library
is found among the shared objects this process has loaded (NumPy wheels bundle ``scipy_openblas``;
older ones ``openblas``), so no extra package is needed. Big fused elementwise groups read the same
count to split their chunks over threads (``kernels/fused.py``).
"""
from __future__ import annotations

import ctypes
import os

from graphc.errors import GraphcError

ENV_VAR = "GRAPHC_NUM_THREADS"

#: (setter, getter) symbol pairs, newest naming first (64-bit-integer builds carry a ``64_`` suffix).
_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"))

_api: tuple | None = None
_env_applied = False


def _loaded_blas_paths() -> list[str]:
    import numpy  # noqa: F401  (loads the BLAS into this process)

    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.rsplit(" ", 1)[-1].strip()
                if "openblas" in os.path.basename(p).lower() and p not in paths:
                    paths.append(p)
    except OSError:  # not Linux: look beside numpy's own libraries
        import glob

        import numpy as np

        root = os.path.dirname(os.path.dirname(np.__file__))
        paths = glob.glob(os.path.join(root, "*openblas*", "**", "*openblas*"), recursive=True)
        paths += glob.glob(os.path.join(root, "numpy.libs", "*openblas*"))
    return paths


def _blas_api() -> tuple | None:
    """(set, get) ctypes functions of the loaded OpenBLAS, or None when none is found."""
    global _api
    if _api is None:
        _api = ()
        for path in _loaded_blas_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for set_name, get_name in _SYMBOLS:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    _api = (setter, getter)
                    break
            if _api:
                break
    return _api or None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the backend's matrix products (n >= 1)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GraphcError(f"the thread count must be a positive integer, got {n!r}")
    api = _blas_api()
    if api is None:
        raise GraphcError("cannot set the thread count: no OpenBLAS library is loaded in this process "
                          "(NumPy is built against another BLAS)")
    api[0](n)


def get_num_threads() -> int | None:
    """The thread count matrix products use now (None when the BLAS is not OpenBLAS)."""
    api = _blas_api()
    return None if api is None else int(api[1]())


def apply_env() -> None:
    """Apply ``GRAPHC_NUM_THREADS`` once per process (called when the backend prepares a graph)."""
    global _env_applied
    if _env_applied:
        return
    _env_applied = True
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return
    try:
        n = int(raw)
    except ValueError:
        raise GraphcError(f"{ENV_VAR} must be a positive integer, got '{raw}'") from None
    set_num_threads(n)


__all__ = ["ENV_VAR", "apply_env", "get_num_threads", "set_num_threads"]
