"""The nine full-size CNNs shipped in the onnx wheel, against their reference outputs and onnxruntime.

Their weights are all 0.02, which makes outputs nearly uniform and hides many errors, so each net
also runs with seeded random weights and is compared with onnxruntime.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from graphc.frontends.onnx import import_model
from graphc.models.light import NAMES, light_inputs, path, reference_output, with_random_weights
from graphc.runtime import get_backend


@pytest.mark.parametrize("name", NAMES)
def test_light_model_matches_reference(name):
    model = onnx.load(path(name))
    graph = import_model(model)
    out = get_backend("numpy").prepare(graph).run(light_inputs(model))
    ref = reference_output(name)
    assert out[0].shape == ref.shape and out[0].dtype == ref.dtype
    np.testing.assert_allclose(out[0], ref, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_light_model_random_weights_match_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    model, feeds = with_random_weights(onnx.load(path(name)), seed=1234)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    expected = sess.run(None, dict(zip(names, feeds)))
    got = get_backend("numpy").prepare(import_model(model)).run(feeds)
    assert len(got) == len(expected)
    logits = expected[-1]  # the net's logits: the added Softmax input, or the only output (densenet121)
    # The random weights must spread the logits, or the comparison is as weak as with the 0.02 weights.
    assert logits.max() - logits.min() > 0.1
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(e).max())))
