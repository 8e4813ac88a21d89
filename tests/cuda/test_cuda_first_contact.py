"""What a review of the CUDA backend against PyCUDA's and cuBLAS's sources found before it first ran on a GPU
(issue 14), each checked here without one: wide index types for large inputs (nvcc warnings as errors), one
rule for float-to-integer casts on every backend, no multiply-add contraction, an emulator whose memory is not
cleared and that runs the H100's launch geometry, arenas and cuBLAS handles given back, and blocks that fit a
kernel's registers."""
from __future__ import annotations

import gc as pygc
import shutil
import warnings

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

import graphc as gc
from cuda_cases import all_cases
from graphc.compiler import compile as compile_graph
from graphc.errors import GraphcError
from graphc.runtime.cuda.cache import NVCC_OPTIONS, KernelCache, KernelCompileWarning
from graphc.runtime.codegen.launch import DeviceProps, fit_block, max_block_for_registers
from graphc.runtime.codegen.lowering import lower

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
needs_nvcc = pytest.mark.nvcc
H100 = DeviceProps()


def _model(nodes, inputs, outputs, inits=()):
    g = oh.make_graph(nodes, "t", inputs, outputs, list(inits))
    return gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))


def _emulated(graph, feeds, **device):
    from graphc.runtime.cuda import CudaBackend
    from graphc.runtime.cuda.emulator import EmulatedDevice

    dev = EmulatedDevice(**device)
    return CudaBackend.prepare(compile_graph(graph), device=dev, debug=True).run(feeds), dev


# ---- 1. the index type covers the inputs a loop reads, not only its output --------------------------------
def _big_slice():
    i64 = lambda n, v: nh.from_array(np.array(v, np.int64), n)  # noqa: E731
    return _model([oh.make_node("Slice", ["x", "s", "e", "a"], ["y"])],
                  [oh.make_tensor_value_info("x", TP.FLOAT, [50000, 50000])],
                  [oh.make_tensor_value_info("y", TP.FLOAT, [1, 50000])],
                  [i64("s", [49999]), i64("e", [50000]), i64("a", [0])])


def test_a_slice_of_a_huge_input_indexes_in_long_long():
    (step,) = lower(compile_graph(_big_slice()).graph, H100).steps
    src = step.kernel.source
    assert "for (long long i" in src and "49999 * 50000LL" in src  # not 49999 * 50000 in int: 2.5e9 overflows


@needs_nvcc
def test_a_slice_of_a_huge_input_compiles_without_warnings(tmp_path):
    (step,) = lower(compile_graph(_big_slice()).graph, H100).steps
    k = step.kernel
    KernelCache(tmp_path).compile_cuda(k.source, k.name, "sm_90", "ptx", NVCC_OPTIONS + ("-Werror", "all-warnings"))


@needs_nvcc
def test_the_cache_reports_nvcc_warnings(tmp_path):
    src = 'extern "C" __global__ void w(long long* y) { y[0] = 49999 * 50000; }\n'
    with pytest.warns(KernelCompileWarning, match="integer operation result is out of range"):
        KernelCache(tmp_path).compile_cuda(src, "w", "sm_90", "ptx")


# ---- 2. float-to-integer casts saturate, on every backend --------------------------------------------------
SPECIAL = [np.nan, np.inf, -np.inf, 1e10, -1e10, 300.7, -300.7, 200.9, -0.9, 2.5, -2.5, 127.99, -128.5, 0.0]
CAST_TARGETS = [(TP.INT8, np.int8), (TP.UINT8, np.uint8), (TP.INT16, np.int16), (TP.INT32, np.int32),
                (TP.UINT32, np.uint32), (TP.INT64, np.int64), (TP.UINT64, np.uint64)]


def _saturated(x: np.ndarray, dt) -> np.ndarray:
    info = np.iinfo(dt)
    out = []
    for v in x.astype(np.float64):
        out.append(0 if np.isnan(v) else info.min if v < info.min else info.max if v >= float(info.max) + 1 else
                   int(np.trunc(v)))
    return np.array(out, dtype=dt)


def _cast_model(src_tp, to_tp, n):
    return _model([oh.make_node("Cast", ["x"], ["y"], to=to_tp)], [oh.make_tensor_value_info("x", src_tp, [n])],
                  [oh.make_tensor_value_info("y", to_tp, [n])])


