"""BatchNorm folding and recognition of Gelu, LayerNorm, Softmax and attention spelled out in primitives."""
from __future__ import annotations

import math

import numpy as np
import pytest

from graphc.ir import Graph
from graphc.passes.bnfold import fold_batchnorm
from graphc.passes.patterns import recognize_patterns
from passes_util import check_pass, f32, finish, ops

RNG = np.random.default_rng(0)


def _c(g, *shape, lo=-1.0, hi=1.0, name="c"):
    return g.add_constant(RNG.uniform(lo, hi, shape).astype(np.float32), name)


def _bn(g, x, c, **attrs):
    params = [_c(g, c, lo=0.5, hi=1.5), _c(g, c), _c(g, c), _c(g, c, lo=0.5, hi=1.5)]
    return g.add_node("BatchNormalization", [x] + params, attrs, name="bn").outputs[0]


@pytest.mark.parametrize("bias", [False, True])
def test_batchnorm_folds_into_conv(bias):
    g = Graph()
    x = g.add_input("x", f32(2, 3, 6, 6))
    ins = [x, _c(g, 4, 3, 3, 3)] + ([_c(g, 4)] if bias else [])
    y = g.add_node("Conv", ins, {"pads": [1, 1, 1, 1]}, name="conv").outputs[0]
    z = g.add_node("Relu", [_bn(g, y, 4)], name="relu").outputs[0]
    finish(g, z)
    assert check_pass(g, fold_batchnorm)
    assert ops(g) == ["Conv", "Relu"]


def test_batchnorm_not_folded_when_the_conv_output_is_read_elsewhere_becomes_a_fusable_affine():
    """The conv keeps its weights (its output is read elsewhere); the BN becomes x * a + shift per channel."""
    g = Graph()
    x = g.add_input("x", f32(1, 3, 4, 4))
    w = _c(g, 4, 3, 1, 1)
    y = g.add_node("Conv", [x, w], name="conv").outputs[0]
    z = _bn(g, y, 4)
    finish(g, z, y)
    assert check_pass(g, fold_batchnorm)  # (check_pass compares the outputs with the graph before the pass)
    assert ops(g) == ["Conv", "Mul", "Add"]
    assert g.nodes[0].inputs[1] is w


def test_batchnorm_followed_by_a_constant_mul_folds_that_first():
    g = Graph()
    x = g.add_input("x", f32(2, 4, 3, 3))
    z = g.add_node("Mul", [_bn(g, x, 4), _c(g, 4, 1, 1)], name="mul").outputs[0]
    finish(g, z)
    assert check_pass(g, fold_batchnorm)
    assert ops(g) == ["Mul", "Add"]  # the Mul folded into the BN, which then became the affine


def test_a_half_precision_batchnorm_stays():
    from graphc.ir import DType, TensorType

    g = Graph()
    x = g.add_input("x", TensorType(DType.float16, (1, 4, 2, 2)))
    params = [g.add_constant(np.ones(4, np.float16), f"p{i}") for i in range(4)]
    z = g.add_node("BatchNormalization", [x] + params, name="bn").outputs[0]
    finish(g, z)
    assert not fold_batchnorm(g)
    assert ops(g) == ["BatchNormalization"]


def test_batchnorm_with_parameters_fed_at_run_time_stays():
    g = Graph()
    x = g.add_input("x", f32(1, 3, 4, 4))
    scale = g.add_input("scale", f32(4))
    y = g.add_node("Conv", [x, _c(g, 4, 3, 1, 1)], name="conv").outputs[0]
    z = g.add_node("BatchNormalization", [y, scale, _c(g, 4), _c(g, 4), _c(g, 4, lo=0.5)], name="bn").outputs[0]
    finish(g, z)
    assert not fold_batchnorm(g)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_batchnorm_folds_into_gemm_and_matmul(trans_b):
    g = Graph()
    x = g.add_input("x", f32(3, 5))
    b = _c(g, *((4, 5) if trans_b else (5, 4)))
    y = g.add_node("Gemm", [x, b, _c(g, 4)], {"transB": trans_b, "alpha": 0.5, "beta": 2.0}, name="gemm").outputs[0]
    z = _bn(g, y, 4)
    w = g.add_node("MatMul", [z, _c(g, 4, 6)], name="mm").outputs[0]
    out = g.add_node("BatchNormalization", [w, _c(g, 6, lo=0.5), _c(g, 6), _c(g, 6), _c(g, 6, lo=0.5)],
                     name="bn2").outputs[0]
    finish(g, out)
    assert check_pass(g, fold_batchnorm)
    assert ops(g) == ["Gemm", "MatMul", "Add"]


