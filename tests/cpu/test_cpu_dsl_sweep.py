"""The DSL sweep on the CPU backend: each public DSL function (math, nn, layers, losses, optimizers) as a tiny
training graph (forward, gradients, an optimizer step; tests/cuda/dsl_sweep.py) compiled at -O2 runs one step
on the compiled CPU backend with the loss, gradients and updated variables of the NumPy backend."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.cpu import available

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cuda"))
from dsl_sweep import CASES, build, feeds_for  # noqa: E402

pytestmark = pytest.mark.skipif(not available(), reason="needs a C++ compiler")

#: Random cases draw from Philox on the generated-kernel backends, not NumPy's stream (statistics are checked in
#: tests/cuda/test_cuda_dsl_coverage.py).
RANDOM_CASES = {"nn.dropout"}
STEP_CASES = [c for c in CASES if c.name not in RANDOM_CASES]


@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.name)
def test_training_step_agrees_with_numpy_on_the_cpu_backend(case):
    sub, g, _ = build(case)
    feeds = feeds_for(case, sub)
    feeds.update({n: np.asarray(g.initial_values[n]) for n in g.variables})
    ref = gc.prepare(sub, backend="numpy").run(feeds)
    got = gc.prepare(compile_graph(sub, level=2), backend="cpu").run(feeds)
    assert len(got) == len(ref)
    for k, (a, b) in enumerate(zip(got, ref)):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (case.name, k, a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{case.name}: output {k}")


def test_the_sweep_is_the_whole_dsl():
    assert len(STEP_CASES) >= 100 and len(STEP_CASES) == len(CASES) - len(RANDOM_CASES)
