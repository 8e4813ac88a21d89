"""The DSL in float64: every public DSL function's training graph of tests/cuda/dsl_sweep.py (forward, gradients
w.r.t. the placeholders, an optimizer step) rebuilt with float64 placeholders and variables builds with no
mixed element types and computes its loss, gradients and updated variables in float64 (the optimizer's step
count excepted: a float32 counter). The gradient rules themselves are swept in every float type by
tests/test_gradcheck.py (float64, finite differences) and tests/test_gradcheck_dtypes.py (float16, bfloat16).
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from tests.cuda import dsl_sweep as sweep


@pytest.fixture
def float64_cases():
    sweep.FLOAT[0] = gc.float64
    try:
        yield
    finally:
        sweep.FLOAT[0] = gc.float32


@pytest.mark.parametrize("case", sweep.CASES, ids=lambda c: c.name)
def test_dsl_function_trains_in_float64(case, float64_cases):
    sub, g, targets = sweep.build(case)
    feeds = sweep.feeds_for(case, sub)
    feeds.update({n: np.asarray(g.initial_values[n]) for n in g.variables})
    outs = gc.prepare(sub, backend="numpy").run(feeds)
    n = len(targets)
    checked = outs[:len(outs) - n] + [o for o, t in zip(outs[len(outs) - n:], targets) if not t.endswith("/step")]
    for k, o in enumerate(checked):
        o = np.asarray(o)
        if o.dtype.kind == "f":
            assert o.dtype == np.float64, f"{case.name}: output {k} is {o.dtype}"
        assert np.all(np.isfinite(o)), f"{case.name}: output {k} is not finite"
