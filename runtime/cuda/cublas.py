"""cuBLAS through ctypes: the library found at run time, a handle in the current context, and GEMM launchers.

The library comes from the ``nvidia-cublas-cu12`` (or ``nvidia-cublas``) pip wheel when one is installed,
else from the CUDA toolkit (``$CUDA_HOME/lib64``, the loader's search path). ``cublasCreate_v2`` binds
the handle to the current context, which is PyCUDA's primary context (``pycuda.autoprimaryctx``), so
cuBLAS reads and writes the arena graphc allocated; both use the legacy default stream, so a GEMM runs
in order with the generated kernels around it.

cuBLAS is column-major; graphc is row-major. A row-major ``m x n`` matrix with row stride ``ldc`` is the
column-major ``n x m`` matrix with the same leading dimension, its transpose, so ``C = op(A) op(B)`` is
computed as ``C^T = op(B)^T op(A)^T``: cuBLAS gets B's pointer as its first operand and A's as its
second, with the sizes swapped, and no transposing copy is made (``column_major``).
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from dataclasses import dataclass

from graphc.errors import CudaUnavailableError, GraphcError
from graphc.ir import DType

from ..codegen.libcall import Gemm

#: What a user reads when no libcublas can be found: one sentence, the fix included.
NO_CUBLAS = ("matrix products on the CUDA backend run through cuBLAS, and no libcublas was found: pip install "
             "nvidia-cublas-cu12 (or install the CUDA toolkit and set CUDA_HOME)")

# enums of cublas_api.h and library_types.h
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH = 0, 3
CUBLAS_GEMM_DEFAULT = -1
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_64F, CUBLAS_COMPUTE_32F_FAST_TF32 = 68, 70, 77
CUDA_R_32F, CUDA_R_64F, CUDA_R_16F, CUDA_R_16BF = 0, 1, 2, 14
#: cublasStatus_t values -> names (cublasGetStatusName gives the same; this table also works when the
#: library is too old to have it)
STATUS_NAMES = {0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
                7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
                13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR",
                15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR"}
#: element type -> (cudaDataType of A, B and C; cublasComputeType_t; ctypes type of alpha and beta)
TYPES = {DType.float32: (CUDA_R_32F, CUBLAS_COMPUTE_32F, ctypes.c_float),
         DType.float64: (CUDA_R_64F, CUBLAS_COMPUTE_64F, ctypes.c_double),
         DType.float16: (CUDA_R_16F, CUBLAS_COMPUTE_32F, ctypes.c_float),
         DType.bfloat16: (CUDA_R_16BF, CUBLAS_COMPUTE_32F, ctypes.c_float)}
#: The largest size, leading dimension or batch count cuBLAS takes (a C int).
INT_MAX = 2**31 - 1


class CublasUnavailableError(CudaUnavailableError):
    """No libcublas could be loaded."""


class CublasError(GraphcError):
    """A cuBLAS call returned an error status; the message names the call, its status and its arguments."""

    def __init__(self, call: str, status: int, detail: str = ""):
        self.call = call
        self.status = status
        name = STATUS_NAMES.get(status, f"status {status}")
        super().__init__(f"{call} failed with {name}" + (f" ({detail})" if detail else ""))


def candidates() -> list[str]:
    """Where libcublas may be, best first: pip wheels on sys.path, $CUDA_HOME, then the loader's names."""
    out = []
    for base in sys.path:
        for pattern in ("nvidia/cublas/lib/libcublas.so*", "nvidia/cu*/lib/libcublas.so*"):
            out += sorted(glob.glob(os.path.join(base or ".", pattern)), reverse=True)
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            out += sorted(glob.glob(os.path.join(os.environ[env], "lib64", "libcublas.so*")), reverse=True)
    out += sorted(glob.glob("/usr/local/cuda/lib64/libcublas.so*"), reverse=True)
    out += ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    return [p for p in dict.fromkeys(out) if "Lt" not in os.path.basename(p)]


