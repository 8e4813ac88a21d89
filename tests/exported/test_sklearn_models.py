"""scikit-learn pipelines converted by skl2onnx at test time, against onnxruntime at several batch sizes;
``graphc check`` passes on each, and inference carries the batch symbol to every output.

The models are fitted on small seeded data sets (well under a second each). skl2onnx leaves the batch dim
unnamed, so the input's dim is named ``batch`` here; the outputs' dims are left for graphc to infer.
Probability outputs are plain tensors (``zipmap: False``) here; the default ZipMap output (a sequence of
maps) is run in tests/ops/test_ml_maps.py.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC

from graphc.frontends.onnx import import_model
from graphc.cli import main as graphc_main
from graphc.runtime import get_backend

RNG = np.random.default_rng(7)
N_FEATURES = 5
X_TRAIN = RNG.normal(size=(160, N_FEATURES)).astype(np.float32)
Y3 = (X_TRAIN[:, 0] > 0.3).astype(int) + (X_TRAIN[:, 1] + X_TRAIN[:, 2] > 0).astype(int)  # 3 classes
Y2 = (X_TRAIN[:, 0] - X_TRAIN[:, 3] > 0).astype(int)
YR = X_TRAIN @ np.array([1.5, -2.0, 0.5, 0.0, 1.0], np.float32) + np.sin(3 * X_TRAIN[:, 4])
# mixed features: three numeric columns, then two categorical ones coded 0..3
X_MIXED = np.hstack([X_TRAIN[:, :3], RNG.integers(0, 4, size=(160, 2)).astype(np.float32)])
COLORS = np.array(["red", "green", "blue", "cyan"], dtype=object)
X_STR = np.stack([COLORS[RNG.integers(0, 4, 160)], COLORS[RNG.integers(0, 3, 160)]], axis=1)


def _fit(est, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the small fits
        return est.fit(x, y)


#: name -> (fit the estimator, training inputs, ops the converted model must contain)
MODELS = {
    "scaler_logreg": (lambda: _fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), X_TRAIN, Y3),
                      X_TRAIN, {"Scaler", "LinearClassifier", "Normalizer"}),
    "random_forest_classifier": (lambda: _fit(RandomForestClassifier(12, max_depth=6, random_state=0), X_TRAIN, Y3),
                                 X_TRAIN, {"TreeEnsembleClassifier"}),
    "gradient_boosting_classifier": (lambda: _fit(GradientBoostingClassifier(n_estimators=15, random_state=0),
                                                  X_TRAIN, Y2), X_TRAIN, {"TreeEnsembleClassifier"}),
    "gradient_boosting_classifier_3": (lambda: _fit(GradientBoostingClassifier(n_estimators=10, random_state=0),
                                                    X_TRAIN, Y3), X_TRAIN, {"TreeEnsembleClassifier"}),
    "random_forest_regressor": (lambda: _fit(RandomForestRegressor(12, max_depth=6, random_state=0), X_TRAIN, YR),
                                X_TRAIN, {"TreeEnsembleRegressor"}),
    "gradient_boosting_regressor": (lambda: _fit(GradientBoostingRegressor(n_estimators=20, random_state=0),
                                                 X_TRAIN, YR), X_TRAIN, {"TreeEnsembleRegressor"}),
    "column_transformer_onehot": (
        lambda: _fit(make_pipeline(ColumnTransformer([("num", StandardScaler(), [0, 1, 2]),
                                                      ("cat", OneHotEncoder(handle_unknown="ignore"), [3, 4])]),
                                   LogisticRegression(max_iter=500)), X_MIXED, Y3),
        X_MIXED, {"ArrayFeatureExtractor", "OneHotEncoder", "Scaler", "Concat", "LinearClassifier"}),
    "onehot_strings_logreg": (lambda: _fit(make_pipeline(OneHotEncoder(handle_unknown="ignore"),
                                                         LogisticRegression(max_iter=500)), X_STR, Y2),
                              X_STR, {"OneHotEncoder", "LinearClassifier"}),
    "svc_rbf_proba": (lambda: _fit(SVC(probability=True, random_state=0), X_TRAIN, Y3), X_TRAIN, {"SVMClassifier"}),
    "svc_poly_binary": (lambda: _fit(SVC(kernel="poly", degree=3, random_state=0), X_TRAIN, Y2), X_TRAIN,
                        {"SVMClassifier"}),
    "linear_svc": (lambda: _fit(LinearSVC(random_state=0), X_TRAIN, Y3), X_TRAIN, {"LinearClassifier"}),
    "svr_rbf": (lambda: _fit(SVR(C=3.0), X_TRAIN, YR), X_TRAIN, {"SVMRegressor"}),
    "pca_mlp": (lambda: _fit(make_pipeline(PCA(4, random_state=0), MLPClassifier((16,), max_iter=400,
                                                                                random_state=0)), X_TRAIN, Y3),
                X_TRAIN, {"MatMul", "Relu", "Softmax", "ArgMax", "ArrayFeatureExtractor"}),
    "knn_regressor": (lambda: _fit(KNeighborsRegressor(4), X_TRAIN, YR), X_TRAIN, {"Scan", "TopK", "ReduceMean"}),
}
BATCHES = (1, 3, 17)


@functools.lru_cache(maxsize=None)
def _converted(name: str):
    fit, x_train, _ = MODELS[name]
    est = fit()
    elem = StringTensorType if x_train.dtype == object else FloatTensorType
    # LinearSVC gives no probabilities, so its converter has no ZipMap to turn off
    options = {id(est): {"zipmap": False}} if is_classifier(est) and not isinstance(est, LinearSVC) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC's probA_/probB_, deprecated in scikit-learn 1.9
        model = convert_sklearn(est, initial_types=[("X", elem([None, x_train.shape[1]]))], options=options,
                                target_opset={"": 18, "ai.onnx.ml": 3})
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def _rows(name: str, n: int, seed: int) -> np.ndarray:
    """n rows like the training inputs, but new (for numeric data, drawn afresh)."""
    x_train = MODELS[name][1]
    rng = np.random.default_rng(seed)
    if x_train.dtype == object:
        return x_train[rng.integers(0, len(x_train), n)]
    x = rng.normal(size=(n, x_train.shape[1])).astype(np.float32)
    if name == "column_transformer_onehot":  # categorical codes, one of them unseen in training (4)
        x[:, 3:] = rng.integers(0, 5, size=(n, 2))
    return x


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sklearn_model_matches_onnxruntime(name):
    model = _converted(name)
    assert MODELS[name][2] <= {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    graph = import_model(model)
    exe = get_backend("numpy").prepare(graph)
    for k, batch in enumerate(BATCHES):
        feeds = {"X": _rows(name, batch, seed=k)}
        want = sess.run(None, feeds)
        got = exe.run(feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype, (name, batch, g.shape, w.shape, g.dtype, w.dtype)
            if w.dtype.kind in "fc":
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"{name} at batch={batch}")
            else:  # labels
                assert g.tolist() == w.tolist(), (name, batch)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sklearn_model_keeps_the_batch_symbol(name, tmp_path):
    graph = import_model(_converted(name))
    for v in graph.outputs:
        assert v.type.shape[0] == "batch" and all(isinstance(d, int) for d in v.type.shape[1:]), (name, v.name, v.type)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(_converted(name).SerializeToString())
    assert graphc_main(["check", str(path)]) == 0
