"""The NumPy backend: runs a graph on the CPU with each operator's NumPy kernel."""
from .executor import NumpyBackend, NumpyExecutable

__all__ = ["NumpyBackend", "NumpyExecutable"]
