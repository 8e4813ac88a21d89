"""Runtime backends. Each has ``prepare(graph) -> Executable`` and ``Executable.run(feeds) -> outputs``."""
from __future__ import annotations

from graphc.errors import GraphcError

BACKENDS = ("numpy",)


def get_backend(name: str = "numpy"):
    """The backend object for a name ("numpy"; "cuda" arrives with the CUDA issue)."""
    if name == "numpy":
        from .numpy import NumpyBackend

        return NumpyBackend
    raise GraphcError(f"unknown backend '{name}': available backends are {', '.join(BACKENDS)}")
