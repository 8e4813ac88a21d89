"""Matrix products on the CUDA backend: GEMM descriptions (libcall.Gemm) against NumPy, MatMul's batch
broadcasting as calls, cuBLAS's column-major view of a row-major call, the lowering of MatMul/Gemm with
fused epilogues, the TF32 option, and the ctypes binding of cuBLAS.

The graphs (cuda_cases.gemm_cases) also run in test_cuda_emulator.py (the emulator runs GEMMs in NumPy),
their epilogue kernels compile in test_cuda_nvcc.py, and test_cuda_gpu.py runs them through cuBLAS. The
tests marked ``cuda`` here need a GPU: they call cuBLAS for real (not yet run: written without one)."""
from __future__ import annotations

import ctypes.util
import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
from cuda_cases import gemm_cases
from graphc.compiler import compile as compile_graph
from graphc.ir import DType
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.codegen.ops.linalg import matmul_calls
from graphc.runtime.cuda.cublas import CUBLAS_OP_N, CUBLAS_OP_T, column_major
from graphc.runtime.codegen.launch import DeviceProps
from graphc.runtime.codegen.libcall import Gemm, gemm_reference
from graphc.runtime.codegen.lowering import lower

CASES = {c.name: c for c in gemm_cases()}
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


def _buffers(g: Gemm, seed=0, dtype=np.float32):
    r = np.random.default_rng(seed)
    return [r.uniform(-1, 1, g.extent(w) + 3).astype(dtype) for w in "abc"]  # a little slack past the end


def _direct(g: Gemm, a, b, c):
    """``g`` computed item by item with explicit indexing (an independent statement of the semantics)."""
    out = c.astype(np.float64)
    for i in range(g.batch):
        A = np.array([[a[g.offset_a + i * g.stride_a + r * g.lda + q] for q in range(g.m if g.trans_a else g.k)]
                      for r in range(g.k if g.trans_a else g.m)], np.float64)
        B = np.array([[b[g.offset_b + i * g.stride_b + r * g.ldb + q] for q in range(g.k if g.trans_b else g.n)]
                      for r in range(g.n if g.trans_b else g.k)], np.float64)
        A, B = (A.T if g.trans_a else A), (B.T if g.trans_b else B)
        for r in range(g.m):
            for q in range(g.n):
                j = g.offset_c + i * g.stride_c + r * g.ldc + q
                out[j] = g.alpha * (A[r] @ B[:, q]) + g.beta * c[j]
    return out


DESCRIPTIONS = [
    Gemm(3, 4, 5),
    Gemm(3, 4, 5, trans_a=True, trans_b=True, alpha=0.5, beta=2.0),
    Gemm(2, 3, 4, trans_b=True, lda=6, ldb=5, ldc=7, offset_a=1, offset_b=2, offset_c=3),
    Gemm(2, 3, 4, batch=3, stride_a=8, stride_b=0, stride_c=6, beta=1.0),  # B broadcast over the batch
    Gemm(4, 2, 3, trans_a=True, batch=2, stride_a=0, stride_b=6, stride_c=10, ldc=5, offset_c=1),
    Gemm(1, 1, 7, batch=2, stride_a=7, stride_b=7, stride_c=1),
]


@pytest.mark.parametrize("g", DESCRIPTIONS, ids=range(len(DESCRIPTIONS)))
def test_gemm_reference_matches_direct_indexing(g):
    a, b, c = _buffers(g, seed=1)
    want = _direct(g, a, b, c)
    gemm_reference(g, a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-6)


def _cublas_semantics(cm, a_mem, b_mem, c_mem, alpha, beta):
    """What cublasGemmStridedBatchedEx computes, column-major: C = alpha op(A) op(B) + beta C for every item,
    ``A`` here being the buffer cuBLAS is handed first (graphc's B) and ``B`` the second (graphc's A)."""
    off_a, off_b, off_c = cm.offsets
    first, second = b_mem, a_mem  # the operand swap
    first_off, second_off = off_b, off_a

    def colmajor(buf, off, rows, cols, ld):
        return np.array([[buf[off + q * ld + r] for q in range(cols)] for r in range(rows)], np.float64)

    c = c_mem.astype(np.float64)
    for i in range(cm.batch):
        ra, ca = (cm.m, cm.k) if cm.transa == CUBLAS_OP_N else (cm.k, cm.m)
        rb, cb = (cm.k, cm.n) if cm.transb == CUBLAS_OP_N else (cm.n, cm.k)
        A = colmajor(first, first_off + i * cm.stride_a, ra, ca, cm.lda)
        B = colmajor(second, second_off + i * cm.stride_b, rb, cb, cm.ldb)
        A = A if cm.transa == CUBLAS_OP_N else A.T
        B = B if cm.transb == CUBLAS_OP_N else B.T
        C = colmajor(c_mem, off_c + i * cm.stride_c, cm.m, cm.n, cm.ldc)
        res = alpha * (A @ B) + beta * C
        for r in range(cm.m):
            for q in range(cm.n):
                c[off_c + i * cm.stride_c + q * cm.ldc + r] = res[r, q]
    return c


