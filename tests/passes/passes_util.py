"""Helpers for the pass tests: build tiny graphs, run them with the reference interpreter, compare."""
from __future__ import annotations

import numpy as np

import graphc.ops  # noqa: F401  (registers the operators)
from graphc.ir import DType, Graph, TensorType
from graphc.ops.interpret import run_graph
from graphc.ops.registry import get_opdef
from graphc.passes import infer_shapes
from graphc.passes.manager import random_feeds


def f32(*shape) -> TensorType:
    return TensorType(DType.float32, shape)


def finish(g: Graph, *outputs) -> Graph:
    """Set the outputs, complete attributes with their defaults (as the importer does), infer, verify."""
    g.outputs = list(outputs)
    for n in g.nodes:
        get_opdef(n).complete_attrs(n)
    infer_shapes(g)
    g.verify()
    return g


def run(g: Graph, feeds: dict) -> list:
    by_name = {v.name: v for v in g.inputs}
    return run_graph(g, {by_name[k]: x for k, x in feeds.items()})


def check_pass(g: Graph, fn, **kw):
    """Run ``fn(g)`` and assert the outputs (names, order and values on random feeds) did not change.

    Returns (changed, feeds, outputs before)."""
    feeds = random_feeds(g, seed=7, symbol_size=3)
    names = [v.name for v in g.outputs]
    before = run(g, feeds)
    changed = fn(g, **kw)
    g.verify()
    assert [v.name for v in g.outputs] == names
    after = run(g, feeds)
    for a, b in zip(after, before):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    return changed


def ops(g: Graph) -> list[str]:
    return [n.op_type for n in g.nodes]
