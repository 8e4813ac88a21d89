"""The CPU backend's GEMM steps from C (``gc_gemm``: the BLAS's cblas gemm, or gemv for one row or column,
single-threaded, on pieces of C that the thread pool shares) equal ``libcall.gemm_reference`` for every layout a lowering makes: transposes, batches
(strided and broadcast), offsets, row strides wider than the matrix, alpha and beta, float32 and float64, at one
and at several threads, split into pieces or not."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from graphc.ir import DType
from graphc.runtime.codegen.libcall import Gemm, gemm_reference
from graphc.runtime.cpu import available, default_host_device
from graphc.runtime.cpu import device as cpu_device
from graphc.runtime.cuda.host import host_view

pytestmark = pytest.mark.skipif(not available() or cpu_device.cblas() is None,
                                reason="needs a C++ compiler and a BLAS with cblas entry points")

LAYOUTS = [  # (m, n, k, batch, trans_a, trans_b, extra row stride, broadcast B over the batch)
    (5, 7, 3, 1, False, False, 0, False),
    (64, 300, 40, 1, False, True, 0, False),   # big enough to be split (pieces along n)
    (300, 20, 50, 1, True, False, 3, False),   # pieces along m, A transposed, padded rows
    (33, 65, 17, 3, True, True, 1, True),      # a batch, B broadcast (stride 0)
    (1, 1000, 64, 2, False, False, 0, False),  # one row: matrix-vector products (gemv)
    (1, 300, 64, 1, False, True, 2, False),
    (1, 50, 30, 2, True, False, 3, False),      # the row of A read with a stride (A stored transposed)
    (40, 1, 70, 1, False, False, 2, False),     # one column: B's column read with a stride, C's written so
    (40, 1, 70, 2, True, True, 1, True),
    (1, 1, 9, 1, False, False, 0, False),
]


def _gemm(m, n, k, batch, ta, tb, pad, bcast, dt, alpha, beta) -> Gemm:
    lda = (m if ta else k) + pad
    ldb = (k if tb else n) + pad
    ldc = n + pad
    rows_a, rows_b = (k if ta else m), (n if tb else k)
    return Gemm(m=m, n=n, k=k, batch=batch, trans_a=ta, trans_b=tb, lda=lda, ldb=ldb, ldc=ldc,
                stride_a=rows_a * lda + 2, stride_b=0 if bcast else rows_b * ldb + 1, stride_c=m * ldc + 5,
                offset_a=3, offset_b=1, offset_c=2, alpha=alpha, beta=beta, dtype=dt)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: "x".join(map(str, l[:4])) + f"_t{int(l[4])}{int(l[5])}")
@pytest.mark.parametrize("dt,alpha,beta", [(DType.float32, 1.0, 0.0), (DType.float32, 0.5, 1.0),
                                           (DType.float64, 2.0, -0.25)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gemm_from_c_equals_the_reference(layout, dt, alpha, beta, threads):
    g = _gemm(*layout, dt, alpha, beta)
    dev = default_host_device()
    rng = np.random.default_rng(len(LAYOUTS) * threads)
    ptrs, refs = [], []
    for which in "abc":
        n = g.extent(which)
        ptr = dev.alloc(n * dt.np.itemsize)
        host_view(ptr, n, dt.np)[:] = rng.standard_normal(n).astype(dt.np)
        ptrs.append(ptr)
        refs.append(host_view(ptr, n, dt.np).copy())
    gemm_reference(g, *refs)
    launch = dev.call(g)
    assert hasattr(launch, "c_call")  # runs from C, batchable with the kernels
    saved = dev._threads
    dev._threads = threads
    try:
        launch(0, 0, ptrs)
    finally:
        dev._threads = saved
    got = host_view(ptrs[2], g.extent("c"), dt.np)
    tol = 1e-4 if dt == DType.float32 else 1e-10
    np.testing.assert_allclose(got, refs[2], rtol=tol, atol=tol)  # the bytes between rows untouched too
    for p in ptrs:
        dev.free(p)


def test_big_products_are_cut_into_pieces_and_small_ones_are_not():
    assert cpu_device._pieces(_gemm(4, 4, 4, 1, False, False, 0, False, DType.float32, 1.0, 0.0)) == (1, 1)
    assert cpu_device._pieces(_gemm(64, 3000, 64, 1, False, False, 0, False, DType.float32, 1.0, 0.0)) == (1, 8)
    assert cpu_device._pieces(_gemm(3000, 64, 64, 1, False, False, 0, False, DType.float32, 1.0, 0.0)) == (8, 1)
    assert cpu_device._pieces(_gemm(512, 512, 64, 16, False, False, 0, False, DType.float32, 1.0, 0.0)) == (1, 1)
