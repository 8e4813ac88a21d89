"""The CUDA backend: CUDA C generated for fused groups, compiled by nvcc (on-disk cache), run through PyCUDA.

Importing this package needs neither PyCUDA nor a GPU (code generation, the cache, the arena layout and
the CPU emulator are plain Python); ``CudaBackend.prepare`` opens the device and fails with one sentence
(``CudaUnavailableError``) when PyCUDA or a driver is missing.
"""
from __future__ import annotations

from .device import CudaUnavailableError, require_pycuda
from .executor import CudaBackend, CudaExecutable
from ..codegen import SUPPORTED_OPS, MissingKernelError  # importing the code generator registers its lowerings

from . import custom  # noqa: F401  (the gc.custom_op fallback)

__all__ = ["CudaBackend", "CudaExecutable", "CudaUnavailableError", "MissingKernelError", "SUPPORTED_OPS",
           "require_pycuda"]
