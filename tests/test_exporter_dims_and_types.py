"""Unknown dims the way real exporters write them, and element types that are no ONNX type.

paddle2onnx marks every unknown dim with the same ``dim_param: "?"``; other exporters write ``dim_value: -1``
or an empty ``dim_param``; tf2onnx writes a fresh ``unk__N`` name per dim; torch.onnx names dynamic axes
(``batch_size``, or ``s0``/``s1`` from the dynamo exporter) and repeats a name where two dims are equal. The
anonymous markers are independent unknowns (each occurrence its own symbol); real names stay one symbol,
checked strictly at run time.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import graphc as gc
from graphc.errors import FeedError, ModelLoadError


def _model(shape, out_shape=None, nodes=None, out="y", value_info=(), initializers=()):
    nodes = nodes or [helper.make_node("Relu", ["x"], ["y"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], list(initializers),
                          value_info=list(value_info))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("writer,shape", [
    ("paddle2onnx", [-1, 3, "?", "?"]),      # helper writes -1 as dim_value -1
    ("empty dim_param", [-1, 3, "", ""]),
    ("tf2onnx", ["unk__12", 3, "unk__13", "unk__14"]),
])
def test_anonymous_unknown_dims_are_independent(writer, shape):
    model = _model(shape)
    if writer == "paddle2onnx":
        assert model.graph.input[0].type.tensor_type.shape.dim[2].dim_param == "?"
    graph = gc.import_onnx(model)
    dims = graph.inputs[0].type.shape
    assert dims[1] == 3 and len({dims[0], dims[2], dims[3]}) == 3  # three distinct symbols
    x = np.random.default_rng(0).standard_normal((1, 3, 48, 192)).astype(np.float32)
    (y,) = gc.prepare(graph).run({"x": x})  # 48 x 192: the two '?' need not be equal
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    (y2,) = gc.prepare(graph).run({"x": x[:, :, :32, :40]})
    assert y2.shape == (1, 3, 32, 40)


def test_dim_value_minus_one_is_unknown():
    model = _model([1, 3, 4, 4])
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_value = -1
    graph = gc.import_onnx(model)
    a, b = graph.inputs[0].type.shape[2:]
    assert isinstance(a, str) and isinstance(b, str) and a != b


def test_cast_to_a_type_that_is_none_is_refused_naming_the_node():
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=96, name="cast96")]
    with pytest.raises(gc.GraphcError, match="cast96"):
        gc.import_onnx(_model([3], None, nodes=nodes))


def test_real_names_stay_one_symbol_and_are_checked():
    # torch.onnx style: a named dynamic axis shared by input and output
    nodes = [helper.make_node("Add", ["x", "x"], ["y"])]
    model = _model(["batch_size", "batch_size"], ["batch_size", "batch_size"], nodes=nodes)
    graph = gc.import_onnx(model)
    assert graph.inputs[0].type.shape == ("batch_size", "batch_size")
    with pytest.raises(FeedError, match="batch_size"):
        gc.prepare(graph).run({"x": np.zeros((2, 3), np.float32)})


@pytest.mark.parametrize("where", ["input", "output", "value_info"])
def test_an_element_type_that_is_no_type_is_refused_naming_the_value(where):
    model = _model([3], [3], nodes=[helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                   value_info=[helper.make_tensor_value_info("h", TensorProto.FLOAT, [3])])
    target = {"input": model.graph.input[0], "output": model.graph.output[0], "value_info": model.graph.value_info[0]}
    target[where].type.tensor_type.elem_type = 96
    name = target[where].name
    with pytest.raises(ModelLoadError, match=rf"{where} '{name}': element type 96 is not an ONNX element type"):
        gc.import_onnx(model)


def test_an_initializer_or_attribute_tensor_with_no_type_is_refused():
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    w.data_type = 96
    model = _model([3], [3], nodes=[helper.make_node("Add", ["x", "w"], ["y"])], initializers=[w])
    with pytest.raises(ModelLoadError, match="tensor 'w' has unknown element type code 96"):
        gc.import_onnx(model)
    c = helper.make_tensor("c", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    c.data_type = 99
    nodes = [helper.make_node("Constant", [], ["k"], value=c), helper.make_node("Add", ["x", "k"], ["y"])]
    with pytest.raises(ModelLoadError, match="unknown element type code 99"):
        gc.import_onnx(_model([3], [3], nodes=nodes))


def test_the_fuzzer_mutates_element_types_into_non_types():
    from graphc.tools import fuzz

    corpus = [fuzz.Seed("relu", _model([3], [3]).SerializeToString(), [np.zeros(3, np.float32)])]
    import random

    import onnx

    model = onnx.load_from_string(corpus[0].model)
    desc = fuzz.mutate_elem_type(random.Random(0), model, None)
    assert "no such type" in desc
    with pytest.raises(ModelLoadError):
        gc.import_onnx(model)
