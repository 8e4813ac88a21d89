"""User-written CUDA ops (gc.custom_op) on the CUDA backend: the calling convention, the CPU emulator's runs of
models/custom_cuda_ops.py against the built-in ops, nvcc compiling the user sources (marked ``nvcc``), and the
same runs on a real GPU (marked ``cuda``)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.codegen.launch import DeviceProps, elementwise_launch
from graphc.runtime.codegen.lowering import lower

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")

SCALE_SHIFT_SOURCE = r"""
// y[i, j] = x[i, j] * alpha + shift + beta * i: a float, an int and a float attribute, in declared order
extern "C" __global__ void scale_shift(const float* x, float* y, long long n,
                                       long long rows, long long cols, long long rows_y, long long cols_y,
                                       float alpha, long long shift, float beta) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x)
        y[i] = x[i] * alpha + (float)shift + beta * (float)(i / cols);
}
"""

ROW_SUM_SOURCE = r"""
// one block per row (grid = rows), its threads striding along the row, thread 0 adding up their sums
extern "C" __global__ void row_sum(const float* x, float* y, long long n, long long rows, long long cols,
                                   long long rows_y) {
    __shared__ float part[1024];
    float acc = 0.0f;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) acc += x[blockIdx.x * cols + j];
    part[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (unsigned t = 0; t < blockDim.x; ++t) total += part[t];
        y[blockIdx.x] = total;
    }
}
"""


def _scale_shift_numpy(x, alpha, shift, beta):
    rows = np.arange(x.shape[0], dtype=np.float32)[:, None]
    return (x * np.float32(alpha) + np.float32(shift) + np.float32(beta) * rows).astype(np.float32)


def scale_shift_op():
    return gc.custom_op("ScaleShift", numpy_impl=_scale_shift_numpy, infer_shape="same", cuda_source=SCALE_SHIFT_SOURCE,
                        kernel="scale_shift", attrs={"alpha": 1.0, "shift": int, "beta": 0.5})


def row_sum_op(block: int = 4):
    return gc.custom_op(
        "RowSum", numpy_impl=lambda x: x.sum(axis=1, dtype=np.float32), kernel="row_sum", cuda_source=ROW_SUM_SOURCE,
        infer_shape=lambda x: gc.TensorType(x.dtype, x.shape[:1]),
        launch=lambda shapes, props: (shapes[0][0], block))  # one block of ``block`` threads per row


def run_both(op_fn, x: np.ndarray, **attrs):
    """(backend="cuda" result, NumPy backend result) of op_fn(x, **attrs)."""
    g = gc.Graph()
    with g.as_default():
        xp = gc.placeholder(gc.float32, list(x.shape), name="x")
        y = op_fn(xp, **attrs)
    (got,) = gc.Session(g, backend="cuda").run([y], {xp: x})
    (want,) = gc.Session(g).run([y], {xp: x})
    return got, want


pytestmark = pytest.mark.usefixtures("forget_custom_ops")  # see tests/conftest.py (also: custom_example)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """backend="cuda" runs on the CPU emulator, with a kernel cache of this module's own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CUDA_EMULATE", "1")
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("kernel-cache")))
        yield


def _lowered_step(y, kernel: str, props=DeviceProps()):
    g = y.graph
    g.outputs.append(y.value)
    steps = lower(compile_graph(g).graph, props).steps
    return next(s for s in steps if s.kernel is not None and s.kernel.name == kernel)


# ---- the calling convention ----------------------------------------------------------------------------
def test_conv_kernel_gets_pointers_n_dims_and_attributes(custom_example):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 3, 9, 8], name="x")
        y = custom_example.direct_conv2d(x, np.ones((4, 3, 3, 3), np.float32), stride=2, pad=1)
    step = _lowered_step(y, "direct_conv2d")
    k = step.kernel
    assert k.signature == "PPP" + "q" * 15
    assert [p.role for p in k.params[:3]] == ["input", "input", "output"]
    scalars = [int(p.value) for p in k.params[3:]]
    assert scalars == [2 * 4 * 5 * 4, 2, 3, 9, 8, 4, 3, 3, 3, 2, 4, 5, 4, 2, 1]
    assert [type(a) for a in step.args[3:]] == [np.int64] * 15  # scalars travel by value in the step's args
    assert (k.grid, k.block) == elementwise_launch(160, DeviceProps())  # the default grid-stride launch over n
    assert '#line 1 "custom.DirectConv2d"' in k.source


def test_elementwise_kernel_without_shape_params(custom_example):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [3, 4, 5], name="x")
        y = custom_example.fused_gelu(x)
    assert _lowered_step(y, "fused_gelu").kernel.signature == "PPq"


def test_float_attributes_are_float_scalars():
    op = scale_shift_op()
    g = gc.Graph()
    with g.as_default():
        y = op(gc.placeholder(gc.float32, [3, 2], name="x"), alpha=2.0, shift=5)
    k = _lowered_step(y, "scale_shift").kernel
    assert k.signature == "PPqqqqqfqf"
    assert [(p.name, p.value) for p in k.params[-3:]] == [("alpha", np.float32(2.0)), ("shift", 5), ("beta", 0.5)]
    assert isinstance(k.params[-1].value, np.float32) and isinstance(k.params[-2].value, np.int64)


