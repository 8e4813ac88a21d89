"""The CUDA backend: CUDA C generated for fused groups, compiled by nvcc (on-disk cache), run through PyCUDA.

Importing this package needs neither PyCUDA nor a GPU (code generation, the cache, the arena layout and
the CPU emulator are plain Python); ``CudaBackend.prepare`` opens the device and fails with one sentence
(``CudaUnavailableError``) when PyCUDA or a driver is missing.
"""
from __future__ import annotations

from .device import CudaUnavailableError, require_pycuda
from .executor import CudaBackend, CudaExecutable
from .lowering import MissingKernelError, SUPPORTED_OPS

# The lowerings register themselves in lowering.py's tables when imported; importing them here, in the
# package, means they are all there before anything lowers (any import of graphc.runtime.cuda.* runs this
# first), while lowering.py itself imports none of them.
from . import codegen_copy, codegen_fill, codegen_gemm, codegen_scatter  # noqa: E402,F401
from . import codegen_conv, codegen_pool  # noqa: E402,F401
from . import codegen_index, codegen_random, codegen_scan  # noqa: E402,F401
from . import codegen_attention, codegen_dropout  # noqa: E402,F401
from . import codegen_losses  # noqa: E402,F401
from . import codegen_extra  # noqa: E402,F401
from . import codegen_misc  # noqa: E402,F401
from . import codegen_rnn  # noqa: E402,F401
from . import custom  # noqa: E402,F401  (the gc.custom_op fallback)

__all__ = ["CudaBackend", "CudaExecutable", "CudaUnavailableError", "MissingKernelError", "SUPPORTED_OPS",
           "require_pycuda"]
