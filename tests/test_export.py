"""gc.export_onnx: the inference subgraph with trained variables runs in onnxruntime like in graphc."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.frontends.onnx.exporter import ExportError

ort = pytest.importorskip("onnxruntime")


def trained_cnn():
    g = gc.Graph(seed=3)
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 1, 8, 8], name="x")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        conv, bn = gc.layers.Conv2D(4, 3, padding="same"), gc.layers.BatchNorm()
        dense1, dense2 = gc.layers.Dense(16, activation=gc.nn.gelu), gc.layers.Dense(10)

        def net(training):
            h = gc.nn.max_pool(gc.nn.relu(bn(conv(x), training)), 2)
            h = gc.layers.layer_norm(dense1(gc.reshape(h, [-1, 64])))
            return dense2(h)

        loss = gc.nn.softmax_cross_entropy(net(True), y)
        step = gc.optim.Adam(0.01).minimize(loss)
        probs = gc.nn.softmax(net(False))
    sess = gc.Session(g)
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    yb = rng.integers(0, 10, 16)
    for _ in range(5):
        sess.run(step, {x: xb, y: yb})
    return g, sess, x, y, probs, step, xb


def test_exported_model_matches_graphc_in_onnxruntime(tmp_path):
    g, sess, x, y, probs, step, xb = trained_cnn()
    path = tmp_path / "cnn.onnx"
    model = gc.export_onnx(sess, {"probs": probs}, path, inputs={"image": x})
    onnx.checker.check_model(onnx.load(path))
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["probs"]
    ops = {n.op_type for n in model.graph.node}
    assert "Assign" not in ops and "BatchNormalization" in ops
    # trained values (not the initial ones) are the initializers
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    name = next(k for k in inits if k.endswith("/w") and inits[k].ndim == 4)
    np.testing.assert_array_equal(inits[name], sess.variable(name))
    assert not np.array_equal(inits[name], g.initial_values[name])
    theirs = ort.InferenceSession(str(path)).run(None, {"image": xb})[0]
    ours = sess.run(probs, {x: xb})
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    # the symbolic batch dim stays symbolic
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 1


def test_export_refuses_update_ops_and_missing_inputs(tmp_path):
    g, sess, x, y, probs, step, xb = trained_cnn()
    with pytest.raises(ExportError, match="graphc's own domain"):
        gc.export_onnx(sess, [step.assigns[0]] and {"upd": gc.Tensor(g, step.assigns[0])}, tmp_path / "a.onnx")
    with g.as_default():
        z = gc.placeholder(gc.float32, [3], name="z")
        out = probs[:, :3] + z
    with pytest.raises(ExportError, match="also need placeholder\\(s\\) 'z', which are not in `inputs`"):
        gc.export_onnx(sess, [out], tmp_path / "b.onnx", inputs=[x])