def test_per_channel_mul_and_add_fold_into_batchnorm_and_conv():
    g = Graph()
    x = g.add_input("x", f32(2, 4, 3, 3))
    a = g.add_node("Mul", [_bn(g, x, 4), _c(g, 4, 1, 1)], name="mul").outputs[0]
    b = g.add_node("Add", [a, _c(g, 1, 4, 1, 1)], name="add").outputs[0]
    y = g.add_node("Conv", [b, _c(g, 5, 4, 1, 1)], name="conv").outputs[0]
    z = g.add_node("Mul", [y, _c(g, 5, 1, 1)], name="mul2").outputs[0]
    finish(g, z)
    assert check_pass(g, fold_batchnorm)
    assert ops(g) == ["Mul", "Add", "Conv"]  # Mul and Add folded into the BN, the BN then became one affine


def test_mul_that_varies_along_a_spatial_axis_stays():
    g = Graph()
    x = g.add_input("x", f32(2, 4, 3, 3))
    a = g.add_node("Mul", [_bn(g, x, 4), _c(g, 1, 1, 3)], name="mul").outputs[0]
    finish(g, a)
    assert not check_pass(g, fold_batchnorm)


# ---- pattern recognition ------------------------------------------------------------------------------
def _erf_gelu(g, x, variant):
    k = g.add_constant(np.float32(math.sqrt(2.0)))
    half, one = g.add_constant(np.float32(0.5)), g.add_constant(np.float32(1.0))
    if variant == 0:  # PyTorch: x * 0.5 * (1 + erf(x / sqrt2))
        e = g.add_node("Erf", [g.add_node("Div", [x, k]).outputs[0]]).outputs[0]
        return g.add_node("Mul", [g.add_node("Mul", [x, half]).outputs[0],
                                  g.add_node("Add", [one, e]).outputs[0]]).outputs[0]
    # HF BERT: ((erf(x * 0.7071) + 1) * x) * 0.5
    e = g.add_node("Erf", [g.add_node("Mul", [x, g.add_constant(np.float32(1 / math.sqrt(2)))]).outputs[0]]).outputs[0]
    t = g.add_node("Mul", [g.add_node("Add", [e, one]).outputs[0], x]).outputs[0]
    return g.add_node("Mul", [t, half]).outputs[0]


@pytest.mark.parametrize("variant", [0, 1])
def test_erf_gelu_is_recognized(variant):
    g = Graph()
    x = g.add_input("x", f32(2, 8))
    finish(g, g.add_node("Relu", [_erf_gelu(g, x, variant)]).outputs[0])
    assert check_pass(g, recognize_patterns)
    assert ops(g) == ["Gelu", "Relu"] and g.nodes[0].attrs["approximate"] == "none"


def test_tanh_gelu_is_recognized():
    g = Graph()
    x = g.add_input("x", f32(2, 8))
    cube = g.add_node("Pow", [x, g.add_constant(np.float32(3))]).outputs[0]
    term = g.add_node("Mul", [g.add_constant(np.float32(0.044715)), cube]).outputs[0]
    inner = g.add_node("Add", [x, term]).outputs[0]
    t = g.add_node("Tanh", [g.add_node("Mul", [inner, g.add_constant(np.float32(math.sqrt(2 / math.pi)))]).outputs[0]])
    s = g.add_node("Add", [t.outputs[0], g.add_constant(np.float32(1))]).outputs[0]
    y = g.add_node("Mul", [g.add_node("Mul", [g.add_constant(np.float32(0.5)), x]).outputs[0], s]).outputs[0]
    finish(g, y)
    assert check_pass(g, recognize_patterns)
    assert ops(g) == ["Gelu"] and g.nodes[0].attrs["approximate"] == "tanh"


def test_gelu_lookalike_with_a_wrong_constant_stays():
    g = Graph()
    x = g.add_input("x", f32(2, 8))
    y = _erf_gelu(g, x, 0)
    g.constants[list(g.constants)[1]].data = np.float32(0.6)  # 0.6 * x * (...) is not Gelu
    finish(g, y)
    assert not check_pass(g, recognize_patterns)


