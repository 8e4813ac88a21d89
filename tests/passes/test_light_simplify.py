"""simplify() on the nine light CNNs: the same outputs before and after, and the node counts it reaches.

The shipped models make every weight with ConstantOfShape; folding turns those into constants so that
BatchNorm folds into the convolutions. With seeded random weights (models/light.py) outputs must agree
to rtol 1e-4.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from graphc.frontends.onnx import import_model
from graphc.passes import simplify
from graphc.models.light import NAMES, path, with_random_weights
from graphc.runtime import get_backend

#: Node counts (imported -> simplified) of the shipped models; a change here is a change in what simplify does.
NODE_COUNTS = {
    "bvlc_alexnet": (40, 22), "densenet121": (1746, 429), "inception_v1": (237, 142), "inception_v2": (916, 164),
    "resnet50": (415, 123), "shufflenet": (446, 154), "squeezenet": (105, 65), "vgg19": (82, 44),
    "zfnet512": (38, 22),
}


def _run(graph, feeds):
    return get_backend("numpy").prepare(graph).run(feeds)


@pytest.mark.parametrize("name", NAMES)
def test_light_model_node_counts(name):
    graph = import_model(onnx.load(path(name)))
    n0 = len(graph.nodes)
    report = simplify(graph, verify=False)
    graph.verify()
    assert (n0, len(graph.nodes)) == NODE_COUNTS[name]
    assert report.nodes_before == n0 and report.nodes_after == len(graph.nodes)
    hist = graph.op_histogram()
    assert "ConstantOfShape" not in hist and "Dropout" not in hist
    # every BN folds into its producer, or (densenet's after a Concat) becomes a per-channel Mul and Add, which
    # fuse with the Relu after them (62 such in densenet121: 367 -> 429 nodes)
    assert "BatchNormalization" not in hist


@pytest.mark.parametrize("name", NAMES)
def test_light_model_random_weights_same_outputs_after_simplify(name):
    model, feeds = with_random_weights(onnx.load(path(name)), seed=5)
    graph = import_model(model)
    names = [v.name for v in graph.outputs]
    before = _run(graph, feeds)
    simplify(graph, verify=False)
    assert [v.name for v in graph.outputs] == names
    after = _run(graph, feeds)
    for a, b in zip(after, before):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(b).max())))


def test_simplify_with_verification_on_a_light_model():
    """GRAPHC_VERIFY's checks (verify + spot check after every pass) pass on a whole network."""
    model, feeds = with_random_weights(onnx.load(path("squeezenet")), seed=3)
    graph = import_model(model)
    report = simplify(graph, verify=True)
    assert report.changed and not report.notes
