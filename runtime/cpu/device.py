"""The host as a device for generated kernels: the code generator's kernels (runtime/codegen), rendered in the C
dialect (``DeviceProps.target == "c"``), compiled by the system's C++ compiler at -O3, run on host memory by
graphc's own thread pool.

The C dialect differs from CUDA C where ``runtime/codegen/dialect.py`` says (``dialect.C``): a kernel's
loop over its work takes one chunk's contiguous share (``gc_share``) instead of striding by the grid, and no
float4 vectors (the compiler vectorizes the scalar loop). Everything else is the same source under a small
header (``SHIM``): a "block" is one chunk of the launch's work (``blockIdx`` the chunk, ``gridDim`` how many,
``threadIdx`` 0, ``__syncthreads`` nothing, ``__shared__`` arrays the chunk's own), so the row kernels and the
split reductions run unchanged.

The pool (``gc_pool_run``): a launch on several threads is cut into ``CHUNKS_PER_THREAD`` chunks per thread,
which the calling thread and the pool's workers claim one at a time; the caller waits only for chunks a worker
is running, never for a worker to arrive, so a thread the OS delays (a busy machine, a worker still asleep
after an idle gap) leaves its chunks to the others instead of holding up the launch. Idle workers spin briefly
(``POOL_SPIN``), then sleep. One pool per process, whatever library a kernel is in; no OpenMP runtime is
loaded (``-fopenmp-simd`` only: the ``omp simd`` declarations of libmvec's vector math). Matrix products (the
lowering's GEMM calls) run from C too (``gc_gemm``): the cblas of the BLAS NumPy carries, single-threaded, on
pieces of the output that the pool shares; float16 and the other types go through NumPy. On a host with
AVX-512, elementwise loops that call vector math are compiled 16 wide (``GC_WIDE``); everything else is AVX2.

Memory is host memory: a pointer is an address inside a NumPy array (64-byte aligned, left uninitialised).
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import shutil

import numpy as np

from graphc.errors import GraphcError
from graphc.ir import DType

from ..cuda.cache import KernelCache, KernelCompileError
from ..codegen.kernel import Kernel, numel, shape_of
from ..cuda.emulator import combined_source
from ..cuda.host import TYPES, HostMemory, argument_array, build_library, host_view, launch_arguments
from ..codegen.launch import DeviceProps
from ..codegen.libcall import Gemm, gemm_operands, gemm_reference
from ..codegen.lowering import HostCall

SHIM = r"""
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
struct gc_dim3 { unsigned x, y, z; };
// a "block" is one chunk of a launch's work (gc_pool_run): blockIdx the chunk, gridDim how many the launch has
static thread_local long long gc_chunk_ = 0, gc_chunks_ = 1;
#define blockIdx (gc_dim3{(unsigned)gc_chunk_, 0u, 0u})
#define gridDim (gc_dim3{(unsigned)gc_chunks_, 1u, 1u})
#define threadIdx (gc_dim3{0u, 0u, 0u})
#define blockDim (gc_dim3{1u, 1u, 1u})
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
#define __restrict__ __restrict
#define __syncthreads() ((void)0)
// this chunk's share of [0, n): the first (next = 0) or one past the last (next = 1) index
static inline long long gc_share(long long n, int next) {
    return n * (gc_chunk_ + next) / gc_chunks_;
}
// ---- the thread pool: a launch's chunks are claimed one at a time by the calling thread and by the workers
// that are awake; the caller waits only for chunks a worker is running, never for a worker to arrive (one the
// OS delays finds nothing left). Workers spin briefly for the next launch, then sleep on a futex.
typedef void (*gc_task)(void* ctx, long long chunk, long long chunks);
typedef void (*gc_runner_t)(gc_task fn, void* ctx, long long chunks, int threads);
namespace gc_pool {
struct Pool {
    std::atomic<unsigned> gen{0};
    std::atomic<long long> next{0}, done{0};
    std::atomic<int> active{0}, helpers{0}, spin{20000};
    std::atomic<bool> open{false};
    gc_task fn = nullptr;
    void* ctx = nullptr;
    long long total = 0;
    int workers = 0;
    std::mutex busy, grow;
};
static Pool& pool() { static Pool* p = new Pool(); return *p; }  // never freed: workers outlive static destructors
static inline void relax() { __builtin_ia32_pause(); }
static void work(Pool& p, gc_task fn, void* ctx, long long total) {
    long long c;
    while ((c = p.next.fetch_add(1, std::memory_order_acq_rel)) < total) {
        fn(ctx, c, total);
        p.done.fetch_add(1, std::memory_order_release);
    }
}
static void worker(int index) {
    Pool& p = pool();
    unsigned seen = p.gen.load(std::memory_order_acquire);
    for (;;) {
        unsigned g;
        for (int spins = 0; (g = p.gen.load(std::memory_order_acquire)) == seen;) {
            if (++spins < p.spin.load(std::memory_order_relaxed)) relax();
            else p.gen.wait(seen, std::memory_order_acquire);
        }
        seen = g;
        if (index >= p.helpers.load(std::memory_order_acquire)) continue;
        // seq_cst against the caller's closing (open = false, then active == 0): one of the two sees the other
        p.active.fetch_add(1, std::memory_order_seq_cst);
        if (p.open.load(std::memory_order_seq_cst) && index < p.helpers.load(std::memory_order_acquire))
            work(p, p.fn, p.ctx, p.total);
        p.active.fetch_sub(1, std::memory_order_release);
    }
}
}  // namespace gc_pool
// run fn(ctx, c, chunks) for every c in [0, chunks) on up to `threads` threads (this one included)
extern "C" void gc_pool_run(gc_task fn, void* ctx, long long chunks, int threads) {
    gc_pool::Pool& p = gc_pool::pool();
    if (threads <= 1 || chunks <= 1 || !p.busy.try_lock()) {  // busy: another thread's launch has the pool
        for (long long c = 0; c < chunks; ++c) fn(ctx, c, chunks);
        return;
    }
    if (p.workers < threads - 1) {
        std::lock_guard<std::mutex> lock(p.grow);
        for (; p.workers < threads - 1; ++p.workers) std::thread(gc_pool::worker, p.workers).detach();
    }
    p.fn = fn; p.ctx = ctx; p.total = chunks;
    p.next.store(0, std::memory_order_relaxed);
    p.done.store(0, std::memory_order_relaxed);
    p.helpers.store(threads - 1, std::memory_order_relaxed);
    p.open.store(true, std::memory_order_release);
    p.gen.fetch_add(1, std::memory_order_release);
    p.gen.notify_all();
    gc_pool::work(p, fn, ctx, chunks);
    while (p.done.load(std::memory_order_acquire) < chunks) gc_pool::relax();  // chunks the workers still run
    p.open.store(false, std::memory_order_seq_cst);
    while (p.active.load(std::memory_order_seq_cst) != 0) gc_pool::relax();  // a worker between its checks
    p.busy.unlock();
}
// how long an idle worker spins before it sleeps (pause instructions)
extern "C" void gc_pool_spin(int spins) { gc_pool::pool().spin.store(spins, std::memory_order_relaxed); }
// every kernel library runs its launches on one pool, the first library's (HostDevice sets it)
static gc_runner_t gc_runner = gc_pool_run;
extern "C" void gc_use_pool(void* runner) { gc_runner = (gc_runner_t)runner; }
// ---- what a kernel may call itself (Dialect.kernel_gemm): the BLAS's GEMM, and a scratch buffer per thread
// the BLAS NumPy loaded (HostDevice sets it, gc_use_blas; a plain loop without one): cblas ?gemm entry points
static void* gc_blas_sgemm = nullptr;
static void* gc_blas_dgemm = nullptr;
static int gc_blas_int64 = 0;
extern "C" void gc_use_blas(void* sgemm, void* dgemm, int int64) {
    gc_blas_sgemm = sgemm; gc_blas_dgemm = dgemm; gc_blas_int64 = int64;
}
template <class T, class I>
static inline void gc_blas_call(void* fn, long long m, long long n, long long k, const T* a, long long lda,
                                const T* b, long long ldb, T beta, T* c, long long ldc) {
    typedef void (*fn_t)(int, int, int, I, I, I, T, const T*, I, const T*, I, T, T*, I);
    ((fn_t)fn)(101, 111, 111, (I)m, (I)n, (I)k, (T)1, a, (I)lda, b, (I)ldb, beta, c, (I)ldc);
}
// C (m x n, row stride ldc) = A (m x k) @ B (k x n) + beta * C, all row-major, on this thread
template <class T>
static void gc_gemm_rm(long long m, long long n, long long k, const T* a, long long lda, const T* b,
                       long long ldb, T beta, T* c, long long ldc) {
    void* fn = sizeof(T) == 8 ? gc_blas_dgemm : gc_blas_sgemm;
    if (fn) {
        if (gc_blas_int64) gc_blas_call<T, long long>(fn, m, n, k, a, lda, b, ldb, beta, c, ldc);
        else gc_blas_call<T, int>(fn, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (long long i = 0; i < m; ++i) {
        T* ci = c + i * ldc;
        for (long long j = 0; j < n; ++j) ci[j] = beta == (T)0 ? (T)0 : beta * ci[j];
        for (long long p = 0; p < k; ++p) {
            const T av = a[i * lda + p];
            const T* bp = b + p * ldb;
            for (long long j = 0; j < n; ++j) ci[j] += av * bp[j];
        }
    }
}
// this thread's scratch buffer of at least `bytes` (64-byte aligned), kept for its next use
struct gc_scratch_buf {
    void* p = nullptr;
    size_t n = 0;
    ~gc_scratch_buf() { std::free(p); }
};
static void* gc_scratch(size_t bytes) {
    static thread_local gc_scratch_buf buf;
    if (buf.n < bytes) {
        std::free(buf.p);
        buf.n = (bytes + 63) / 64 * 64;
        buf.p = std::aligned_alloc(64, buf.n);
    }
    return buf.p;
}
// the launches of a plan run back to back from C (HostDevice.batch_launches)
typedef void (*gc_launcher)(void**, int);
extern "C" void gc_run_list(gc_launcher* fns, void*** args, const int* threads, int count) {
    for (int k = 0; k < count; ++k) fns[k](args[k], threads[k]);
}
// a GEMM step (libcall.Gemm; HostDevice.call): the BLAS's cblas_?gemm, single-threaded, on pieces of C that the
// pool's threads take one at a time (a thread the OS delays leaves its pieces to the others)
struct gc_gemm_desc {
    void* fn;  // cblas_sgemm or cblas_dgemm of the BLAS NumPy loaded
    void* gemv;  // cblas_sgemv or cblas_dgemv: a product with one row or one column is a matrix-vector one
    int f64, int64, trans_a, trans_b;  // double elements; 64-bit BLAS integers
    long long m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c, offset_a, offset_b, offset_c, batch;
    long long pieces_m, pieces_n;  // C split into pieces_m x pieces_n blocks per batch item
    double alpha, beta;
};
template <class T, class I>
static void gc_gemm_call(const gc_gemm_desc& d, const T* a, const T* b, T* c, long long m, long long n) {
    typedef void (*gemv_t)(int, int, I, I, T, const T*, I, const T*, I, T, T*, I);
    if (m == 1) {  // c (1 x n) = op(B)^T a, a read along its row (a column of A stored transposed)
        const I inc_a = d.trans_a ? (I)d.lda : 1;
        if (d.trans_b)  // B stored n x k: c = B a
            ((gemv_t)d.gemv)(101, 111, (I)n, (I)d.k, (T)d.alpha, b, (I)d.ldb, a, inc_a, (T)d.beta, c, 1);
        else  // B stored k x n: c = B^T a
            ((gemv_t)d.gemv)(101, 112, (I)d.k, (I)n, (T)d.alpha, b, (I)d.ldb, a, inc_a, (T)d.beta, c, 1);
        return;
    }
    if (n == 1) {  // c (m x 1, stride ldc) = op(A) b
        const I inc_b = d.trans_b ? 1 : (I)d.ldb;
        if (d.trans_a)  // A stored k x m: c = A^T b
            ((gemv_t)d.gemv)(101, 112, (I)d.k, (I)m, (T)d.alpha, a, (I)d.lda, b, inc_b, (T)d.beta, c, (I)d.ldc);
        else
            ((gemv_t)d.gemv)(101, 111, (I)m, (I)d.k, (T)d.alpha, a, (I)d.lda, b, inc_b, (T)d.beta, c, (I)d.ldc);
        return;
    }
    typedef void (*fn_t)(int, int, int, I, I, I, T, const T*, I, const T*, I, T, T*, I);
    ((fn_t)d.fn)(101, d.trans_a ? 112 : 111, d.trans_b ? 112 : 111, (I)m, (I)n, (I)d.k, (T)d.alpha, a, (I)d.lda,
                 b, (I)d.ldb, (T)d.beta, c, (I)d.ldc);  // CblasRowMajor, CblasNoTrans / CblasTrans
}
template <class T>
static void gc_gemm_block(const gc_gemm_desc& d, void** args, long long bi, long long m0, long long m1, long long n0,
                          long long n1) {
    const T* a = (const T*)args[0] + d.offset_a + bi * d.stride_a + (d.trans_a ? m0 : m0 * d.lda);
    const T* b = (const T*)args[1] + d.offset_b + bi * d.stride_b + (d.trans_b ? n0 * d.ldb : n0);
    T* c = (T*)args[2] + d.offset_c + bi * d.stride_c + m0 * d.ldc + n0;
    if (m1 > m0 && n1 > n0) {
        if (d.int64) gc_gemm_call<T, long long>(d, a, b, c, m1 - m0, n1 - n0);
        else gc_gemm_call<T, int>(d, a, b, c, m1 - m0, n1 - n0);
    }
}
template <class T>
static void gc_gemm_run(const gc_gemm_desc& d, void** args, int threads) {
    if (threads <= 1) {  // whole products, one batch item after another
        for (long long bi = 0; bi < d.batch; ++bi) gc_gemm_block<T>(d, args, bi, 0, d.m, 0, d.n);
        return;
    }
    const long long per = d.pieces_m * d.pieces_n, total = d.batch * per;
    gc_runner([](void* ctx, long long t, long long) {
        void** args = (void**)ctx;
        const gc_gemm_desc& d = *(const gc_gemm_desc*)args[3];
        const long long per = d.pieces_m * d.pieces_n;
        const long long bi = t / per, i = (t % per) / d.pieces_n, j = t % d.pieces_n;
        gc_gemm_block<T>(d, args, bi, d.m * i / d.pieces_m, d.m * (i + 1) / d.pieces_m, d.n * j / d.pieces_n,
                         d.n * (j + 1) / d.pieces_n);
    }, args, total, threads);
}
extern "C" void gc_gemm(void** args, int threads) {
    const gc_gemm_desc& d = *(const gc_gemm_desc*)args[3];
    if (d.f64) gc_gemm_run<double>(d, args, threads);
    else gc_gemm_run<float>(d, args, threads);
}
""" + TYPES

#: The C++ compiler and its options (``GRAPHC_CXX`` chooses another compiler).
CXX_ENV = "GRAPHC_CXX"
#: -mno-avx512f: GCC 12 at -O3 -march=native vectorizes a select between two loads whose indices are clamped into
#: the tensor (a Concat's inputs) with AVX-512 into loads the source never makes, before the start of an input: a
#: segfault when the page before it is unmapped (tests/cpu/test_cpu_models.py). AVX2 code is correct, and as fast
#: on these kernels (-fno-tree-loop-if-convert avoids it too, at twice the run time). Elementwise loops calling
#: vector math, which have no such loads, are compiled for AVX-512 by a function attribute (``_widened``).
#: -fno-math-errno -fno-trapping-math: math calls and comparisons may run speculatively (in vectors; values
#: are unchanged, only errno and the floating-point exception flags, which nothing reads, differ).
CXX_OPTIONS = ("-std=c++20", "-O3", "-march=native", "-mno-avx512f", "-fopenmp-simd", "-pthread", "-shared", "-fPIC",
               "-fno-math-errno", "-fno-trapping-math", "-w")
#: A launch runs in several threads only with at least this many elements of work per thread.
GRAIN = 16384
#: A launch on several threads is cut into this many chunks per thread, taken one at a time: a thread the OS
#: delays leaves its chunks to the others.
CHUNKS_PER_THREAD = 4


def compiler() -> str | None:
    """The C++ compiler the CPU target uses, or None when there is none."""
    return os.environ.get(CXX_ENV) or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def available() -> bool:
    return compiler() is not None


def host_props(threads: int | None = None) -> DeviceProps:
    """The CPU as the lowering sees it: ``threads`` "multiprocessors" of one thread each, the C dialect."""
    n = threads or os.cpu_count() or 1
    return DeviceProps(name=f"CPU ({n} threads)", compute_capability=(0, 0), multiprocessors=n,
                       max_threads_per_block=1, max_threads_per_multiprocessor=1, warp_size=1, target="c",
                       panel_gemm="GC_AVX512" in wide_macro())


#: Math functions whose vector versions glibc's libmvec may have (float and double): declared ``omp declare
#: simd`` when it does, so that a loop calling them vectorizes (a scalar tanhf or expf per element costs more
#: than the rest of a fused chain). libmvec's results are within 4 units in the last place.
VECTOR_MATH = ("exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos", "atan", "asinh",
               "acosh", "atanh", "erf", "erfc", "expm1", "log1p", "log2", "log10", "exp2", "cbrt")


@functools.lru_cache(maxsize=1)
def vector_math() -> tuple[str, tuple[str, ...]]:
    """(declarations for the shim, linker options): the libmvec functions this machine has, in both the SSE
    and the AVX2 variants (the compiler picks one by -march); nothing without libmvec."""
    try:
        lib = ctypes.CDLL("libmvec.so.1")
    except OSError:
        return "", ()
    lines = []
    for name in VECTOR_MATH:
        for c, (b, d) in (("float", ("_ZGVbN4v_", "_ZGVdN8v_")), ("double", ("_ZGVbN2v_", "_ZGVdN4v_"))):
            fn = name + ("f" if c == "float" else "")
            if hasattr(lib, b + fn) and hasattr(lib, d + fn):
                lines.append(f"#pragma omp declare simd notinbranch\n{c} {fn}({c}) noexcept;")
    if not lines:
        return "", ()
    return 'extern "C" {\n' + "\n".join(lines) + "\n}\n", ("-lmvec",)


#: The AVX-512 subsets a kernel compiled wide uses (the host must have all of them).
WIDE_ISA = ("avx512f", "avx512dq", "avx512bw", "avx512vl")


@functools.lru_cache(maxsize=1)
def wide_macro() -> str:
    """``GC_WIDE``: the function attribute that compiles a kernel for 512-bit vectors (libmvec's 16-wide math) on
    a host with AVX-512, nothing elsewhere; there also ``GC_AVX512`` (the panel GEMM's micro-kernel). The whole
    library is compiled -mno-avx512f (see CXX_OPTIONS); only kernels ``_widened`` marks get it."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    if not all(isa in flags for isa in WIDE_ISA):
        return "#define GC_WIDE"
    return (f'#define GC_WIDE __attribute__((target("{",".join(WIDE_ISA)},prefer-vector-width=512")))\n'
            "#define GC_AVX512 1")


#: What the kernels' GEMMs on panels call (``gc_panel_gemm``, after ``wide_macro``: it needs ``GC_WIDE``'s test).
PANEL_GEMM = r"""
// ---- C (m x n, row stride ldc) = A (m x k, row stride lda) @ B + beta * C, B in panels of GC_PANEL(T) columns:
// panel p (at bp + p * ps) holds columns [p * W, p * W + W) of B as k rows of W (what a convolution's band
// writes, runtime/codegen/ops/conv.py). beta is 0 or 1.
#define GC_PANEL(T) (256 / (int)sizeof(T))
#ifdef GC_AVX512
#include <immintrin.h>
// rows [0, MR) of C's 16 * NV columns at c (the last vector's lanes in `last` only) += A's rows (a, lda) @ the
// panel's kc rows (64 wide, the first 16 * NV read)
template <int MR, int NV>
__attribute__((target("avx512f"), always_inline)) static inline void gc_mk(int kc, const float* __restrict a,
        long long lda, const float* __restrict b, float* c, long long ldc, bool load, __mmask16 last,
        const float* next) {
    __m512 acc[MR][NV];
#pragma GCC unroll 24
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
            acc[i][v] = load ? _mm512_maskz_loadu_ps(v == NV - 1 ? last : (__mmask16)0xFFFF, c + i * ldc + 16 * v)
                             : _mm512_setzero_ps();
    for (int k = 0; k < kc; ++k, b += 64) {
        // the next rows of A into the cache, a line per step: its rows are read from memory the first time
        if (k < MR * 16) _mm_prefetch((const char*)(next + (k % MR) * lda + (k / MR) * 16), _MM_HINT_T0);
        __m512 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
#pragma GCC unroll 24
        for (int i = 0; i < MR; ++i) {
            const __m512 ai = _mm512_set1_ps(a[i * lda + k]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 24
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
            _mm512_mask_storeu_ps(c + i * ldc + 16 * v, v == NV - 1 ? last : (__mmask16)0xFFFF, acc[i][v]);
}
// all m rows: MR rows at a time, MR as many as 24 accumulators allow (narrow tail panels: more rows per B load)
template <int NV>
__attribute__((target("avx512f"))) static void gc_mk_rows(long long m, int kc, const float* a, long long lda,
        const float* b, float* c, long long ldc, bool load, __mmask16 last) {
    constexpr int MR = 24 / NV;
    long long i = 0;
    for (; i + MR <= m; i += MR)
        gc_mk<MR, NV>(kc, a + i * lda, lda, b, c + i * ldc, ldc, load, last, a + (i + MR < m ? i + MR : 0) * lda);
    if (MR > 6)
        for (; i + 6 <= m; i += 6)
            gc_mk<6, NV>(kc, a + i * lda, lda, b, c + i * ldc, ldc, load, last, a + (i + 6 < m ? i + 6 : 0) * lda);
    switch (m - i) {
        case 5: gc_mk<5, NV>(kc, a + i * lda, lda, b, c + i * ldc, ldc, load, last, a); break;
        case 4: gc_mk<4, NV>(kc, a + i * lda, lda, b, c + i * ldc, ldc, load, last, a); break;
        case 3: gc_mk<3, NV>(kc, a + i * lda, lda, b, c + i * ldc, ldc, load, last, a); break;
        case 2: gc_mk<2, NV>(kc, a + i * lda, lda, b, c + i * ldc, ldc, load, last, a); break;
        case 1: gc_mk<1, NV>(kc, a + i * lda, lda, b, c + i * ldc, ldc, load, last, a); break;
        default: break;
    }
}
// k in blocks of 256 (a panel's block, 64 KB, stays in L1/L2 while every row of A passes over it)
__attribute__((target("avx512f"))) static void gc_panel_gemm_f32(long long m, long long n, long long k,
        const float* a, long long lda, const float* bp, long long ps, float beta, float* c, long long ldc) {
    for (long long pc = 0; pc < k; pc += 256) {
        const int kc = (int)(k - pc < 256 ? k - pc : 256);
        const bool load = pc > 0 || beta != 0.0f;
        for (long long j = 0; j < n; j += 64) {
            const float* b = bp + (j / 64) * ps + pc * 64;
            const long long left = n - j < 64 ? n - j : 64;
            const int nv = (int)((left + 15) / 16);
            const __mmask16 last = (__mmask16)(left % 16 ? (1u << (left % 16)) - 1 : 0xFFFFu);
            switch (nv) {
                case 4: gc_mk_rows<4>(m, kc, a + pc, lda, b, c + j, ldc, load, last); break;
                case 3: gc_mk_rows<3>(m, kc, a + pc, lda, b, c + j, ldc, load, last); break;
                case 2: gc_mk_rows<2>(m, kc, a + pc, lda, b, c + j, ldc, load, last); break;
                default: gc_mk_rows<1>(m, kc, a + pc, lda, b, c + j, ldc, load, last); break;
            }
        }
    }
}
#endif
template <class T>
static void gc_panel_gemm(long long m, long long n, long long k, const T* a, long long lda, const T* bp,
                          long long ps, T beta, T* c, long long ldc) {
#ifdef GC_AVX512
    if constexpr (sizeof(T) == 4) { gc_panel_gemm_f32(m, n, k, a, lda, bp, ps, beta, c, ldc); return; }
#endif
    constexpr int W = GC_PANEL(T);  // elsewhere: the BLAS on each panel (a k x W matrix)
    for (long long j = 0; j < n; j += W)
        gc_gemm_rm<T>(m, n - j < W ? n - j : W, k, a, lda, bp + (j / W) * ps, W, beta, c + j, ldc);
}
"""


def _widened(kernel: Kernel) -> Kernel:
    """``kernel`` marked ``GC_WIDE`` when it is an elementwise loop (only elementwise ops: no clamped loads, which
    GCC 12 miscompiles with AVX-512, see CXX_OPTIONS) calling vector math: 16-wide tanhf/expf/logf halve such a
    loop (the 20-op chain of the benchmark: 25.4 -> 13.9 ms at one thread); as it is otherwise."""
    from ..codegen.expressions import ELEMENTWISE_OPS

    src = kernel.source
    nodes = kernel.group.nodes if kernel.group is not None else []
    elementwise = bool(nodes) and all(not n.domain and n.op_type in ELEMENTWISE_OPS for n in nodes)
    math = any(f"{fn}f(" in src or f" {fn}(" in src for fn in VECTOR_MATH)
    if not elementwise or not math or "gc_clamp_index" in src:
        return kernel
    head = f'extern "C" __global__ void {kernel.name}('
    return dataclasses.replace(kernel, source=src.replace(head, f'extern "C" __global__ GC_WIDE void {kernel.name}(', 1))


def launcher_source(kernel: Kernel, j: int) -> str:
    """``gc_launch_j(args, threads)``: kernel ``j`` run once per chunk of its work, ``CHUNKS_PER_THREAD`` chunks
    per thread of ``threads`` taken from the pool (``gc_pool_run``); with one thread, once over all of it."""
    args = launch_arguments(kernel)
    return (f'extern "C" void gc_launch_{j}(void** args, int threads) {{\n'
            f"    if (threads <= 1) {{ gc_chunk_ = 0; gc_chunks_ = 1; gc_k{j}::{kernel.name}({args}); return; }}\n"
            f"    gc_runner([](void* ctx, long long c, long long n) {{\n"
            f"        void** args = (void**)ctx; gc_chunk_ = c; gc_chunks_ = n; gc_k{j}::{kernel.name}({args});\n"
            f"    }}, args, (long long)threads * {CHUNKS_PER_THREAD}, threads);\n}}\n")


#: (library, address of its gc_pool_run): the pool every kernel library of the process launches on
_POOL: list = []
#: How long an idle pool thread spins (pause instructions) waiting for the next launch before it sleeps: a
#: launch that follows within it starts at once; sleeping at once pays a wake-up per launch (milliseconds on a
#: busy VM), spinning without end steals the core other work needs.
POOL_SPIN = 20000


def _share_pool(lib) -> None:
    """Make ``lib``'s launches run on the process's one pool (the first library's), whatever library holds them."""
    if not _POOL:
        lib.gc_pool_spin.argtypes = [ctypes.c_int]
        lib.gc_pool_spin(POOL_SPIN)
        _POOL.append((lib, ctypes.cast(lib.gc_pool_run, ctypes.c_void_p).value))
    lib.gc_use_pool.argtypes = [ctypes.c_void_p]
    lib.gc_use_pool(_POOL[0][1])


def _share_blas(lib, kernels) -> None:
    """Give ``lib`` the BLAS's GEMM entry points for the kernels that call it (``gc_gemm_rm``), and keep the BLAS
    at one thread: those calls run inside the pool's chunks."""
    if not any(call in k.source for k in kernels for call in ("gc_gemm_rm<", "gc_panel_gemm<")):
        return
    from ..numpy import threads as thread_count

    blas = cblas()
    if blas is None:
        return  # the shim's plain loop
    thread_count.single_threaded_blas()
    lib.gc_use_blas.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.gc_use_blas(blas[0]["sgemm"], blas[0]["dgemm"], int(blas[1]))


def _work(kernel: Kernel) -> int:
    """Elements a launch touches (its largest operand), for choosing how many threads run it."""
    g = kernel.group
    return max([kernel.n_elements] + [numel(shape_of(v)) for v in g.inputs + g.outputs])


class HostDevice(HostMemory):
    """The device interface of ``runtime/cuda/device.py`` for the C dialect on this machine's CPU."""

    def __init__(self, cache: KernelCache | None = None, threads: int | None = None):
        """``threads``: the most threads a launch uses (default: graphc's thread count, ``gc.set_num_threads`` or
        GRAPHC_NUM_THREADS, read at every launch; the GEMMs split over the same team, the BLAS at one thread)."""
        from ..numpy import threads as thread_count

        thread_count.apply_env()  # GRAPHC_NUM_THREADS, as the NumPy backend applies it when it first prepares
        self._thread_count = thread_count
        cxx = compiler()
        if cxx is None:
            raise KernelCompileError("the CPU backend compiles kernels with a C++ compiler (g++ or clang++), and "
                                     "none is on the PATH; set GRAPHC_CXX or use backend='numpy'")
        super().__init__(align=64)
        self.cxx = cxx
        self._threads = threads
        self.cache = cache or KernelCache()
        self._libs = []
        self._shim = None  # the shim compiled alone (shim_entry), when no kernel library is loaded yet
        self._launchers = {}
        self.launches = 0

    @property
    def props(self) -> DeviceProps:
        """The CPU as a plan prepared now is lowered for: the thread count of now (launch splits, convolution
        bands), which later runs need not keep (a plan is correct at any count)."""
        return host_props(self.threads)

    @property
    def threads(self) -> int:
        """The most threads a launch uses now: the ``threads`` given, else graphc's one thread count
        (``runtime/numpy/threads.py``)."""
        if self._threads:
            return self._threads
        return self._thread_count.get_num_threads()

    # ---- kernels --------------------------------------------------------------------------------------
    def precompile(self, kernels: list[Kernel]) -> None:
        """Compile the kernels not loaded yet as one translation unit (one compiler run, cached on disk)."""
        todo = list({k.source: k for k in kernels if k.source not in self._launchers}.values())
        if not todo:
            return
        declarations, link = vector_math()
        source = f"{SHIM}\n{wide_macro()}\n{PANEL_GEMM}\n{declarations}\n" + \
            f"{combined_source([_widened(k) for k in todo])}\n" + \
            "".join(launcher_source(k, j) for j, k in enumerate(todo))
        lib = build_library(self.cache, "cpu", self.cxx, CXX_OPTIONS, source, todo, link)
        _share_pool(lib)
        _share_blas(lib, todo)
        self._libs.append(lib)
        for j, k in enumerate(todo):
            fn = getattr(lib, f"gc_launch_{j}")
            fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
            self._launchers[k.source] = self._launcher(fn, k)

    def _launcher(self, fn, kernel: Kernel):
        n, work = len(kernel.params), _work(kernel)
        return _c_entry_launcher(self, fn, lambda ptrs: argument_array(ptrs, n),
                                 lambda threads: max(1, min(threads, work // GRAIN)) if work >= 2 * GRAIN else 1)

    def batch_launches(self, launches: list[tuple]) -> list[tuple]:
        """The executor's launch list with each run of two or more consecutive kernel launches replaced by one
        launch that calls them all from C (``gc_run_list``): a plan of many small ops then pays one Python
        call per run, not one per kernel. GEMMs run from C too (``gc_gemm``) and join the runs;
        HostCall steps stay as they are."""
        out, run = [], []

        def flush():
            if len(run) >= 2:
                out.append((self._batched([e[0] for e in run], [e[3] for e in run]), 0, 0, []))
            else:
                out.extend(run)
            run.clear()

        for entry in launches:
            if hasattr(entry[0], "c_call"):
                run.append(entry)
            else:
                flush()
                out.append(entry)
        flush()
        return out

    def _batched(self, launchers: list, ptr_lists: list):
        count = len(launchers)
        runner = self._runner()
        state = {}

        def build(threads: int) -> None:
            calls = [launcher.c_call(p, threads) for launcher, p in zip(launchers, ptr_lists)]
            state["threads"] = threads
            state["keep"] = calls
            state["fns"] = (ctypes.c_void_p * count)(*[c[0] for c in calls])
            state["args"] = (ctypes.c_void_p * count)(*[ctypes.addressof(c[1]) for c in calls])
            state["nthreads"] = (ctypes.c_int * count)(*[c[2] for c in calls])

        def launch(grid: int, block: int, ptrs: list) -> None:
            threads = self.threads
            if state.get("threads") != threads:  # gc.set_num_threads since the last run
                build(threads)
            self.launches += count
            runner(state["fns"], state["args"], state["nthreads"], count)

        return launch

    def _runner(self):
        """``gc_run_list(fns, args, threads, count)`` (the shim's: every translation unit has it)."""
        fn = self.shim_entry("gc_run_list")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        fn.restype = None
        return fn

    def shim_entry(self, name: str):
        """An entry point of the shim (``gc_run_list``, ``gc_gemm``): from the first kernel library, or from the
        shim compiled alone when the plans so far had no kernel."""
        lib = self._libs[0] if self._libs else self._shim_library()
        fn = getattr(lib, name)
        if name == "gc_gemm":
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
            fn.restype = None
        return fn

    def _shim_library(self):
        if self._shim is None:
            declarations, link = vector_math()
            self._shim = build_library(self.cache, "cpu", self.cxx, CXX_OPTIONS, f"{SHIM}\n{declarations}\n", [],
                                       link)
            _share_pool(self._shim)
        return self._shim

    def load(self, kernel: Kernel):
        self.precompile([kernel])
        return self._launchers[kernel.source]

    def call(self, call):
        """A launcher for a library call: GEMMs in NumPy's BLAS, reading and writing the arena in place; a node
        without a kernel (``HostCall``) through the reference interpreter, on views of the arena."""
        if isinstance(call, Gemm):
            return _gemm_launcher(call, self)
        if isinstance(call, HostCall):
            return _host_call_launcher(call, self)
        raise GraphcError(f"the CPU backend cannot run library call {call!r}")


def _host_call_launcher(call: HostCall, device: HostDevice):
    from graphc.ops.interpret import eval_node, node_captures
    from graphc.ops.registry import get_opdef

    node = call.node
    opdef = get_opdef(node)
    args = call.arguments()
    captures = node_captures(node)
    metas = [(v.type.dtype.np, tuple(v.type.shape)) for v in args]

    def launch(grid: int, block: int, ptrs: list) -> None:
        device.launches += 1
        arrays = {id(v): host_view(p, int(np.prod(shape, dtype=np.int64)), dt).reshape(shape)
                  for v, p, (dt, shape) in zip(args, ptrs, metas)}
        inputs = [None if v is None else v.data if v.data is not None else arrays[id(v)] for v in node.inputs]
        outer = {v: arrays[id(v)] for v in captures} if captures else None
        results = eval_node(node, inputs, opdef, outer)
        for v, r in zip([v for v in node.outputs if v is not None],
                        [r for v, r in zip(node.outputs, results) if v is not None]):
            np.copyto(arrays[id(v)], np.asarray(r).reshape(arrays[id(v)].shape), casting="unsafe")

    return launch


class _GemmDesc(ctypes.Structure):
    """``gc_gemm_desc`` of the shim: one GEMM step, everything but its three pointers."""

    _fields_ = ([("fn", ctypes.c_void_p), ("gemv", ctypes.c_void_p)] + [(f, ctypes.c_int) for f in ("f64", "int64", "trans_a", "trans_b")]
                + [(f, ctypes.c_longlong) for f in ("m", "n", "k", "lda", "ldb", "ldc", "stride_a", "stride_b",
                                                    "stride_c", "offset_a", "offset_b", "offset_c", "batch",
                                                    "pieces_m", "pieces_n")]
                + [("alpha", ctypes.c_double), ("beta", ctypes.c_double)])


#: cblas entry points of the BLAS NumPy carries, by naming (NumPy's wheels: scipy-openblas, 64-bit integers):
#: (prefix, suffix, 64-bit integers), for sgemm, dgemm, sgemv and dgemv.
_CBLAS_NAMES = (("scipy_cblas_", "64_", True), ("cblas_", "64_", True), ("scipy_cblas_", "", False), ("cblas_", "", False))
#: A GEMM of fewer multiply-adds than this runs in one call on the launching thread.
GEMM_SPLIT_MIN = 1 << 18
#: Pieces a larger GEMM's output is cut into (per batch item; the team takes them one at a time).
GEMM_PIECES = 8


@functools.lru_cache(maxsize=1)
def cblas() -> tuple[dict[str, int], bool] | None:
    """({"sgemm", "dgemm", "sgemv", "dgemv": address}, 64-bit integers) of the BLAS NumPy loaded; None when
    none is found."""
    import numpy  # noqa: F401  (loads its BLAS)
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        try:
            handle = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for prefix, suffix, wide in _CBLAS_NAMES:
            names = {f: f"{prefix}{f}{suffix}" for f in ("sgemm", "dgemm", "sgemv", "dgemv")}
            if all(hasattr(handle, n) for n in names.values()):
                return {f: ctypes.cast(getattr(handle, n), ctypes.c_void_p).value for f, n in names.items()}, wide
    return None


def _pieces(g: Gemm) -> tuple[int, int]:
    """How a GEMM's output (per batch item) is cut for the team: along its longer side, GEMM_PIECES pieces in
    all over the batch, none thinner than 16 rows or 64 columns."""
    if g.m * g.n * g.k * g.batch < GEMM_SPLIT_MIN or g.batch >= GEMM_PIECES:
        return 1, 1
    need = -(-GEMM_PIECES // g.batch)
    if g.n >= g.m:
        return 1, max(1, min(need, g.n // 64))
    return max(1, min(need, g.m // 16)), 1


def _c_gemm_launcher(g: Gemm, device: HostDevice, blas: tuple[dict[str, int], bool]):
    """A GEMM step run from C (``gc_gemm``): no Python per call, batchable with the kernel launches."""
    from ..numpy import threads as thread_count

    thread_count.single_threaded_blas()  # one pool: the team's; each piece is a one-thread BLAS call
    pm, pn = _pieces(g)
    f64 = g.dtype == DType.float64
    desc = _GemmDesc(fn=blas[0]["dgemm" if f64 else "sgemm"], gemv=blas[0]["dgemv" if f64 else "sgemv"],
                     f64=int(f64), int64=int(blas[1]), trans_a=int(g.trans_a), trans_b=int(g.trans_b), m=g.m, n=g.n, k=g.k,
                     lda=g.lda, ldb=g.ldb, ldc=g.ldc, stride_a=g.stride_a, stride_b=g.stride_b, stride_c=g.stride_c,
                     offset_a=g.offset_a, offset_b=g.offset_b, offset_c=g.offset_c, batch=g.batch, pieces_m=pm,
                     pieces_n=pn, alpha=g.alpha, beta=g.beta)
    split = pm * pn > 1 or g.batch > 1
    return _c_entry_launcher(device, device.shim_entry("gc_gemm"),
                             lambda ptrs: ((ctypes.c_void_p * 4)(*ptrs, ctypes.addressof(desc)), desc),
                             lambda threads: threads if split else 1)


def _c_entry_launcher(device: HostDevice, fn, make_args, threads_for):
    """The launcher of a C entry point ``fn(void** args, int threads)`` (a kernel's ``gc_launch_j``, ``gc_gemm``):
    called from Python, or through ``c_call`` from ``gc_run_list``. ``make_args(ptrs)`` -> (argument array, what
    keeps it alive), made once per pointer list (a plan's launch list keeps its lists); ``threads_for(threads)``:
    the team a launch gets when graphc's count is ``threads``."""
    address = ctypes.cast(fn, ctypes.c_void_p).value
    built: dict[int, tuple] = {}  # id(ptrs) -> (ptrs, argument array, what keeps it alive)

    def converted(ptrs: list) -> tuple:
        got = built.get(id(ptrs))
        if got is None or got[0] is not ptrs:
            if len(built) > 64:
                built.clear()
            got = built[id(ptrs)] = (ptrs, *make_args(ptrs))
        return got

    def launch(grid: int, block: int, ptrs: list) -> None:
        device.launches += 1
        fn(converted(ptrs)[1], threads_for(device.threads))

    def c_call(ptrs: list, threads: int) -> tuple:
        """(entry point, argument array, threads, what keeps them alive) for ``gc_run_list``."""
        got = converted(ptrs)
        return address, got[1], threads_for(threads), got

    launch.c_call = c_call
    return launch


def _gemm_launcher(g: Gemm, device: HostDevice):
    """C = alpha * op(A) @ op(B) + beta * C: float32 and float64 from C through the BLAS's cblas (``gc_gemm``);
    other types as NumPy matmul into C's bytes (``out=`` when nothing scales; ``gemm_reference`` otherwise)."""
    blas = cblas() if g.dtype in (DType.float32, DType.float64) else None
    if blas is not None and g.m and g.n and g.batch:
        return _c_gemm_launcher(g, device, blas)
    dt = g.dtype.np
    # NumPy's own product in the type itself, as the NumPy interpreter computes it (float16 included); the
    # types NumPy has no matmul loop for (bfloat16, the float8s) through float32
    native = g.dtype in (DType.float16, DType.float32, DType.float64) or not g.dtype.is_float
    views: dict[tuple, tuple] = {}

    def operands(a: int, b: int, c: int) -> tuple:
        """(the flat buffers, the views of op(A), op(B) and C) at these pointers, made once."""
        got = views.get((a, b, c))
        if got is None:
            flat = [host_view(ptr, g.extent(which), dt) for ptr, which in zip((a, b, c), "abc")]
            A, B, C = gemm_operands(g, *flat)
            if g.batch == 1:
                A, B, C = A[0], B[0], C[0]
            got = views[(a, b, c)] = (flat, (A, B, C))
        return got

    def launch(grid: int, block: int, ptrs: list) -> None:
        device.launches += 1
        flat, (A, B, C) = operands(*ptrs)
        if native and g.alpha == 1.0 and g.beta == 0.0:
            np.matmul(A, B, out=C)
        elif native and g.alpha == 1.0 and g.beta == 1.0:  # C holds what the product adds to (a bias, a residual)
            np.add(C, np.matmul(A, B), out=C)
        else:
            gemm_reference(g, *flat)

    return launch


__all__ = ["CXX_ENV", "CXX_OPTIONS", "GRAIN", "HostDevice", "SHIM", "available", "compiler", "host_props"]
