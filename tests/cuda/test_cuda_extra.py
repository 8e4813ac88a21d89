"""Lowerings of runtime/codegen/ops (conv.py, linalg.py, shape.py, training.py) that the ONNX node cases do not reach: Col2Im with its
block and image shapes constant (the node cases feed them at run time, which a static kernel cannot
take), on the CPU emulator against the NumPy backend and onnxruntime."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

import graphc as gc

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


@pytest.mark.parametrize("dilations,pads,strides", [([1, 1], [0, 0, 0, 0], [1, 1]), ([1, 2], [1, 0, 1, 2], [2, 1])])
def test_col2im_with_constant_shapes(dilations, pads, strides, monkeypatch):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    image, block = np.array([5, 6], np.int64), np.array([2, 3], np.int64)
    span = [(b - 1) * d + 1 for b, d in zip(block, dilations)]
    blocks = int(np.prod([(i + pads[k] + pads[k + 2] - e) // s + 1
                          for k, (i, e, s) in enumerate(zip(image, span, strides))]))
    node = oh.make_node("Col2Im", ["x", "image", "block"], ["y"], dilations=dilations, pads=pads, strides=strides)
    graph = oh.make_graph([node], "col2im", [oh.make_tensor_value_info("x", TP.FLOAT, [2, 12, blocks])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                          [nh.from_array(image, "image"), nh.from_array(block, "block")])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)]).SerializeToString()
    g = gc.import_onnx(model)
    x = np.random.default_rng(0).standard_normal((2, 12, blocks)).astype(np.float32)
    (want,) = gc.prepare(g).run([x])
    (got,) = gc.prepare(g, backend="cuda").run([x])
    assert got.shape == (2, 2, 5, 6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    np.testing.assert_allclose(got, ort.InferenceSession(model).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
