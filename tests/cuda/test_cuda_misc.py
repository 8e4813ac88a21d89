"""Resize and the quantizers of runtime/codegen/ops (resize.py, quantize.py) with their parameters constant (the ONNX node cases feed them at
run time), on the CPU emulator against the NumPy backend: integer outputs round half to even and saturate.

The node cases of every op of runtime/codegen/ops (resize.py, quantize.py) run in test_cuda_emulator.py and test_cuda_nvcc.py.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from onnx import helper as oh
from onnx import numpy_helper

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda import CudaBackend
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.cuda.emulator import EmulatedDevice

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


def _model(node, inputs: dict, out_shape, out_dtype, consts: dict):
    def info(name, a_dtype, shape):
        return oh.make_tensor_value_info(name, oh.np_dtype_to_tensor_dtype(np.dtype(a_dtype)), shape)

    g = oh.make_graph([node], "misc", [info(k, v.dtype, v.shape) for k, v in inputs.items()],
                      [info("y", out_dtype, out_shape)], [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 21)])


def _agree(model, feeds: list, tmp_path, atol=0.0):
    graph = gc.import_onnx(model)
    dev = EmulatedDevice(KernelCache(tmp_path))
    (y,) = CudaBackend.prepare(compile_graph(graph), device=dev, debug=True).run(feeds)
    (ref,) = gc.prepare(gc.import_onnx(model), backend="numpy").run(feeds)
    assert y.dtype == ref.dtype and y.shape == ref.shape
    np.testing.assert_allclose(y.astype(np.float64), ref.astype(np.float64), rtol=0, atol=atol)


@pytest.mark.parametrize("mode,ctm,dtype,scales", [
    ("linear", "half_pixel", np.float32, [1, 1, 0.6, 1.7]),
    ("cubic", "align_corners", np.float32, [1, 1, 2.0, 0.5]),
    ("linear", "asymmetric", np.uint8, [1, 1, 1.5, 1.5]),  # rounds half to even, saturates
    ("nearest", "half_pixel", np.int32, [1, 1, 2.0, 0.7]),
    ("linear", "half_pixel", np.float16, [1, 1, 1.3, 2.0]),
])
def test_resize_with_constant_scales_matches_numpy(mode, ctm, dtype, scales, tmp_path):
    xs = [2, 3, 5, 6]
    ys = [int(a * b) for a, b in zip(xs, scales)]
    x = (np.random.default_rng(0).random(xs) * 200).astype(dtype)
    node = oh.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, coordinate_transformation_mode=ctm)
    model = _model(node, {"x": x}, ys, dtype, {"scales": np.array(scales, np.float32)})
    _agree(model, [x], tmp_path, atol=1e-5 if dtype == np.float32 else 0.0)


@pytest.mark.parametrize("target", [np.int8, np.uint8, np.int16, np.uint16])
@pytest.mark.parametrize("layout", ["tensor", "axis", "blocked"])
def test_quantize_dequantize_with_constant_parameters_match_numpy(target, layout, tmp_path):
    x = np.array([[-300.5, -2.5, -1.5, -0.5, 0.5, 1.5], [2.5, 3.5, 126.5, 127.5, 254.5, 70000.0]], np.float32)
    attrs = {"axis": 1}
    if layout == "tensor":
        scale, zp = np.array(1.0, np.float32), np.array(3, target)
    elif layout == "axis":
        scale, zp = np.array([1.0, 0.5, 2.0, 1.0, 0.25, 1.0], np.float32), np.arange(6).astype(target)
    else:
        attrs["block_size"] = 4
        scale = np.array([[1.0, 0.5], [2.0, 1.0]], np.float32)
        zp = np.array([[1, 2], [3, 4]], target)
    q = oh.make_node("QuantizeLinear", ["x", "scale", "zp"], ["y"], **attrs)
    _agree(_model(q, {"x": x}, list(x.shape), target, {"scale": scale, "zp": zp}), [x], tmp_path / "q")
    xq = np.linspace(np.iinfo(target).min, np.iinfo(target).max, 12).astype(target).reshape(2, 6)
    d = oh.make_node("DequantizeLinear", ["x", "scale", "zp"], ["y"], **attrs)
    _agree(_model(d, {"x": xq}, list(x.shape), np.float32, {"scale": scale, "zp": zp}), [xq], tmp_path / "d")
