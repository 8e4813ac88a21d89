"""Runtime backends. Each has ``prepare(graph) -> Executable`` and ``Executable.run(feeds) -> outputs``."""
from __future__ import annotations

from graphc.errors import GraphcError

BACKENDS = ("numpy", "cpu", "cuda")
#: Names the backend a run gets when it names none: "numpy", "cpu", "cuda" or "auto" (unset: "auto").
BACKEND_ENV = "GRAPHC_BACKEND"


def default_backend() -> str:
    """The backend a run gets when it names none (``backend=None`` or "auto"): $GRAPHC_BACKEND when it names
    one, else "cpu" where a C++ compiler is found (the compiled kernels: several times the interpreter's speed on
    most graphs, after a first run that compiles them, cached on disk), else "numpy". CUDA is used only when
    named: its kernels have not yet run on a GPU in this project's tests (docs/cuda.md)."""
    import os

    name = os.environ.get(BACKEND_ENV, "").strip().lower()
    if name and name != "auto":
        if name not in BACKENDS:
            raise GraphcError(f"${BACKEND_ENV} is '{name}': it names one of {', '.join(BACKENDS)}, or 'auto'")
        return name
    from .cpu import available

    return "cpu" if available() else "numpy"


def resolve_backend(name: str | None) -> str:
    """``name``, or the default backend's name for None and "auto"."""
    return default_backend() if name in (None, "auto") else name


def get_backend(name: str | None = None):
    """The backend object for a name: "numpy" (the interpreter), "cpu" (compiled C++ kernels) or "cuda" (needs
    PyCUDA; fails with one sentence without it); None or "auto": ``default_backend()``."""
    name = resolve_backend(name)
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
    raise GraphcError(f"unknown backend '{name}': available backends are {', '.join(BACKENDS)} (or 'auto', the "
                      f"default: {default_backend()} on this machine)")
