"""The NumPy backend: runs a graph on the CPU with each operator's NumPy kernel.

The kernels (the ``kernels`` package) sit below the executor and never import it; a fused group whose body
runs as an executable of its own gets it through the kernel registry, which is given the executor's class
here, before anything can prepare a graph.
"""
from .executor import NumpyBackend, NumpyExecutable
from .kernels.registry import set_nested_executable

set_nested_executable(NumpyExecutable)

__all__ = ["NumpyBackend", "NumpyExecutable"]
