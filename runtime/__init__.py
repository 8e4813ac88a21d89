"""Runtime backends. Each has ``prepare(graph) -> Executable`` and ``Executable.run(feeds) -> outputs``."""
from __future__ import annotations

from graphc.errors import GraphcError

BACKENDS = ("numpy", "cpu", "cuda")


def get_backend(name: str = "numpy"):
    """The backend object for a name: "numpy" (the interpreter), "cpu" (compiled C++ kernels) or "cuda" (needs
    PyCUDA; fails with one sentence without it)."""
    if name == "numpy":
        from .numpy import NumpyBackend

        return NumpyBackend
    if name == "cpu":
        from .cpu import CpuBackend

        return CpuBackend
    if name == "cuda":
        import os

        from .cuda import CudaBackend, require_pycuda

        if os.environ.get("GRAPHC_CUDA_EMULATE", "") in ("", "0"):  # the CPU emulator needs no PyCUDA
            require_pycuda()
        return CudaBackend
    raise GraphcError(f"unknown backend '{name}': available backends are {', '.join(BACKENDS)}")
