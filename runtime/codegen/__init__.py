"""The code generator: a planned graph lowered to kernels, rendered in CUDA C or in C++ for the host.

One description of each kernel, two targets (``dialect.py``): the CUDA backend (runtime/cuda) compiles the
kernels with nvcc and launches them on a GPU; the compiled CPU backend (runtime/cpu) compiles the same
kernels with the host's C++ compiler. Nothing here needs a GPU or a compiler: the output is text
and launch descriptions.

- ``kernel.py``: kernel groups, parameters, element types and literals, coordinates and the value emitter;
- ``dialect.py``: the two dialects (the loop over a kernel's work, row loops, vector loads, host calls);
- ``launch.py``: ``DeviceProps`` and the launch geometry of each kind of kernel;
- ``libcall.py``: library calls (the GEMM description and its NumPy reference semantics);
- ``expressions.py``: one C expression per elementwise op (NumPy's broadcasting and type rules);
- ``injective.py``: ops that map output coordinates to input coordinates (Transpose, Slice, Gather...);
- ``elementwise.py``: the loop kernel of elementwise, broadcast and injective groups;
- ``rows.py``: row kernels: reductions with their prologues, softmax, normalizations, arg-reductions;
- ``lowering.py``: the dispatcher (a plan's nodes to steps), the lowering registry, the missing-ops error;
- ``steps.py``: what the op lowerings share (a one-loop kernel step, a copy, index decoding);
- ``ops/``: the lowerings of the op families that need more than one loop (importing this package
  registers them all).
"""
from __future__ import annotations

from . import ops  # noqa: F401  (registers every family's lowerings)
from .lowering import SUPPORTED_OPS, MissingKernelError, lower

__all__ = ["MissingKernelError", "SUPPORTED_OPS", "lower"]
