"""Shared pieces for OpDefs: symbolic broadcasting, common inference rules, opset upgrade helpers."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..errors import OpAttributeError, node_label
from ..ir import DType, Graph, Node, TensorType
from .registry import InferContext, Kind, OpDef, register


def tt(dtype: DType | None, shape) -> TensorType:
    return TensorType(dtype, None if shape is None else tuple(shape))


def broadcast_shapes(ctx: InferContext, shapes: Sequence) -> tuple | None:
    """Multidirectional (NumPy) broadcasting over symbolic shapes; None when any rank is unknown."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(rank):
        dims = [s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0]
        fixed = {d for d in dims if isinstance(d, int) and d != 1}
        syms = {d for d in dims if isinstance(d, str)}
        if len(fixed) > 1:
            ctx.fail(f"cannot broadcast shapes {' and '.join(_fmt(s) for s in shapes)}: "
                     f"dim {k - rank} is {' vs '.join(str(d) for d in sorted(fixed))}")
        if fixed:
            out.append(fixed.pop())
        elif len(syms) == 1:
            out.append(syms.pop())
        elif syms:
            out.append(ctx.fresh())
        else:
            out.append(1)
    return tuple(out)


def _fmt(s) -> str:
    return "[" + ",".join(map(str, s)) + "]" if s is not None else "[...]"


def normalize_axis(ctx: InferContext, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        ctx.fail(f"{what} {axis} is out of range for an input of rank {rank}")
    return axis + rank if axis < 0 else axis


def np_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# ---- inference rules used by many ops ---------------------------------------------------------
def infer_same(ctx: InferContext) -> list:
    """Output 0 has the type of input 0 (unary elementwise ops)."""
    return [ctx.type(0)]


def infer_broadcast(out_dtype: DType | None = None) -> Callable[[InferContext], list]:
    """Output is the broadcast of all present inputs; dtype of input 0 unless given."""

    def infer(ctx: InferContext) -> list:
        present = [i for i in range(ctx.n_inputs) if ctx.has_input(i)]
        dts = {ctx.dtype(i) for i in present if ctx.dtype(i) is not None}
        if out_dtype is None and len(dts) > 1:
            ctx.fail(f"inputs must share one element type, got {', '.join(sorted(d.name for d in dts))}")
        shape = broadcast_shapes(ctx, [ctx.shape(i) for i in present])
        return [tt(out_dtype or ctx.dtype(0), shape)]

    return infer


def infer_dtype_only(dtype_of: Callable[[InferContext], DType | None]) -> Callable[[InferContext], list]:
    def infer(ctx: InferContext) -> list:
        return [tt(dtype_of(ctx), ctx.shape(0))]

    return infer


# ---- upgrades from older opsets ---------------------------------------------------------------
def attr_to_input(attr: str, index: int, dtype=np.int64) -> Callable[[Node, Graph], None]:
    """Upgrade rule: an attribute that became an input in a later opset (e.g. ``axes``)."""

    def upgrade(node: Node, graph: Graph) -> None:
        if attr not in node.attrs:
            return
        value = node.attrs.pop(attr)
        try:
            if isinstance(value, (str, bytes)) or (isinstance(value, list) and any(
                    isinstance(x, (str, bytes)) for x in value)):
                raise TypeError("text")
            array = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            raise OpAttributeError(f"{node_label(node)}: attribute '{attr}' must hold numbers "
                                   f"({np.dtype(dtype).name}), got {value!r:.60}") from None
        c = graph.add_constant(array, f"{node.name}_{attr}")
        while len(node.inputs) < index:
            node.inputs.append(None)
        if len(node.inputs) == index:
            node.inputs.append(c)
        else:
            node.inputs[index] = c

    return upgrade


def drop_attrs(*names: str) -> Callable[[Node, Graph], None]:
    """Upgrade rule: attributes removed in a later opset that no longer change the result."""

    def upgrade(node: Node, graph: Graph) -> None:
        for n in names:
            node.attrs.pop(n, None)

    return upgrade


def known_scalar(ctx: InferContext, i: int):
    """The known value of a scalar (or 1-element) input as a Python number, else None."""
    c = ctx.const(i)
    if c is None or np.size(c) != 1:
        return None
    return np.asarray(c).reshape(-1)[0].item()


def check_rank(ctx: InferContext, i: int, ranks, name: str):
    """Input i's rank (None when unknown), failing unless it is one of ``ranks``."""
    r = ctx.rank(i)
    if r is not None and r not in ranks:
        want = " or ".join(str(x) for x in ranks)
        ctx.fail(f"input '{name}' must have rank {want}, got shape {list(ctx.shape(i))}")
    return r


def dtype_attr(code: int | None, default: DType | None) -> DType | None:
    """A ``dtype``/``to`` attribute's element type (``default`` when absent or 0)."""
    if code is None or code == 0:
        return default
    return DType(int(code))


def route_back_grad(ctx, node, dys):
    """The gradient rule of an op that only moves elements of input 0: ``ctx.route_back`` sends each
    output element's gradient to where it came from (the other inputs get none)."""
    return [ctx.route_back(node, dys[0], 0)] + [None] * (len(node.inputs) - 1)


def family_register(family: str) -> Callable[..., None]:
    """A shorthand registering OpDefs of ``family``: ``reg(name, eval, infer, attrs=None, kind=INJECTIVE,
    inputs=(1, 1), outputs=(1, 1), upgrades=None, doc="")``."""
    def reg(name: str, eval, infer, attrs=None, kind=Kind.INJECTIVE, inputs=(1, 1), outputs=(1, 1), upgrades=None,
            doc: str = "") -> None:
        register(OpDef(name, eval=eval, infer=infer, attrs=attrs or {}, kind=kind, inputs=inputs, outputs=outputs,
                       upgrades=upgrades or {}, family=family, doc=doc))

    return reg
