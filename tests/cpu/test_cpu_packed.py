"""Products by a constant float32 matrix on the CPU backend (runtime/codegen/ops/linalg.py ``_packed_product``):
the matrix packed into panels once, at lowering, and multiplied by runtime/cpu's AVX-512 micro-kernel, by blocks
of rows and columns the pool's threads share. Against the NumPy backend, over the edges: rows fewer than the
micro-kernel's, columns past the last full panel, odd K, leading batch dims, Gemm's transB, a product heading a
fused group (bias + Relu), and where the panels do not apply (alpha, a matrix-vector product, no AVX-512)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

import graphc as gc
from graphc.runtime.cpu import available, device

pytestmark = pytest.mark.skipif(not available() or "GC_AVX512" not in device.wide_macro(),
                                reason="needs a C++ compiler and a CPU with AVX-512")


def _model(nodes, x_shape, inits):
    g = oh.make_graph(nodes, "p", [oh.make_tensor_value_info("x", TP.FLOAT, list(x_shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)], [nh.from_array(v, k) for k, v in inits.items()])
    return gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))


def _kernels(exe) -> list[str]:
    return [s.kernel.name for _, _, s in exe.prepared()._steps if s.kernel is not None]


def _check(graph, x, threads, packed: bool):
    (want,) = gc.prepare(graph, backend="numpy").run({"x": x})
    before = gc.get_num_threads()
    gc.set_num_threads(threads)
    try:
        exe = gc.prepare(graph, backend="cpu")
        (got,) = exe.run({"x": x})
    finally:
        gc.set_num_threads(before)
    assert any(n.endswith("_packed") for n in _kernels(exe)) == packed, _kernels(exe)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


SHAPES = [((64, 100), 70), ((30, 257), 130), ((8, 64), 64), ((2, 9, 33), 65), ((400, 40), 129)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("x_shape,n", SHAPES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_matmul_by_a_constant_matches_the_numpy_backend(x_shape, n, threads):
    rng = np.random.default_rng(sum(x_shape) + n)
    w = rng.standard_normal((x_shape[-1], n)).astype(np.float32)
    graph = _model([oh.make_node("MatMul", ["x", "w"], ["y"])], x_shape, {"w": w})
    _check(graph, rng.standard_normal(x_shape).astype(np.float32), threads, True)


@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_heading_a_fused_group(threads):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((77, 50)).astype(np.float32)  # transB: N x K
    b = rng.standard_normal(77).astype(np.float32)
    nodes = [oh.make_node("Gemm", ["x", "w", "b"], ["t"], transB=1), oh.make_node("Relu", ["t"], ["y"])]
    graph = _model(nodes, (40, 50), {"w": w, "b": b})
    _check(graph, rng.standard_normal((40, 50)).astype(np.float32), threads, True)


def test_where_the_panels_do_not_apply(monkeypatch):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((50, 30)).astype(np.float32)
    scaled = _model([oh.make_node("Gemm", ["x", "w"], ["y"], alpha=0.5)], (20, 50), {"w": w})
    _check(scaled, rng.standard_normal((20, 50)).astype(np.float32), 1, False)
    vector = _model([oh.make_node("MatMul", ["x", "w"], ["y"])], (1, 50), {"w": w})
    _check(vector, rng.standard_normal((1, 50)).astype(np.float32), 1, False)
    monkeypatch.setattr(device, "wide_macro", lambda: "#define GC_WIDE")  # a host without AVX-512
    plain = _model([oh.make_node("MatMul", ["x", "w"], ["y"])], (20, 50), {"w": w})
    _check(plain, rng.standard_normal((20, 50)).astype(np.float32), 1, False)