@pytest.mark.parametrize("g", DESCRIPTIONS, ids=range(len(DESCRIPTIONS)))
def test_cublas_column_major_call_computes_the_row_major_product(g):
    """The operand swap: cuBLAS's column-major arguments for ``g``, run with cuBLAS's semantics, give
    what gemm_reference gives for the row-major description (no transposing copy anywhere)."""
    a, b, c = _buffers(g, seed=2)
    cm = column_major(g)
    assert (cm.m, cm.n, cm.k) == (g.n, g.m, g.k)
    assert cm.transa == (CUBLAS_OP_T if g.trans_b else CUBLAS_OP_N)
    got = _cublas_semantics(cm, a, b, c, g.alpha, g.beta)
    gemm_reference(g, a, b, c)
    np.testing.assert_allclose(got, c, rtol=1e-5, atol=1e-6)


SHAPES = [((5, 7), (7, 3)), ((2, 3, 4, 5), (2, 3, 5, 6)), ((2, 1, 4, 5), (3, 5, 6)), ((3, 4, 5), (5, 6)),
          ((4, 5), (3, 5, 6)), ((5,), (3, 5, 6)), ((3, 4, 5), (5,)), ((5,), (5,)), ((2, 1, 3, 2, 4), (1, 4, 1, 4, 2)),
          ((1, 3, 1, 2, 4), (2, 1, 5, 4, 3)), ((2, 3, 0, 4), (4, 2)), ((3, 2, 0), (0, 4))]


@pytest.mark.parametrize("sa,sb", SHAPES, ids=[f"{a}@{b}" for a, b in SHAPES])
def test_matmul_calls_compute_numpy_matmul(sa, sb):
    r = np.random.default_rng(3)
    a, b = r.uniform(-1, 1, sa).astype(np.float32), r.uniform(-1, 1, sb).astype(np.float32)
    want = np.matmul(a, b)
    out = np.full(want.size, np.nan, np.float32)
    calls = matmul_calls(sa, sb)
    for g in calls:
        assert g.extent("a") <= a.size and g.extent("b") <= b.size and g.extent("c") <= out.size
        gemm_reference(g, a.reshape(-1), b.reshape(-1), out)
    if want.size and a.shape[-1] == 0:
        assert calls and calls[0].k == 0  # an empty inner dim still writes zeros
    np.testing.assert_allclose(out.reshape(want.shape), want, rtol=1e-5, atol=1e-6)


def test_matmul_batch_layouts_take_the_fewest_calls():
    (g,) = matmul_calls((3, 4, 5), (5, 6))
    assert (g.m, g.batch) == (12, 1)  # x @ W: the batch folded into the rows of one GEMM
    (g,) = matmul_calls((4, 5), (3, 5, 6))
    assert (g.batch, g.stride_a, g.stride_b, g.stride_c) == (3, 0, 30, 24)  # A broadcast: stride 0
    calls = matmul_calls((2, 1, 4, 5), (3, 5, 6))
    assert len(calls) == 2 and all(c.batch == 3 and c.stride_a == 0 for c in calls)
    assert [c.offset_a for c in calls] == [0, 20] and [c.offset_c for c in calls] == [0, 72]
    assert matmul_calls((2, 0, 4, 5), (5, 6)) == []


def _lowered(name, **kw):
    plan = compile_graph(gc.import_onnx(CASES[name].model))
    return plan, lower(plan.graph, DeviceProps(), **kw)


def test_fused_group_is_one_call_and_one_epilogue_kernel_in_place():
    plan, low = _lowered("MatMul_bias_relu_fused")
    (group,) = [n for n in plan.graph.nodes if n.op_type == "FusedGroup"]
    call, epilogue = low.steps
    assert isinstance(call.call, Gemm) and (call.call.m, call.call.batch) == (10, 1)
    assert epilogue.kernel is not None and epilogue.node is group
    assert "Add" in epilogue.kernel.source and "Relu" in epilogue.kernel.source
    out = group.outputs[0]
    assert call.args[2] is out and out in epilogue.args  # the product lands in the output, the epilogue runs there
    assert not low.scratch


