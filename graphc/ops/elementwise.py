"""Elementwise operators: unary math, binary arithmetic with broadcasting, activations."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from .common import infer_broadcast, infer_same
from .registry import Attr, Kind, OpDef, register

FAMILY = "elementwise"


def _unary(name: str, fn, attrs=None, doc: str = "") -> None:
    register(OpDef(name, eval=fn, infer=infer_same, attrs=attrs or {}, kind=Kind.ELEMENTWISE,
                   inputs=(1, 1), family=FAMILY, doc=doc))


def _binary(name: str, fn, out_dtype: DType | None = None) -> None:
    register(OpDef(name, eval=fn, infer=infer_broadcast(out_dtype), kind=Kind.BROADCAST, inputs=(2, 2),
                   family=FAMILY))


def _same_dtype(fn):
    """Wrap a NumPy ufunc so the result keeps the input's element type (NumPy may promote)."""

    def ev(node, *xs):
        return np.asarray(fn(*xs)).astype(xs[0].dtype, copy=False)

    return ev


_unary("Relu", lambda node, x: np.maximum(x, x.dtype.type(0)))
_unary("Abs", lambda node, x: np.abs(x))
_unary("Neg", lambda node, x: np.negative(x))
_unary("Exp", _same_dtype(np.exp))
_unary("Log", _same_dtype(np.log))
_unary("Sqrt", _same_dtype(np.sqrt))
_unary("Sigmoid", lambda node, x: (1.0 / (1.0 + np.exp(-x))).astype(x.dtype, copy=False))
_unary("Tanh", _same_dtype(np.tanh))

_binary("Add", lambda node, a, b: np.add(a, b))
_binary("Sub", lambda node, a, b: np.subtract(a, b))
_binary("Mul", lambda node, a, b: np.multiply(a, b))
_binary("Equal", lambda node, a, b: np.equal(a, b), out_dtype=DType.bool)
