"""The norm family: Batch/Instance/Layer/Group/RMS/MeanVariance/Lp normalization, LRN and Dropout."""
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

F32 = DType.float32
OPSET = onnx.defs.onnx_opset_version()
rng = np.random.default_rng(1)


# ---- helpers -----------------------------------------------------------------------------------------
def run_graphc(op: str, inputs: list, attrs: dict | None = None, n_out: int = 1, opset: int = OPSET):
    model, feeds = one_node_model(op, inputs, attrs, n_out, opset)
    rep = GraphcBackend.prepare(model)
    got = rep.run(list(feeds.values()))
    for v, x in zip(rep.graph.outputs, got):  # what inference said agrees with what ran
        assert v.type.dtype == DType.from_np(x.dtype)
        assert v.type.shape is None or (len(v.type.shape) == x.ndim and all(
            d == n for d, n in zip(v.type.shape, x.shape) if isinstance(d, int)))
    return got


def run_both(op: str, inputs: list, attrs: dict | None = None, n_out: int = 1, opset: int = OPSET, ort: bool = False,
             rtol=1e-5, atol=1e-5):
    """Run one node in graphc and in onnx's ReferenceEvaluator (or onnxruntime); compare every output."""
    model, feeds = one_node_model(op, inputs, attrs, n_out, opset)
    if ort:
        import onnxruntime

        for o in model.graph.output:
            o.type.tensor_type.elem_type = model.graph.input[0].type.tensor_type.elem_type
        want = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, feeds)
    else:
        want = ReferenceEvaluator(model).run(None, feeds)
    got = run_graphc(op, inputs, attrs, n_out, opset)
    for g_, w in zip(got, want):
        w = np.asarray(w)
        assert g_.shape == w.shape and g_.dtype == w.dtype, (g_.dtype, g_.shape, w.dtype, w.shape)
        np.testing.assert_allclose(g_, w, rtol=rtol, atol=atol)
    return got