def load_library(paths: list[str] | None = None) -> ctypes.CDLL:
    """The first libcublas of ``paths`` (default ``candidates()``) that loads, or CublasUnavailableError."""
    tried = []
    for p in candidates() if paths is None else paths:
        try:
            return ctypes.CDLL(p)
        except OSError as e:
            tried.append(f"{p}: {e}")
    raise CublasUnavailableError(NO_CUBLAS + (f" (tried {len(tried)} places)" if tried else ""))


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the signatures graphc calls (cublas_api.h)."""
    vp, i, ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
    lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
    lib.cublasDestroy_v2.argtypes = [vp]
    lib.cublasSetStream_v2.argtypes = [vp, vp]
    lib.cublasSetMathMode.argtypes = [vp, i]
    lib.cublasGemmStridedBatchedEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, ll, vp, i, i, ll, vp, vp, i, i, ll,
                                               i, i, i]
    for fn in (lib.cublasCreate_v2, lib.cublasDestroy_v2, lib.cublasSetStream_v2, lib.cublasSetMathMode,
               lib.cublasGemmStridedBatchedEx):
        fn.restype = ctypes.c_int
    return lib


@dataclass(frozen=True)
class ColumnMajor:
    """The arguments of one cublasGemmStridedBatchedEx call for a row-major ``Gemm`` (operands swapped)."""

    transa: int
    transb: int
    m: int
    n: int
    k: int
    lda: int
    stride_a: int
    ldb: int
    stride_b: int
    ldc: int
    stride_c: int
    batch: int
    #: elements from the pointers given (A, B, C of the row-major call) to where cuBLAS starts reading
    offsets: tuple[int, int, int]


def column_major(g: Gemm) -> ColumnMajor:
    """cuBLAS's view of ``g``: ``C^T (n x m) = op(B)^T op(A)^T``, B's memory as cuBLAS's A and A's as its B.

    A row-major matrix stored ``r x c`` with row stride ``ld`` is, read column-major, its ``c x r``
    transpose with leading dimension ``ld``; so B stored untransposed already is ``op(B)^T`` (no op), and
    stored transposed it needs cuBLAS's T. Leading dimensions are at least 1 (cuBLAS rejects 0 even for an
    empty matrix).
    """
    ta = CUBLAS_OP_T if g.trans_b else CUBLAS_OP_N  # cuBLAS's A is graphc's B
    tb = CUBLAS_OP_T if g.trans_a else CUBLAS_OP_N
    rows_a = g.n if ta == CUBLAS_OP_N else g.k  # rows of cuBLAS's A as stored column-major
    rows_b = g.k if tb == CUBLAS_OP_N else g.m
    return ColumnMajor(ta, tb, g.n, g.m, g.k, max(g.ldb, rows_a, 1), g.stride_b, max(g.lda, rows_b, 1), g.stride_a,
                       max(g.ldc, g.n, 1), g.stride_c, g.batch, (g.offset_a, g.offset_b, g.offset_c))


class Cublas:
    """One cuBLAS handle in the current context, and launchers for ``libcall.Gemm`` descriptions."""

    def __init__(self, lib: ctypes.CDLL | None = None):
        self.lib = _bind(lib if lib is not None else load_library())
        handle = ctypes.c_void_p()
        self.check("cublasCreate_v2", self.lib.cublasCreate_v2(ctypes.byref(handle)),
                   "no CUDA context or no device: cuBLAS binds its handle to the current context")
        self.handle = handle
        self._math = None

    def close(self) -> None:
        """Destroy the handle (``cublasDestroy_v2``: its workspace goes back to the device); idempotent."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            self.check("cublasDestroy_v2", self.lib.cublasDestroy_v2(handle))

    @staticmethod
    def check(call: str, status: int, detail: str = "") -> None:
        if status != 0:
            raise CublasError(call, status, detail)

    def set_math_mode(self, tf32: bool) -> None:
        mode = CUBLAS_TF32_TENSOR_OP_MATH if tf32 else CUBLAS_DEFAULT_MATH
        if mode != self._math:
            self.check("cublasSetMathMode", self.lib.cublasSetMathMode(self.handle, mode))
            self._math = mode

    def gemm(self, g: Gemm):
        """A launcher ``(grid, block, [a, b, c]) -> None`` running ``g`` (row-major) on device pointers;
        every argument but the pointers is computed here, once."""
        if g.dtype not in TYPES:
            raise CublasError("cublasGemmStridedBatchedEx", 15, f"no cuBLAS GEMM for element type {g.dtype}")
        dtype, compute, scalar = TYPES[g.dtype]
        tf32 = g.tf32 and g.dtype == DType.float32
        if tf32:
            compute = CUBLAS_COMPUTE_32F_FAST_TF32
        cm = column_major(g)
        big = [x for x in (cm.m, cm.n, cm.k, cm.lda, cm.ldb, cm.ldc, cm.batch) if x > INT_MAX]
        if big:
            raise CublasError("cublasGemmStridedBatchedEx", 7, f"size {big[0]} exceeds cuBLAS's int range")
        alpha, beta = scalar(g.alpha), scalar(g.beta)
        p_alpha, p_beta = ctypes.cast(ctypes.pointer(alpha), ctypes.c_void_p), ctypes.cast(ctypes.pointer(beta),
                                                                                            ctypes.c_void_p)
        size = g.dtype.itemsize
        off_a, off_b, off_c = (o * size for o in cm.offsets)
        fn = self.lib.cublasGemmStridedBatchedEx
        empty = g.m == 0 or g.n == 0 or g.batch == 0
        handle = self.handle
        if handle is None:
            raise CublasError("cublasGemmStridedBatchedEx", 1, "the cuBLAS handle was destroyed (Cublas.close)")

        def launch(grid: int, block: int, ptrs: list[int]) -> None:
            if empty:
                return
            a, b, c = ptrs
            self.set_math_mode(tf32)
            status = fn(handle, cm.transa, cm.transb, cm.m, cm.n, cm.k, p_alpha, b + off_b, dtype, cm.lda, cm.stride_a,
                        a + off_a, dtype, cm.ldb, cm.stride_b, p_beta, c + off_c, dtype, cm.ldc, cm.stride_c, cm.batch,
                        compute, CUBLAS_GEMM_DEFAULT)
            if status != 0:
                raise CublasError("cublasGemmStridedBatchedEx", status, f"{g}")

        launch.keep = (alpha, beta)  # the scalars live as long as the launcher
        return launch


__all__ = ["ColumnMajor", "Cublas", "CublasError", "CublasUnavailableError", "NO_CUBLAS", "candidates",
           "column_major", "load_library"]