def test_a_custom_op_without_cuda_source_is_reported_missing():
    from graphc.runtime.codegen.lowering import MissingKernelError

    op = gc.custom_op("NumpyOnly", numpy_impl=lambda x: x + 1, infer_shape="same")
    g = gc.Graph()
    with g.as_default():
        y = op(gc.placeholder(gc.float32, [3], name="x"))
    with pytest.raises(MissingKernelError, match="custom.NumpyOnly: 1 node.*registered without cuda_source"):
        _lowered_step(y, "NumpyOnly")


def test_a_bad_user_launch_is_reported():
    from graphc.runtime.codegen.lowering import MissingKernelError

    op = row_sum_op(block=4096)
    g = gc.Graph()
    with g.as_default():
        y = op(gc.placeholder(gc.float32, [3, 5], name="x"))
    with pytest.raises(MissingKernelError, match="returned grid=3, block=4096; the device .* takes 1 to 1024"):
        _lowered_step(y, "row_sum", DeviceProps(max_threads_per_block=1024))


# ---- the CPU emulator ------------------------------------------------------------------------------------
@needs_gxx
@pytest.mark.parametrize("shape", [(4, 33), (2, 3, 50)])
def test_emulator_gelu_matches_builtin(custom_example, emulated, shape):
    assert custom_example.gelu_case("cuda", shape=shape) < 1e-5


@needs_gxx
@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1)])
def test_emulator_conv_matches_builtin(custom_example, emulated, stride, pad):
    assert custom_example.conv_case("cuda", stride=stride, pad=pad) < 1e-4


@needs_gxx
def test_emulator_passes_int_and_float_attributes(emulated):
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    got, want = run_both(scale_shift_op(), x, alpha=2.5, shift=-3)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@needs_gxx
def test_emulator_uses_the_user_launch(emulated):
    x = np.random.default_rng(1).standard_normal((6, 11)).astype(np.float32)
    got, want = run_both(row_sum_op(), x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_gxx
def test_emulator_compile_errors_name_the_op_and_line(emulated):
    from graphc.runtime.cuda.cache import KernelCompileError

    op = gc.custom_op("Broken", numpy_impl=lambda x: x, infer_shape="same", shape_params=False,
                      cuda_source='extern "C" __global__ void Broken(const float* x, float* y, long long n) {\n'
                                  '    y[0] = not_declared;\n}\n')
    with pytest.raises(KernelCompileError, match="custom.Broken:2:.*not_declared"):
        run_both(op, np.ones(3, np.float32))


# ---- nvcc ----------------------------------------------------------------------------------------------
def _entry_params(ptx: str, kernel: str) -> list[str]:
    head = ptx.split(f".entry {kernel}(", 1)[1].split(")", 1)[0]
    return [ln.split()[1] for ln in head.strip().splitlines()]


@pytest.mark.nvcc
def test_nvcc_compiles_the_user_sources(custom_example, tmp_path):
    from graphc.runtime.cuda.cache import KernelCache
    from graphc.runtime.cuda.custom import check_source

    cache = KernelCache(tmp_path)
    # the PTX parameter list is the calling convention seen from the GPU: 64-bit pointers and long longs,
    # 32-bit floats, in the order Kernel.signature packs them
    assert _entry_params(check_source(custom_example.direct_conv2d, cache=cache), "direct_conv2d") == [".u64"] * 18
    assert _entry_params(check_source(custom_example.fused_gelu, cache=cache), "fused_gelu") == [".u64"] * 3
    assert _entry_params(check_source(custom_example.fused_gelu_grad, cache=cache), "fused_gelu_grad") == [".u64"] * 4
    chars = {"P": ".u64", "q": ".u64", "f": ".f32"}
    op = scale_shift_op()
    assert _entry_params(check_source(op, cache=cache), "scale_shift") == [chars[c] for c in "PPqqqqqfqf"]
    assert _entry_params(check_source(row_sum_op(), cache=cache), "row_sum") == [".u64"] * 6


@pytest.mark.nvcc
def test_nvcc_errors_name_the_op_and_line(tmp_path):
    from graphc.custom import CustomOpError
    from graphc.runtime.cuda.cache import KernelCache
    from graphc.runtime.cuda.custom import check_source

    op = gc.custom_op("BrokenNvcc", numpy_impl=lambda x: x, infer_shape="same",
                      cuda_source='extern "C" __global__ void BrokenNvcc(float* y) {\n    y[0] = not_declared;\n}\n')
    with pytest.raises(CustomOpError, match=r"(?s)custom op 'custom.BrokenNvcc': its CUDA source does not compile.*"
                                            r"custom.BrokenNvcc\(2\): error: identifier \"not_declared\""):
        check_source(op, cache=KernelCache(tmp_path))


# ---- a real GPU ------------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_gpu_runs_the_examples(custom_example, monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert custom_example.gelu_case("cuda", shape=(64, 1000)) < 1e-5  # tanhf on the GPU: a few ulps
    assert custom_example.conv_case("cuda", stride=1, pad=0) < 1e-4
    assert custom_example.conv_case("cuda", stride=2, pad=1) < 1e-4
    x = np.random.default_rng(0).standard_normal((300, 7)).astype(np.float32)
    got, want = run_both(scale_shift_op(), x, alpha=2.5, shift=-3)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    got, want = run_both(row_sum_op(block=128), np.random.default_rng(1).standard_normal((40, 3000)).astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
