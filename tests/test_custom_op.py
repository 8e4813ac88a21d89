"""gc.custom_op: registration, the NumPy backend, DSL use, gradients, ONNX import/export and the errors.

The examples of models/custom_cuda_ops.py (a fused GELU, a direct 2-D convolution) are checked against
graphc's built-in Gelu and Conv. Every op a test registers is removed afterwards, so that the registry
other tests read (the README's op table, the gradient-check coverage) stays graphc's own.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.custom import CustomOpError, custom_op_of
from graphc.errors import GradientError, GraphcWarning, OpAttributeError, ShapeError, UnsupportedOpError
from graphc.ir import TensorType
from graphc.ops import lookup


pytestmark = pytest.mark.usefixtures("forget_custom_ops")  # see tests/conftest.py (also: custom_example)


def _double(x):
    return (x * 2).astype(x.dtype)


# ---- registration ----------------------------------------------------------------------------------
def test_registration_makes_an_opdef(custom_example):
    op = lookup("custom", "DirectConv2d")
    assert op is not None and op.family == "custom" and op.domain == "custom"
    assert op.inputs == (2, 2)  # from numpy_impl's positional parameters, attributes excluded
    assert {k: (a.type, a.default) for k, a in op.attrs.items()} == {"stride": ("int", 1), "pad": ("int", 0)}
    assert op.grad is not None
    assert custom_op_of("custom", "DirectConv2d").kernel_attrs == ["stride", "pad"]
    assert lookup("custom", "FusedGeluGrad").grad is None


def test_attribute_declarations():
    op = gc.custom_op("AttrKinds", numpy_impl=lambda x, **kw: x, infer_shape="same",
                      attrs={"n": int, "alpha": 0.5, "mode": "fast", "sizes": [1, 2], "scales": [1.0, 0.5]})
    attrs = lookup("custom", "AttrKinds").attrs
    assert [attrs[k].type for k in ("n", "alpha", "mode", "sizes", "scales")] == ["int", "float", "string", "ints",
                                                                                   "floats"]
    assert op.custom.kernel_attrs == ["n", "alpha"]
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2], name="x")
        with pytest.raises(OpAttributeError, match="required attribute 'n'"):
            op(x)
        with pytest.raises(OpAttributeError, match="unknown attribute 'nope'"):
            op(x, n=1, nope=3)


def test_registering_again_replaces_with_a_warning():
    gc.custom_op("Twice", numpy_impl=_double, infer_shape="same")
    with pytest.warns(GraphcWarning, match="registered again"):
        op = gc.custom_op("Twice", numpy_impl=lambda x: x + 1, infer_shape="same")
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [3], name="x")
        y = op(x)
    (out,) = gc.Session(g).run([y], {x: np.ones(3, np.float32)})
    np.testing.assert_array_equal(out, np.full(3, 2, np.float32))  # the new definition, x + 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(numpy_impl=None, infer_shape="same"), "numpy_impl must be a function"),
    (dict(numpy_impl=_double, infer_shape="like x"), "infer_shape must be a function"),
    (dict(numpy_impl=_double, infer_shape="same", grad="dx"), "grad must be a function"),
    (dict(numpy_impl=_double, infer_shape="same", domain=""), "belongs to ONNX or graphc"),
    (dict(numpy_impl=_double, infer_shape="same", domain="graphc"), "belongs to ONNX or graphc"),
    (dict(numpy_impl=_double, infer_shape="same", cuda_source="__global__ void other(float* y) {}"),
     "does not define the kernel 'extern \"C\" __global__ void Bad"),
    (dict(numpy_impl=_double, infer_shape="same", cuda_source='extern "C" __global__ void Bad(float* y) {}',
          kernel="bad_kernel"), "void bad_kernel"),
    (dict(numpy_impl=_double, infer_shape="same", cuda_source=b"bytes"), "cuda_source must be a string"),
    (dict(numpy_impl=_double, infer_shape="same", attrs={"flag": True}), "defaults to a bool"),
    (dict(numpy_impl=_double, infer_shape="same", attrs={"x y": 1}), "must be a Python identifier"),
    (dict(numpy_impl=_double, infer_shape="same", attrs={"obj": object()}), "attribute 'obj' has default"),
    (dict(numpy_impl=_double, infer_shape="same", num_outputs=0), "num_outputs must be an int >= 1"),
])
def test_bad_declarations_are_refused(kwargs, message):
    with pytest.raises(CustomOpError, match=re.escape(message)):
        gc.custom_op("Bad", **kwargs)
    assert lookup("custom", "Bad") is None


def test_bad_names_are_refused():
    with pytest.raises(CustomOpError, match="must be an identifier"):
        gc.custom_op("my op", numpy_impl=_double, infer_shape="same")


# ---- the NumPy backend and the DSL --------------------------------------------------------------------
def test_gelu_matches_builtin_gelu(custom_example):
    assert custom_example.gelu_case("numpy", shape=(3, 5, 7)) < 1e-6


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (3, 2)])
def test_conv_matches_builtin_conv(custom_example, stride, pad):
    assert custom_example.conv_case("numpy", stride=stride, pad=pad) < 1e-5


def test_dsl_call_infers_types_and_names_the_node(custom_example):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 3, 9, 8], name="x")
        y = custom_example.direct_conv2d(x, np.ones((4, 3, 3, 3), np.float32), stride=2, pad=1, name="conv")
    assert y.type == TensorType(gc.float32, ("N", 4, 5, 4))
    assert y.op.domain == "custom" and y.op.op_type == "DirectConv2d" and y.op.name == "conv"
    line = test_dsl_call_infers_types_and_names_the_node.__code__.co_firstlineno + 4  # the line calling the op
    assert y.op.source.endswith(f"test_custom_op.py:{line}")


def test_infer_shape_errors_name_the_node_and_the_line(custom_example):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [1, 3, 9, 8], name="x")
        with pytest.raises(ShapeError, match=r"(?s)DirectConv2d node .*infer_shape of custom op 'custom.DirectConv2d'"
                                             r".*x has 3 channels, w expects 2.*direct_conv2d\(x"):
            custom_example.direct_conv2d(x, np.ones((4, 2, 3, 3), np.float32))
    assert not g.nodes


def test_infer_shape_must_return_tensor_types():
    op = gc.custom_op("BadInfer", numpy_impl=_double, infer_shape=lambda x: x.shape)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2], name="x")
        with pytest.raises(ShapeError, match="must return 1 TensorType"):
            op(x)


def test_numpy_impl_checked_against_infer_shape():
    op = gc.custom_op("WrongDtype", numpy_impl=lambda x: x.astype(np.float64), infer_shape="same")
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2], name="x")
        y = op(x)
    with pytest.raises(CustomOpError, match="returned float64 for output 0, but infer_shape said float32"):
        gc.Session(g).run([y], {x: np.ones(2, np.float32)})


def test_several_outputs_and_attributes():
    def split_scale(x, alpha=1.0):
        return (x * np.float32(alpha)).astype(x.dtype), (x - 1).astype(x.dtype)

    op = gc.custom_op("SplitScale", numpy_impl=split_scale, num_outputs=2, attrs={"alpha": 1.0},
                      infer_shape=lambda x, alpha: [x, TensorType(x.dtype, x.shape)])
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [3], name="x")
        a, b = op(x, alpha=3.0)
    xa = np.arange(3, dtype=np.float32)
    got = gc.Session(g).run([a, b], {x: xa})
    np.testing.assert_array_equal(got[0], xa * 3)
    np.testing.assert_array_equal(got[1], xa - 1)


# ---- gradients --------------------------------------------------------------------------------------
def test_gradients_match_the_builtin_ops(custom_example):
    diffs = custom_example.gradient_case()
    assert diffs["d/dx"] < 1e-4 and diffs["d/dw"] < 1e-4, diffs


def test_gelu_gradient_uses_the_custom_gradient_op(custom_example):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [5], name="x")
        dx = gc.gradients(gc.reduce_sum(custom_example.fused_gelu(x)), x)
    assert [n.op_type for n in g.nodes if n.domain == "custom"] == ["FusedGelu", "FusedGeluGrad"]
    xv = np.linspace(-3, 3, 5).astype(np.float32)
    (got,) = gc.Session(g).run([dx], {x: xv})
    eps = 1e-3
    x64 = xv.astype(np.float64)
    numeric = (custom_example.gelu_numpy(x64 + eps) - custom_example.gelu_numpy(x64 - eps)) / (2 * eps)
    np.testing.assert_allclose(got, numeric, rtol=1e-4, atol=1e-5)


def test_a_custom_op_without_grad_names_itself():
    op = gc.custom_op("NoGrad", numpy_impl=_double, infer_shape="same")
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(np.ones(3, np.float32), name="w")
        loss = gc.reduce_sum(op(w))
        with pytest.raises(GradientError, match="NoGrad node 'NoGrad'.*custom op 'custom.NoGrad' was registered "
                                                "without a gradient: pass grad=fn"):
            gc.gradients(loss, w)


def test_grad_rules_may_return_none_for_an_input():
    op = gc.custom_op("ScaleBy", numpy_impl=lambda x, s: (x * s).astype(x.dtype), infer_shape="same",
                      grad=lambda ctx, inputs, outputs, dys: [ctx.op("Mul", dys[0], inputs[1]), None])
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(np.ones(3, np.float32), name="w")
        s = gc.Variable(np.full(3, 4, np.float32), name="s")
        loss = gc.reduce_sum(op(w, s))
        dw = gc.gradients(loss, w)
        with pytest.raises(GradientError, match="not differentiable with respect to input 1"):
            gc.gradients(loss, s)
    np.testing.assert_array_equal(gc.Session(g).run([dw])[0], np.full(3, 4, np.float32))


def test_training_step_with_the_custom_conv(custom_example):
    ours, ref = custom_example.train_case(steps=6, custom=True), custom_example.train_case(steps=6, custom=False)
    assert ours[-1] < 0.7 * ours[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_example_script_passes(custom_example, capsys, monkeypatch):
    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    monkeypatch.setattr(custom_example, "cuda_status", lambda: "not in this test")  # the CUDA half: tests/cuda
    assert custom_example.main() == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "max abs diff" in out and "skipped: not in this test" in out


# ---- ONNX ------------------------------------------------------------------------------------------
def _model(custom_example):
    from graphc.frontends.onnx.exporter import to_onnx_model

    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 3, 9, 8], name="x")
        w = gc.Variable(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), name="w")
        y = custom_example.fused_gelu(custom_example.direct_conv2d(x, w, stride=2, pad=1))
    return g, x, y, to_onnx_model(g, {"y": y}, variables=g.initial_values)


def test_onnx_export_writes_the_custom_domain(custom_example):
    _, _, _, model = _model(custom_example)
    nodes = [(n.domain, n.op_type) for n in model.graph.node]
    assert ("custom", "DirectConv2d") in nodes and ("custom", "FusedGelu") in nodes
    assert {(o.domain, o.version) for o in model.opset_import} >= {("custom", 1)}
    conv = next(n for n in model.graph.node if n.op_type == "DirectConv2d")
    assert {a.name: a.i for a in conv.attribute} == {"stride": 2, "pad": 1}


def test_onnx_round_trip_runs(custom_example):
    g, x, y, model = _model(custom_example)
    imported = gc.import_onnx(model.SerializeToString())
    assert imported.outputs[0].type == TensorType(gc.float32, (2, 4, 5, 4))
    xv = np.random.default_rng(1).standard_normal((2, 3, 9, 8)).astype(np.float32)
    (got,) = gc.run(imported, {"x": xv})
    (want,) = gc.Session(g).run([y], {x: xv})
    np.testing.assert_array_equal(got, want)


def test_onnx_import_of_an_unregistered_custom_op_lists_it():
    from onnx import TensorProto, helper

    node = helper.make_node("NotRegistered", ["x"], ["y"], domain="custom")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("custom", 1)])
    with pytest.raises(UnsupportedOpError, match="NotRegistered \\(domain 'custom'"):
        gc.import_onnx(model.SerializeToString())
    gc.custom_op("NotRegistered", numpy_impl=_double, infer_shape="same")
    (y,) = gc.run(gc.import_onnx(model.SerializeToString()), {"x": np.ones(2, np.float32)})
    np.testing.assert_array_equal(y, np.full(2, 2, np.float32))


def test_docs_example_runs():
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "custom_ops.md")
    with open(path, encoding="utf-8") as f:
        snippets = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert snippets
    for code in snippets:
        exec(compile(code, "docs/custom_ops.md", "exec"), {"__name__": "__docs__"})
    assert custom_op_of("custom", "MyGelu") is not None
