"""The reduce family: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax/Hardmax, CumSum/CumProd, TopK and the losses."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the operators)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.frontends.onnx.importer import import_model
from graphc.errors import ShapeError
from graphc.ir import DType, TensorType
from oputil import infer_one, one_node_model

F32, I64 = DType.float32, DType.int64
OPSET = onnx.defs.onnx_opset_version()
rng = np.random.default_rng(0)


# ---- helpers -----------------------------------------------------------------------------------------
def run_both(op: str, inputs: list, attrs: dict | None = None, n_out: int = 1, opset: int = OPSET, ort: bool = False,
             out_types: tuple = (), rtol=1e-5, atol=1e-6):
    """Run one node in graphc and in onnx's ReferenceEvaluator (or onnxruntime); compare every output.

    onnxruntime wants output element types: the input's, unless ``out_types`` gives them (ONNX codes).
    """
    model, feeds = one_node_model(op, inputs, attrs, n_out, opset)
    if ort:
        import onnxruntime

        for k, o in enumerate(model.graph.output):
            o.type.tensor_type.elem_type = out_types[k] if k < len(out_types) else \
                model.graph.input[0].type.tensor_type.elem_type
        want = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, feeds)
    else:
        want = ReferenceEvaluator(model).run(None, feeds)
    rep = GraphcBackend.prepare(model)
    got = rep.run(list(feeds.values()))
    for v, g_, w in zip(rep.graph.outputs, got, want):
        w = np.asarray(w)
        assert g_.shape == w.shape and g_.dtype == w.dtype, (g_.dtype, g_.shape, w.dtype, w.shape)
        assert v.type.dtype == DType.from_np(g_.dtype)  # inference agrees with what ran
        assert v.type.shape is None or (len(v.type.shape) == g_.ndim and all(
            d == n for d, n in zip(v.type.shape, g_.shape) if isinstance(d, int)))
        np.testing.assert_allclose(g_, w, rtol=rtol, atol=atol)
    return got


def axes(*a):
    return np.array(a, dtype=np.int64)


# ---- shape inference ---------------------------------------------------------------------------------
def test_reduce_infers_symbolic_dims_with_constant_axes():
    x = TensorType(F32, ("N", 3, "H", "W"))
    assert infer_one("ReduceMean", [x, None], {"keepdims": 1}, consts={1: axes(2, -1)})[0].shape == ("N", 3, 1, 1)
    assert infer_one("ReduceSum", [x, None], {"keepdims": 0}, consts={1: axes(1)})[0].shape == ("N", "H", "W")
    assert infer_one("ReduceMax", [x], {"keepdims": 0})[0] == TensorType(F32, ())  # no axes: all of them
    assert infer_one("ReduceL2", [x, None], {"noop_with_empty_axes": 1}, consts={1: axes()})[0].shape == x.shape


def test_reduce_with_runtime_axes_keeps_rank_when_keepdims():
    x = TensorType(F32, ("N", 1, 5))
    out = infer_one("ReduceSum", [x, TensorType(I64, (2,))], {"keepdims": 1})[0]
    assert len(out.shape) == 3 and out.shape[1] == 1 and all(isinstance(d, str) for d in (out.shape[0], out.shape[2]))
    out = infer_one("ReduceSum", [x, TensorType(I64, (2,))], {"keepdims": 0})[0]
    assert len(out.shape) == 1
    assert infer_one("ReduceSum", [x, TensorType(I64, ("k",))], {"keepdims": 0})[0].shape is None


def test_reduce_rejects_bad_axes():
    x = TensorType(F32, ("N", 3))
    with pytest.raises(ShapeError, match=r"ReduceSum node 'n'.*axes entry 2 is out of range.*rank 2"):
        infer_one("ReduceSum", [x, None], consts={1: axes(2)})
    with pytest.raises(ShapeError, match=r"name an axis twice"):
        infer_one("ReduceProd", [x, None], consts={1: axes(1, -1)})
    with pytest.raises(ShapeError, match=r"axes \(input 1\) must be int64, got int32"):
        infer_one("ReduceSum", [x, TensorType(DType.int32, (1,))])


def test_arg_topk_cumsum_softmax_infer():
    x = TensorType(F32, ("B", "T", 7))
    assert infer_one("ArgMax", [x], {"axis": 1, "keepdims": 0})[0] == TensorType(I64, ("B", 7))
    assert infer_one("ArgMin", [x], {"axis": -1})[0] == TensorType(I64, ("B", "T", 1))
    v, i = infer_one("TopK", [x, None], {"axis": -1}, n_out=2, consts={1: np.array([3], np.int64)})
    assert v == TensorType(F32, ("B", "T", 3)) and i == TensorType(I64, ("B", "T", 3))
    v, _ = infer_one("TopK", [x, TensorType(I64, (1,))], {"axis": 1}, n_out=2)
    assert v.shape[0] == "B" and v.shape[2] == 7 and isinstance(v.shape[1], str) and v.shape[1] != "T"
    assert infer_one("CumSum", [x, None], consts={1: np.array(1, np.int32)})[0] == x
    assert infer_one("Softmax", [x], {"axis": 1})[0] == x


def test_arg_topk_cumsum_softmax_errors():
    x = TensorType(F32, ("B", 5))
    with pytest.raises(ShapeError, match=r"ArgMax node 'n'.*axis 2 is out of range"):
        infer_one("ArgMax", [x], {"axis": 2})
    with pytest.raises(ShapeError, match=r"K = 6 is out of range for axis 1 of size 5"):
        infer_one("TopK", [x, None], n_out=2, consts={1: np.array([6], np.int64)})
    with pytest.raises(ShapeError, match=r"K \(input 1\) must be a 1-D tensor of one element, got shape \[2\]"):
        infer_one("TopK", [x, TensorType(I64, (2,))], n_out=2)
    with pytest.raises(ShapeError, match=r"axis \(input 1\) must be a scalar"):
        infer_one("CumSum", [x, TensorType(I64, (2,))])
    with pytest.raises(ShapeError, match=r"Softmax node 'n'.*floating-point.*int64"):
        infer_one("Softmax", [TensorType(I64, (2, 3))])


def test_loss_infer_and_shape_errors():
    x = TensorType(F32, ("N", 5, "D"))
    t = TensorType(I64, ("N", "D"))
    assert infer_one("NegativeLogLikelihoodLoss", [x, t], {"reduction": "none"})[0] == TensorType(F32, ("N", "D"))
    loss, logp = infer_one("SoftmaxCrossEntropyLoss", [x, t], n_out=2)
    assert loss == TensorType(F32, ()) and logp == x
    with pytest.raises(ShapeError, match=r"target \(input 1\) must have shape \[N,D\].*got \[N\]"):
        infer_one("NegativeLogLikelihoodLoss", [x, TensorType(I64, ("N",))])
    with pytest.raises(ShapeError, match=r"weight \(input 2\) must have shape \[5\], got \[4\]"):
        infer_one("SoftmaxCrossEntropyLoss", [x, t, TensorType(F32, (4,))], n_out=2)
    with pytest.raises(ShapeError, match=r"'reduction' must be 'none', 'sum' or 'mean', got 'max'"):
        infer_one("NegativeLogLikelihoodLoss", [x, t], {"reduction": "max"})


# ---- evaluation against the reference --------------------------------------------------------------
REDUCERS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


@pytest.mark.parametrize("op", REDUCERS)
def test_reduce_matches_reference(op):
    x = rng.uniform(0.5, 2.0, (3, 4, 5)).astype(np.float32)
    run_both(op, [x, axes(0, 2)], {"keepdims": 0})
    run_both(op, [x, axes(-2)], {"keepdims": 1})
    run_both(op, [x])  # all axes
    got = run_both(op, [x, axes()], {"noop_with_empty_axes": 1})[0]  # no axis: only the elementwise steps
    want = {"ReduceSumSquare": np.square(x), "ReduceLogSum": np.log(x)}.get(op, x)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("op,identity", [("ReduceSum", 0), ("ReduceProd", 1), ("ReduceMax", -np.inf),
                                         ("ReduceMin", np.inf), ("ReduceL1", 0), ("ReduceL2", 0),
                                         ("ReduceLogSum", -np.inf), ("ReduceLogSumExp", -np.inf),
                                         ("ReduceSumSquare", 0)])
def test_reduce_over_empty_set_gives_identity(op, identity):
    x = np.zeros((2, 0, 4), np.float32)
    model, feeds = one_node_model(op, [x, axes(1)], {"keepdims": 1}, 1, OPSET)
    got = GraphcBackend.prepare(model).run(list(feeds.values()))[0]
    assert got.shape == (2, 1, 4) and got.dtype == np.float32 and np.all(got == identity)


def test_reduce_integer_and_bool_types():
    xi = rng.integers(-50, 50, (4, 6)).astype(np.int32)
    for op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceMean"):
        assert run_both(op, [xi, axes(1)], {"keepdims": 0})[0].dtype == np.int32
    # the reference promotes ReduceSumSquare to int64; ONNX keeps the input's type (as onnxruntime does)
    got = run_both("ReduceSumSquare", [xi, axes(1)], opset=18, ort=True)[0]
    assert got.dtype == np.int32
    assert run_both("ReduceMean", [np.array([[-7, 2]], np.int64)])[0].item() == -2  # truncated toward zero
    xb = rng.random((4, 3)) > 0.5
    run_both("ReduceMax", [xb, axes(1)])
    run_both("ReduceMin", [xb, axes(0)])


def test_reduce_axes_attribute_from_old_opset_matches_onnxruntime():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    run_both("ReduceSum", [x], {"axes": [0, 2], "keepdims": 0}, opset=11, ort=True)
    run_both("ReduceLogSumExp", [x], {"axes": [1]}, opset=13, ort=True)
    g = import_model(one_node_model("ReduceMean", [x], {"axes": [-1]}, 1, 13)[0])
    node = g.nodes[0]
    assert "axes" not in node.attrs and node.inputs[1].data.tolist() == [-1]
    assert g.outputs[0].type.shape == (2, 3, 1)


def test_argmax_argmin_with_ties_and_last_index():
    x = np.array([[1, 3, 3, 0], [2, 2, 1, 1]], np.float32)
    for op in ("ArgMax", "ArgMin"):
        for last in (0, 1):
            got = run_both(op, [x], {"axis": 1, "keepdims": 0, "select_last_index": last})[0]
            assert got.dtype == np.int64
    assert run_both("ArgMax", [x], {"axis": 1, "select_last_index": 1})[0].ravel().tolist() == [2, 1]
    run_both("ArgMin", [rng.standard_normal((3, 4, 5)).astype(np.float32)], {"axis": -2})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
def test_softmax_family_matches_reference(op):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32) * 3
    for axis in (0, 1, -1):
        run_both(op, [x], {"axis": axis})
    big = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    got = run_both(op, [big], ort=True)[0]  # large numbers stay finite (the reference gives -inf for LogSoftmax)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
def test_softmax_family_before_opset_13_flattens_to_2d(op):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    run_both(op, [x], {}, opset=11, ort=True)  # default axis 1: over the last two axes together
    run_both(op, [x], {"axis": 0}, opset=11, ort=True)
    got = run_both(op, [x], {"axis": 1}, opset=11, ort=True)[0]
    if op == "Softmax":
        np.testing.assert_allclose(got.reshape(2, -1).sum(axis=1), 1, rtol=1e-5)
    g = import_model(one_node_model(op, [x], {"axis": 2}, 1, 11)[0])
    assert g.nodes[0].attrs.get("legacy_coerce_2d") is None  # the last axis: nothing to mark


@pytest.mark.parametrize("op", ["CumSum", "CumProd"])
def test_cumulative_matches_reference(op):
    x = rng.uniform(0.5, 1.5, (3, 4)).astype(np.float64)
    for ex in (0, 1):
        for rev in (0, 1):
            run_both(op, [x, np.array(1, np.int64)], {"exclusive": ex, "reverse": rev})
            run_both(op, [x, np.array(-2, np.int32)], {"exclusive": ex, "reverse": rev})
    xi = rng.integers(1, 4, (5,)).astype(np.int32)
    got = run_both(op, [xi, np.array(0, np.int32)], {"exclusive": 1})[0]
    assert got.dtype == np.int32 and got[0] == (0 if op == "CumSum" else 1)


def test_topk_ties_order_and_types():
    x = np.array([[3, 1, 3, 2], [5, 5, 5, 5]], np.int64)
    v, i = run_both("TopK", [x, np.array([3], np.int64)], {"axis": 1}, n_out=2)
    assert i.tolist() == [[0, 2, 3], [0, 1, 2]]  # equal values: lower index first
    v, i = run_both("TopK", [x, np.array([2], np.int64)], {"axis": 1, "largest": 0}, n_out=2)
    assert i.tolist() == [[1, 3], [0, 1]]
    xu = np.array([[0, 2**63 + 5, 7, 2**63 + 5]], np.uint64)
    v, i = run_both("TopK", [xu, np.array([2], np.int64)], {}, n_out=2)
    assert v.tolist() == [[2**63 + 5, 2**63 + 5]] and i.tolist() == [[1, 3]]
    xf = rng.standard_normal((4, 6, 3)).astype(np.float32)
    run_both("TopK", [xf, np.array([4], np.int64)], {"axis": 1}, n_out=2)


def test_topk_k_attribute_before_opset_10():
    x = rng.standard_normal((3, 5)).astype(np.float32)
    v, i = run_both("TopK", [x], {"k": 2}, n_out=2, opset=9, ort=True, out_types=(1, 7))
    assert v.shape == (3, 2)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_losses_match_reference(reduction):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    t = np.array([[0, 4], [1, -1], [2, 3]], np.int64)
    w = rng.uniform(0.2, 1.0, 5).astype(np.float32)
    for ii in (None, -1):
        attrs = {"reduction": reduction} | ({} if ii is None else {"ignore_index": ii})
        tt_ = t if ii is not None else np.abs(t)
        run_both("NegativeLogLikelihoodLoss", [x, tt_, w], attrs)
        # the reference averages over ignored entries too when ignore_index is -1 without weights
        run_both("NegativeLogLikelihoodLoss", [x, tt_], attrs, ort=ii == -1)
        run_both("SoftmaxCrossEntropyLoss", [x, tt_, w], attrs, n_out=2)
        run_both("SoftmaxCrossEntropyLoss", [x, tt_], attrs, n_out=1)


def test_nll_target_out_of_range_is_an_error():
    from graphc.errors import ExecutionError

    model, feeds = one_node_model("NegativeLogLikelihoodLoss",
                                  [np.zeros((2, 3), np.float32), np.array([0, 3], np.int64)], {}, 1, OPSET)
    with pytest.raises(ExecutionError, match=r"target value 3 is out of range for 3 classes"):
        GraphcBackend.prepare(model).run(list(feeds.values()))