@pytest.mark.parametrize("src", [np.float32, np.float64, np.float16], ids=lambda t: np.dtype(t).name)
def test_numpy_backend_casts_floats_to_integers_saturating(src):
    x = np.array(SPECIAL, dtype=src)
    src_tp = {np.float32: TP.FLOAT, np.float64: TP.DOUBLE, np.float16: TP.FLOAT16}[src]
    for tp, dt in CAST_TARGETS:
        (y,) = gc.prepare(_cast_model(src_tp, tp, len(x)), backend="numpy").run({"x": x})
        np.testing.assert_array_equal(y, _saturated(x, dt), err_msg=f"{np.dtype(src).name} -> {np.dtype(dt).name}")


@needs_gxx
def test_emulated_kernels_cast_floats_to_integers_as_the_numpy_backend():
    x = np.array(SPECIAL, dtype=np.float32)
    for tp, dt in CAST_TARGETS:
        graph = _cast_model(TP.FLOAT, tp, len(x))
        (y,), _ = _emulated(graph, {"x": x})
        np.testing.assert_array_equal(y, _saturated(x, dt), err_msg=f"float32 -> {np.dtype(dt).name}")


def test_generated_casts_spell_the_rule_out():
    (step,) = lower(compile_graph(_cast_model(TP.FLOAT, TP.INT32, 8)).graph, H100).steps
    src = step.kernel.source
    assert "!= x0 ? (int)0" in src and "2147483648.0f ? 2147483647" in src
    assert "(-2147483648.0f) ? (-2147483647 - 1)" in src


# ---- 3. no multiply-add contraction: the GPU rounds a * b + c as the emulator and NumPy ----------------------
@needs_nvcc
def test_nvcc_does_not_contract_multiply_adds(tmp_path):
    x = [oh.make_tensor_value_info(n, TP.FLOAT, [64]) for n in "abc"]
    graph = _model([oh.make_node("Mul", ["a", "b"], ["m"]), oh.make_node("Add", ["m", "c"], ["y"])], x,
                   [oh.make_tensor_value_info("y", TP.FLOAT, [64])])
    (step,) = lower(compile_graph(graph).graph, H100).steps
    ptx = KernelCache(tmp_path).compile_cuda(step.kernel.source, step.kernel.name, "sm_90", "ptx").decode()
    assert "mul.f32" in ptx or "mul.rn.f32" in ptx
    assert "fma." not in ptx


# ---- 4. the emulator: memory not cleared, the H100's geometry ------------------------------------------------
@needs_gxx
def test_emulated_allocations_are_not_zero():
    from graphc.runtime.cuda.emulator import EmulatedDevice

    dev = EmulatedDevice()
    got = np.zeros(4, np.float32)
    dev.dtoh(got, dev.alloc(16))
    assert np.isnan(got).all()  # 0xFF bytes, as a kernel reading memory nobody wrote would see


@needs_gxx
@pytest.mark.parametrize("name", ["ReduceSum_long_rows_block", "Softmax_last", "LayerNorm_last", "chain20_vectorized"])
def test_block_256_kernels_on_the_emulator_agree_with_numpy(name, tmp_path):
    from graphc.runtime.cuda.emulator import H100_PROPS

    case = {c.name: c for c in all_cases()}[name]
    graph = gc.import_onnx(case.model)
    got, dev = _emulated(graph, case.feeds, props=H100_PROPS, cache=KernelCache(tmp_path))
    ref = gc.prepare(graph, backend="numpy").run(case.feeds)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=max(case.rtol, 1e-5), atol=max(case.atol, 1e-6))
    assert dev.props.max_threads_per_block == 1024


def test_emulate_h100_gives_the_h100_geometry(monkeypatch):
    from graphc.runtime.cuda.state import default_device

    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "h100")
    dev = default_device()
    assert dev.props.multiprocessors == 132 and dev.props.warp_size == 32 and dev is default_device()


# ---- 5. leaks: arenas, the cuBLAS handle, one device per process ---------------------------------------------
def _relu_graph():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 4], name="x")
        y = gc.relu(x * 2.0)
    return g, x, y


@needs_gxx
def test_an_executables_arena_is_freed_with_it(tmp_path):
    from graphc.runtime.cuda import CudaBackend
    from graphc.runtime.cuda.emulator import EmulatedDevice

    dev = EmulatedDevice(KernelCache(tmp_path))
    case = all_cases()[0]
    exe = CudaBackend.prepare(compile_graph(gc.import_onnx(case.model)), device=dev)
    exe.run(case.feeds)
    assert dev.live_allocations == 1
    del exe
    pygc.collect()
    assert dev.live_allocations == 0