@pytest.mark.parametrize("square, reciprocal", [("Pow", False), ("Mul", False), ("Pow", True)])
def test_layernorm_with_affine_is_recognized(square, reciprocal):
    g = Graph()
    x = g.add_input("x", f32("N", 5, 8))
    axes = g.add_constant(np.array([-1], np.int64))
    mean = g.add_node("ReduceMean", [x, axes]).outputs[0]
    d = g.add_node("Sub", [x, mean]).outputs[0]
    sq = g.add_node("Pow", [d, g.add_constant(np.float32(2))]) if square == "Pow" else g.add_node("Mul", [d, d])
    var = g.add_node("ReduceMean", [sq.outputs[0], axes]).outputs[0]
    std = g.add_node("Sqrt", [g.add_node("Add", [var, g.add_constant(np.float32(1e-5))]).outputs[0]]).outputs[0]
    if reciprocal:
        y = g.add_node("Mul", [d, g.add_node("Reciprocal", [std]).outputs[0]]).outputs[0]
    else:
        y = g.add_node("Div", [d, std]).outputs[0]
    y = g.add_node("Mul", [y, _c(g, 8)]).outputs[0]
    y = g.add_node("Add", [_c(g, 8), y]).outputs[0]
    finish(g, y)
    assert check_pass(g, recognize_patterns)
    assert ops(g) == ["LayerNormalization"] and g.nodes[0].attrs["axis"] == 2


@pytest.mark.parametrize("stable", [True, False])
def test_softmax_is_recognized(stable):
    g = Graph()
    x = g.add_input("x", f32(3, 7))
    axes = g.add_constant(np.array([1], np.int64))
    z = g.add_node("Sub", [x, g.add_node("ReduceMax", [x, axes]).outputs[0]]).outputs[0] if stable else x
    e = g.add_node("Exp", [z]).outputs[0]
    y = g.add_node("Div", [e, g.add_node("ReduceSum", [e, axes]).outputs[0]]).outputs[0]
    finish(g, y)
    assert check_pass(g, recognize_patterns)
    assert ops(g) == ["Softmax"] and g.nodes[0].attrs["axis"] == 1


def test_softmax_over_two_axes_stays():
    g = Graph()
    x = g.add_input("x", f32(3, 7))
    e = g.add_node("Exp", [x]).outputs[0]
    y = g.add_node("Div", [e, g.add_node("ReduceSum", [e, g.add_constant(np.array([0, 1], np.int64))]).outputs[0]])
    finish(g, y.outputs[0])
    assert not check_pass(g, recognize_patterns)


@pytest.mark.parametrize("rank, mask, transposed", [(4, False, True), (4, True, True), (3, True, False),
                                                    (3, False, True)])
def test_attention_is_recognized(rank, mask, transposed):
    g = Graph()
    lead = (2, 3) if rank == 4 else (2,)
    q = g.add_input("q", f32(*lead, 5, 8))
    k = g.add_input("k", f32(*lead, 6, 8) if transposed else f32(*lead, 8, 6))
    v = g.add_input("v", f32(*lead, 6, 4))
    swap = list(range(rank - 2)) + [rank - 1, rank - 2]
    kt = g.add_node("Transpose", [k], {"perm": swap}).outputs[0] if transposed else k
    s = g.add_node("MatMul", [q, kt]).outputs[0]
    s = g.add_node("Div", [s, g.add_constant(np.float32(math.sqrt(8)))]).outputs[0]
    if mask:
        m = g.add_input("m", f32(*lead[:1], *((1,) if rank == 4 else ()), 5, 6))
        s = g.add_node("Add", [s, m]).outputs[0]
    p = g.add_node("Softmax", [s], {"axis": -1}).outputs[0]
    y = g.add_node("MatMul", [p, v]).outputs[0]
    finish(g, y)
    assert check_pass(g, recognize_patterns)
    assert "Attention" in ops(g) and "Softmax" not in ops(g)


def test_attention_lookalike_with_softmax_over_queries_stays():
    g = Graph()
    q, k, v = (g.add_input(n, f32(2, 5, 8)) for n in "qkv")
    kt = g.add_node("Transpose", [k], {"perm": [0, 2, 1]}).outputs[0]
    p = g.add_node("Softmax", [g.add_node("MatMul", [q, kt]).outputs[0]], {"axis": 1}).outputs[0]
    finish(g, g.add_node("MatMul", [p, v]).outputs[0])
    assert not check_pass(g, recognize_patterns)
