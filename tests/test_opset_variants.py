"""Models written in opset 7 forms (attributes that later became inputs, since-removed attributes) run
correctly as written and after onnx's version converter lifts them to each later opset."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter

import graphc as gc

ort = pytest.importorskip("onnxruntime")

OPSETS = [7, 9, 10, 11, 12, 13, 17, 18, 21]


def _model(nodes, inputs, output, inits=(), opset=7):
    init_inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "m", inputs + init_inputs, [output], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 3
    onnx.checker.check_model(m)
    return m


def shape_ops_model():
    """Pad/Slice/Clip/ReduceSum/Squeeze/Split/Unsqueeze with their opset-7 attributes, Softmax's 2-D coercion."""
    nodes = [helper.make_node("Pad", ["x"], ["p"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1]),
             helper.make_node("Slice", ["p"], ["s"], starts=[1], ends=[3], axes=[2]),
             helper.make_node("Clip", ["s"], ["c"], min=0.0, max=1.5),
             helper.make_node("ReduceSum", ["c"], ["r"], axes=[1], keepdims=1),
             helper.make_node("Squeeze", ["r"], ["q"], axes=[1]),
             helper.make_node("Split", ["c"], ["a", "b"], axis=1, split=[1, 2]),
             helper.make_node("Unsqueeze", ["q"], ["u"], axes=[1]),
             helper.make_node("Add", ["a", "u"], ["ab"]),
             helper.make_node("Reshape", ["ab", "shape2"], ["f"]),
             helper.make_node("Softmax", ["f"], ["y"], axis=1)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, None]),
                  [numpy_helper.from_array(np.array([2, -1], np.int64), "shape2")])


def nn_ops_model():
    """BatchNormalization (spatial), Upsample (scales attribute), Dropout (ratio attribute), TopK (k attribute)."""
    rng = np.random.default_rng(3)
    bn = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in
          (("scale", rng.uniform(0.5, 1.5, 2)), ("bias", rng.standard_normal(2)),
           ("mean", rng.standard_normal(2)), ("var", rng.uniform(0.5, 1.5, 2)))]
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["n"], epsilon=1e-5),
             helper.make_node("Upsample", ["n"], ["up"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0]),
             helper.make_node("Dropout", ["up"], ["d"], ratio=0.3),
             helper.make_node("TopK", ["d"], ["y", "idx"], k=3)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 3]), bn, opset=7)


@pytest.mark.parametrize("make", [shape_ops_model, nn_ops_model], ids=["shape_ops", "nn_ops"])
@pytest.mark.parametrize("opset", OPSETS)
def test_opset_form_matches_onnxruntime(make, opset):
    model = make()
    if opset != 7:
        model = version_converter.convert_version(model, opset)
    x_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(opset).standard_normal(x_shape).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = gc.run(model, {"x": x})
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
