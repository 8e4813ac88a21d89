"""linalg ops (MatMul, Gemm, Einsum, Det, MatMulInteger): symbolic inference, errors, values vs onnxruntime."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.errors import ShapeError
from graphc.ir import DType
from graphc.ops import lookup
from graphc.ops.linalg import parse_einsum
from oputil import T, infer_one, model

RNG = np.random.default_rng(0)

def run_both(op, inputs, attrs=None, opset=21):
    m = model(op, inputs, attrs, opset=opset)
    present = [x for x in inputs if x is not None]
    got = GraphcBackend.prepare(m).run(present)[0]
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), present)})[0]
    return got, want


# ---- inference -------------------------------------------------------------------------------------
def test_matmul_infers_symbolic_batch_and_1d_operands():
    f = DType.float32
    assert infer_one("MatMul", [T(f, "N", 3, 4), T(f, 4, 5)]) == [T(f, "N", 3, 5)]
    assert infer_one("MatMul", [T(f, 4), T(f, "B", 4, 5)]) == [T(f, "B", 5)]
    assert infer_one("MatMul", [T(f, "N", 3, "K"), T(f, "K")]) == [T(f, "N", 3)]
    assert infer_one("MatMul", [T(f, 4), T(f, 4)]) == [T(f)]
    assert infer_one("MatMul", [T(f, 2, 1, "M", 4), T(f, 7, 4, 6)]) == [T(f, 2, 7, "M", 6)]


def test_matmul_rejects_mismatched_inner_dims_and_dtypes():
    f = DType.float32
    with pytest.raises(ShapeError, match="inner dims differ.*3 columns.*4 rows"):
        infer_one("MatMul", [T(f, 2, 3), T(f, 4, 5)])
    with pytest.raises(ShapeError, match="cannot broadcast"):
        infer_one("MatMul", [T(f, 2, 3, 4), T(f, 5, 4, 6)])
    with pytest.raises(ShapeError, match="share one element type"):
        infer_one("MatMul", [T(f, 3, 4), T(DType.float16, 4, 5)])


def test_gemm_infers_transposes_and_checks_c():
    f = DType.float32
    assert infer_one("Gemm", [T(f, "K", "M"), T(f, "N", "K")], {"transA": 1, "transB": 1}) == [T(f, "M", "N")]
    assert infer_one("Gemm", [T(f, "M", 8), T(f, 8, 16), T(f, 16)]) == [T(f, "M", 16)]
    with pytest.raises(ShapeError, match=r"C of shape \[3\] does not broadcast"):
        infer_one("Gemm", [T(f, 2, 8), T(f, 8, 16), T(f, 3)])
    with pytest.raises(ShapeError, match="must be a matrix"):
        infer_one("Gemm", [T(f, 2, 2, 8), T(f, 8, 16)])
    with pytest.raises(ShapeError, match=r"transA=1.*8 columns.*transB=0.*9 rows"):
        infer_one("Gemm", [T(f, 8, 2), T(f, 9, 16)], {"transA": 1})


def test_einsum_infers_explicit_implicit_and_ellipsis():
    f = DType.float32
    assert infer_one("Einsum", [T(f, "B", "I", "J"), T(f, "B", "J", 5)],
                     {"equation": "bij,bjk->bik"}) == [T(f, "B", "I", 5)]
    assert infer_one("Einsum", [T(f, 3, 4), T(f, 4, 6)], {"equation": "ij,jk"}) == [T(f, 3, 6)]
    assert infer_one("Einsum", [T(f, "N", 2, 3, 4)], {"equation": "...ij->...ji"}) == [T(f, "N", 2, 4, 3)]
    assert infer_one("Einsum", [T(f, 3, 3)], {"equation": "ii"}) == [T(f)]
    with pytest.raises(ShapeError, match="label 'j'.*different sizes: 4, 5"):
        infer_one("Einsum", [T(f, 3, 4), T(f, 5, 6)], {"equation": "ij,jk->ik"})
    with pytest.raises(ShapeError, match="names 2 dims but its input has rank 3"):
        infer_one("Einsum", [T(f, 3, 4, 5)], {"equation": "ij->ji"})


def test_parse_einsum_aligns_ellipsis_dims_from_the_right():
    ins, out = parse_einsum("...ij,...jk", [4, 2])
    assert ins == [["0", "1", "i", "j"], ["j", "k"]]
    assert out == ["0", "1", "i", "k"]


def test_det_and_matmulinteger_inference():
    f = DType.float32
    assert infer_one("Det", [T(f, "B", 3, 3)]) == [T(f, "B")]
    with pytest.raises(ShapeError, match="must be square"):
        infer_one("Det", [T(f, 3, 4)])
    u8 = DType.uint8
    assert infer_one("MatMulInteger", [T(u8, "M", 4), T(u8, 4, 3)]) == [T(DType.int32, "M", 3)]
    with pytest.raises(ShapeError, match="A must be int8 or uint8, got float32"):
        infer_one("MatMulInteger", [T(f, 2, 4), T(u8, 4, 3)])


# ---- values ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
                                   ((4,), (4,))])
def test_matmul_matches_onnxruntime(sa, sb):
    a = RNG.standard_normal(sa).astype(np.float32)
    b = RNG.standard_normal(sb).astype(np.float32)
    got, want = run_both("MatMul", [a, b])
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_matmul_half_precision_keeps_dtype():
    a = RNG.standard_normal((8, 16)).astype(np.float16)
    b = RNG.standard_normal((16, 4)).astype(np.float16)
    got = GraphcBackend.prepare(model("MatMul", [a, b], opset=21)).run([a, b])[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), a.astype(np.float32) @ b.astype(np.float32), rtol=2e-3,
                               atol=2e-2)
    bf = a.astype(ml_dtypes.bfloat16)
    got = lookup("", "MatMul").eval(None, bf, b.astype(ml_dtypes.bfloat16))
    assert got.dtype == ml_dtypes.bfloat16


@pytest.mark.parametrize("attrs,c_shape", [({}, None), ({"alpha": 0.5, "beta": 2.0}, (5,)),
                                           ({"transA": 1, "transB": 1, "alpha": -1.5}, (3, 1)),
                                           ({"beta": 0.25}, ()), ({"transB": 1}, (3, 5))])
def test_gemm_matches_onnxruntime(attrs, c_shape):
    a = RNG.standard_normal((4, 3) if attrs.get("transA") else (3, 4)).astype(np.float32)
    b = RNG.standard_normal((5, 4) if attrs.get("transB") else (4, 5)).astype(np.float32)
    c = RNG.standard_normal(c_shape).astype(np.float32) if c_shape is not None else None
    got, want = run_both("Gemm", [a, b, c], attrs)
    assert got.shape == (3, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gemm_opset6_broadcast_attribute_is_upgraded_away():
    a = RNG.standard_normal((3, 4)).astype(np.float32)
    b = RNG.standard_normal((4, 5)).astype(np.float32)
    c = RNG.standard_normal((5,)).astype(np.float32)
    rep = GraphcBackend.prepare(model("Gemm", [a, b, c], {"broadcast": 1, "alpha": 2.0}, opset=6))
    assert "broadcast" not in rep.graph.nodes[0].attrs
    np.testing.assert_allclose(rep.run([a, b, c])[0], 2.0 * a @ b + c, rtol=1e-5, atol=1e-5)


def test_gemm_int32_keeps_dtype():
    a = RNG.integers(-5, 5, (3, 4)).astype(np.int32)
    b = RNG.integers(-5, 5, (4, 2)).astype(np.int32)
    got = GraphcBackend.prepare(model("Gemm", [a, b], {}, opset=13)).run([a, b])[0]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a @ b)


@pytest.mark.parametrize("eq,shapes", [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
                                       ("...ij->...ji", [(2, 3, 4)]), ("ij,jk,kl", [(2, 3), (3, 4), (4, 2)]),
                                       ("i,i", [(5,), (5,)])])
def test_einsum_matches_onnxruntime(eq, shapes):
    xs = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    got, want = run_both("Einsum", xs, {"equation": eq}, opset=12)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_det_matches_onnxruntime():
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    got, want = run_both("Det", [x])
    assert got.shape == (2, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_matmulinteger_matches_onnxruntime_and_per_row_zero_points():
    a = RNG.integers(0, 255, (3, 8)).astype(np.uint8)
    b = RNG.integers(0, 255, (8, 4)).astype(np.uint8)
    azp = np.array(12, np.uint8)
    bzp = RNG.integers(0, 255, (4,)).astype(np.uint8)  # per column of B
    got, want = run_both("MatMulInteger", [a, b, azp, bzp], opset=10)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    row_zp = np.array([1, 2, 3], np.uint8)  # per row of A
    got = lookup("", "MatMulInteger").eval(None, a, b, row_zp, None)
    np.testing.assert_array_equal(got, (a.astype(np.int32) - row_zp[:, None]) @ b.astype(np.int32))


def test_vector_dot_products_return_arrays_not_numpy_scalars():
    v = np.arange(3, dtype=np.float32)
    for op, args in (("MatMul", (v, v)), ("MatMul", (v.astype(np.float16), v.astype(np.float16))),
                     ("MatMulInteger", (v.astype(np.uint8), v.astype(np.uint8)))):
        got = lookup("", op).eval(None, *args)
        assert isinstance(got, np.ndarray) and got.shape == () and got == 5