def test_gemm_bias_goes_to_the_epilogue():
    plan, low = _lowered("Gemm_linear_bias_relu_fused")
    call, epilogue = low.steps
    assert call.call.beta == 0.0 and call.call.trans_b
    assert "Add 'Gemm_0_plus_C'" in epilogue.kernel.source and "Relu" in epilogue.kernel.source
    _, lone = _lowered("Gemm_trans_column_C_beta")  # a lone Gemm with C: the call, then C added by a kernel
    call, add = lone.steps
    assert "Mul 'Gemm_0_beta_C'" in add.kernel.source and "(-2.0f)" in add.kernel.source
    _, no_c = _lowered("Gemm_trans_C_beta_zero")
    assert len(no_c.steps) == 1 and no_c.steps[0].call is not None


def test_epilogue_of_another_type_writes_the_product_to_scratch():
    plan, low = _lowered("MatMul_cast_epilogue_in_scratch")
    call, epilogue = low.steps
    (scratch,) = low.scratch
    assert call.args[2] is scratch and scratch.type.dtype == DType.float32 and scratch in epilogue.args


def test_split_leaves_the_plan_as_it_was():
    plan = compile_graph(gc.import_onnx(CASES["Gemm_linear_bias_relu_fused"].model))
    before = str(plan.graph)
    producers = {id(v): v.producer for n in plan.graph.nodes for b in n.subgraphs() for m in b.nodes for v in m.outputs}
    lower(plan.graph, DeviceProps())
    assert str(plan.graph) == before
    assert all(v.producer is producers[id(v)] for n in plan.graph.nodes for b in n.subgraphs() for m in b.nodes
               for v in m.outputs)


def test_tf32_option_reaches_every_float32_gemm():
    _, off = _lowered("MatMul_broadcast_batch_two_calls")
    _, on = _lowered("MatMul_broadcast_batch_two_calls", tf32=True)
    assert [s.call.tf32 for s in off.steps] == [False, False] and [s.call.tf32 for s in on.steps] == [True, True]
    _, half = _lowered("MatMul_half", tf32=True)
    assert not half.steps[0].call.tf32  # TF32 concerns float32 only


def test_integer_matmul_is_reported_missing():
    from cuda_cases import MISSING
    from graphc.runtime.codegen.lowering import MissingKernelError

    with pytest.raises(MissingKernelError, match="integer matrix products have no CUDA kernel yet"):
        lower(compile_graph(gc.import_onnx(MISSING.model)).graph, DeviceProps())


@needs_gpp
def test_emulator_runs_gemm_graphs_with_tf32_flag_and_few_launches(tmp_path):
    from graphc.runtime.cuda import CudaBackend
    from graphc.runtime.cuda.emulator import EmulatedDevice

    case = CASES["Gemm_linear_bias_relu_fused"]
    graph = gc.import_onnx(case.model)
    exe = CudaBackend.prepare(graph, device=EmulatedDevice(KernelCache(tmp_path)), debug=True, tf32=True)
    prepared = exe.prepared()
    assert len(prepared.launches) == 2 and all(s.call.tf32 for s in prepared.lowered.steps if s.call)
    (y,) = exe.run(case.feeds)
    np.testing.assert_allclose(y, gc.prepare(graph).run(case.feeds)[0], rtol=1e-5, atol=1e-5)


# ---- the cuBLAS binding -----------------------------------------------------------------------------
def _find_cublas():
    from graphc.runtime.cuda.cublas import CublasUnavailableError, load_library

    try:
        return load_library()
    except CublasUnavailableError:
        return None


def test_missing_cublas_is_one_sentence_with_the_fix():
    from graphc.runtime.cuda.cublas import CublasUnavailableError, load_library
    from graphc.runtime.cuda.device import CudaUnavailableError

    with pytest.raises(CublasUnavailableError) as e:
        load_library(["/nonexistent/libcublas.so.12"])
    assert isinstance(e.value, CudaUnavailableError)
    assert "pip install nvidia-cublas-cu12" in str(e.value) and "\n" not in str(e.value)


def test_cublas_errors_name_the_call_and_status():
    from graphc.runtime.cuda.cublas import CublasError

    e = CublasError("cublasGemmStridedBatchedEx", 7, "m=3")
    assert str(e) == "cublasGemmStridedBatchedEx failed with CUBLAS_STATUS_INVALID_VALUE (m=3)"


