"""Convolutions on the CPU backend against the NumPy backend over the geometries the row-wise im2col must get
right: strides, dilations, asymmetric and oversized padding (a row wholly in the padding, a row whose inside
range is empty), 1-D, 2-D and 3-D, rows shorter and longer than the row loop's minimum."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.runtime.cpu import available

pytestmark = pytest.mark.skipif(not available(), reason="needs a C++ compiler")

CASES = [  # (input spatial, kernel, strides, dilations, pads (begins + ends))
    ((9, 11), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((9, 11), (3, 3), (2, 3), (1, 1), (0, 2, 1, 0)),
    ((8, 13), (2, 3), (1, 2), (2, 3), (3, 0, 0, 4)),
    ((5, 6), (3, 3), (1, 1), (1, 1), (4, 5, 4, 5)),    # padding wider than the kernel: rows of zeros only
    ((7, 3), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),    # rows of 3: the per-element path
    ((17,), (5,), (3,), (2,), (2, 6)),
    ((4, 6, 9), (2, 3, 3), (1, 2, 1), (1, 1, 2), (1, 0, 2, 0, 1, 2)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"_k{len(c[1])}_{c[2]}")
def test_conv_matches_the_numpy_backend(case):
    spatial, kernel, strides, dils, pads = case
    rng = np.random.default_rng(len(spatial) + sum(pads))
    x = rng.standard_normal((2, 3) + spatial).astype(np.float32)
    w = rng.standard_normal((4, 3) + kernel).astype(np.float32)
    node = oh.make_node("Conv", ["x", "w"], ["y"], strides=list(strides), dilations=list(dils), pads=list(pads))
    g = oh.make_graph([node], "conv", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                      [oh.make_tensor("w", TP.FLOAT, list(w.shape), w.ravel().tolist())])
    graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))
    (want,) = gc.prepare(graph, backend="numpy").run({"x": x})
    (got,) = gc.prepare(graph, backend="cpu").run({"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
