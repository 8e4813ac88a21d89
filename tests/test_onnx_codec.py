"""The ONNX codec (graphc/onnx_codec.py): IR <-> proto for types, tensors, attributes, nodes and graphs."""
import numpy as np
import onnx
import pytest
from onnx import AttributeProto

from graphc.errors import ModelLoadError, ResourceLimitError
from graphc.ir import DType, Graph, MapType, OptionalType, SequenceType, TensorType
from graphc.onnx_codec import (ATTR_KIND, Decoder, GraphEncoder, array_to_sparse, array_to_tensor, attribute_kind,
                               attribute_to_proto, constant_value, decode_string, node_attribute_kind,
                               sparse_to_array, tensor_to_array, type_from_proto, type_to_proto, value_info)

TYPES = [
    TensorType(DType.float32, (2, "N", 3)),
    TensorType(DType.int64, ()),
    TensorType(DType.float16, None),
    TensorType(None, (4,)),
    SequenceType(TensorType(DType.float32, ("B",))),
    SequenceType(None),
    OptionalType(TensorType(DType.bool, (1,))),
    MapType(DType.string, SequenceType(MapType(DType.int64, TensorType(DType.float32, ())))),
]


@pytest.mark.parametrize("t", TYPES, ids=str)
def test_types_round_trip(t):
    assert type_from_proto(type_to_proto(t), Graph()) == t
    vi = value_info("x", t)
    assert vi.name == "x" and type_from_proto(vi.type, Graph()) == t


def test_value_info_without_a_type_has_none():
    assert not value_info("x", None).HasField("type")


def test_a_dim_with_neither_value_nor_name_gets_a_fresh_symbol_and_an_undefined_dtype_none():
    tp = onnx.TypeProto()
    tp.tensor_type.elem_type = 0  # UNDEFINED: the type is not known, which is allowed
    tp.tensor_type.shape.dim.add()
    t = type_from_proto(tp, Graph())
    assert t.dtype is None and t.shape == ("unk__0",)


def test_an_element_type_code_that_is_no_onnx_type_is_refused_naming_the_value():
    tp = onnx.TypeProto()
    tp.tensor_type.elem_type = 999
    with pytest.raises(ModelLoadError, match="input 'x': element type 999 is not an ONNX element type"):
        type_from_proto(tp, Graph(), "input 'x'")


def test_tensors_round_trip_and_keep_scalars_scalar():
    for arr in [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(3, dtype=np.int64),
                np.array(["a", "bc"], dtype=object)]:
        back = tensor_to_array(array_to_tensor(arr, "w"))
        assert back.shape == arr.shape and back.dtype == arr.dtype and (back == arr).all()
    v = constant_value("s", np.array(["a"], dtype=object))
    assert v.type == TensorType(DType.string, (1,)) and v.data is not None


def test_tensor_errors_name_the_tensor():
    t = array_to_tensor(np.zeros((1000, 1000), np.float32), "big")
    with pytest.raises(ResourceLimitError, match="tensor 'big'"):
        tensor_to_array(t, label="m.onnx", limit=1000)
    t.data_type = 999
    with pytest.raises(ModelLoadError, match="m.onnx: tensor 'big' has unknown element type code 999"):
        tensor_to_array(t, label="m.onnx")
    ext = array_to_tensor(np.zeros(3, np.float32), "ext")
    ext.data_location = onnx.TensorProto.EXTERNAL
    e = ext.external_data.add()
    e.key, e.value = "location", "../outside.bin"
    with pytest.raises(ModelLoadError, match="must be a relative path inside"):
        tensor_to_array(ext, "/tmp", "m.onnx")


def test_sparse_round_trip_and_bad_indices():
    dense = np.array([[0, 1.5, 0], [2, 0, 0]], np.float32)
    np.testing.assert_array_equal(sparse_to_array(array_to_sparse(dense)), dense)
    sp = onnx.helper.make_sparse_tensor(array_to_tensor(np.ones(1, np.float32), "v"),
                                        array_to_tensor(np.array([7], np.int64)), [2, 3])
    with pytest.raises(ModelLoadError, match="sparse tensor 'v': an index lies outside the dims"):
        sparse_to_array(sp)


ATTRS = [("int", 3), ("float", 0.5), ("string", "héllo"), ("ints", [1, 2]), ("floats", [0.25]),
         ("strings", ["a", "b"]), ("tensor", np.arange(3, dtype=np.int32)),
         ("tensors", [np.ones(2, np.float32)]), ("sparse_tensor", np.array([0, 0, 4], np.int64)),
         ("type_proto", TensorType(DType.float32, (2,))), ("type_protos", [SequenceType(None)])]


@pytest.mark.parametrize("kind,value", ATTRS, ids=[k for k, _ in ATTRS])
def test_attributes_round_trip(kind, value):
    a = attribute_to_proto("a", value, kind)
    assert ATTR_KIND[a.type] == kind
    back = Decoder("m").attribute(a, Graph(), subgraph=None)
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
    elif kind == "tensors":
        np.testing.assert_array_equal(back[0], value[0])
    else:
        assert back == value


def test_graph_attributes_go_through_the_subgraph_callbacks_and_undefined_types_are_refused():
    body = Graph("body")
    a = attribute_to_proto("then_branch", body, "graph", subgraph=lambda g: onnx.GraphProto(name=g.name))
    assert a.type == AttributeProto.GRAPH and a.g.name == "body"
    assert Decoder("m").attribute(a, Graph(), subgraph=lambda gp: gp.name) == "body"
    with pytest.raises(ValueError, match="no subgraph writer"):
        attribute_to_proto("then_branch", body, "graph")
    with pytest.raises(ValueError, match="attribute 'x' has no type"):
        Decoder("m").attribute(AttributeProto(name="x"), Graph(), subgraph=None)


