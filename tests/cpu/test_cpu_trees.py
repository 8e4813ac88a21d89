"""Tree ensembles on the compiled CPU backend (runtime/codegen/ops/ml.py): one generated kernel per node, equal
to onnxruntime and to the NumPy backend on random forests of every shape the kernel compiles (each branch
comparison alone and mixed, missing values, shared and lopsided trees, SUM/AVERAGE/MIN/MAX, base values,
every post transform, multi-class and the binary classifiers' rules), and the interpreter kept for what it
does not compile (BRANCH_MEMBER, string labels)."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from graphc.frontends.onnx import import_model
from graphc.runtime import get_backend
from graphc.runtime.codegen.lowering import HostCall
from graphc.runtime.cpu import available
from onnx import TensorProto as TP
from onnx import helper as oh

from graphc.errors import GraphcWarning

pytestmark = pytest.mark.skipif(not available(), reason="the CPU backend needs a C++ compiler")
ort = pytest.importorskip("onnxruntime")

MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]


def forest(rng, n_trees: int, depth: int, n_features: int, modes, prefix: str, n_targets: int,
           positive: bool = False, missing: bool = False, twice: bool = False) -> dict:
    """Legacy-format attributes of ``n_trees`` random trees (uneven: a branch stops early with p=0.3).
    ``twice``: a leaf may vote twice for one target (which onnxruntime 1.32 counts once and graphc, as onnx's
    reference evaluator, sums: compared with the NumPy backend only)."""
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
                         f"{prefix}_treeids", f"{prefix}_nodeids", f"{prefix}_ids", f"{prefix}_weights")}
    for t in range(n_trees):
        count = 0

        def grow(level: int, t: int = t) -> int:
            nonlocal count
            me = count
            count += 1
            k = len(a["nodes_treeids"])
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(me)
            for key in ("nodes_featureids", "nodes_values", "nodes_modes", "nodes_truenodeids",
                        "nodes_falsenodeids", "nodes_missing_value_tracks_true"):
                a[key].append(None)
            if level == depth or (level > 0 and rng.random() < 0.3):
                a["nodes_featureids"][k], a["nodes_values"][k], a["nodes_modes"][k] = 0, 0.0, "LEAF"
                a["nodes_truenodeids"][k] = a["nodes_falsenodeids"][k] = 0
                a["nodes_missing_value_tracks_true"][k] = 0
                for target in rng.choice(n_targets, size=rng.integers(1, n_targets + 1), replace=False):
                    for _ in range(rng.integers(1, 3) if twice else 1):
                        a[f"{prefix}_treeids"].append(t)
                        a[f"{prefix}_nodeids"].append(me)
                        a[f"{prefix}_ids"].append(int(target))
                        w = rng.normal()
                        a[f"{prefix}_weights"].append(float(abs(w) if positive else w))
                return me
            mode = modes[rng.integers(len(modes))]
            a["nodes_featureids"][k] = int(rng.integers(n_features))
            # EQ/NEQ need thresholds the inputs hit: inputs are drawn from a few values
            a["nodes_values"][k] = float(rng.integers(-2, 3) / 2)
            a["nodes_modes"][k] = mode
            a["nodes_missing_value_tracks_true"][k] = int(missing and rng.random() < 0.5)
            a["nodes_truenodeids"][k] = grow(level + 1, t)
            a["nodes_falsenodeids"][k] = grow(level + 1, t)
            return me

        grow(0)
    return a


def model(op: str, n_out: int, n_features: int, **attrs) -> onnx.ModelProto:
    outs = [f"y{i}" for i in range(n_out)]
    node = oh.make_node(op, ["x"], outs, domain="ai.onnx.ml", **attrs)
    g = oh.make_graph([node], "trees", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", n_features])],
                      [onnx.ValueInfoProto(name=o) for o in outs])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("ai.onnx.ml", 3)])


def inputs(rng, n: int, n_features: int, nan: bool = False) -> np.ndarray:
    x = (rng.integers(-3, 4, size=(n, n_features)) / 2 + rng.normal(size=(n, n_features)) *
         (rng.random((n, n_features)) < 0.5)).astype(np.float32)
    if nan:
        x[rng.random(x.shape) < 0.2] = np.nan
    return x


def run_all(m: onnx.ModelProto, x: np.ndarray, compiled: bool = True, onnxruntime: bool = True) -> None:
    """The CPU backend against onnxruntime and the NumPy backend; ``compiled``: no step ran interpreted."""
    g = import_model(m)
    ref = get_backend("numpy").prepare(g).run({"x": x})
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x}) \
        if onnxruntime else ref
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphcWarning)
        exe = get_backend("cpu").prepare(g)
        got = exe.run({"x": x})
    steps = exe.prepared({"N": x.shape[0]}).lowered.steps
    host = [s.node.op_type for s in steps if isinstance(s.call, HostCall)]
    assert (not host) if compiled else host, host
    for o, r, w in zip(got, ref, want):
        assert o.dtype == r.dtype == w.dtype and o.shape == r.shape == w.shape
        if o.dtype.kind in "iO":
            np.testing.assert_array_equal(o, w)
            np.testing.assert_array_equal(o, r)
        else:
            # onnxruntime adds the votes in float32, graphc in float64: cancellation over many trees
            np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(w).max())))
            np.testing.assert_allclose(o, r, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("modes", [[m] for m in MODES] + [MODES])
@pytest.mark.parametrize("agg", ["SUM", "AVERAGE", "MIN", "MAX"])
def test_regressor_every_comparison_and_aggregate(modes, agg):
    rng = np.random.default_rng(len(agg) * 7 + len(modes) * 13 + MODES.index(modes[0]))
    a = forest(rng, 9, 5, 6, modes, "target", 3)
    run_all(model("TreeEnsembleRegressor", 1, 6, n_targets=3, aggregate_function=agg, **a), inputs(rng, 40, 6))


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_regressor_base_values_post_transforms_and_missing_values(post):
    rng = np.random.default_rng(5)
    a = forest(rng, 12, 6, 4, ["BRANCH_LEQ", "BRANCH_GT"], "target", 2, missing=True)
    m = model("TreeEnsembleRegressor", 1, 4, n_targets=2, base_values=[0.5, -1.0], post_transform=post, **a)
    run_all(m, inputs(rng, 33, 4, nan=True))


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
@pytest.mark.parametrize("base", [None, [0.1, -0.2, 0.3]])
def test_multiclass_classifier(post, base):
    rng = np.random.default_rng(11)
    a = forest(rng, 15, 5, 5, ["BRANCH_LEQ"], "class", 3)
    extra = {} if base is None else {"base_values": base}
    m = model("TreeEnsembleClassifier", 2, 5, classlabels_int64s=[7, 3, 11], post_transform=post, **a, **extra)
    run_all(m, inputs(rng, 50, 5))


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC"])
@pytest.mark.parametrize("votes,positive,base", [(1, False, None), (1, True, [0.25]), (1, False, [-0.5]),
                                                  (2, False, None), (2, True, None), (2, False, [0.3, -0.1])])
def test_binary_classifier_rules(post, votes, positive, base):
    """Two classes: one voted score (gradient boosting) or two, all-positive weights or not, 0-2 base values."""
    rng = np.random.default_rng(votes * 10 + positive)
    a = forest(rng, 10, 4, 3, ["BRANCH_LT", "BRANCH_GTE"], "class", votes, positive=positive)
    extra = {} if base is None else {"base_values": base}
    m = model("TreeEnsembleClassifier", 2, 3, classlabels_int64s=[0, 1], post_transform=post, **a, **extra)
    run_all(m, inputs(rng, 64, 3))


@pytest.mark.parametrize("agg", ["SUM", "AVERAGE", "MIN", "MAX"])
def test_leaves_voting_twice_for_a_target_as_the_numpy_backend(agg):
    rng = np.random.default_rng(6)
    a = forest(rng, 20, 5, 4, ["BRANCH_LEQ"], "target", 2, twice=True)
    run_all(model("TreeEnsembleRegressor", 1, 4, n_targets=2, aggregate_function=agg, **a), inputs(rng, 50, 4),
            onnxruntime=False)


def test_one_kernel_for_a_big_forest_and_a_single_row():
    rng = np.random.default_rng(2)
    a = forest(rng, 200, 8, 20, ["BRANCH_LEQ"], "target", 1)
    m = model("TreeEnsembleRegressor", 1, 20, n_targets=1, **a)
    run_all(m, inputs(rng, 1, 20))
    run_all(m, inputs(rng, 257, 20))


def test_what_the_kernel_does_not_compile_runs_in_the_interpreter():
    rng = np.random.default_rng(4)
    a = forest(rng, 5, 3, 3, ["BRANCH_LEQ"], "class", 2)
    m = model("TreeEnsembleClassifier", 2, 3, classlabels_strings=["no", "yes"], **a)
    x = inputs(rng, 8, 3)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    g = import_model(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphcWarning)  # string labels: no arena, the NumPy backend runs it
        got = get_backend("cpu").prepare(g).run({"x": x})
    assert got[0].tolist() == want[0].tolist()
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)


def test_a_zipmap_after_the_classifier_runs_after_the_compiled_plan():
    """sklearn converters end a classifier with ZipMap (a sequence of maps, which no arena holds): the forest
    runs as a kernel, ZipMap in the interpreter after it, with no warning and no fallback."""
    rng = np.random.default_rng(8)
    a = forest(rng, 12, 5, 4, ["BRANCH_LEQ"], "class", 3)
    nodes = [oh.make_node("TreeEnsembleClassifier", ["x"], ["label", "scores"], domain="ai.onnx.ml",
                          classlabels_int64s=[1, 2, 3], post_transform="SOFTMAX", **a),
             oh.make_node("ZipMap", ["scores"], ["probabilities"], domain="ai.onnx.ml", classlabels_int64s=[1, 2, 3])]
    g = oh.make_graph(nodes, "zip", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                      [onnx.ValueInfoProto(name="label"), onnx.ValueInfoProto(name="probabilities")])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("ai.onnx.ml", 3)])
    x = inputs(rng, 9, 4)
    label, maps = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphcWarning)
        exe = get_backend("cpu").prepare(import_model(m))
        got_label, got_maps = exe.run({"x": x})
    steps = exe.prepared({"N": 9}).lowered.steps
    assert [s.node.op_type for s in steps if s.kernel is not None] == ["TreeEnsembleClassifier"]
    np.testing.assert_array_equal(got_label, label)
    assert len(got_maps) == len(maps) == 9
    for g_map, want in zip(got_maps, maps):
        assert sorted(g_map) == sorted(want)
        np.testing.assert_allclose([g_map[k] for k in sorted(g_map)], [want[k] for k in sorted(want)], rtol=1e-5)
    assert exe.run([x])[0].tolist() == label.tolist()  # positional feeds too
