"""ai.onnx.preview.training optimizers (Momentum, Adagrad, Adam): values against onnx's reference
evaluator, several tensors at once, inference and errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.importer import import_model
from graphc.errors import ShapeError
from graphc.ir import DType, Graph, TensorType
from graphc.ops import lookup
from graphc.passes import infer_shapes
from graphc.runtime.numpy.executor import NumpyExecutable

RNG = np.random.default_rng(5)
DOMAIN = "ai.onnx.preview.training"


def run_both(op, groups, n_tensors, step, **attrs):
    """groups: names of the tensor groups after R and T (e.g. X, G, V); n_tensors per group."""
    names = [f"{gname}{i}" for gname in groups for i in range(n_tensors)]
    outs = [f"{gname}{i}_new" for gname in [groups[0], *groups[2:]] for i in range(n_tensors)]
    node = oh.make_node(op, ["R", "T", *names], outs, domain=DOMAIN, **attrs)
    shapes = [(3, 2), (4,)][:n_tensors]
    ins = [oh.make_tensor_value_info("R", TP.FLOAT, []), oh.make_tensor_value_info("T", TP.INT64, [])]
    ins += [oh.make_tensor_value_info(n, TP.FLOAT, shapes[i % n_tensors]) for i, n in enumerate(names)]
    g = oh.make_graph([node], "g", ins, [onnx.ValueInfoProto(name=o) for o in outs])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid(DOMAIN, 1)])
    feeds = {"R": np.array(0.1, np.float32), "T": np.array(step, np.int64)}
    for i, n in enumerate(names):
        x = RNG.normal(size=shapes[i % n_tensors]).astype(np.float32)
        feeds[n] = np.abs(x) if n.startswith("H") else x
    ours = NumpyExecutable(import_model(m)).run(feeds)
    ref = ReferenceEvaluator(m).run(None, feeds)
    for a, b in zip(ours, ref):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return feeds, ours


@pytest.mark.parametrize("step", [0, 3])
@pytest.mark.parametrize("mode", ["standard", "nesterov"])
def test_momentum(step, mode):
    feeds, (x_new, v_new) = run_both("Momentum", ["X", "G", "V"], 1, step, alpha=0.9, beta=0.5, mode=mode,
                                     norm_coefficient=0.01)
    beta = 0.5 if step else 1.0
    g = 0.01 * feeds["X0"] + feeds["G0"]
    np.testing.assert_allclose(v_new, 0.9 * feeds["V0"] + beta * g, rtol=1e-5)


@pytest.mark.parametrize("step", [0, 2])
def test_adagrad_two_tensors(step):
    run_both("Adagrad", ["X", "G", "H"], 2, step, decay_factor=0.1, epsilon=1e-5, norm_coefficient=0.001)


@pytest.mark.parametrize("step", [0, 4])
def test_adam_two_tensors(step):
    run_both("Adam", ["X", "G", "V", "H"], 2, step, alpha=0.9, beta=0.99, epsilon=1e-7, norm_coefficient=0.01,
             norm_coefficient_post=0.02)


def _graph(op, n_groups, shape, r_shape=()):
    g = Graph("t")
    r = g.add_input("R", TensorType(DType.float32, r_shape))
    t = g.add_input("T", TensorType(DType.int64, ()))
    ts = [g.add_input(f"t{k}", TensorType(DType.float32, shape)) for k in range(n_groups)]
    n = g.add_node(op, [r, t, *ts], {"alpha": 0.9, "beta": 0.9, "mode": "standard", "norm_coefficient": 0.0}
                   if op == "Momentum" else {}, num_outputs=n_groups - 1, domain=DOMAIN)
    lookup(DOMAIN, op).complete_attrs(n)
    g.outputs = list(n.outputs)
    return g, n


def test_inference_keeps_symbolic_shapes():
    g, n = _graph("Adam", 4, ("N", 7))
    infer_shapes(g)
    assert [v.type for v in n.outputs] == [TensorType(DType.float32, ("N", 7))] * 3


def test_learning_rate_must_be_a_scalar():
    g, _ = _graph("Momentum", 3, (2,), r_shape=(3,))
    with pytest.raises(ShapeError, match="learning rate R must be a scalar, got shape \\[3\\]"):
        infer_shapes(g)


def test_uneven_groups_are_rejected():
    g = Graph("t")
    ins = [g.add_input("R", TensorType(DType.float32, ())), g.add_input("T", TensorType(DType.int64, ()))]
    ins += [g.add_input(f"t{k}", TensorType(DType.float32, (2,))) for k in range(4)]
    n = g.add_node("Adagrad", ins, {}, num_outputs=2, domain=DOMAIN)
    lookup(DOMAIN, "Adagrad").complete_attrs(n)
    with pytest.raises(ShapeError, match="3 groups of equally many tensors, got 4"):
        infer_shapes(g)