@needs_gxx
def test_a_session_fed_many_shapes_keeps_a_bounded_number_of_arenas(monkeypatch, tmp_path):
    from graphc.runtime.cuda.executor import MAX_RESIDENT_ARENAS
    from graphc.runtime.cuda.state import default_device

    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    g, x, y = _relu_graph()
    sess = gc.Session(g, backend="cuda")
    dev = default_device()
    start = dev.live_allocations
    for n in range(1, 2 * MAX_RESIDENT_ARENAS + 3):
        feed = np.linspace(-1, 1, 4 * n, dtype=np.float32).reshape(n, 4)
        np.testing.assert_array_equal(sess.run(y, {x: feed}), np.maximum(feed * 2.0, 0))
    assert dev.live_allocations - start <= MAX_RESIDENT_ARENAS
    feed = np.ones((1, 4), np.float32)  # the first shape again: its arena is allocated again and still right
    np.testing.assert_array_equal(sess.run(y, {x: feed}), 2 * feed)


def test_cublas_handle_is_destroyed():
    from graphc.runtime.cuda.cublas import Cublas

    calls = []

    class FakeLib:
        def __init__(self):
            for name in ("cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetMathMode",
                         "cublasGemmStridedBatchedEx"):
                fn = (lambda name: lambda *a: calls.append(name) or 0)(name)
                setattr(self, name, fn)

    blas = Cublas(FakeLib())
    blas.close()
    blas.close()  # once only
    assert calls == ["cublasCreate_v2", "cublasDestroy_v2"]


def test_default_device_is_one_per_process(monkeypatch):
    from graphc.runtime.cuda.state import default_device

    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    assert default_device() is default_device()


# ---- 6. a block must fit the kernel's registers --------------------------------------------------------------
HEAVY_SOURCE = r"""
extern "C" __global__ void heavy(const float* x, float* y, long long n) {
    float r[96];
#pragma unroll
    for (int j = 0; j < 96; ++j) r[j] = x[(threadIdx.x * 7 + j * 13) % n] * (float)(j + 1);
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < 96; ++j)
#pragma unroll
        for (int k = j; k < 96; k += 5) acc += r[j] * r[k] + r[(j * 11 + k) % 96];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x)
        y[i] = acc + r[i % 96];
}
"""


def test_largest_block_for_registers():
    assert max_block_for_registers(32, H100) == 1024
    assert max_block_for_registers(64, H100) == 1024
    assert max_block_for_registers(128, H100) == 512
    assert max_block_for_registers(255, H100) == 256  # the Resize kernel the review found


def test_grid_stride_kernels_shrink_to_fit_and_others_are_refused():
    case = {c.name: c for c in all_cases()}["chain20_vectorized"]
    (step,) = lower(compile_graph(gc.import_onnx(case.model)).graph, H100).steps
    assert fit_block(step.kernel, 1024, 40, H100) == step.kernel.block == 256
    assert fit_block(step.kernel, 128, 255, H100) == 128
    case = {c.name: c for c in all_cases()}["ReduceSum_long_rows_block"]
    (step,) = lower(compile_graph(gc.import_onnx(case.model)).graph, H100).steps
    with pytest.raises(GraphcError, match=r"kernel '.*' \(node '.*'\) asks for blocks of 256 threads.*255 registers"):
        fit_block(step.kernel, 128, 255, H100)


@needs_gxx
@needs_nvcc
@pytest.mark.usefixtures("forget_custom_ops")
def test_a_custom_op_asking_for_too_large_a_block_is_refused_by_name(tmp_path):
    from graphc.runtime.cuda import CudaBackend
    from graphc.runtime.cuda.cache import registers_of
    from graphc.runtime.cuda.emulator import H100_PROPS, EmulatedDevice

    op = gc.custom_op("HeavyOp", numpy_impl=lambda x: x, infer_shape="same", cuda_source=HEAVY_SOURCE,
                      kernel="heavy", shape_params=False, launch=lambda shapes, props: (4, 1024))
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4096], name="x")
        y = op(x)
    g.outputs.append(y.value)
    cache = KernelCache(tmp_path)
    (step,) = [s for s in lower(compile_graph(g).graph, H100).steps if s.kernel is not None]
    (c,) = cache.compile_many([step.kernel], "sm_90").values()
    regs = registers_of(c.path, c.symbol)
    assert max_block_for_registers(regs, H100) < 1024, f"the test kernel uses only {regs} registers"
    dev = EmulatedDevice(cache, props=H100_PROPS, check_registers="sm_90")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelCompileWarning)
        with pytest.raises(GraphcError, match=rf"kernel 'heavy' \(node '.*'\) asks for blocks of 1024 threads, but "
                                              rf"its compiled code uses {regs} registers"):
            CudaBackend.prepare(compile_graph(g), device=dev)


