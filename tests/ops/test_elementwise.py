"""Elementwise ops: symbolic inference, error messages, legacy upgrades, and values against onnxruntime/onnx."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.errors import OpAttributeError, ShapeError
from graphc.ir import DType, Node, TensorType
from graphc.ops import lookup
from graphc.ops.elementwise import _erf, cast_array
from oputil import T, infer_one, model, one_node_model

RNG = np.random.default_rng(0)


# ---- helpers ---------------------------------------------------------------------------------------
def run_graphc(model, inputs):
    return GraphcBackend.prepare(model).run(list(inputs))[0]


def f32(*shape, lo=-3.0, hi=3.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


# ---- inference -------------------------------------------------------------------------------------
def test_binary_broadcast_keeps_symbols():
    (t,) = infer_one("Add", [T(DType.float32, "N", 1, 4), T(DType.float32, 3, 1)])
    assert t == T(DType.float32, "N", 3, 4)


def test_comparison_gives_bool_with_broadcast_shape():
    (t,) = infer_one("LessOrEqual", [T(DType.int64, "B", "S"), T(DType.int64, "S")])
    assert t == T(DType.bool, "B", "S")


def test_variadic_sum_broadcasts_all_inputs():
    (t,) = infer_one("Sum", [T(DType.float32, "N", 1), T(DType.float32, 5), T(DType.float32, 1, 1)])
    assert t == T(DType.float32, "N", 5)


def test_where_takes_value_dtype_and_broadcasts_condition():
    (t,) = infer_one("Where", [T(DType.bool, "N", 1), T(DType.int32, 1, "M"), T(DType.int32)])
    assert t == T(DType.int32, "N", "M")


def test_pow_output_has_base_dtype():
    (t,) = infer_one("Pow", [T(DType.int64, "N"), T(DType.float32, 1)])
    assert t == T(DType.int64, "N")


def test_cast_castlike_bitcast_types():
    assert infer_one("Cast", [T(DType.float32, "N", 2)], {"to": TP.FLOAT8E4M3FN}) == [T(DType.float8e4m3fn, "N", 2)]
    assert infer_one("CastLike", [T(DType.float32, "N"), T(DType.int4, 7)]) == [T(DType.int4, "N")]
    assert infer_one("BitCast", [T(DType.float32, "N")], {"to": TP.INT32}) == [T(DType.int32, "N")]


def test_isnan_and_prelu_and_clip_shapes():
    assert infer_one("IsNaN", [T(DType.float16, "A", 2)]) == [T(DType.bool, "A", 2)]
    assert infer_one("PRelu", [T(DType.float32, "N", 3, 8, 8), T(DType.float32, 3, 1, 1)]) == \
        [T(DType.float32, "N", 3, 8, 8)]
    assert infer_one("Clip", [T(DType.int8, "N"), None, T(DType.int8)]) == [T(DType.int8, "N")]


def test_unknown_rank_and_dtype_do_not_crash():
    assert infer_one("Mul", [TensorType(None, None), T(DType.float32, 3)]) == [TensorType(DType.float32, None)]
    assert infer_one("Gelu", [TensorType(DType.float32, None)]) == [TensorType(DType.float32, None)]


# ---- errors ----------------------------------------------------------------------------------------
def test_incompatible_broadcast_names_dims():
    with pytest.raises(ShapeError, match=r"Sub node .*cannot broadcast shapes \[N,3\] and \[4\]"):
        infer_one("Sub", [T(DType.float32, "N", 3), T(DType.float32, 4)])


def test_mixed_dtypes_rejected():
    with pytest.raises(ShapeError, match="share one element type, got float32, int64"):
        infer_one("Add", [T(DType.float32, 3), T(DType.int64, 3)])


def test_wrong_element_type_rejected():
    with pytest.raises(ShapeError, match=r"And node .*input 0 \('x0'\) must be one of bool, got float32"):
        infer_one("And", [T(DType.float32, 3), T(DType.bool, 3)])
    with pytest.raises(ShapeError, match="Sin node .*must be one of .*got int32"):
        infer_one("Sin", [T(DType.int32, 3)])
    with pytest.raises(ShapeError, match="input 0 .* must be bool, got int32"):
        infer_one("Where", [T(DType.int32, 3), T(DType.float32, 3), T(DType.float32, 3)])


def test_bad_attributes_rejected():
    with pytest.raises(OpAttributeError, match="'to' is 99"):
        infer_one("Cast", [T(DType.float32, 3)], {"to": 99})
    with pytest.raises(OpAttributeError, match="'direction' must be 'LEFT' or 'RIGHT', got 'UP'"):
        infer_one("BitShift", [T(DType.uint8, 3), T(DType.uint8, 3)], {"direction": "UP"})
    with pytest.raises(OpAttributeError, match="'approximate' must be 'none' or 'tanh'"):
        infer_one("Gelu", [T(DType.float32, 3)], {"approximate": "erf"})
    with pytest.raises(OpAttributeError, match="round_mode"):
        infer_one("Cast", [T(DType.float32, 3)], {"to": TP.FLOAT8E8M0, "round_mode": "sideways"})


def test_bitcast_width_and_clip_bounds_checked():
    with pytest.raises(ShapeError, match=r"cannot reinterpret float32 \(32 bits\) as int64 \(64 bits\)"):
        infer_one("BitCast", [T(DType.float32, 3)], {"to": TP.INT64})
    with pytest.raises(ShapeError, match=r"input 1 \('min'\) must be a scalar, got shape \[3\]"):
        infer_one("Clip", [T(DType.float32, 3), T(DType.float32, 3)])
    with pytest.raises(ShapeError, match=r"slope of shape \[4\] must broadcast to the input's shape \[1\]"):
        infer_one("PRelu", [T(DType.float32, 1), T(DType.float32, 4)])


def test_importer_rejects_unknown_attribute():
    model = one_node_model("Relu", [f32(3)], {"alpha": 1.0}, opset=14)[0]
    with pytest.raises(OpAttributeError, match="unknown attribute 'alpha'"):
        GraphcBackend.prepare(model)


# ---- values against onnxruntime -----------------------------------------------------------------------
def _pos(*shape):
    return RNG.uniform(0.1, 3.0, shape).astype(np.float32)


def _ints(dtype, *shape, lo=-20, hi=20):
    return RNG.integers(lo, hi, shape).astype(dtype)


def _nonzero(dtype, *shape):
    x = RNG.integers(1, 9, shape) * RNG.choice([-1, 1], shape)
    return x.astype(dtype)


ORT_CASES = [
    # op, inputs, attributes, opset
    ("Abs", [_ints(np.int16, 3, 4)], {}, 13),
    ("Neg", [f32(3, 4)], {}, 13),
    ("Reciprocal", [_pos(3, 4)], {}, 13),
    ("Round", [np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.3, -2.7], np.float32)], {}, 22),
    ("Sign", [f32(3, 4)], {}, 13),
    ("Tan", [f32(3, 4, lo=-1, hi=1)], {}, 22),
    ("Acosh", [_pos(5) + 1], {}, 22),
    ("Atanh", [f32(5, lo=-0.9, hi=0.9)], {}, 22),
    ("Erf", [f32(4, 5)], {}, 13),
    ("IsInf", [np.array([np.inf, -np.inf, 1.0, np.nan], np.float32)], {"detect_negative": 0}, 20),
    ("BitwiseNot", [_ints(np.int32, 3, 4)], {}, 18),
    ("Add", [f32(2, 1, 4), f32(3, 1)], {}, 14),
    ("Div", [_ints(np.int32, 4, 5), _nonzero(np.int32, 5)], {}, 14),
    ("Div", [f32(3, 4).astype(np.float16), _pos(4).astype(np.float16)], {}, 14),
    ("Mod", [_ints(np.int64, 4, 5), _nonzero(np.int64, 4, 5)], {}, 13),
    ("Mod", [f32(4, 5), f32(4, 5)], {"fmod": 1}, 13),
    ("Pow", [_pos(3, 4), f32(4)], {}, 15),
    ("Pow", [_ints(np.int64, 5, lo=-4, hi=5), np.arange(5).astype(np.int64)], {}, 15),
    ("BitShift", [_ints(np.uint32, 6, lo=0, hi=1000), _ints(np.uint32, 6, lo=0, hi=8)], {"direction": "LEFT"}, 11),
    ("BitwiseXor", [_ints(np.int16, 3, 4), _ints(np.int16, 4)], {}, 18),
    ("Xor", [RNG.random((3, 4)) > 0.5, RNG.random(4) > 0.5], {}, 7),
    ("Greater", [_ints(np.uint8, 3, 4, lo=0), _ints(np.uint8, 1, 4, lo=0)], {}, 13),
    ("Mean", [f32(3, 4), f32(4), f32(1, 1)], {}, 13),
    ("Max", [_ints(np.int8, 3, 4), _ints(np.int8, 4)], {}, 13),
    ("Min", [f32(2, 3)], {}, 13),
    ("Where", [RNG.random((3, 1)) > 0.5, f32(1, 4), f32(3, 4)], {}, 16),
    ("Clip", [f32(3, 4), np.array(-0.5, np.float32), np.array(0.7, np.float32)], {}, 13),
    ("Clip", [_ints(np.int32, 10), np.array(5, np.int32), np.array(-5, np.int32)], {}, 13),
    ("LeakyRelu", [f32(3, 4)], {"alpha": 0.2}, 16),
    ("PRelu", [f32(2, 3, 4), f32(3, 1)], {}, 16),
    ("Elu", [f32(3, 4)], {"alpha": 0.7}, 22),
    ("Selu", [f32(3, 4)], {}, 22),
    ("Celu", [f32(3, 4)], {"alpha": 2.0}, 12),
    ("Gelu", [f32(3, 4)], {"approximate": "tanh"}, 20),
    ("Gelu", [f32(3, 4)], {}, 20),
    ("HardSigmoid", [f32(3, 4)], {"alpha": 0.3, "beta": 0.4}, 22),
    ("HardSwish", [f32(3, 4, lo=-5, hi=5)], {}, 22),
    ("Sigmoid", [np.array([-100.0, -20.0, 0.0, 20.0, 100.0], np.float32)], {}, 13),
    ("Softplus", [np.array([-100.0, -2.0, 0.0, 2.0, 100.0], np.float32)], {}, 22),
    ("Softsign", [f32(3, 4)], {}, 22),
    ("Mish", [f32(3, 4)], {}, 22),
    ("ThresholdedRelu", [f32(3, 4)], {"alpha": 0.5}, 22),
    ("Shrink", [f32(3, 4)], {"lambd": 1.0, "bias": 0.5}, 9),
    # in range: out-of-range float->int casts are undefined in ONNX; graphc saturates on every backend
    # (docs/cuda.md, tests/cuda/test_cuda_first_contact.py), onnxruntime wraps like a C cast
    ("Cast", [f32(3, 4) * 40], {"to": TP.INT8}, 21),
    ("Cast", [np.array(["1.5", "+INF", "-inf", "NaN", "1e-5"], dtype=object)], {"to": TP.FLOAT}, 21),
    ("Cast", [np.array(["17", "-9223372036854775807"], dtype=object)], {"to": TP.INT64}, 21),
    ("CastLike", [f32(3, 4), np.zeros(1, np.float16)], {}, 21),
]


@pytest.mark.parametrize("op,inputs,attrs,opset", ORT_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ORT_CASES)])
def test_matches_onnxruntime(op, inputs, attrs, opset):
    ort = pytest.importorskip("onnxruntime")
    model, feeds = one_node_model(op, inputs, attrs, opset=opset)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)[0]
    got = run_graphc(model, inputs)
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


# ---- values against onnx's reference (ops newer than onnxruntime's opsets) ---------------------------
REFERENCE_CASES = [
    ("Swish", [f32(3, 4)], {"alpha": 0.5}, 24),
    ("Erf", [f32(4, 5).astype(np.float64) * 2], {}, 13),
    ("Cast", [f32(3, 4) * 1000], {"to": TP.FLOAT8E4M3FN}, 21),
    ("Cast", [f32(3, 4) * 1e5], {"to": TP.FLOAT8E5M2, "saturate": 0}, 21),
    ("Cast", [np.array([np.inf, -np.inf, 500.0, -6e4, np.nan], np.float16)], {"to": TP.FLOAT8E4M3FNUZ}, 21),
    ("BitCast", [f32(3, 4)], {"to": TP.INT32}, 26),
    ("BitCast", [_ints(np.int8, 7)], {"to": TP.UINT8}, 26),
    ("BitShift", [_ints(np.int8, 8), np.array([1, 7, 8, 9, -1, 3, 0, 2], np.int8)], {"direction": "RIGHT"}, 28),
    ("Cast", [np.array([0.0, 0.124, 0.25, 1.1, 3.0, 1e30], np.float32)], {"to": TP.FLOAT8E8M0}, 25),
    ("Cast", [np.array([0.124, 0.25, 1.1, 3.0, 1e30], np.float32)],
     {"to": TP.FLOAT8E8M0, "round_mode": "down"}, 25),
    ("Cast", [np.arange(-9, 16).astype(np.float32)], {"to": TP.INT4}, 25),
    ("Cast", [np.array([0.3, -2.6, 5.0, 1e6, -0.0], np.float32)], {"to": TP.FLOAT4E2M1}, 25),
]


@pytest.mark.parametrize("op,inputs,attrs,opset", REFERENCE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(REFERENCE_CASES)])
def test_matches_reference_evaluator(op, inputs, attrs, opset):
    model, feeds = one_node_model(op, inputs, attrs, opset=opset)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = run_graphc(model, inputs)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-6, atol=0)


# ---- semantics spelled out --------------------------------------------------------------------------
def test_integer_division_truncates_and_mod_signs():
    a = np.array([7, -7, 7, -7], np.int32)
    b = np.array([2, 2, -2, -2], np.int32)
    assert run_graphc(model("Div", [a, b], {}, opset=14), [a, b]).tolist() == [3, -3, -3, 3]
    assert run_graphc(model("Mod", [a, b], {}, opset=13), [a, b]).tolist() == [1, 1, -1, -1]
    assert run_graphc(model("Mod", [a, b], {"fmod": 1}, opset=13), [a, b]).tolist() == [1, -1, 1, -1]


def test_bitshift_out_of_range_shifts_fill_with_sign():
    x = np.array([-8, 8, -8, 8, 1], np.int8)
    y = np.array([8, 8, -1, 100, 7], np.int8)
    right = run_graphc(model("BitShift", [x, y], {"direction": "RIGHT"}, opset=28), [x, y])
    left = run_graphc(model("BitShift", [x, y], {"direction": "LEFT"}, opset=28), [x, y])
    assert right.tolist() == [-1, 0, -1, 0, 0]
    assert left.tolist() == [0, 0, 0, 0, -128]


def test_pow_negative_integer_exponent_and_mixed_types():
    a = np.array([2, -1, 1, 3], np.int32)
    b = np.array([-1, -3, -2, 2], np.int32)
    got = run_graphc(model("Pow", [a, b], {}, opset=15), [a, b])
    assert got.dtype == np.int32 and got.tolist() == [0, -1, 1, 9]
    x, e = np.array([1.5, 2.0], np.float16), np.array([2, 3], np.int64)
    got = run_graphc(model("Pow", [x, e], {}, opset=15), [x, e])
    assert got.dtype == np.float16 and got.tolist() == [2.25, 8.0]


def test_clip_min_above_max_gives_max_and_missing_bounds():
    x = np.array([-3.0, 0.0, 3.0], np.float32)
    lo, hi = np.array(2.0, np.float32), np.array(1.0, np.float32)
    assert run_graphc(model("Clip", [x, lo, hi], {}, opset=13), [x, lo, hi]).tolist() == [1.0, 1.0, 1.0]
    node = oh.make_node("Clip", ["x0", "", "x1"], ["y"])
    graph = oh.make_graph([node], "t", [oh.make_tensor_value_info("x0", TP.FLOAT, [3]),
                                       oh.make_tensor_value_info("x1", TP.FLOAT, [])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, [3])])
    m = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    assert run_graphc(m, [x, np.array(0.5, np.float32)]).tolist() == [-3.0, 0.0, 0.5]


def test_cast_float8_saturation_table():
    x = np.array([np.inf, -np.inf, np.nan, 1e6, -1e6, 0.3], np.float32)
    sat = cast_array(x, DType.float8e4m3fn, saturate=True).astype(np.float32)
    assert sat[[0, 1, 3, 4]].tolist() == [448.0, -448.0, 448.0, -448.0] and np.isnan(sat[2])
    raw = cast_array(x, DType.float8e5m2, saturate=False).astype(np.float32)
    assert raw[[0, 1, 3, 4]].tolist() == [np.inf, -np.inf, np.inf, -np.inf]
    nosat_fn = cast_array(x, DType.float8e4m3fn, saturate=False).astype(np.float32)
    assert np.isnan(nosat_fn[[0, 1, 3, 4]]).all()


def test_cast_e8m0_round_modes_and_specials():
    x = np.array([1.0, 1.4, 1.5, 3.0, np.inf, np.nan], np.float32)
    as_f = lambda mode, sat=True: cast_array(x, DType.float8e8m0, sat, mode).astype(np.float32)  # noqa: E731
    assert as_f("up")[:4].tolist() == [1.0, 2.0, 2.0, 4.0]
    assert as_f("down")[:4].tolist() == [1.0, 1.0, 1.0, 2.0]
    assert as_f("nearest")[:4].tolist() == [1.0, 1.0, 2.0, 4.0]
    assert as_f("up")[4] == 2.0 ** 127 and np.isnan(as_f("up")[5])
    assert np.isnan(as_f("nearest", False)[4])
    np.testing.assert_array_equal(cast_array(x[:4], DType.float8e8m0).view(np.uint8),
                                  numpy_helper.to_float8e8m0(x[:4]).view(np.uint8))


def test_cast_numbers_to_strings_and_back():
    x = np.array([0.47892547, 1.0, np.nan, np.inf, -np.inf], np.float32)
    s = cast_array(x, DType.string)
    assert s.dtype == object and s.tolist() == ["0.47892547", "1.0", "NaN", "INF", "-INF"]
    back = cast_array(s, DType.float32)
    np.testing.assert_array_equal(back, x)
    assert cast_array(np.array([True, False]), DType.string).tolist() == ["1", "0"]
    assert cast_array(np.array(["true", "0", "2.5"], dtype=object), DType.bool).tolist() == [True, False, True]


def test_erf_accuracy_against_math():
    x = np.concatenate([np.linspace(-7, 7, 2001), [0.0, 2.999999, 3.0, 1e-300, np.inf, -np.inf]])
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(_erf(x), want, rtol=1e-14, atol=1e-300)
    assert np.isnan(_erf(np.array([np.nan])))[0]
    x32 = x.astype(np.float32)
    got32 = _erf(x32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, [math.erf(v) for v in x32.astype(np.float64)], rtol=4e-7, atol=1e-30)


def test_low_precision_inputs_keep_their_dtype():
    for dt in (np.float16, ml_dtypes.bfloat16):
        x = np.array([-1.0, 0.5, 2.0]).astype(dt)
        for op in ("Exp", "Sigmoid", "Gelu", "Abs", "Round", "Relu"):
            node = Node(op, [], [], {})
            lookup("", op).complete_attrs(node)
            y = lookup("", op).eval(node, x)
            assert y.dtype == np.dtype(dt), (op, dt)


# ---- upgrades from older opsets ---------------------------------------------------------------------
def test_opset5_legacy_broadcast_clip_and_consumed_inputs():
    a = f32(2, 3, 4, 5)
    b = f32(3)
    c = f32(3, 4)
    nodes = [oh.make_node("Add", ["A", "b"], ["y1"], broadcast=1, axis=1),
             oh.make_node("Mul", ["A", "c"], ["y2"], broadcast=1, axis=-3),
             oh.make_node("Sub", ["A", "d"], ["y3"], broadcast=1),
             oh.make_node("Clip", ["A"], ["y4"], min=-0.5, max=0.5),
             oh.make_node("Relu", ["A"], ["y5"], consumed_inputs=[0])]
    d = f32(4, 5)
    graph = oh.make_graph(nodes, "old", [oh.make_tensor_value_info("A", TP.FLOAT, [2, 3, 4, 5])],
                          [oh.make_tensor_value_info(f"y{i}", TP.FLOAT, None) for i in range(1, 6)],
                          initializer=[numpy_helper.from_array(v, n) for v, n in ((b, "b"), (c, "c"), (d, "d"))])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 5)])
    y1, y2, y3, y4, y5 = GraphcBackend.prepare(model).run([a])
    np.testing.assert_allclose(y1, a + b[:, None, None])
    np.testing.assert_allclose(y2, a * c[:, :, None])
    np.testing.assert_allclose(y3, a - d)
    np.testing.assert_allclose(y4, np.clip(a, -0.5, 0.5))
    np.testing.assert_allclose(y5, np.maximum(a, 0))


def test_opset6_legacy_broadcast_of_a_graph_input_inserts_unsqueeze():
    a, b = f32(2, 3, 4), f32(3)
    node = oh.make_node("Add", ["A", "B"], ["y"], broadcast=1, axis=1)
    graph = oh.make_graph([node], "old", [oh.make_tensor_value_info("A", TP.FLOAT, [2, 3, 4]),
                                          oh.make_tensor_value_info("B", TP.FLOAT, [3])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 6)])
    rep = GraphcBackend.prepare(model)
    assert rep.graph.outputs[0].type == T(DType.float32, 2, 3, 4)
    np.testing.assert_allclose(rep.run([a, b])[0], a + b[:, None])


def test_legacy_broadcast_without_ranks_is_reported():
    node = oh.make_node("Add", ["A", "B"], ["y"], broadcast=1, axis=1)
    graph = oh.make_graph([node], "old", [oh.make_tensor_value_info("A", TP.FLOAT, None),
                                          oh.make_tensor_value_info("B", TP.FLOAT, None)],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 6)])
    with pytest.raises(OpAttributeError, match="legacy broadcast with axis=1 .* needs the ranks"):
        GraphcBackend.prepare(model)


def test_legacy_broadcast_negative_axis_needs_no_rank_of_a():
    a, b = f32(2, 3, 4, 5), f32(3)
    node = oh.make_node("Mul", ["A", "b"], ["y"], broadcast=1, axis=-3)
    graph = oh.make_graph([node], "old", [oh.make_tensor_value_info("A", TP.FLOAT, None)],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                          initializer=[numpy_helper.from_array(b, "b")])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 6)])
    np.testing.assert_allclose(run_graphc(model, [a]), a * b[:, None, None])


def test_cast_opset5_names_type_with_a_string():
    import onnx
    from onnx import TensorProto, helper

    import graphc as gc

    node = helper.make_node("Cast", ["x"], ["y"], to="INT32")
    g = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 5)])
    (y,) = gc.run(m, [np.array([1.5, 2.7, -3.2], np.float32)])
    assert y.dtype == np.int32 and y.tolist() == [1, 2, -3]
    m.graph.node[0].ClearField("attribute")
    m.graph.node[0].attribute.append(helper.make_attribute("to", "NOSUCHTYPE"))
    with pytest.raises(gc.OpAttributeError, match="attribute 'to' names an unknown type 'NOSUCHTYPE'"):
        gc.import_onnx(m)