@pytest.mark.skipif(_find_cublas() is None, reason="no libcublas (pip install nvidia-cublas-cu12)")
def test_cublas_library_has_the_symbols_bound():
    from graphc.runtime.cuda.cublas import Cublas, CublasError, _bind

    lib = _bind(_find_cublas())
    assert lib.cublasGemmStridedBatchedEx.argtypes[-3:] == [ctypes.c_int] * 3
    if ctypes.util.find_library("cuda") is None:  # no driver here: the handle cannot be made, and says so
        with pytest.raises(CublasError, match=r"cublasCreate_v2 failed with CUBLAS_STATUS_\w+"):
            Cublas(lib)


@pytest.mark.nvcc
def test_epilogue_kernels_compile_with_nvcc(tmp_path):
    from graphc.runtime.cuda.cache import find_nvcc
    from graphc.runtime.cuda.emulator import combined_source

    kernels = {}
    for c in CASES.values():
        for s in lower(compile_graph(gc.import_onnx(c.model)).graph, DeviceProps()).steps:
            if s.kernel is not None:
                kernels.setdefault(s.kernel.source, s.kernel)
    assert sum("epilogue" in k.name for k in kernels.values()) >= 5
    src = tmp_path / "epilogues.cu"
    src.write_text(combined_source(list(kernels.values())))
    run = subprocess.run([find_nvcc(), "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(tmp_path / "e.ptx"), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]


# ---- on a GPU: cuBLAS for real ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    from graphc.runtime.cuda.device import PyCudaDevice

    return PyCudaDevice()  # the warm cache ($GRAPHC_CACHE_DIR: scripts/gpu_check.sh carries it)


def _run_on_device(dev, g: Gemm, a, b, c):
    ptrs = []
    for x in (a, b, c):
        p = dev.alloc(x.nbytes)
        dev.htod(p, x)
        ptrs.append(p)
    dev.call(g)(0, 0, ptrs)
    dev.synchronize()
    out = np.empty_like(c)
    dev.dtoh(out, ptrs[2])
    return out


@pytest.mark.cuda
@pytest.mark.parametrize("g", DESCRIPTIONS, ids=range(len(DESCRIPTIONS)))
def test_cublas_runs_descriptions_like_the_reference(gpu, g):
    a, b, c = _buffers(g, seed=4)
    got = _run_on_device(gpu, g, a, b, c)
    gemm_reference(g, a, b, c)
    np.testing.assert_allclose(got, c, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_cublas_half_and_double(gpu, dtype):
    dt = {np.float16: DType.float16, np.float64: DType.float64}[dtype]
    g = Gemm(33, 17, 65, dt, trans_a=True, batch=2, stride_a=65 * 33, stride_b=0, stride_c=33 * 17)
    a, b, c = _buffers(g, seed=5, dtype=dtype)
    got = _run_on_device(gpu, g, a, b, c)
    gemm_reference(g, a, b, c)
    tol = 1e-12 if dtype == np.float64 else 2e-2
    np.testing.assert_allclose(got.astype(np.float64), c.astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.cuda
def test_tf32_off_is_exact_float32_and_on_is_not(gpu):
    m = n = k = 512
    r = np.random.default_rng(6)
    a, b = r.uniform(-1, 1, (m, k)).astype(np.float32), r.uniform(-1, 1, (k, n)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    errs = {}
    for tf32 in (False, True):
        got = _run_on_device(gpu, Gemm(m, n, k, tf32=tf32), a.reshape(-1), b.reshape(-1), np.zeros(m * n, np.float32))
        errs[tf32] = np.abs(got.reshape(m, n) - exact).max()
    assert errs[False] < 1e-4  # float32 accumulation of 512 products of [-1, 1] values
    assert errs[True] > 10 * errs[False] and errs[True] < 5e-2  # TF32 keeps 10 mantissa bits: visibly coarser


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(CASES))
def test_gemm_graphs_on_the_gpu(gpu, name):
    from graphc.runtime.cuda import CudaBackend

    case = CASES[name]
    graph = gc.import_onnx(case.model)
    outs = CudaBackend.prepare(graph, device=gpu, debug=True).run(case.feeds)
    for a, b in zip(outs, gc.prepare(graph).run(case.feeds)):
        np.testing.assert_allclose(a.astype(np.float64), np.asarray(b).astype(np.float64), rtol=max(case.rtol, 1e-5),
                                   atol=max(case.atol, 1e-5), err_msg=name)