# ---- 7. a reduction over few rows splits each row across blocks ----------------------------------------------
def _reduce_model(op, shape, axes, dt=TP.FLOAT, prologue=None, keepdims=1):
    """``op`` over ``axes`` of x (or of ``prologue``(x), an elementwise op), axes as an input (opset 18)."""
    nodes, src = [], "x"
    if prologue:
        nodes.append(oh.make_node(prologue, ["x"], ["p"]))
        src = "p"
    ins = [src] if axes is None else [src, "axes"]
    nodes.append(oh.make_node(op, ins, ["y"], keepdims=keepdims))
    inits = [] if axes is None else [nh.from_array(np.array(axes, np.int64), "axes")]
    return _model(nodes, [oh.make_tensor_value_info("x", dt, list(shape))],
                  [oh.make_tensor_value_info("y", dt, None)], inits)


def test_a_whole_tensor_reduction_is_split_across_the_device():
    """Defect 7: a ReduceSum over a whole (4096, 1024) tensor was one block on one of 132 multiprocessors."""
    steps = lower(compile_graph(_reduce_model("ReduceSum", (4096, 1024), None)).graph, H100).steps
    first, second = [s.kernel for s in steps]
    assert first.grid >= H100.multiprocessors * 4 and first.block == 256, (first.grid, first.block)
    assert "partial results" in first.source and "combined" in second.source
    # per-channel statistics of an activation (64 channels of 32x56x56): 64 rows, each split
    steps = lower(compile_graph(_reduce_model("ReduceMean", (32, 64, 56, 56), [0, 2, 3])).graph, H100).steps
    assert steps[0].kernel.grid >= H100.multiprocessors * 4 and len(steps) == 2
    # many rows fill the device as they are: one kernel, a block a row
    (step,) = lower(compile_graph(_reduce_model("ReduceSum", (4096, 1024), [1])).graph, H100).steps
    assert step.kernel.n_elements == 4096


#: a small device whose launches still split rows (16 resident blocks of 8 threads) and stay cheap to emulate
_SPLIT_PROPS = DeviceProps(name="CPU emulator (split)", compute_capability=(0, 0), multiprocessors=4,
                           max_threads_per_block=8, max_threads_per_multiprocessor=32, warp_size=4)


@needs_gxx
@pytest.mark.parametrize("op,shape,axes,dt,prologue", [
    ("ReduceSum", (37, 41), None, TP.FLOAT, None),
    ("ReduceMean", (4, 3, 9, 11), [0, 2, 3], TP.FLOAT, "Abs"),
    ("ReduceMax", (2, 700), [1], TP.FLOAT, "Neg"),
    ("ReduceMin", (700, 2), [0], TP.FLOAT, None),
    ("ReduceL1", (1000,), None, TP.FLOAT, None),
    ("ReduceL2", (3, 333), [1], TP.DOUBLE, None),
    ("ReduceSumSquare", (5, 200), None, TP.FLOAT16, None),
    ("ReduceLogSum", (640,), None, TP.FLOAT, "Abs"),
    ("ReduceProd", (300,), None, TP.DOUBLE, None),
    ("ReduceSum", (2, 513), [1], TP.INT32, None),
])
def test_split_reductions_agree_with_numpy_on_the_emulator(op, shape, axes, dt, prologue, tmp_path):
    graph = _reduce_model(op, shape, axes, dt, prologue)
    steps = lower(compile_graph(graph).graph, _SPLIT_PROPS).steps
    assert len(steps) == 2 and steps[0].kernel.n_elements > steps[1].kernel.n_elements, "the rows are not split"
    rng = np.random.default_rng(7)
    npdt = {TP.FLOAT: np.float32, TP.DOUBLE: np.float64, TP.FLOAT16: np.float16, TP.INT32: np.int32}[dt]
    if op == "ReduceProd":
        x = rng.uniform(0.9, 1.1, shape)
    elif dt == TP.INT32:
        x = rng.integers(-50, 50, shape)
    else:
        x = rng.standard_normal(shape) * (0.2 if dt == TP.FLOAT16 else 1)
    feeds = {"x": x.astype(npdt)}
    (got,), _ = _emulated(graph, feeds, props=_SPLIT_PROPS, cache=KernelCache(tmp_path))
    (ref,) = gc.prepare(graph, backend="numpy").run(feeds)
    tol = {TP.FLOAT16: 2e-3, TP.FLOAT: 1e-5, TP.DOUBLE: 1e-12, TP.INT32: 0}[dt]
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    assert got.dtype == ref.dtype and got.shape == ref.shape
