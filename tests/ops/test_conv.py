"""conv ops (Conv, ConvTranspose, pools, Col2Im, RoiAlign, ...): inference, errors, values vs onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.errors import OpAttributeError, ShapeError
from graphc.ir import DType, Graph
from graphc.ops import lookup
from graphc.ops.conv import conv_core
from oputil import T, infer_one, model, one_node_model

RNG = np.random.default_rng(0)
F = DType.float32

def run_graphc(m, inputs):
    return GraphcBackend.prepare(m).run([x for x in inputs if x is not None])


def run_ort(m, inputs):
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    present = [x for x in inputs if x is not None]
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), present)})


def check_vs_ort(op, inputs, attrs=None, opset=22, n_out=1, rtol=1e-4, atol=1e-5):
    m = model(op, inputs, attrs, n_out, opset)
    got, want = run_graphc(m, inputs), run_ort(m, inputs)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---- inference -------------------------------------------------------------------------------------
def test_conv_infers_symbolic_batch_and_same_size_spatial():
    # 3x3 with pads 1 at stride 1 keeps H and W, whatever they are
    assert infer_one("Conv", [T(F, "N", 3, "H", "W"), T(F, 8, 3, 3, 3)], {"pads": [1, 1, 1, 1]}) == \
        [T(F, "N", 8, "H", "W")]
    assert infer_one("Conv", [T(F, "N", 3, "H", "W"), T(F, 8, 3, 3, 3)], {"auto_pad": "SAME_UPPER"}) == \
        [T(F, "N", 8, "H", "W")]
    out = infer_one("Conv", [T(F, "N", 3, "H", 10), T(F, 8, 3, 3, 3)], {"strides": [2, 2]})[0]
    assert out.shape[:2] == ("N", 8) and isinstance(out.shape[2], str) and out.shape[2] != "H"
    assert out.shape[3] == 4


@pytest.mark.parametrize("attrs,want", [
    ({"strides": [2, 2], "pads": [3, 3, 3, 3]}, (1, 16, 112, 112)),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (1, 16, 112, 112)),
    ({"auto_pad": "VALID", "dilations": [2, 2]}, (1, 16, 212, 212)),
    ({"pads": [0, 1, 2, 3], "strides": [3, 1]}, (1, 16, 74, 222)),
])
def test_conv_infers_static_geometry(attrs, want):
    assert infer_one("Conv", [T(F, 1, 3, 224, 224), T(F, 16, 3, 7, 7)], attrs) == [T(F, *want)]


def test_conv_errors_name_the_fault():
    with pytest.raises(ShapeError, match=r"W's dim 1 must be input channels 6 // group 2 = 3.*\[8, 2, 3, 3\]"):
        infer_one("Conv", [T(F, 1, 6, 9, 9), T(F, 8, 2, 3, 3)], {"group": 2})
    with pytest.raises(ShapeError, match="divisible by group 4"):
        infer_one("Conv", [T(F, 1, 8, 9, 9), T(F, 6, 2, 3, 3)], {"group": 4})
    with pytest.raises(ShapeError, match="'pads' needs 4 values"):
        infer_one("Conv", [T(F, 1, 3, 9, 9), T(F, 8, 3, 3, 3)], {"pads": [1, 1]})
    with pytest.raises(ShapeError, match="larger than spatial dim 0"):
        infer_one("Conv", [T(F, 1, 3, 2, 9), T(F, 8, 3, 3, 3)])
    with pytest.raises(ShapeError, match="B must be a 1-D tensor of the 8 output channels"):
        infer_one("Conv", [T(F, 1, 3, 9, 9), T(F, 8, 3, 3, 3), T(F, 4)])
    with pytest.raises(ShapeError, match="rank >= 3"):
        infer_one("Conv", [T(F, 3, 9), T(F, 8, 3)])


def test_pool_inference_ceil_mode_indices_and_missing_kernel():
    out = infer_one("MaxPool", [T(F, "N", 4, 7, 7)], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
                    n_out=2)
    assert out == [T(F, "N", 4, 4, 4), T(DType.int64, "N", 4, 4, 4)]
    assert infer_one("AveragePool", [T(F, "N", 4, 7, 7)], {"kernel_shape": [2, 2], "strides": [2, 2]}) == \
        [T(F, "N", 4, 3, 3)]
    assert infer_one("GlobalAveragePool", [T(F, "N", "C", "H", "W")]) == [T(F, "N", "C", 1, 1)]
    with pytest.raises(ShapeError, match=r"kernel_shape \[2\] has 1 dims"):
        infer_one("MaxPool", [T(F, 1, 4, 7, 7)], {"kernel_shape": [2]})
    g = Graph("t")
    node = g.add_node("MaxPool", [g.add_input("x", T(F, 1, 1, 4, 4))], {})
    with pytest.raises(OpAttributeError, match="required attribute 'kernel_shape'"):
        lookup("", "MaxPool").complete_attrs(node)


def test_convtranspose_inference():
    assert infer_one("ConvTranspose", [T(F, "N", 4, 5, 5), T(F, 4, 3, 3, 3)], {"strides": [2, 2]}) == \
        [T(F, "N", 3, 11, 11)]
    assert infer_one("ConvTranspose", [T(F, 1, 4, 5, 5), T(F, 4, 2, 3, 3)],
                     {"strides": [2, 2], "output_padding": [1, 1], "group": 2}) == [T(F, 1, 4, 12, 12)]
    assert infer_one("ConvTranspose", [T(F, 1, 4, 5, 5), T(F, 4, 3, 3, 3)], {"output_shape": [10, 8]}) == \
        [T(F, 1, 3, 10, 8)]
    with pytest.raises(ShapeError, match="W's dim 0 must be input channels 4"):
        infer_one("ConvTranspose", [T(F, 1, 4, 5, 5), T(F, 3, 3, 3, 3)])


def test_other_window_ops_inference():
    assert infer_one("RoiAlign", [T(F, 2, 8, 16, 16), T(F, "R", 4), T(DType.int64, "R")],
                     {"output_height": 3, "output_width": 5}) == [T(F, "R", 8, 3, 5)]
    assert infer_one("MaxRoiPool", [T(F, 2, 8, 16, 16), T(F, "R", 5)], {"pooled_shape": [2, 3]}) == \
        [T(F, "R", 8, 2, 3)]
    with pytest.raises(ShapeError, match=r"rois must have shape \(num_rois, 4\)"):
        infer_one("RoiAlign", [T(F, 2, 8, 16, 16), T(F, 3, 5), T(DType.int64, 3)])
    assert infer_one("MaxUnpool", [T(F, "N", 2, 3, 3), T(DType.int64, "N", 2, 3, 3)],
                     {"kernel_shape": [2, 2], "strides": [2, 2]}) == [T(F, "N", 2, 6, 6)]


# ---- values ----------------------------------------------------------------------------------------
CONV_CASES = [
    ((2, 3, 10), (4, 3, 3), {"pads": [1, 2], "strides": [2]}),  # 1-D, asymmetric pads
    ((1, 3, 9, 11), (5, 3, 3, 3), {}),
    ((2, 4, 9, 9), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1], "dilations": [2, 1]}),
    ((1, 6, 8, 8), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),  # depthwise
    ((1, 4, 8, 8), (8, 1, 3, 3), {"group": 4, "auto_pad": "SAME_UPPER"}),  # channel multiplier 2
    ((1, 3, 8, 7), (4, 3, 4, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    ((1, 3, 8, 7), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    ((2, 8, 6, 6), (4, 8, 1, 1), {}),  # 1x1: a single matmul
    ((1, 8, 7, 7), (4, 8, 1, 1), {"strides": [2, 2]}),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 1, 1], "strides": [1, 2, 1]}),  # 3-D
]


@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES)
def test_conv_matches_onnxruntime(xs, ws, attrs):
    x, w, b = f32(*xs), f32(*ws), f32(ws[0])
    check_vs_ort("Conv", [x, w, b], attrs)


def test_conv_kernel_shape_attribute_and_float16():
    x, w = f32(1, 3, 8, 8), f32(4, 3, 3, 3)
    check_vs_ort("Conv", [x, w], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    got = run_graphc(model("Conv", [x.astype(np.float16), w.astype(np.float16)], opset=22),
                     [x.astype(np.float16), w.astype(np.float16)])[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), conv_core(x, w, [1, 1], [1, 1], [0, 0], [0, 0], 1),
                               rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("xs,ws,attrs", [
    ((1, 2, 3, 3), (2, 3, 3, 3), {}),
    ((2, 4, 4, 5), (4, 1, 3, 3), {"strides": [2, 2], "group": 2, "pads": [1, 0, 1, 1]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_padding": [1, 1], "dilations": [1, 2]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [9, 10]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 5), (2, 3, 4), {"strides": [3], "pads": [1, 2]}),
])
def test_convtranspose_matches_onnxruntime(xs, ws, attrs):
    x, w = f32(*xs), f32(*ws)
    check_vs_ort("ConvTranspose", [x, w, f32(ws[1] * attrs.get("group", 1))], attrs)


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER", "strides": [2, 1]},
    {"kernel_shape": [3, 2], "dilations": [2, 1], "pads": [2, 0, 1, 1]},
    {"kernel_shape": [3, 3], "storage_order": 1, "pads": [0, 1, 1, 0]},
])
def test_maxpool_with_indices_matches_onnxruntime(attrs):
    x = f32(2, 3, 7, 8)
    check_vs_ort("MaxPool", [x], attrs, opset=12, n_out=2, rtol=0, atol=0)


def test_maxpool_uint8_pads_with_the_lowest_value():
    x = RNG.integers(0, 5, (1, 2, 5, 5)).astype(np.uint8)
    check_vs_ort("MaxPool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=12, rtol=0, atol=0)


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "count_include_pad": 1},
    {"kernel_shape": [7, 7]},
])
def test_averagepool_matches_onnxruntime(attrs):
    check_vs_ort("AveragePool", [f32(2, 3, 9, 10)], attrs, opset=19)


def test_lppool_and_global_pools_match_onnxruntime():
    x = f32(2, 3, 6, 7)
    check_vs_ort("LpPool", [x], {"kernel_shape": [2, 3], "strides": [2, 1], "p": 3}, opset=18)
    check_vs_ort("LpPool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=18)
    check_vs_ort("GlobalLpPool", [x], {"p": 3}, opset=2)
    check_vs_ort("GlobalAveragePool", [x], opset=1)
    check_vs_ort("GlobalMaxPool", [x], opset=1)


def test_maxunpool_inverts_maxpool():
    x = f32(1, 2, 6, 6)
    mp = model("MaxPool", [x], {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=12, n_out=2)
    y, idx = run_graphc(mp, [x])
    got = run_graphc(model("MaxUnpool", [y, idx], {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=22), [y, idx])[0]
    want = np.where(x == np.repeat(np.repeat(y, 2, axis=2), 2, axis=3), x, 0)
    np.testing.assert_array_equal(got, want)


def test_col2im_matches_onnxruntime():
    x = f32(2, 2 * 2 * 3, 12)
    img, blk = np.array([5, 6], np.int64), np.array([2, 3], np.int64)
    check_vs_ort("Col2Im", [x, img, blk], {"strides": [2, 1], "pads": [1, 0, 0, 0]}, opset=18)


@pytest.mark.parametrize("attrs", [
    {"output_height": 3, "output_width": 4, "sampling_ratio": 2, "spatial_scale": 0.5},
    {"output_height": 2, "output_width": 2, "coordinate_transformation_mode": "output_half_pixel"},
    {"output_height": 3, "output_width": 3, "mode": "max", "sampling_ratio": 2},
])
def test_roialign_matches_onnxruntime(attrs):
    x = f32(2, 3, 10, 12)
    rois = np.array([[0, 0, 9, 9], [1.5, 2.0, 8.2, 6.1], [-2, -1, 20, 15]], np.float32)
    bi = np.array([0, 1, 1], np.int64)
    check_vs_ort("RoiAlign", [x, rois, bi], attrs, opset=16, atol=1e-4)


def test_maxroipool_matches_onnxruntime():
    x = f32(2, 3, 10, 12)
    rois = np.array([[0, 0, 0, 9, 9], [1, 1.6, 2.2, 8.1, 6.5], [1, 3, 3, 3, 3]], np.float32)
    check_vs_ort("MaxRoiPool", [x, rois], {"pooled_shape": [3, 2], "spatial_scale": 0.9}, opset=1, atol=0)


def test_deformconv_matches_reference_evaluator():
    x, w = f32(1, 4, 5, 5), f32(4, 2, 2, 2)
    off = (RNG.standard_normal((1, 2 * 2 * 2 * 2, 5, 5)) * 0.7).astype(np.float32)
    mask = RNG.uniform(0, 1, (1, 2 * 4, 5, 5)).astype(np.float32)
    b = f32(4)
    m, feeds = one_node_model("DeformConv", [x, w, off, b, mask], {"group": 2, "offset_group": 2, "pads": [1, 1, 0, 0]},
                              opset=19)
    got = run_graphc(m, [x, w, off, b, mask])[0]
    want = ReferenceEvaluator(m).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_convinteger_matches_onnxruntime():
    x = RNG.integers(0, 255, (1, 3, 6, 6)).astype(np.uint8)
    w = RNG.integers(0, 255, (4, 3, 3, 3)).astype(np.uint8)
    got = check_vs_ort("ConvInteger", [x, w, np.array(100, np.uint8), np.array(120, np.uint8)],
                       {"pads": [1, 1, 1, 1]}, opset=10, rtol=0, atol=0)
    assert got[0].dtype == np.int32


def test_roialign_opset10_keeps_its_legacy_coordinates():
    # RoiAlign-10 had no coordinate_transformation_mode and behaved as 'output_half_pixel'
    x = f32(1, 2, 8, 8)
    rois = np.array([[1.0, 1.5, 6.0, 7.0]], np.float32)
    bi = np.array([0], np.int64)
    attrs = {"output_height": 2, "output_width": 3, "sampling_ratio": 2}
    rep = GraphcBackend.prepare(model("RoiAlign", [x, rois, bi], attrs, opset=10))
    assert rep.graph.nodes[0].attrs["coordinate_transformation_mode"] == "output_half_pixel"
    check_vs_ort("RoiAlign", [x, rois, bi], attrs, opset=10, atol=1e-5)
    new = run_graphc(model("RoiAlign", [x, rois, bi], attrs, opset=16), [x, rois, bi])[0]
    assert not np.allclose(new, rep.run([x, rois, bi])[0])
