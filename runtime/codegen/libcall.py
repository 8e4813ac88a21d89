"""Library calls: plan steps that run a vendor routine (cuBLAS's GEMM) instead of a generated kernel.

A call is a frozen description with everything but the pointers: the lowering makes it once, the
executor resolves its arguments to arena pointers once, and the device runs it (``device.gemm``) with
no decision left at run time. The device interface speaks row-major, as NumPy and graphc do; the cuBLAS
binding turns a row-major product into a column-major one by swapping the operands (C^T = B^T A^T), so no
transposing copy is ever made. ``gemm_reference`` states the semantics in NumPy: the CPU emulator runs it
on host memory and the tests compare against it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.ir import DType


#: The element types a GEMM call multiplies (float16 and bfloat16 accumulate in float32).
GEMM_DTYPES = (DType.float16, DType.bfloat16, DType.float32, DType.float64)


@dataclass(frozen=True)
class Gemm:
    """``C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b]`` for ``b`` in ``range(batch)``, all row-major.

    ``op(X)`` is ``X.T`` when ``trans_x``. ``op(A)`` is ``m x k``, ``op(B)`` is ``k x n``, ``C`` is ``m x n``.
    ``lda``/``ldb``/``ldc``: the row stride (in elements) of A, B and C as stored (A stored ``m x k`` has
    ``lda >= k``; stored transposed, ``k x m``, ``lda >= m``). ``stride_*``: elements between consecutive
    batch items (0: the same matrix for every item, a broadcast). ``offset_*``: elements from the argument's
    pointer to item 0 (a group of a grouped convolution, say). ``dtype``: of A, B and C; float16 products
    accumulate in float32. ``tf32``: let float32 products use TF32 tensor cores (off: exact float32).
    """

    m: int
    n: int
    k: int
    dtype: DType = DType.float32
    trans_a: bool = False
    trans_b: bool = False
    lda: int = 0  # 0: packed (the stored row length)
    ldb: int = 0
    ldc: int = 0
    batch: int = 1
    stride_a: int = 0
    stride_b: int = 0
    stride_c: int = 0
    offset_a: int = 0
    offset_b: int = 0
    offset_c: int = 0
    alpha: float = 1.0
    beta: float = 0.0
    tf32: bool = False

    def __post_init__(self):
        # fill packed leading dimensions: the stored row length of each operand
        if not self.lda:
            object.__setattr__(self, "lda", self.m if self.trans_a else self.k)
        if not self.ldb:
            object.__setattr__(self, "ldb", self.k if self.trans_b else self.n)
        if not self.ldc:
            object.__setattr__(self, "ldc", self.n)

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k * self.batch

    def extent(self, which: str) -> int:
        """Elements of argument ``which`` ("a", "b" or "c") the call touches, from its pointer on."""
        rows, cols, ld, stride, off = {
            "a": ((self.k, self.m) if self.trans_a else (self.m, self.k)) + (self.lda, self.stride_a, self.offset_a),
            "b": ((self.n, self.k) if self.trans_b else (self.k, self.n)) + (self.ldb, self.stride_b, self.offset_b),
            "c": (self.m, self.n, self.ldc, self.stride_c, self.offset_c),
        }[which]
        if rows == 0 or cols == 0 or self.batch == 0:
            return off
        return off + (self.batch - 1) * stride + (rows - 1) * ld + cols


def operand(buf: np.ndarray, rows: int, cols: int, ld: int, stride: int, offset: int, batch: int) -> np.ndarray:
    """A ``batch x rows x cols`` strided view of a flat buffer (no copy)."""
    s = buf.itemsize
    return np.lib.stride_tricks.as_strided(buf[offset:], (batch, rows, cols), (stride * s, ld * s, s))


def gemm_operands(g: Gemm, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    """``op(A)``, ``op(B)`` and ``C`` of ``g`` as ``batch x rows x cols`` views of flat host buffers (1-D arrays
    of ``g.dtype``; no copy): ``C = alpha * op(A) @ op(B) + beta * C``."""
    A = operand(a, *((g.k, g.m) if g.trans_a else (g.m, g.k)), g.lda, g.stride_a, g.offset_a, g.batch)
    B = operand(b, *((g.n, g.k) if g.trans_b else (g.k, g.n)), g.ldb, g.stride_b, g.offset_b, g.batch)
    C = operand(c, g.m, g.n, g.ldc, g.stride_c, g.offset_c, g.batch)
    if g.trans_a:
        A = A.transpose(0, 2, 1)
    if g.trans_b:
        B = B.transpose(0, 2, 1)
    return A, B, C


def gemm_reference(g: Gemm, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """Run ``g`` on flat host buffers (1-D arrays of ``g.dtype``), writing into ``c``."""
    A, B, C = gemm_operands(g, a, b, c)
    acc = np.float64 if g.dtype == DType.float64 else np.float32
    prod = np.matmul(A.astype(acc), B.astype(acc))
    if g.alpha != 1.0:
        prod *= g.alpha
    if g.beta != 0.0:
        prod += g.beta * C.astype(acc)
    C[...] = prod.astype(c.dtype)


__all__ = ["GEMM_DTYPES", "Gemm", "gemm_operands", "gemm_reference", "operand"]
