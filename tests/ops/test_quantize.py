"""quantize ops: output-type inference, granularity checks, values vs onnxruntime and the reference."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.errors import ShapeError
from graphc.ir import DType
from graphc.ops import lookup
from oputil import T, infer_one, one_node_model

RNG = np.random.default_rng(0)
F = DType.float32

def check(op, inputs, attrs=None, opset=21, n_out=1, oracle="ort", atol=0.0):
    m, feeds = one_node_model(op, inputs, attrs, n_out, opset)
    present = [x for x in inputs if x is not None]
    got = GraphcBackend.prepare(m).run(present)
    if oracle == "ort":
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), present)})
    else:
        want = ReferenceEvaluator(m).run(None, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=0, atol=atol)
    return got


# ---- inference -------------------------------------------------------------------------------------
def test_quantize_output_type_comes_from_zero_point_attribute_or_defaults_to_uint8():
    x = T(F, "N", 4)
    assert infer_one("QuantizeLinear", [x, T(F)]) == [T(DType.uint8, "N", 4)]
    assert infer_one("QuantizeLinear", [x, T(F), T(DType.int8)]) == [T(DType.int8, "N", 4)]
    assert infer_one("QuantizeLinear", [x, T(F, 4)], {"output_dtype": TP.INT4}) == [T(DType.int4, "N", 4)]
    with pytest.raises(ShapeError, match="output_dtype int8 differs from y_zero_point's type uint8"):
        infer_one("QuantizeLinear", [x, T(F), T(DType.uint8)], {"output_dtype": TP.INT8})
    with pytest.raises(ShapeError, match="cannot quantize to int32"):
        infer_one("QuantizeLinear", [x, T(F)], {"output_dtype": TP.INT32})


def test_quantize_checks_per_axis_and_blocked_scale_shapes():
    x = T(F, "N", 6, 8)
    with pytest.raises(ShapeError, match="per-axis y_scale has 5 values but input dim 1 has 6"):
        infer_one("QuantizeLinear", [x, T(F, 5)])
    assert infer_one("QuantizeLinear", [x, T(F, 8)], {"axis": -1}) == [T(DType.uint8, "N", 6, 8)]
    with pytest.raises(ShapeError, match=r"dim 2 must be ceil\(8 / block_size 3\) = 3, got 2"):
        infer_one("QuantizeLinear", [x, T(F, "N", 6, 2)], {"axis": 2, "block_size": 3})
    with pytest.raises(ShapeError, match="must have the input's rank 3"):
        infer_one("QuantizeLinear", [x, T(F, 6, 2)], {"axis": 2, "block_size": 4})
    with pytest.raises(ShapeError, match="axis 3 is out of range"):
        infer_one("QuantizeLinear", [x, T(F, 8)], {"axis": 3})


def test_dequantize_and_friends_inference():
    assert infer_one("DequantizeLinear", [T(DType.int8, "N", 4), T(DType.float16)]) == [T(DType.float16, "N", 4)]
    assert infer_one("DequantizeLinear", [T(DType.int4, "N", 4), T(F)], {"output_dtype": TP.BFLOAT16}) == \
        [T(DType.bfloat16, "N", 4)]
    with pytest.raises(ShapeError, match="x_zero_point must have x's element type int8, got uint8"):
        infer_one("DequantizeLinear", [T(DType.int8, 4), T(F), T(DType.uint8)])
    assert infer_one("DynamicQuantizeLinear", [T(F, "N", 3)], n_out=3) == \
        [T(DType.uint8, "N", 3), T(F), T(DType.uint8)]
    u8, s = DType.uint8, T(F)
    assert infer_one("QLinearMatMul", [T(u8, "M", 4), s, T(u8), T(u8, 4, 6), s, T(u8), s, T(DType.int8)]) == \
        [T(DType.int8, "M", 6)]
    assert infer_one("QLinearConv", [T(u8, "N", 3, 8, 8), s, T(u8), T(DType.int8, 5, 3, 3, 3), s,
                                     T(DType.int8), s, T(u8)], {"pads": [1, 1, 1, 1]}) == [T(u8, "N", 5, 8, 8)]


# ---- values ----------------------------------------------------------------------------------------
def test_quantize_per_tensor_rounds_half_to_even_and_saturates():
    x = np.array([-300.0, -1.5, -0.5, 0.5, 1.5, 2.5, 300.0], np.float32)
    got = check("QuantizeLinear", [x, np.array(1.0, np.float32), np.array(3, np.int8)])[0]
    np.testing.assert_array_equal(got, [-128, 1, 3, 3, 5, 5, 127])


def test_quantize_per_axis_and_blocked_match_onnxruntime():
    x = RNG.standard_normal((2, 3, 8)).astype(np.float32) * 10
    s = np.array([0.1, 0.2, 0.3], np.float32)
    zp = np.array([0, 10, -10], np.int8)
    check("QuantizeLinear", [x, s, zp], {"axis": 1})
    sb = RNG.uniform(0.05, 0.3, (2, 3, 3)).astype(np.float32)
    zb = RNG.integers(0, 20, (2, 3, 3)).astype(np.uint8)
    check("QuantizeLinear", [x, sb, zb], {"axis": 2, "block_size": 3})
    check("DequantizeLinear", [zb, sb.astype(np.float32), zb], {"axis": 2, "block_size": 1})


@pytest.mark.parametrize("target", [TP.INT4, TP.UINT4, TP.FLOAT8E4M3FN, TP.FLOAT8E5M2, TP.INT16, TP.UINT16])
def test_quantize_to_narrow_types_matches_the_reference(target):
    # (onnxruntime's Python API cannot hand int4/float8 arrays back, so the oracle is onnx's reference)
    x = (RNG.standard_normal((3, 5)) * 100).astype(np.float32)
    x[0, 0] = 1e6  # saturates
    got = check("QuantizeLinear", [x, np.array(2.0, np.float32)], {"output_dtype": target}, oracle="ref")[0]
    assert got.dtype == DType(target).np


def test_quantize_float8_without_saturation_overflows_like_the_reference():
    x = np.array([1.0, 500.0, -1e5, np.inf], np.float32)
    got = check("QuantizeLinear", [x, np.array(1.0, np.float32), np.array(0, ml_dtypes.float8_e4m3fn)],
                {"saturate": 0}, oracle="ref")[0]
    assert np.isnan(got[1].astype(np.float32)) and got[0] == 1
    got = check("QuantizeLinear", [x, np.array(1.0, np.float32), np.array(0, ml_dtypes.float8_e4m3fn)],
                oracle="ref")[0]
    assert got[1].astype(np.float32) == 448 and got[3].astype(np.float32) == 448


@pytest.mark.parametrize("dt", [np.int8, np.uint8, np.int32])
def test_dequantize_per_tensor_and_per_axis_match_onnxruntime(dt):
    x = RNG.integers(0 if dt == np.uint8 else -100, 100, (2, 4, 3)).astype(dt)
    check("DequantizeLinear", [x, np.array(0.25, np.float32)], atol=1e-6)
    if dt != np.int32:
        zp = np.array([1, 2, 3, 4], dt)
        check("DequantizeLinear", [x, RNG.uniform(0.1, 1, 4).astype(np.float32), zp], {"axis": 1}, atol=1e-6)


def test_dequantize_int4_with_float16_scale():
    x = np.array([-8, -1, 0, 7], ml_dtypes.int4)
    got = check("DequantizeLinear", [x, np.array(0.5, np.float16), np.array(1, ml_dtypes.int4)], oracle="ref")[0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, [-4.5, -1.0, -0.5, 3.0])


def test_dynamic_quantize_matches_onnxruntime():
    x = RNG.standard_normal((3, 7)).astype(np.float32)
    check("DynamicQuantizeLinear", [x], opset=11, n_out=3, atol=1e-7)
    check("DynamicQuantizeLinear", [np.abs(x)], opset=11, n_out=3, atol=1e-7)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinearmatmul_matches_onnxruntime(dt):
    lo, hi = (0, 255) if dt == np.uint8 else (-128, 127)
    a = RNG.integers(lo, hi, (2, 3, 8)).astype(dt)
    b = RNG.integers(lo, hi, (8, 5)).astype(dt)
    s = lambda v: np.array(v, np.float32)  # noqa: E731
    zp = lambda v: np.array(v, dt)  # noqa: E731
    check("QLinearMatMul", [a, s(0.02), zp(3), b, s(0.03), zp(-2 if dt == np.int8 else 7), s(0.5), zp(5)])


def test_qlinearconv_per_channel_weights_matches_onnxruntime():
    x = RNG.integers(0, 255, (1, 3, 7, 7)).astype(np.uint8)
    w = RNG.integers(-50, 50, (4, 3, 3, 3)).astype(np.int8)
    b = RNG.integers(-500, 500, (4,)).astype(np.int32)
    ws = np.array([0.01, 0.02, 0.015, 0.03], np.float32)
    f = lambda v: np.array(v, np.float32)  # noqa: E731
    check("QLinearConv", [x, f(0.05), np.array(120, np.uint8), w, ws, np.zeros(4, np.int8), f(0.4),
                          np.array(100, np.uint8), b], {"pads": [1, 1, 1, 1], "strides": [2, 1]}, opset=10)


def test_scalar_inputs_give_0d_arrays():
    from graphc.ir import Node

    def ev(op, *xs, **attrs):
        node = Node(op, [], [None] * (3 if op == "DynamicQuantizeLinear" else 1), attrs)
        lookup("", op).complete_attrs(node)
        return lookup("", op).eval(node, *xs)

    one = np.array(1.0, np.float32)
    for got in (ev("QuantizeLinear", np.array(2.6, np.float32), one),
                ev("QuantizeLinear", np.array(2.6, np.float32), one, output_dtype=TP.FLOAT8E4M3FN),
                ev("DequantizeLinear", np.array(3, np.uint8), one),
                ev("DynamicQuantizeLinear", np.array(2.0, np.float32))[0]):
        assert isinstance(got, np.ndarray) and got.shape == ()