def f32(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


# ---- shape inference ---------------------------------------------------------------------------------
def test_batchnorm_infers_symbolic_shapes_and_statistics_outputs():
    x = TensorType(F32, ("N", 16, "H", "W"))
    p = TensorType(F32, (16,))
    y, rm, rv = infer_one("BatchNormalization", [x, p, p, p, p], {"training_mode": 1}, n_out=3)
    assert y == x and rm == TensorType(F32, (16,)) and rv == TensorType(F32, (16,))
    assert infer_one("BatchNormalization", [TensorType(F32, ("N", "C")), p, p, p, p])[0].shape == ("N", "C")


def test_batchnorm_rejects_wrong_parameter_shape():
    x = TensorType(F32, ("N", 16, "H", "W"))
    p, bad = TensorType(F32, (16,)), TensorType(F32, (8,))
    with pytest.raises(ShapeError, match=r"BatchNormalization node 'n'.*input_var \(input 4\) must have shape "
                                         r"\[16\], got \[8\]"):
        infer_one("BatchNormalization", [x, p, p, p, bad])
    with pytest.raises(ShapeError, match=r"scale \(input 1\) must be a floating-point tensor, got int64"):
        infer_one("BatchNormalization", [x, TensorType(DType.int64, (16,)), p, p, p])


def test_layer_and_rms_norm_infer():
    x = TensorType(F32, ("B", "T", 64))
    y, mean, inv = infer_one("LayerNormalization", [x, TensorType(F32, (64,)), None], {"axis": -1}, 3)
    assert y == x and mean == TensorType(F32, ("B", "T", 1)) and inv == mean
    y, mean, _ = infer_one("LayerNormalization", [x, TensorType(F32, ("T", 64))], {"axis": 1}, 3)
    assert mean.shape == ("B", 1, 1)
    assert infer_one("RMSNormalization", [x, TensorType(F32, (64,))])[0] == x
    with pytest.raises(ShapeError, match=r"Scale \(input 1\) of shape \[32\] does not broadcast to the input's "
                                         r"shape \[B,T,64\]"):
        infer_one("LayerNormalization", [x, TensorType(F32, (32,))])
    with pytest.raises(ShapeError, match=r"axis 3 is out of range for an input of rank 3"):
        infer_one("RMSNormalization", [x, TensorType(F32, (64,))], {"axis": 3})


def test_group_instance_lrn_dropout_infer():
    x = TensorType(F32, ("N", 6, "H", "W"))
    c = TensorType(F32, (6,))
    assert infer_one("GroupNormalization", [x, c, c], {"num_groups": 3})[0] == x
    with pytest.raises(ShapeError, match=r"num_groups 4 must divide the number of channels 6"):
        infer_one("GroupNormalization", [x, c, c], {"num_groups": 4})
    with pytest.raises(ShapeError, match=r"InstanceNormalization node 'n'.*B \(input 2\) must have shape \[6\]"):
        infer_one("InstanceNormalization", [x, c, TensorType(F32, (3,))])
    assert infer_one("LRN", [x], {"size": 3})[0] == x
    y, mask = infer_one("Dropout", [x, TensorType(F32, ()), TensorType(DType.bool, ())], n_out=2)
    assert y == x and mask == TensorType(DType.bool, x.shape)
    with pytest.raises(ShapeError, match=r"training_mode \(input 2\) must be bool, got float32"):
        infer_one("Dropout", [x, None, TensorType(F32, ())], n_out=2)
    with pytest.raises(ShapeError, match=r"attribute 'p' must be 1 or 2, got 3"):
        infer_one("LpNormalization", [x], {"p": 3})


# ---- evaluation against the reference ----------------------------------------------------------------
def test_batchnorm_inference_and_training_match_reference():
    x = f32(2, 3, 4, 5)
    s, b, m = f32(3), f32(3), f32(3)
    v = f32(3, lo=0.5, hi=1.5)
    run_both("BatchNormalization", [x, s, b, m, v], {"epsilon": 1e-3})
    run_both("BatchNormalization", [x, s, b, m, v], {"training_mode": 1, "momentum": 0.7}, n_out=3)
    run_both("BatchNormalization", [f32(4, 3), s, b, m, v])  # (N, C) input


def test_batchnorm_large_input_blocked_path_is_exact():
    x = f32(2, 64, 40, 40)  # above the size where the affine step runs block by block
    s, b, m = f32(64), f32(64), f32(64)
    v = f32(64, lo=0.5, hi=1.5)
    got = run_both("BatchNormalization", [x, s, b, m, v], ort=True)[0]
    want = (x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * s[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_batchnorm_old_opsets_upgrade():
    x = f32(2, 3, 4)
    s, b, m = f32(3), f32(3), f32(3)
    v = f32(3, lo=0.5, hi=1.5)
    model, feeds = one_node_model("BatchNormalization", [x, s, b, m, v], {"is_test": 1, "spatial": 1}, 1, 6)
    g = import_model(model)
    assert g.nodes[0].attrs["training_mode"] == 0 and "is_test" not in g.nodes[0].attrs
    got = GraphcBackend.prepare(model).run(list(feeds.values()))[0]
    np.testing.assert_allclose(got, run_graphc("BatchNormalization", [x, s, b, m, v])[0], rtol=1e-6)
    # opset 9: asking for the statistics outputs meant training mode (with saved mean and variance)
    model, feeds = one_node_model("BatchNormalization", [x, s, b, m, v], {"momentum": 0.5}, 5, 9)
    y, rm, rv, sm, sv = GraphcBackend.prepare(model).run(list(feeds.values()))
    np.testing.assert_allclose(sm, x.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sv, x.var(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rm, 0.5 * m + 0.5 * sm, rtol=1e-5, atol=1e-6)


def test_batchnorm_spatial_0_uses_per_activation_statistics():
    x = f32(2, 3, 4)
    s, b, m = f32(3, 4), f32(3, 4), f32(3, 4)
    v = f32(3, 4, lo=0.5, hi=1.5)
    y = run_graphc("BatchNormalization", [x, s, b, m, v], {"spatial": 0}, opset=7)[0]
    np.testing.assert_allclose(y, (x - m) / np.sqrt(v + 1e-5) * s + b, rtol=1e-5, atol=1e-6)


def test_instance_layer_rms_group_norms_match_reference():
    x = f32(2, 6, 3, 4)
    run_both("InstanceNormalization", [x, f32(6), f32(6)], {"epsilon": 1e-3})
    for axis in (1, -1, 0):
        shape = x.shape[axis:] if axis >= 0 else x.shape[axis:]
        run_both("LayerNormalization", [x, f32(*shape), f32(*shape)], {"axis": axis}, n_out=3)
        run_both("RMSNormalization", [x, f32(*shape)], {"axis": axis})
    run_both("LayerNormalization", [x, f32(4)], {}, n_out=1)  # no bias
    run_both("GroupNormalization", [x, f32(6), f32(6)], {"num_groups": 3, "epsilon": 1e-3})
    run_both("GroupNormalization", [x, f32(6), f32(6)], {"num_groups": 6})


def test_group_norm_before_opset_21_scales_per_group():
    x = f32(2, 6, 5)
    s, b = f32(2), f32(2)
    got = run_graphc("GroupNormalization", [x, s, b], {"num_groups": 2}, opset=18)[0]
    w = x.reshape(2, 2, -1)
    n = ((w - w.mean(axis=2, keepdims=True)) / np.sqrt(w.var(axis=2, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(got, n * np.repeat(s, 3)[:, None] + np.repeat(b, 3)[:, None], rtol=1e-5, atol=1e-5)


def test_layer_norm_float16_computes_statistics_in_float32():
    x = (f32(4, 64) * 100 + 1000).astype(np.float16)
    y, mean, inv = run_graphc("LayerNormalization", [x, np.ones(64, np.float16)], {}, n_out=3)
    assert y.dtype == np.float16 and mean.dtype == np.float32 and inv.dtype == np.float32
    xf = x.astype(np.float32)
    want = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y.astype(np.float32), want, atol=5e-3)


def test_mvn_lp_lrn_match_reference():
    x = f32(2, 3, 4, 5)
    run_both("MeanVarianceNormalization", [x], ort=True)  # the reference mishandles the default axes
    run_both("MeanVarianceNormalization", [x], {"axes": [1, -1]})
    for p in (1, 2):
        run_both("LpNormalization", [x], {"p": p, "axis": 1}, ort=True)  # the reference forgets abs() for p = 1
    z = np.array([[0, 0], [3, 4]], np.float32)
    np.testing.assert_allclose(run_both("LpNormalization", [z])[0], [[0, 0], [0.6, 0.8]])  # a zero norm gives 0
    run_both("LRN", [f32(2, 7, 3, 3)], {"size": 3}, ort=True)
    # an even size (onnxruntime refuses it; the reference loops over the batch, not the channels): by hand
    x = f32(2, 5, 2, 2)
    got = run_graphc("LRN", [x], {"size": 4, "alpha": 1e-2, "beta": 0.5, "bias": 2.0})[0]
    sq = np.stack([np.square(x[:, max(0, c - 1):c + 3]).sum(axis=1) for c in range(5)], axis=1)  # [c-1, c+2]
    np.testing.assert_allclose(got, x / (2.0 + 1e-2 / 4 * sq) ** 0.5, rtol=1e-5)


def test_dropout_inference_is_identity_with_true_mask():
    x = f32(3, 4)
    y, mask = run_graphc("Dropout", [x, np.array(0.4, np.float32)], {}, n_out=2)
    assert np.array_equal(y, x) and mask.dtype == np.bool_ and mask.all()
    y, mask = run_graphc("Dropout", [x, np.array(0.0, np.float32), np.array(True)], {}, n_out=2)
    assert np.array_equal(y, x) and mask.all()


def test_dropout_training_drops_and_scales():
    x = np.ones((200, 50), np.float32)
    y, mask = run_graphc("Dropout", [x, np.array(0.25, np.float32), np.array(True)], {}, n_out=2)
    assert mask.dtype == np.bool_ and 0.70 < mask.mean() < 0.80
    assert np.allclose(y[mask], 1 / 0.75) and np.all(y[~mask] == 0)
    # with a seed the draw is repeatable (and matches the reference's draw)
    r = np.array(0.5, np.float32)
    run_both("Dropout", [x[:3], r, np.array(True)], {"seed": 7}, n_out=2)


def test_dropout_old_opsets():
    x = f32(3, 4)
    y, mask = run_graphc("Dropout", [x], {"ratio": 0.3}, n_out=2, opset=7)
    assert np.array_equal(y, x) and mask.dtype == np.float32 and np.all(mask == 1)  # opset < 10: mask of type T
    y, mask = run_graphc("Dropout", [x], {"ratio": 0.3}, n_out=2, opset=11)
    assert mask.dtype == np.bool_
    model, _ = one_node_model("Dropout", [np.ones((100, 100), np.float32)], {"is_test": 0, "ratio": 0.5}, 1, 6)
    y = GraphcBackend.prepare(model).run([np.ones((100, 100), np.float32)])[0]
    assert 0.4 < (y == 0).mean() < 0.6  # is_test = 0: training mode
    model, _ = one_node_model("Dropout", [x], {"is_test": 1}, 1, 6)
    assert np.array_equal(GraphcBackend.prepare(model).run([x])[0], x)
