"""Map types and the ai.onnx.ml ops on maps (ZipMap, CastMap, DictVectorizer) and CategoryMapper: values
against onnxruntime, inferred types, feeding maps, and sklearn classifiers converted with their default
ZipMap output (a sequence of {class label: probability} dicts) run end to end.

onnxruntime's Python binding feeds only maps from string or int64 keys to float values; the other map
types are checked against values worked out by hand from onnxruntime's kernels.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

from graphc.frontends.onnx.importer import import_model
from graphc.errors import ExecutionError, FeedError, ShapeError
from graphc.ir import DType, MapType, SequenceType, TensorType, Value
from graphc.ir.graph import Graph
from graphc.runtime.feeds import normalize_feeds
from graphc.runtime.numpy.executor import NumpyExecutable

ML = "ai.onnx.ml"


def map_type(key, value):
    return oh.make_map_type_proto(key, oh.make_tensor_type_proto(value, []))


def one_node_model(op, x_type, y_type, **attrs) -> onnx.ModelProto:
    """``y = op(x)`` with x and y of the given TypeProtos."""
    node = oh.make_node(op, ["x"], ["y"], domain=ML, **attrs)
    g = oh.make_graph([node], "g", [oh.make_value_info("x", x_type)], [oh.make_value_info("y", y_type)])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid(ML, 1)])
    m.ir_version = 8
    return m


def run_both(model: onnx.ModelProto, x):
    """(graphc's output, onnxruntime's output, the graph)."""
    g = import_model(model)
    ours = NumpyExecutable(g).run({"x": x})[0]
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return ours, theirs, g


def run_ours(model: onnx.ModelProto, x):
    g = import_model(model)
    return NumpyExecutable(g).run({"x": x})[0], g


def assert_same_tensor(ours, theirs):
    assert isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype and ours.shape == theirs.shape, \
        (ours, theirs)
    assert ours.tolist() == theirs.tolist()


# ---- types ----------------------------------------------------------------------------------------
def test_map_type_prints_compares_and_imports():
    t = SequenceType(MapType(DType.int64, TensorType(DType.float32, ())))
    assert str(t) == "seq(map(int64, float32[]))"
    assert t == SequenceType(MapType(DType.int64, TensorType(DType.float32, ())))
    m = one_node_model("ZipMap", oh.make_tensor_type_proto(TP.FLOAT, ["N", 2]),
                       oh.make_sequence_type_proto(map_type(TP.STRING, TP.FLOAT)), classlabels_strings=["a", "b"])
    g = import_model(m)
    assert g.outputs[0].type == SequenceType(MapType(DType.string, TensorType(DType.float32, ())))
    m = one_node_model("DictVectorizer", map_type(TP.INT64, TP.DOUBLE), oh.make_tensor_type_proto(TP.DOUBLE, None),
                       int64_vocabulary=[1, 2])
    assert import_model(m).inputs[0].type == MapType(DType.int64, TensorType(DType.float64, ()))


def test_declared_map_type_that_contradicts_inference_is_refused():
    m = one_node_model("ZipMap", oh.make_tensor_type_proto(TP.FLOAT, ["N", 2]),
                       oh.make_sequence_type_proto(map_type(TP.INT64, TP.FLOAT)), classlabels_strings=["a", "b"])
    with pytest.raises(ShapeError, match="map keys int64 vs string"):
        import_model(m)


# ---- ZipMap -------------------------------------------------------------------------------------
ZIP_OUT_INT = oh.make_sequence_type_proto(map_type(TP.INT64, TP.FLOAT))
ZIP_OUT_STR = oh.make_sequence_type_proto(map_type(TP.STRING, TP.FLOAT))
SCORES = np.random.default_rng(5).random((6, 3)).astype(np.float32)


@pytest.mark.parametrize("labels,x", [
    (dict(classlabels_int64s=[7, 2, 5]), SCORES),
    (dict(classlabels_strings=["yes", "no", "maybe"]), SCORES),
    (dict(classlabels_int64s=[7, 2, 5]), SCORES[0]),             # one row given as a vector
    (dict(classlabels_int64s=[4, 4, 1]), SCORES),                # a repeated label keeps its last column
    (dict(classlabels_strings=["a", "b", "c"]), SCORES[:0]),     # no rows
])
def test_zipmap_matches_onnxruntime(labels, x):
    out = ZIP_OUT_STR if "classlabels_strings" in labels else ZIP_OUT_INT
    m = one_node_model("ZipMap", oh.make_tensor_type_proto(TP.FLOAT, ["N", 3][2 - x.ndim:]), out, **labels)
    ours, theirs, g = run_both(m, x)
    assert isinstance(ours, list) and all(isinstance(d, dict) for d in ours)
    # same keys in the same (sorted) order, the same float32 values
    assert [list(d.items()) for d in ours] == [list(d.items()) for d in theirs]
    key = DType.string if "classlabels_strings" in labels else DType.int64
    assert g.outputs[0].type == SequenceType(MapType(key, TensorType(DType.float32, ())))


def test_zipmap_refuses_wrong_columns_rank_and_labels():
    m = one_node_model("ZipMap", oh.make_tensor_type_proto(TP.FLOAT, ["N", 2]), ZIP_OUT_INT,
                       classlabels_int64s=[1, 2, 3])
    with pytest.raises(ShapeError, match="2 columns but the node has 3 class labels"):
        import_model(m)
    m = one_node_model("ZipMap", oh.make_tensor_type_proto(TP.FLOAT, None), ZIP_OUT_INT, classlabels_int64s=[1, 2, 3])
    exe = NumpyExecutable(import_model(m))
    with pytest.raises(ExecutionError, match="4 columns but the node has 3"):
        exe.run({"x": np.zeros((2, 4), np.float32)})
    with pytest.raises(ExecutionError, match="rank 1 or 2"):
        exe.run({"x": np.zeros((2, 2, 3), np.float32)})
    m = one_node_model("ZipMap", oh.make_tensor_type_proto(TP.FLOAT, ["N", 2]), ZIP_OUT_INT,
                       classlabels_int64s=[1, 2], classlabels_strings=["a", "b"])
    with pytest.raises(ShapeError, match="exactly one of classlabels_int64s, classlabels_strings"):
        import_model(m)


# ---- CastMap ------------------------------------------------------------------------------------
_CAST_DTYPE = {"TO_FLOAT": TP.FLOAT, "TO_INT64": TP.INT64, "TO_STRING": TP.STRING}
FLOAT_MAP = {3: 1.5, 0: -2.75, 1: 7.0, 6: 1e-7, 2: 123456789.0}


@pytest.mark.parametrize("form", ["DENSE", "SPARSE"])
@pytest.mark.parametrize("cast_to", ["TO_FLOAT", "TO_INT64", "TO_STRING"])
def test_castmap_of_floats_matches_onnxruntime(form, cast_to):
    # max_map 5 < key 6: onnxruntime drops keys past max_map - 1 in SPARSE form
    m = one_node_model("CastMap", map_type(TP.INT64, TP.FLOAT), oh.make_tensor_type_proto(_CAST_DTYPE[cast_to], None),
                       cast_to=cast_to, map_form=form, max_map=5)
    ours, theirs, g = run_both(m, FLOAT_MAP)
    assert_same_tensor(ours, theirs)
    t = g.outputs[0].type
    assert t.dtype == DType.from_np(theirs.dtype) if theirs.dtype != object else t.dtype == DType.string
    assert t.shape[0] == 1 and (t.shape[1] == 5 if form == "SPARSE" else isinstance(t.shape[1], str))


@pytest.mark.parametrize("form,cast_to,expected", [
    ("DENSE", "TO_FLOAT", [[-2.0, 75.0, 1.5]]),                    # std::stof reads the leading number
    ("DENSE", "TO_INT64", [[-2, 7, 1]]),                           # std::stoll stops at the '.'
    ("DENSE", "TO_STRING", [["-2", " 7.5e1x", "1.5"]]),
    ("SPARSE", "TO_FLOAT", [[-2.0, 75.0, 0.0, 1.5]]),
    ("SPARSE", "TO_STRING", [["-2", " 7.5e1x", "0.f", "1.5"]]),   # onnxruntime's pad for strings
])
def test_castmap_of_strings(form, cast_to, expected):
    m = one_node_model("CastMap", map_type(TP.INT64, TP.STRING), oh.make_tensor_type_proto(_CAST_DTYPE[cast_to], None),
                       cast_to=cast_to, map_form=form, max_map=4)
    ours, _ = run_ours(m, {3: "1.5", 0: "-2", 1: " 7.5e1x"})
    assert ours.tolist() == expected
    assert ours.dtype == {"TO_FLOAT": np.float32, "TO_INT64": np.int64, "TO_STRING": object}[cast_to]


def test_castmap_errors_name_the_node_and_value():
    m = one_node_model("CastMap", map_type(TP.INT64, TP.STRING), oh.make_tensor_type_proto(TP.FLOAT, None))
    with pytest.raises(ExecutionError, match="'abc' of key 4 does not start with a number"):
        run_ours(m, {4: "abc"})
    m = one_node_model("CastMap", map_type(TP.INT64, TP.FLOAT), oh.make_tensor_type_proto(TP.FLOAT, None),
                       map_form="SPARSE", max_map=3)
    with pytest.raises(ExecutionError, match="key -1 is negative"):
        run_ours(m, {-1: 1.0, 0: 2.0})
    for attrs, why in [(dict(cast_to="TO_DOUBLE"), "cast_to must be one of"), (dict(map_form="PACKED"), "map_form"),
                       (dict(map_form="SPARSE", max_map=0), "max_map must be positive")]:
        m = one_node_model("CastMap", map_type(TP.INT64, TP.FLOAT), oh.make_tensor_type_proto(TP.FLOAT, None), **attrs)
        with pytest.raises(ShapeError, match=why):
            import_model(m)
    m = one_node_model("CastMap", map_type(TP.STRING, TP.FLOAT), oh.make_tensor_type_proto(TP.FLOAT, None))
    with pytest.raises(ShapeError, match="map from int64 to float32 or string"):
        import_model(m)


# ---- DictVectorizer -----------------------------------------------------------------------------
@pytest.mark.parametrize("key,vocab,x", [
    (TP.STRING, dict(string_vocabulary=["a", "c", "b", "z", "a"]), {"a": 4.5, "c": -8.0, "q": 3.0}),
    (TP.INT64, dict(int64_vocabulary=[10, 3, 7]), {3: 1.5, 7: 2.0, 99: 1.0}),
    (TP.INT64, dict(int64_vocabulary=[10, 3, 7]), {}),
])
def test_dict_vectorizer_matches_onnxruntime(key, vocab, x):
    m = one_node_model("DictVectorizer", map_type(key, TP.FLOAT), oh.make_tensor_type_proto(TP.FLOAT, None), **vocab)
    g = import_model(m)
    n = len(next(iter(vocab.values())))
    assert g.outputs[0].type == TensorType(DType.float32, (1, n))
    ours = NumpyExecutable(g).run({"x": x})[0]
    if x:  # onnxruntime's Python binding refuses to feed an empty dict
        theirs = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        assert_same_tensor(ours, theirs)
    else:
        assert_same_tensor(ours, np.zeros((1, n), np.float32))


@pytest.mark.parametrize("key,value,vocab,x,expected", [
    (TP.STRING, TP.INT64, dict(string_vocabulary=["a", "c", "b"]), {"a": 4, "c": 8}, np.array([[4, 8, 0]])),
    (TP.STRING, TP.DOUBLE, dict(string_vocabulary=["b", "a"]), {"a": 0.1}, np.array([[0.0, 0.1]])),
    (TP.INT64, TP.STRING, dict(int64_vocabulary=[1, 3, 2]), {3: "x", 2: "y"}, np.array([["", "x", "y"]], object)),
    (TP.INT64, TP.DOUBLE, dict(int64_vocabulary=[5]), {5: 2.5}, np.array([[2.5]])),
])
def test_dict_vectorizer_other_value_types(key, value, vocab, x, expected):
    m = one_node_model("DictVectorizer", map_type(key, value), oh.make_tensor_type_proto(value, None), **vocab)
    ours, g = run_ours(m, x)
    assert_same_tensor(ours, expected)
    assert g.outputs[0].type.dtype == DType(value)


def test_dict_vectorizer_refuses_keys_of_the_wrong_type():
    m = one_node_model("DictVectorizer", map_type(TP.INT64, TP.FLOAT), oh.make_tensor_type_proto(TP.FLOAT, None),
                       string_vocabulary=["a"])
    with pytest.raises(ShapeError, match="keys are int64 but the node has a string_vocabulary"):
        import_model(m)
    m = one_node_model("DictVectorizer", map_type(TP.INT64, TP.FLOAT), oh.make_tensor_type_proto(TP.FLOAT, None))
    with pytest.raises(ShapeError, match="exactly one of int64_vocabulary, string_vocabulary"):
        import_model(m)


# ---- CategoryMapper -----------------------------------------------------------------------------
CATS = dict(cats_strings=["a", "b", "c", "a"], cats_int64s=[1, 2, 3, 4])  # "a" twice: the last pairing wins


@pytest.mark.parametrize("x,attrs", [
    (np.array([["a", "q"], ["c", "b"]], dtype=object), dict(default_int64=-7)),
    (np.array(["b", "zz", "a"], dtype=object), {}),
    (np.array([[1, 5], [3, 2], [4, 4]], dtype=np.int64), dict(default_string="none")),
    (np.array(9, dtype=np.int64), {}),
    (np.zeros((0, 2), dtype=np.int64), {}),
])
def test_category_mapper_matches_onnxruntime(x, attrs):
    elem = TP.STRING if x.dtype == object else TP.INT64
    out = TP.INT64 if x.dtype == object else TP.STRING
    shape = ["N", x.shape[1]] if x.ndim == 2 else list(x.shape)
    m = one_node_model("CategoryMapper", oh.make_tensor_type_proto(elem, shape), oh.make_tensor_type_proto(out, None),
                       **CATS, **attrs)
    ours, theirs, g = run_both(m, x)
    assert_same_tensor(ours, theirs)
    assert g.outputs[0].type == TensorType(DType(out), tuple(shape))


def test_category_mapper_refuses_unpaired_categories_and_other_types():
    m = one_node_model("CategoryMapper", oh.make_tensor_type_proto(TP.STRING, [2]),
                       oh.make_tensor_type_proto(TP.INT64, None), cats_strings=["a", "b"], cats_int64s=[1])
    with pytest.raises(ShapeError, match="cats_int64s has 1 entries but cats_strings has 2"):
        import_model(m)
    m = one_node_model("CategoryMapper", oh.make_tensor_type_proto(TP.FLOAT, [2]),
                       oh.make_tensor_type_proto(TP.INT64, None), **CATS)
    with pytest.raises(ShapeError, match="must be string or int64, got float32"):
        import_model(m)


# ---- feeding maps -------------------------------------------------------------------------------
def _graph_with_input(t) -> Graph:
    g = Graph("feeds")
    g.inputs.append(Value("m", t))
    return g


def test_map_feeds_are_checked_and_made_plain():
    t = MapType(DType.int64, TensorType(DType.float32, ()))
    fed = normalize_feeds(_graph_with_input(t), {"m": {np.int64(3): np.float32(0.5), 1: 2}})
    (m,) = fed.values()
    assert m == {3: 0.5, 1: 2.0} and all(type(k) is int and type(v) is float for k, v in m.items())
    with pytest.raises(FeedError, match="input 'm': expected a dict \\(map\\(int64, float32\\[\\]\\)\\)"):
        normalize_feeds(_graph_with_input(t), {"m": np.zeros(3)})
    with pytest.raises(FeedError, match="whose keys are int64, got the key 'a'"):
        normalize_feeds(_graph_with_input(t), {"m": {"a": 1.0}})
    with pytest.raises(FeedError, match="whose values are float32, got the value 'x'"):
        normalize_feeds(_graph_with_input(t), {"m": {1: "x"}})
    s = MapType(DType.string, TensorType(DType.string, ()))
    (m,) = normalize_feeds(_graph_with_input(s), {"m": {b"k": np.str_("v")}}).values()
    assert m == {"k": "v"}


def test_a_sequence_of_maps_feeds_as_a_list_of_dicts():
    t = SequenceType(MapType(DType.string, TensorType(DType.float32, ())))
    (seq,) = normalize_feeds(_graph_with_input(t), {"m": [{"a": 1.0}, {"b": np.float64(2)}]}).values()
    assert seq == [{"a": 1.0}, {"b": 2.0}]
    with pytest.raises(FeedError, match=r"input 'm\[1\]': expected a dict"):
        normalize_feeds(_graph_with_input(t), {"m": [{"a": 1.0}, 3.0]})


# ---- sklearn classifiers with their default ZipMap output, end to end ---------------------------
def _sklearn_zipmap_model(kind: str):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    x = rng.normal(size=(150, 4)).astype(np.float32)
    y = (x[:, 0] > 0.2).astype(int) + (x[:, 1] - x[:, 3] > 0).astype(int)
    est = {"logreg": LogisticRegression(max_iter=300), "logreg_str": LogisticRegression(max_iter=300),
           "forest": RandomForestClassifier(10, max_depth=5, random_state=0)}[kind]
    if kind == "logreg_str":
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(x, y)
        model = convert_sklearn(est, initial_types=[("X", FloatTensorType([None, 4]))],
                                target_opset={"": 18, "ai.onnx.ml": 3})  # zipmap=True, the default
    return model


@pytest.mark.parametrize("kind", ["logreg", "logreg_str", "forest"])
def test_sklearn_classifier_zipmap_output_matches_onnxruntime(kind):
    model = _sklearn_zipmap_model(kind)
    assert "ZipMap" in {n.op_type for n in model.graph.node}
    g = import_model(model)
    out = {v.name: v for v in g.outputs}["output_probability"]
    key = DType.string if kind == "logreg_str" else DType.int64
    assert out.type == SequenceType(MapType(key, TensorType(DType.float32, ())))
    exe = NumpyExecutable(g)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        x = np.random.default_rng(n).normal(size=(n, 4)).astype(np.float32)
        labels, probs = exe.run({"X": x})
        ref_labels, ref_probs = sess.run(None, {"X": x})
        assert labels.tolist() == ref_labels.tolist()
        assert len(probs) == len(ref_probs) == n
        for ours, theirs in zip(probs, ref_probs):
            assert list(ours) == list(theirs)  # the same keys, in the same order
            np.testing.assert_allclose([ours[k] for k in theirs], list(theirs.values()), rtol=0, atol=1e-6)


def test_compiled_plan_keeps_the_map_types(tmp_path):
    from graphc.compiler import compile
    from graphc.plan import load_plan

    model = _sklearn_zipmap_model("logreg_str")
    plan = compile(import_model(model, infer=False))
    path = str(tmp_path / "logreg.gc.onnx")
    plan.save(path)
    loaded = load_plan(path)
    want = SequenceType(MapType(DType.string, TensorType(DType.float32, ())))
    assert {v.name: v.type for v in loaded.graph.outputs}["output_probability"] == want
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    probs = NumpyExecutable(loaded).run({"X": x})[1]
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[1]
    assert [sorted(p) for p in probs] == [sorted(p) for p in ref]


def test_graphc_run_summarises_a_sequence_of_maps(tmp_path, capsys):
    from graphc.cli import main as graphc_main

    model = _sklearn_zipmap_model("logreg")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = str(tmp_path / "logreg.onnx")
    onnx.save(model, path)
    assert graphc_main(["run", path, "--random-inputs", "--set", "batch=3", "--output-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "output_probability: sequence of 3 maps; first {0: " in captured.out
    assert "not saved: output 'output_probability'" in captured.err


def test_if_branches_that_return_maps_keep_the_map_type():
    def branch(name, labels):
        node = oh.make_node("ZipMap", ["x"], [f"{name}_out"], domain=ML, classlabels_int64s=labels)
        return oh.make_graph([node], name, [], [oh.make_value_info(f"{name}_out", ZIP_OUT_INT)])

    node = oh.make_node("If", ["c"], ["y"], then_branch=branch("then", [1, 2, 3]), else_branch=branch("else", [7, 8, 9]))
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("c", TP.BOOL, []),
                                    oh.make_tensor_value_info("x", TP.FLOAT, ["N", 3])],
                      [onnx.ValueInfoProto(name="y")])  # left for inference to type
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid(ML, 1)])
    m.ir_version = 8
    graph = import_model(m)
    assert graph.outputs[0].type == SequenceType(MapType(DType.int64, TensorType(DType.float32, ())))
    # (onnxruntime has no If kernel for sequences of maps)
    for c, labels in ((True, [1, 2, 3]), (False, [7, 8, 9])):
        out = NumpyExecutable(graph).run({"c": np.array(c), "x": SCORES[:2]})[0]
        assert out == [dict(zip(labels, row)) for row in SCORES[:2].tolist()]
