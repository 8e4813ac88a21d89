"""graphc.compiler.bind: the one way to bind a plan's symbolic dims (Plan.bind and the backends call it)."""
import gc as pygc
import weakref

import numpy as np
import pytest

from graphc.compiler import bind, compile
from graphc.errors import GraphcError
from graphc.ir import DType, Graph, TensorType


def _symbolic():
    g = Graph("sym")
    x = g.add_input("x", TensorType(DType.float32, ("N", 4)))
    n = g.add_node("Relu", [x])
    g.outputs.append(n.outputs[0])
    return g


def test_bind_is_cached_per_plan_and_the_cache_goes_with_the_plan():
    plan = compile(_symbolic())
    bound = bind(plan, {"N": 3})
    assert bound is bind(plan, {"N": 3}) and bind(plan, {"N": 3}) is bound
    assert bound.memory is not None and bound.graph.inputs[0].type.shape == (3, 4)
    assert plan.memory is None and plan.graph.inputs[0].type.shape == ("N", 4)  # the plan is left as it was
    assert bind(plan, {}) is plan
    gone = weakref.ref(bound)
    del plan, bound
    pygc.collect()
    assert gone() is None


def test_bind_names_an_unknown_symbol():
    with pytest.raises(GraphcError, match=r"cannot set B: .*open symbols: N"):
        bind(compile(_symbolic()), {"B": 2})
    np.testing.assert_array_equal(bind(compile(_symbolic()), {"N": 1}).graph.outputs[0].type.shape, (1, 4))
