"""Every gradient rule in every float type: the float64 finite-difference cases of test_gradcheck.py, rebuilt
in float16 and bfloat16 (against the same graph in float32), where the op allows the type (its inference accepts
the inputs).

A rule that mixes element types (a float32 constant against a float16 gradient...) fails while the gradient
graph is built; one that computes in the wrong type shows as a gradient far from the float32 result. The
low-precision gradients are compared with the same graph in float32, relative to the gradient's size.
A case whose op refuses the type is skipped, naming the op and the type.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from graphc.autodiff import gradients
from graphc.errors import ShapeError
from graphc.ir import DType, Graph, TensorType
from graphc.ops import lookup
from graphc.ops.interpret import run_graph
from graphc.passes import infer_shapes
from tests.test_gradcheck import CASES, Case

#: type -> (NumPy dtype, tolerance of |g - g32| relative to |g32|)
TYPES = {"float16": (DType.float16, np.float16, 3e-2), "bfloat16": (DType.bfloat16, ml_dtypes.bfloat16, 1e-1)}


class NotAllowed(Exception):
    """The op does not take this element type (its inference refuses it)."""


def _gradients_in(case: Case, dt: DType, npdt) -> list[np.ndarray]:
    g = Graph("gradcheck_dtypes")
    g.opset = {"": 23}
    xs, feeds, ins = [], {}, []
    for i, x in enumerate(case.inputs):
        if x is None:
            ins.append(None)
        elif x.dtype == np.float64:
            v = g.add_input(f"x{i}", TensorType(dt, x.shape)) if i not in case.fixed else \
                g.add_constant(x.astype(npdt), f"c{i}")
            if i not in case.fixed:
                xs.append(v)
                feeds[v] = x.astype(npdt)
            ins.append(v)
        else:
            ins.append(g.add_constant(np.asarray(x), f"c{i}"))
    node = g.add_node(case.op, ins, dict(case.attrs), num_outputs=case.n_out, domain=case.domain)
    lookup(case.domain, case.op).complete_attrs(node)
    try:
        infer_shapes(g)
    except ShapeError as e:
        raise NotAllowed(str(e)) from None
    which = case.loss_outputs if case.loss_outputs is not None else range(case.n_out)
    rng = np.random.default_rng(7)
    terms = []
    for k in which:
        out = node.outputs[k]
        if out is None or out.type.dtype != dt:
            continue
        w = g.add_constant(rng.uniform(0.5, 1.5, out.type.shape).astype(npdt), f"w{k}")
        terms.append(g.add_node("ReduceSum", [g.add_node("Mul", [out, w]).outputs[0]], {"keepdims": 0}).outputs[0])
    if not terms:
        raise NotAllowed("no output of this type")
    loss = terms[0] if len(terms) == 1 else g.add_node("Sum", terms).outputs[0]
    infer_shapes(g)
    grads = gradients(g, [loss], xs)
    g.outputs = grads
    g.verify()
    got = run_graph(g, feeds)
    for x, gx in zip(xs, got):
        assert gx.dtype == npdt, f"{case.id}: gradient wrt '{x.name}' is {gx.dtype}, not {np.dtype(npdt)}"
    return got


def check_dtype(case: Case, name: str) -> None:
    dt, npdt, tol = TYPES[name]
    low = _gradients_in(case, dt, npdt)
    ref = _gradients_in(case, DType.float32, np.float32)
    for k, (a, b) in enumerate(zip(low, ref)):
        a = a.astype(np.float64)
        scale = np.abs(b).max() + 1e-3
        err = np.abs(a - b).max() / scale
        assert err <= tol, f"{case.id} in {name}: gradient {k} differs from float32 by {err:.3g} of its size"


@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient_rule_in_low_precision(case, name):
    try:
        check_dtype(case, name)
    except NotAllowed as e:
        pytest.skip(f"{case.op} does not take {name}: {e}")
