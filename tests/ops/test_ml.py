"""ai.onnx.ml operators: values against onnxruntime (the runtime sklearn-converted models target),
inference with symbolic batch dims, and attribute errors."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.importer import import_model
from graphc.errors import ShapeError
from graphc.ir import DType, Graph, TensorType
from graphc.ops import lookup
from graphc.passes import infer_shapes
from graphc.runtime.numpy.executor import NumpyExecutable

RNG = np.random.default_rng(3)
X = RNG.normal(size=(7, 3)).astype(np.float32)


def ml_model(op, n_out, x, elem=TP.FLOAT, ml_opset=3, **attrs):
    outs = [f"y{i}" for i in range(n_out)]
    node = oh.make_node(op, ["x"], outs, domain="ai.onnx.ml", **attrs)
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", elem, list(x.shape))],
                      [onnx.ValueInfoProto(name=o) for o in outs])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("ai.onnx.ml", ml_opset)])


def check(op, n_out, x, elem=TP.FLOAT, ml_opset=3, **attrs):
    m = ml_model(op, n_out, x, elem, ml_opset, **attrs)
    g = import_model(m)
    ours = NumpyExecutable(g).run({"x": x})
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    for a, b, v in zip(ours, ref, g.outputs):
        assert a.shape == b.shape and a.dtype == b.dtype, (op, a.shape, b.shape, a.dtype, b.dtype)
        if a.dtype == object:
            assert a.tolist() == b.tolist()
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert v.type.shape is None or len(v.type.shape) == a.ndim
        assert all(not isinstance(d, int) or d == s for d, s in zip(v.type.shape or (), a.shape))
    return ours


TREE = dict(nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
            nodes_featureids=[0, 1, 0, 0, 0, 2, 0, 0], nodes_values=[0.0, 0.3, 0, 0, 0, -0.2, 0, 0],
            nodes_modes=["BRANCH_LEQ", "BRANCH_LT", "LEAF", "LEAF", "LEAF", "BRANCH_GT", "LEAF", "LEAF"],
            nodes_truenodeids=[1, 3, 0, 0, 0, 1, 0, 0], nodes_falsenodeids=[2, 4, 0, 0, 0, 2, 0, 0])
LEAVES = [(0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]


def votes(prefix, n_targets, positive=False):
    t, n, i, w = [], [], [], []
    for tree, node in LEAVES:
        for k in range(n_targets):
            t.append(tree), n.append(node), i.append(k)
            w.append(float(abs(RNG.normal()) / 3 if positive else RNG.normal()))
    return {f"{prefix}_treeids": t, f"{prefix}_nodeids": n, f"{prefix}_ids": i, f"{prefix}_weights": w}


@pytest.mark.parametrize("agg", ["SUM", "AVERAGE", "MIN", "MAX"])
def test_tree_ensemble_regressor(agg):
    check("TreeEnsembleRegressor", 1, X, n_targets=2, aggregate_function=agg, base_values=[1.0, 2.0],
          **TREE, **votes("target", 2))


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_tree_ensemble_classifier(post):
    labels, _ = check("TreeEnsembleClassifier", 2, X, classlabels_int64s=[3, 5, 9], post_transform=post,
                      **TREE, **votes("class", 3))
    assert set(labels.tolist()) <= {3, 5, 9}
    # binary models that vote one score (gradient boosting style), mixed and all-positive weights
    check("TreeEnsembleClassifier", 2, X, classlabels_strings=["no", "yes"], post_transform=post,
          **TREE, **votes("class", 1))
    check("TreeEnsembleClassifier", 2, X, classlabels_int64s=[0, 1], post_transform=post, base_values=[0.25],
          **TREE, **votes("class", 1, positive=True))


def test_tree_ensemble_missing_values_follow_the_tracked_branch():
    x = X.copy()
    x[::2, 0] = np.nan
    check("TreeEnsembleRegressor", 1, x, n_targets=1, nodes_missing_value_tracks_true=[1, 0, 0, 0, 0, 0, 0, 0],
          **TREE, **votes("target", 1))


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_linear_models(post):
    check("LinearClassifier", 2, X, coefficients=RNG.normal(size=9).tolist(), intercepts=[0.1, -0.2, 0.3],
          classlabels_ints=[4, 5, 6], post_transform=post)
    check("LinearClassifier", 2, X, coefficients=RNG.normal(size=3).tolist(), intercepts=[0.1],
          classlabels_strings=["a", "b"], post_transform=post)
    check("LinearRegressor", 1, X, coefficients=RNG.normal(size=6).tolist(), intercepts=[0.1, 0.2], targets=2,
          post_transform=post)


def test_preprocessing_ops():
    xn = X.copy()
    xn[1] = 0
    for norm in ("MAX", "L1", "L2"):
        check("Normalizer", 1, xn, norm=norm)
    check("Scaler", 1, X, offset=[0.1, 0.2, 0.3], scale=[2.0, 3.0, 4.0])
    check("Binarizer", 1, X, threshold=0.2)
    check("OneHotEncoder", 1, np.array([[1, 3], [2, 7]], np.int64), TP.INT64, cats_int64s=[1, 2, 3])
    check("OneHotEncoder", 1, np.array(["a", "c", "z"], object), TP.STRING, cats_strings=["a", "b", "c"])
    xi = X.copy()
    xi[0, 1] = xi[3, 2] = np.nan
    out, = check("Imputer", 1, xi, imputed_value_floats=[1.0, 2.0, 3.0], replaced_value_float=float("nan"))
    assert out[0, 1] == 2.0 and out[3, 2] == 3.0
    check("LabelEncoder", 1, np.array([1.0, np.nan, 3.0, 7.0], np.float32), ml_opset=4,
          keys_floats=[1.0, float("nan"), 3.0], values_strings=["a", "n", "c"], default_string="?")


def test_feature_vectorizer_and_array_feature_extractor():
    g = Graph("t")
    a = g.add_input("a", TensorType(DType.float32, ("N", 2)))
    b = g.add_input("b", TensorType(DType.int64, ("N", 3)))
    n = g.add_node("FeatureVectorizer", [a, b], {"inputdimensions": [2, 3]}, domain="ai.onnx.ml")
    idx = g.add_constant(np.array([4, 0], np.int64))
    n2 = g.add_node("ArrayFeatureExtractor", [n.outputs[0], idx], domain="ai.onnx.ml")
    g.outputs = [n2.outputs[0]]
    infer_shapes(g)
    assert n.outputs[0].type == TensorType(DType.float32, ("N", 5))
    assert n2.outputs[0].type == TensorType(DType.float32, ("N", 2))
    av, bv = RNG.random((4, 2), dtype=np.float32), RNG.integers(0, 9, (4, 3))
    out, = NumpyExecutable(g).run({"a": av, "b": bv})
    np.testing.assert_allclose(out, np.stack([bv[:, 2], av[:, 0]], axis=1).astype(np.float32))


def test_tree_ensemble_v5_infers_batch_and_targets():
    g = Graph("t")
    x = g.add_input("x", TensorType(DType.float64, ("N", 2)))
    n = g.add_node("TreeEnsemble", [x], dict(
        leaf_targetids=[0, 1, 0], leaf_weights=np.array([1.0, 2.0, 3.0]), n_targets=2, nodes_falseleafs=[1, 1],
        nodes_falsenodeids=[2, 1], nodes_featureids=[0, 1], nodes_modes=np.array([0, 3], np.uint8),
        nodes_splits=np.array([0.5, 0.1]), nodes_trueleafs=[0, 1], nodes_truenodeids=[1, 0], tree_roots=[0]),
        domain="ai.onnx.ml")
    lookup("ai.onnx.ml", "TreeEnsemble").complete_attrs(n)
    g.outputs = [n.outputs[0]]
    infer_shapes(g)
    assert n.outputs[0].type == TensorType(DType.float64, ("N", 2))
    xv = np.array([[0.2, 0.5], [0.2, 0.0], [0.9, 0.0]])
    out, = NumpyExecutable(g).run({"x": xv})
    np.testing.assert_allclose(out, [[1, 0], [0, 2], [3, 0]])


def test_label_encoder_needs_keys_and_values():
    g = Graph("t")
    x = g.add_input("x", TensorType(DType.string, ("N",)))
    n = g.add_node("LabelEncoder", [x], {"keys_strings": ["a"]}, domain="ai.onnx.ml")
    lookup("ai.onnx.ml", "LabelEncoder").complete_attrs(n)
    with pytest.raises(ShapeError, match="exactly one keys_\\* and one values_\\* attribute"):
        infer_shapes(g)


def test_normalizer_rejects_unknown_norm():
    m = ml_model("Normalizer", 1, X, norm="L3")
    with pytest.raises(ShapeError, match="norm must be MAX, L1 or L2, got 'L3'"):
        import_model(m)
