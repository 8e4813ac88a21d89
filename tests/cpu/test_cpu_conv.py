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


POOLS = [  # (input spatial, kernel, strides, pads (begins + ends), ceil_mode)
    ((4, 4), (256, 256), (1, 1), (126, 126, 126, 126), 0),  # a global-sized window over a small map (an exporter's)
    ((9, 11), (3, 3), (2, 2), (1, 0, 1, 2), 1),             # asymmetric pads and a ceil-mode overhang
    ((5, 6), (3, 3), (1, 1), (4, 5, 4, 5), 0),              # windows wholly in the padding: count 0 without it
    ((17,), (5,), (3,), (2, 6), 1),
    ((4, 6, 9), (2, 3, 3), (1, 2, 1), (1, 0, 2, 0, 1, 2), 0),
]


# LpPool has no count_include_pad; its ceil_mode is left out (AveragePool's covers the overhang)
POOL_RUNS = [(c, pad, "AveragePool") for c in POOLS for pad in (0, 1)] + \
    [(c, 0, "LpPool") for c in POOLS if not c[4]]


@pytest.mark.parametrize("case,include_pad,op", POOL_RUNS,
                         ids=[f"{op}_{'x'.join(map(str, c[0]))}_k{c[1][0]}_pad{p}" for c, p, op in POOL_RUNS])
def test_pools_loop_over_the_taps_inside_the_image(case, include_pad, op):
    """AveragePool and LpPool without dilation loop over only the taps inside the image and count them from the
    window's bounds (padding counted or not, a ceil-mode overhang never): the NumPy backend's values."""
    spatial, kernel, strides, pads, ceil = case
    x = np.random.default_rng(len(spatial) + sum(pads)).standard_normal((2, 3) + spatial).astype(np.float32)
    attrs = {"kernel_shape": list(kernel), "strides": list(strides), "pads": list(pads)}
    attrs.update({"count_include_pad": include_pad, "ceil_mode": ceil} if op == "AveragePool" else {"p": 2})
    g = oh.make_graph([oh.make_node(op, ["x"], ["y"], **attrs)], "pool",
                      [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))], [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)]))
    (want,) = gc.prepare(graph, backend="numpy").run({"x": x})
    (got,) = gc.prepare(graph, backend="cpu").run({"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


DEPTHWISE = [  # (input spatial, kernel, strides, pads, channel multiplier): rows of 16+ outputs take the row kernel
    ((9, 40), (3, 3), (1, 1), (1, 1, 1, 1), 1),
    ((10, 70), (5, 5), (2, 2), (2, 1, 0, 2), 1),
    ((6, 36), (3, 5), (1, 1), (0, 4, 2, 4), 2),   # padding wider than half the kernel; two outputs per channel
    ((7, 65), (3, 3), (2, 3), (0, 0, 0, 0), 1),
    ((8, 12), (5, 5), (1, 1), (2, 2, 2, 2), 1),   # rows of 12: the kernel per output element
    ((9, 18), (3, 3), (1, 1), (1, 1, 1, 1), 1),   # rows of 18: by rows
]


@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda c: "x".join(map(str, c[0])) + f"_k{c[1][0]}{c[1][1]}_s{c[2][1]}")
def test_depthwise_conv_matches_the_numpy_backend(case):
    spatial, kernel, strides, pads, mult = case
    rng = np.random.default_rng(sum(spatial) + sum(pads))
    C = 3
    x = rng.standard_normal((2, C) + spatial).astype(np.float32)
    w = rng.standard_normal((C * mult, 1) + kernel).astype(np.float32)
    b = rng.standard_normal(C * mult).astype(np.float32)
    node = oh.make_node("Conv", ["x", "w", "b"], ["y"], strides=list(strides), pads=list(pads), group=C)
    g = oh.make_graph([node], "dw", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                      [oh.make_tensor("w", TP.FLOAT, list(w.shape), w.ravel().tolist()),
                       oh.make_tensor("b", TP.FLOAT, [C * mult], b.tolist())])
    graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))
    (want,) = gc.prepare(graph, backend="numpy").run({"x": x})
    exe = gc.prepare(graph, backend="cpu")
    (got,) = exe.run({"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    text = "\n".join(s.kernel.source for s in exe.prepared().lowered.steps if s.kernel is not None)
    assert ("one output row per work item" in text) == (want.shape[-1] >= 16)


MAXPOOLS = [  # (input spatial, kernel, strides, pads, ceil_mode): rows of 16+ outputs take the row kernel
    ((112, 112), (3, 3), (2, 2), (1, 1, 1, 1), 0),   # shufflenet's
    ((55, 55), (3, 3), (2, 2), (0, 0, 0, 0), 1),     # squeezenet's, with a ceil-mode overhang
    ((9, 40), (2, 5), (1, 3), (1, 0, 0, 4), 0),
    ((8, 12), (3, 3), (1, 1), (1, 1, 1, 1), 0),      # rows of 12: the kernel per output element
]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("case", MAXPOOLS, ids=lambda c: "x".join(map(str, c[0])) + f"_k{c[1][0]}{c[1][1]}_s{c[2][1]}")
def test_maxpool_matches_the_numpy_backend_nan_included(case, dtype):
    spatial, kernel, strides, pads, ceil = case
    rng = np.random.default_rng(sum(spatial))
    x = (rng.standard_normal((2, 3) + spatial) * 50).astype(dtype)
    if dtype == np.float32:
        x[rng.random(x.shape) < 0.01] = np.nan  # a NaN in a window wins it
    node = oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(kernel), strides=list(strides), pads=list(pads),
                        ceil_mode=ceil)
    elem = TP.FLOAT if dtype == np.float32 else TP.UINT8
    g = oh.make_graph([node], "mp", [oh.make_tensor_value_info("x", elem, list(x.shape))],
                      [oh.make_tensor_value_info("y", elem, None)])
    graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))
    (want,) = gc.prepare(graph, backend="numpy").run({"x": x})
    exe = gc.prepare(graph, backend="cpu")
    (got,) = exe.run({"x": x})
    np.testing.assert_array_equal(got, want)
    text = "\n".join(s.kernel.source for s in exe.prepared().lowered.steps if s.kernel is not None)
    assert ("one output row per work item" in text) == (want.shape[-1] >= 16)