def test_strings_fall_back_to_latin1_and_kinds_are_guessed_for_unknown_ops():
    assert decode_string("é".encode("latin-1")) == "é"
    assert [attribute_kind(x) for x in (True, 2.0, "s", np.ones(1), [Graph()], [1.0], [])] == \
        ["int", "float", "string", "tensor", "graphs", "floats", "ints"]


def test_encoder_types_attributes_by_the_opdef_and_writes_a_checkable_graph():
    g = Graph("g")
    x = g.add_input("x", TensorType(DType.float32, ("N", 4)))
    w = g.add_constant(np.ones((4, 2), np.float32), "w")
    n = g.add_node("Gemm", [x, w], {"alpha": 2, "transA": 0})  # alpha given as an int: still a FLOAT
    n.outputs[0].type = TensorType(DType.float32, ("N", 2))
    g.outputs.append(n.outputs[0])
    assert node_attribute_kind(n, "alpha") == "float"
    enc = GraphEncoder()
    gp = enc.graph(g)
    assert [i.name for i in gp.initializer] == ["w"] and [i.name for i in gp.input] == ["x"]
    (alpha,) = [a for a in gp.node[0].attribute if a.name == "alpha"]
    assert alpha.type == AttributeProto.FLOAT and alpha.f == 2.0
    assert enc.opsets == {"": 1}
    model = onnx.helper.make_model(gp, opset_imports=[onnx.helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)


# ---- weights left in the model file -----------------------------------------------------------------
def _gemm_model(n=300, path=None):
    from onnx import helper as oh

    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, n)).astype(np.float32)
    g = oh.make_graph([oh.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], "g",
                      [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, n])],
                      [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, n])],
                      initializer=[array_to_tensor(w, "w"), array_to_tensor(np.ones(n, np.float32), "b")])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 21)])
    if path is not None:
        onnx.save(model, str(path))
    return model, w


def test_large_initializers_stay_in_the_file_as_references_to_their_own_bytes(tmp_path):
    from graphc.frontends.onnx import import_model, load_model_proto
    from graphc.onnx_codec import weights_left_in_file

    model, w = _gemm_model(path=tmp_path / "m.onnx")
    data = (tmp_path / "m.onnx").read_bytes()
    stripped = onnx.ModelProto.FromString(weights_left_in_file(data, "m.onnx"))
    big, small = stripped.graph.initializer
    info = {e.key: e.value for e in big.external_data}
    assert big.data_location == onnx.TensorProto.EXTERNAL and not big.HasField("raw_data") and info["location"] == "m.onnx"
    assert data[int(info["offset"]):int(info["offset"]) + int(info["length"])] == w.tobytes()
    assert small.HasField("raw_data") and not small.external_data  # under IN_FILE_MIN_BYTES: kept inline
    assert load_model_proto(str(tmp_path / "m.onnx"), weights_in_file=True)[0].graph.initializer[0].external_data
    from_path, from_bytes = import_model(str(tmp_path / "m.onnx")), import_model(data)
    assert str(from_path) == str(from_bytes)
    np.testing.assert_array_equal(from_path.constants["w"].data, w)
    assert weights_left_in_file(data, "m.onnx", min_bytes=len(data)) is None  # nothing large: parse as it is
    assert weights_left_in_file(data[:-7], "m.onnx") is None  # truncated: the full read reports it
    assert weights_left_in_file(b"\x00\x01garbage", "m.onnx") is None


def test_a_truncated_model_file_gets_the_usual_error(tmp_path):
    from graphc.frontends.onnx import import_model

    _gemm_model(path=tmp_path / "m.onnx")
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "m.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        import_model(str(tmp_path / "m.onnx"))


# ---- weights held once by the compiler ----------------------------------------------------------------
def test_gemm_weights_are_laid_out_once_and_replace_their_source(tmp_path):
    from graphc.compiler import compile, lay_out_weights
    from graphc.frontends.onnx import import_model
    from graphc.runtime import get_backend

    model, w = _gemm_model(n=8)
    g = import_model(model)
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    want = get_backend("numpy").prepare(compile(g, level=0)).run({"x": x})[0]
    plan = compile(g, level=2)
    (node,) = [n for n in plan.graph.nodes if n.op_type == "Gemm" or "body" in n.attrs]
    assert "w" in g.constants and g.constants["w"].data is not None  # the caller's graph is left as it was
    got = get_backend("numpy").prepare(plan).run({"x": x})[0]
    assert got.tobytes() == want.tobytes()
    h = import_model(model)
    assert lay_out_weights(h) == 0  # small: left as it is
    assert lay_out_weights(h, min_bytes=0) == 1 and h.nodes[0].attrs["transB"] == 0
    (b,) = [v for v in h.constants.values() if v.data.shape == (8, 8)]
    np.testing.assert_array_equal(b.data, w.T)
    assert b.data.flags.c_contiguous and "w" not in h.constants  # the source went at once


def test_compile_consume_optimizes_the_graph_itself():
    from graphc.compiler import compile
    from graphc.frontends.onnx import import_model

    g = import_model(_gemm_model(n=600)[0])  # 1.4 MB of weights: laid out at -O2
    plan = compile(g, level=2, consume=True)
    assert plan.graph is g and "w" not in g.constants
