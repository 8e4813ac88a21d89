"""DSL tensors: ``Tensor`` wraps a (graph, Value) pair and builds nodes through ``apply_op``.

``apply_op`` is the one place where the DSL creates a node: it records the user's file and line as
the node's source, fills in attribute defaults, and runs the op's shape inference at once, so a
shape error is raised while the graph is built, quoting the line that built it.
"""
from __future__ import annotations

import linecache
import os
import sys
from typing import Any, Sequence

import numpy as np

from graphc.errors import GraphBuildError, GraphcError, ShapeError
from graphc.ir import DType, TensorType, Value
from graphc.ops import get_opdef
from graphc.ops.infer import infer_node

from . import graph as _graph_module
from .graph import Graph, get_default_graph

_DSL_DIR = os.path.dirname(os.path.abspath(__file__))


def caller_source() -> str | None:
    """``file:line`` of the first stack frame outside the DSL package (the user's line)."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_DSL_DIR):
            try:
                shown = os.path.relpath(fn)
            except ValueError:
                shown = fn
            if shown.startswith(".."):
                shown = fn
            return f"{shown}:{f.f_lineno}"
        f = f.f_back
    return None


def _source_text(source: str | None) -> str:
    if not source:
        return ""
    path, _, line = source.rpartition(":")
    try:
        text = linecache.getline(path, int(line)).strip()
    except (ValueError, OSError):
        text = ""
    return f"\n    {text}" if text else ""


class Tensor:
    """A value of a DSL graph. Operators build nodes: ``+ - * / @ ** -x < <= > >=``, ``x[...]``."""

    __slots__ = ("graph", "value")
    __array_ufunc__ = None  # NumPy arrays defer to Tensor's reflected operators

    def __init__(self, graph: Graph, value: Value):
        self.graph = graph
        self.value = value

    # ---- facts ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.value.name

    @property
    def type(self) -> TensorType | None:
        return self.value.type

    @property
    def dtype(self) -> DType | None:
        t = self.value.type
        return t.dtype if isinstance(t, TensorType) else None

    @property
    def shape(self) -> tuple | None:
        """Dims as ints or symbol names (None: rank unknown)."""
        t = self.value.type
        return t.shape if isinstance(t, TensorType) else None

    @property
    def ndim(self) -> int | None:
        s = self.shape
        return None if s is None else len(s)

    @property
    def source(self) -> str | None:
        """The file and line that created this tensor."""
        p = self.value.producer
        if p is not None:
            return p.source
        return getattr(self.graph, "sources", {}).get(self.value.name)

    @property
    def op(self):
        """The IR node that produced this tensor (None for placeholders, variables and constants)."""
        return self.value.producer

    def __repr__(self) -> str:
        kind = "Tensor"
        if self.value.name in self.graph.variables and self.graph.variables[self.value.name] is self.value:
            kind = "Variable"
        return f"<{kind} '{self.name}' {self.type}>"

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: Any) -> bool:  # identity, so tensors can key feed dicts (use gc.equal for values)
        return isinstance(other, Tensor) and other.value is self.value

    def __bool__(self) -> bool:
        raise GraphBuildError(f"the truth value of tensor '{self.name}' is not known while the graph is built; "
                              f"use gc.where or compare values after sess.run")

    # ---- operators ------------------------------------------------------------------------
    def __add__(self, o): return _binary("Add", self, o)
    def __radd__(self, o): return _binary("Add", o, self)
    def __sub__(self, o): return _binary("Sub", self, o)
    def __rsub__(self, o): return _binary("Sub", o, self)
    def __mul__(self, o): return _binary("Mul", self, o)
    def __rmul__(self, o): return _binary("Mul", o, self)
    def __truediv__(self, o): return _binary("Div", self, o)
    def __rtruediv__(self, o): return _binary("Div", o, self)
    def __matmul__(self, o): return _binary("MatMul", self, o)
    def __rmatmul__(self, o): return _binary("MatMul", o, self)
    def __pow__(self, o): return _binary("Pow", self, o)
    def __rpow__(self, o): return _binary("Pow", o, self)
    def __neg__(self): return apply_op("Neg", [self])
    def __pos__(self): return self
    def __abs__(self): return apply_op("Abs", [self])
    def __lt__(self, o): return _binary("Less", self, o)
    def __le__(self, o): return _binary("LessOrEqual", self, o)
    def __gt__(self, o): return _binary("Greater", self, o)
    def __ge__(self, o): return _binary("GreaterOrEqual", self, o)

    # Indexing and the method forms of gc functions (x[...], x.reshape, x.transpose, x.T, x.astype, x.sum,
    # x.mean, x.max) are attached by math.py, where those functions live (this module does not import it).


_graph_module.TENSOR_TYPE[:] = [Tensor]


# ---- conversion and node building ---------------------------------------------------------
def _graph_of(args: Sequence[Any], graph: Graph | None = None) -> Graph:
    for a in args:
        if isinstance(a, Tensor):
            if graph is not None and a.graph is not graph:
                raise GraphBuildError(f"tensor '{a.name}' belongs to graph '{a.graph.name}', not to graph "
                                      f"'{graph.name}': tensors of two graphs cannot be combined")
            graph = a.graph
    if graph is None:
        graph = get_default_graph()
    return graph


def const_value(graph: Graph, x: Any, dtype: DType | None = None, name: str = "const") -> Value:
    """A constant Value for a Python number or array (element type ``dtype`` when given)."""
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(dtype.np)
    elif arr.dtype == np.float64 and not isinstance(x, np.ndarray):
        arr = arr.astype(np.float32)  # Python floats default to float32, as in every DL framework
    elif arr.dtype.kind == "i" and not isinstance(x, np.ndarray):
        arr = arr.astype(np.int64)
    return graph.add_constant(arr, name)


def as_tensor(x: Any, graph: Graph | None = None, dtype: DType | None = None) -> Tensor:
    """A Tensor for x (a Tensor is returned as is; numbers and arrays become constants)."""
    if isinstance(x, Tensor):
        return x
    g = graph or get_default_graph()
    return Tensor(g, const_value(g, x, dtype))


def _binary(op: str, a: Any, b: Any) -> Tensor:
    g = _graph_of([a, b])
    # A Python number takes the element type of the tensor it meets (x * 2 keeps x's dtype).
    like = a if isinstance(a, Tensor) else b
    dt = like.dtype if isinstance(like, Tensor) else None
    if not isinstance(a, Tensor):
        a = Tensor(g, const_value(g, a, dt if not isinstance(a, np.ndarray) else None))
    if not isinstance(b, Tensor):
        b = Tensor(g, const_value(g, b, dt if not isinstance(b, np.ndarray) else None))
    return apply_op(op, [a, b])


def apply_op(op_type: str, inputs: Sequence[Any], attrs: dict | None = None, num_outputs: int = 1,
             domain: str = "", name: str | None = None, graph: Graph | None = None, source: str | None = None):
    """Add one node, infer its output types now, and return its output Tensor (a list if several).

    Inputs may be Tensors, None (an absent optional input), numbers or arrays (made constants).
    A ShapeError names the node and quotes the user's line that built it.
    """
    g = _graph_of(inputs, graph)
    vals: list[Value | None] = []
    for x in inputs:
        if x is None:
            vals.append(None)
        elif isinstance(x, Tensor):
            vals.append(x.value)
        else:
            vals.append(const_value(g, x))
    src = source or caller_source()
    node = g.add_node(op_type, vals, attrs, num_outputs=num_outputs, name=name, domain=domain, source=src)
    try:
        opdef = get_opdef(node)
        opdef.complete_attrs(node)
        opdef.check_arity(node)
        infer_node(g, node, g._known, g._symbolic)
    except GraphcError as e:
        g.nodes.pop()  # the graph stays as it was before the failing call
        if isinstance(e, ShapeError):
            raise ShapeError(f"{e}{_source_text(src)}") from None
        raise
    outs = [Tensor(g, v) for v in node.outputs]
    return outs[0] if num_outputs == 1 else outs
