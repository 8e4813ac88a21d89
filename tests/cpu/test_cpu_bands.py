"""The C dialect's convolution by bands of output rows (runtime/codegen/ops/conv.py ``_conv_bands``): each band's
im2col columns written in panels into a thread's scratch buffer and multiplied there (runtime/cpu's AVX-512
micro-kernel, or the BLAS per panel). Against the NumPy backend over what the panels must get right: bands that
end inside a panel, panels of 1 to 64 columns, weight rows not a multiple of the micro-kernel's, groups, strides,
dilations, padding wider than the kernel, a batch, a bias computed at run time, float64, two threads."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.runtime.codegen.ops import conv
from graphc.runtime.cpu import available

pytestmark = pytest.mark.skipif(not available(), reason="needs a C++ compiler")

CASES = [  # (N, C, M, group, (H, W), kernel, strides, dilations, pads)
    (1, 3, 7, 1, (19, 23), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),     # 23 places a row: runs cross panels
    (2, 8, 29, 1, (12, 70), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),    # rows wider than a panel, 29 weight rows
    (1, 6, 50, 2, (11, 13), (3, 2), (2, 3), (1, 1), (0, 2, 1, 0)),    # groups, strides, asymmetric pads
    (1, 4, 5, 1, (10, 17), (2, 3), (1, 2), (2, 3), (3, 0, 0, 4)),     # dilations
    (1, 3, 4, 1, (5, 6), (3, 3), (1, 1), (1, 1), (4, 5, 4, 5)),       # rows wholly in the padding
    (3, 16, 33, 1, (9, 9), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),     # 1x1: X's rows copied into panels
    (1, 5, 64, 1, (8, 8), (7, 7), (1, 1), (1, 1), (3, 3, 3, 3)),      # one band of 64 places: a full panel
]


def _model(x_shape, w, group, strides, dils, pads, dtype, runtime_bias):
    tp = TP.FLOAT if dtype == np.float32 else TP.DOUBLE
    ins = ["x", "w"] + (["b"] if runtime_bias else [])
    node = oh.make_node("Conv", ins, ["y"], strides=list(strides), dilations=list(dils), pads=list(pads), group=group)
    inputs = [oh.make_tensor_value_info("x", tp, list(x_shape))]
    if runtime_bias:
        inputs.append(oh.make_tensor_value_info("b", tp, [w.shape[0]]))
    g = oh.make_graph([node], "conv", inputs, [oh.make_tensor_value_info("y", tp, None)],
                      [oh.make_tensor("w", tp, list(w.shape), w.ravel().tolist())])
    return gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))


def _kernels(exe) -> list[str]:
    return [s.kernel.name for _, _, s in exe.prepared()._steps if s.kernel is not None]


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of a row or two, whatever the columns' size, so that every case has several."""
    monkeypatch.setattr(conv, "BAND_MIN", 0)
    monkeypatch.setattr(conv, "BAND_BYTES", 1)
    monkeypatch.setattr(conv, "BAND_COLUMNS", 20)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype,runtime_bias", [(np.float32, False), (np.float32, True), (np.float64, False)])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}to{c[2]}g{c[3]}_" + "x".join(map(str, c[4])) +
                         "_k" + "x".join(map(str, c[5])))
def test_bands_match_the_numpy_backend(small_bands, case, dtype, runtime_bias, threads):
    N, C, M, group, spatial, kernel, strides, dils, pads = case
    rng = np.random.default_rng(C * M + sum(spatial))
    x = rng.standard_normal((N, C) + spatial).astype(dtype)
    w = rng.standard_normal((M, C // group) + kernel).astype(dtype)
    graph = _model(x.shape, w, group, strides, dils, pads, dtype, runtime_bias)
    feeds = {"x": x}
    if runtime_bias:
        feeds["b"] = rng.standard_normal(M).astype(dtype)
    (want,) = gc.prepare(graph, backend="numpy").run(feeds)
    before = gc.get_num_threads()
    gc.set_num_threads(threads)
    try:
        exe = gc.prepare(graph, backend="cpu")
        (got,) = exe.run(feeds)
        (again,) = exe.run(feeds)  # the scratch buffers kept from the first run
    finally:
        gc.set_num_threads(before)
    assert any(name.endswith("_bands") for name in _kernels(exe)), _kernels(exe)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(again, got)


def test_band_rows_follow_the_size_rules():
    f32 = gc.float32
    # one thread: bands of at least BAND_COLUMNS places and BAND_BYTES, and as many bytes as the weights
    assert conv._band_rows(576, 64, [224, 224], f32, 1) == 2     # 576 * 224 * 4 = 516 KB a row
    assert conv._band_rows(4608, 512, [28, 28], f32, 1) == 19   # weights 9.4 MB: 19 rows of 516 KB
    # several threads: none for small columns, and at least BAND_PER_THREAD bands a thread
    assert conv._band_rows(576, 64, [4, 4], f32, 2) == 0
    assert conv._band_rows(4608, 512, [28, 28], f32, 2) == 7
    assert conv._band_rows(576, 64, [4, 4], gc.float16, 1) == 0


def test_small_convolutions_on_several_threads_keep_im2col():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    graph = _model((1, 4, 12, 12), w, 1, (1, 1), (1, 1), (1, 1, 1, 1), np.float32, False)
    before = gc.get_num_threads()
    gc.set_num_threads(2)
    try:
        exe = gc.prepare(graph, backend="cpu")
        exe.run({"x": rng.standard_normal((1, 4, 12, 12)).astype(np.float32)})
    finally:
        gc.set_num_threads(before)
    names = _kernels(exe)
    assert any(n.endswith("_im2col") for n in names) and not any(n.endswith("_bands") for n in names), names


def test_bands_without_avx512_multiply_each_panel_with_the_blas(small_bands, monkeypatch):
    """A host without AVX-512 compiles no micro-kernel (no GC_AVX512): float32 panels go to the BLAS one by one."""
    from graphc.runtime.cpu import device

    monkeypatch.setattr(device, "wide_macro", lambda: "#define GC_WIDE")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 13, 31)).astype(np.float32)
    w = rng.standard_normal((11, 3, 3, 3)).astype(np.float32)
    graph = _model(x.shape, w, 1, (1, 1), (1, 1), (1, 1, 1, 1), np.float32, False)
    (want,) = gc.prepare(graph, backend="numpy").run({"x": x})
    exe = gc.prepare(graph, backend="cpu")
    (got,) = exe.run({"x": x})
    assert any(name.endswith("_bands") for name in _kernels(exe))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_constant_bias_in_a_fused_group_goes_to_the_epilogue():
    """squeezenet's fire modules: Conv + bias + Relu groups whose bias is a constant input of the fused group.
    The group's head reads the constant itself, so the bias is added by the epilogue kernel (split_conv), not
    written into Y first by a kernel of its own that the GEMM then accumulates onto."""
    from graphc.models.light import path

    graph = gc.import_onnx(path("light_squeezenet"))
    x = np.random.default_rng(9).standard_normal((1, 3, 224, 224)).astype(np.float32)
    (want,) = gc.prepare(graph, backend="numpy").run({graph.inputs[0].name: x})
    exe = gc.prepare(graph, backend="cpu")
    (got,) = exe.run({graph.inputs[0].name: x})
    names = _kernels(exe)
    assert not any(n.endswith("_bias") for n in names), [n for n in names if n.endswith("_bias")]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
