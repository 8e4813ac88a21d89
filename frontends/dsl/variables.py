"""Graph leaves: ``placeholder`` (fed at run time), ``constant`` and ``Variable`` (state the Session owns)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphc.errors import GraphBuildError
from graphc.ir import DType, TensorType

from .graph import Graph, Operation, get_default_graph
from .initializers import Initializer
from .math import _dtype
from .tensor import Tensor, apply_op, caller_source, const_value


def _graph(graph: Graph | None) -> Graph:
    return graph if graph is not None else get_default_graph()


def placeholder(dtype, shape: Sequence[int | str | None] | None, name: str = "input",
                graph: Graph | None = None) -> Tensor:
    """A graph input fed at run time. A dim may be an int, None (any size) or a symbol name (equal sizes)."""
    g = _graph(graph)
    dt = _dtype(dtype)
    if shape is None:
        t = TensorType(dt, None)
    else:
        dims = []
        for i, d in enumerate(shape):
            if d is None:
                dims.append(f"{name}_d{i}")
            elif isinstance(d, (int, np.integer)) and d >= 0:
                dims.append(int(d))
            elif isinstance(d, str) and d:
                dims.append(d)
            else:
                raise GraphBuildError(f"placeholder '{name}': dim {i} must be a size >= 0, None or a symbol name, "
                                      f"got {d!r}")
        t = TensorType(dt, tuple(dims))
    v = g.add_input(name, t)
    g.sources[v.name] = caller_source() or ""
    return Tensor(g, v)


def placeholder_with_default(value: Any, shape: Sequence[int | str | None] | None = None, name: str = "input",
                             dtype=None, graph: Graph | None = None) -> Tensor:
    """A tensor that is ``value`` unless fed (``tf.placeholder_with_default``): run-time switches such as
    ``training = gc.placeholder_with_default(False, [])`` or ``keep_prob = gc.placeholder_with_default(1.0, [])``.

    ``shape`` (ints, None or symbol names, as for ``placeholder``) says what a fed value may be; it defaults
    to the default value's shape.
    """
    g = _graph(graph)
    default = Tensor(g, const_value(g, value, None if dtype is None else _dtype(dtype), f"{name}_default"))
    y = apply_op("Identity", [default], name=name)
    if shape is not None:
        if len(shape) != default.ndim or any(isinstance(d, int) and d != s for d, s in zip(shape, default.shape)):
            raise GraphBuildError(f"placeholder_with_default '{name}': the default value has shape "
                                  f"{list(default.shape)}, which does not fit shape={list(shape)}")
        dims = tuple(f"{y.name}_d{i}" if d is None else d for i, d in enumerate(shape))
        y.value.type = TensorType(default.dtype, dims)
    g._known.pop(id(y.value), None)  # its value is known only at run time (a feed may replace it)
    g.sources[y.name] = caller_source() or ""
    return y


def run_counter(graph: Graph) -> Tensor:
    """The graph's run counter (float64 scalar): the Session feeds its run number unless it is fed."""
    if graph.run_counter is None:
        graph.run_counter = placeholder(DType.float64, [], name="run_counter", graph=graph)
    return graph.run_counter


def constant(value: Any, dtype=None, name: str = "const", graph: Graph | None = None) -> Tensor:
    """A constant tensor (Python floats become float32 and ints int64 unless ``dtype`` says otherwise)."""
    g = _graph(graph)
    return Tensor(g, const_value(g, value, None if dtype is None else _dtype(dtype), name))


def Variable(initial_value: Any, name: str = "variable", trainable: bool = True, shape: Sequence[int] | None = None,
             dtype=DType.float32, graph: Graph | None = None) -> Tensor:
    """A variable: a value the Session owns and optimizers update.

    ``initial_value`` is an array or number, or an Initializer (then ``shape`` is required), e.g.
    ``gc.Variable(gc.initializers.he_normal(), shape=[784, 128], name="w1")``.
    """
    g = _graph(graph)
    if isinstance(initial_value, Initializer) or (callable(initial_value) and not isinstance(initial_value, np.ndarray)):
        if shape is None:
            raise GraphBuildError(f"variable '{name}': an initializer needs `shape=`")
        rng = np.random.default_rng([g.seed, len(g.variables)])
        value = np.asarray(initial_value(shape, _dtype(dtype).np, rng))
    else:
        value = np.asarray(initial_value)
        if not isinstance(initial_value, np.ndarray):
            value = value.astype(_dtype(dtype).np)
        if shape is not None and tuple(shape) != value.shape:
            raise GraphBuildError(f"variable '{name}': initial value has shape {list(value.shape)}, "
                                  f"but shape={list(shape)} was given")
    from graphc.ir import Value

    vname = g.unique_name(name)
    v = Value(vname, TensorType(DType.from_np(value.dtype), value.shape))
    g.variables[vname] = v
    g.initial_values[vname] = value
    if trainable:
        g.trainable.append(vname)
    g.sources[vname] = caller_source() or ""
    return Tensor(g, v)


def assign(variable: Tensor, new_value: Any, name: str | None = None) -> Operation:
    """An update op: after ``sess.run`` of it, ``variable`` holds ``new_value``."""
    g = variable.graph
    if g.variables.get(variable.name) is not variable.value:
        raise GraphBuildError(f"assign: '{variable.name}' is not a variable (only gc.Variable tensors can be assigned)")
    if not isinstance(new_value, Tensor):
        new_value = Tensor(g, const_value(g, np.asarray(new_value, dtype=variable.dtype.np)))
    out = apply_op("Assign", [variable, new_value], domain="graphc", name=name or f"assign_{variable.name}")
    return Operation(g, [out.value], name=name or f"assign_{variable.name}", source=out.op.source)


__all__ = ["Variable", "assign", "constant", "placeholder", "placeholder_with_default"]
