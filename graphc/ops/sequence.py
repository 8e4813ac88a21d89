"""Sequence and optional operators: build, index and split sequences of tensors; wrap and unwrap optionals.

At run time a sequence is a Python list of arrays and an empty optional is None; their types are
``SequenceType`` / ``OptionalType``. (SequenceMap, which has a body, lives with the control-flow ops.)
"""
from __future__ import annotations

import numpy as np

from ..errors import ExecutionError, node_label
from ..ir import DType
from ..ir.types import OptionalType, SequenceType, TensorType
from .common import normalize_axis, np_axis, tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "sequence"


def _reg(name: str, eval, infer, attrs=None, inputs=(1, 1), doc: str = "") -> None:
    register(OpDef(name, eval=eval, infer=infer, attrs=attrs or {}, kind=Kind.OPAQUE, inputs=inputs,
                   family=FAMILY, doc=doc))


def _raise(node, msg: str):
    raise ExecutionError(f"{node_label(node)}: {msg}")


def _join(ctx: InferContext, a: TensorType | None, b: TensorType | None) -> TensorType | None:
    """The element type describing tensors of type a and of type b (dims that differ become fresh)."""
    if a is None:
        return b
    if b is None:
        return a
    if a.dtype is not None and b.dtype is not None and a.dtype != b.dtype:
        ctx.fail(f"a sequence holds one element type, got {a.dtype} and {b.dtype}")
    dt = a.dtype or b.dtype
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return tt(dt, None)
    return tt(dt, [x if x == y else ctx.fresh() for x, y in zip(a.shape, b.shape)])


def _seq_elem(ctx: InferContext, i: int) -> TensorType | None:
    t = ctx.type(i)
    if t is None:
        return None
    if not isinstance(t, SequenceType):
        ctx.fail(f"input {i} must be a sequence, got {t}")
    return t.elem


def _position(node, pos, n: int, insert: bool = False) -> int:
    p = int(np.asarray(pos).reshape(-1)[0])
    hi = n if insert else n - 1
    if not -n <= p <= hi:
        _raise(node, f"position {p} is out of range for a sequence of {n} tensors")
    return p + n if p < 0 else p


# ---- building and indexing -------------------------------------------------------------------------
def _infer_sequence_empty(ctx):
    dt = ctx.attr("dtype")
    return [SequenceType(tt(DType.float32 if dt is None else DType(dt), None))]


_reg("SequenceEmpty", lambda node: [], _infer_sequence_empty, attrs={"dtype": Attr("int")}, inputs=(0, 0))


def _infer_sequence_construct(ctx):
    elem = None
    for i in range(ctx.n_inputs):
        t = ctx.type(i)
        if t is not None and not isinstance(t, TensorType):
            ctx.fail(f"input {i} must be a tensor, got {t}")
        elem = _join(ctx, elem, t) if i else t
    return [SequenceType(elem)]


_reg("SequenceConstruct", lambda node, *xs: list(xs), _infer_sequence_construct, inputs=(1, 2**31))


def _eval_sequence_insert(node, seq, x, position=None):
    out = list(seq)
    out.insert(len(out) if position is None else _position(node, position, len(out), insert=True), x)
    return out


def _infer_sequence_insert(ctx):
    elem = _seq_elem(ctx, 0)
    t = ctx.type(1)
    if t is not None and not isinstance(t, TensorType):
        ctx.fail(f"the inserted value must be a tensor, got {t}")
    return [SequenceType(_join(ctx, elem, t))]


_reg("SequenceInsert", _eval_sequence_insert, _infer_sequence_insert, inputs=(2, 3))


def _infer_sequence_at(ctx):
    return [_seq_elem(ctx, 0)]


_reg("SequenceAt", lambda node, seq, pos: seq[_position(node, pos, len(seq))], _infer_sequence_at, inputs=(2, 2))


def _eval_sequence_erase(node, seq, position=None):
    out = list(seq)
    del out[len(out) - 1 if position is None else _position(node, position, len(out))]
    return out


_reg("SequenceErase", _eval_sequence_erase, lambda ctx: [SequenceType(_seq_elem(ctx, 0))], inputs=(1, 2))


def _infer_sequence_length(ctx):
    _seq_elem(ctx, 0)
    return [tt(DType.int64, ())]


_reg("SequenceLength", lambda node, seq: np.array(len(seq), dtype=np.int64), _infer_sequence_length)


# ---- splitting and concatenating -----------------------------------------------------------------
def _eval_split_to_sequence(node, x, split=None):
    axis = np_axis(node.attrs["axis"], x.ndim)
    dim = x.shape[axis]
    if split is None:
        parts = np.split(x, dim, axis=axis) if dim else []
        return [np.squeeze(p, axis=axis) for p in parts] if not node.attrs["keepdims"] else parts
    sp = np.asarray(split)
    if sp.ndim == 0:
        size = int(sp)
        if size <= 0:
            _raise(node, f"split must be positive, got {size}")
        cuts = list(range(size, dim, size))
    else:
        sizes = [int(s) for s in sp.reshape(-1)]
        if sum(sizes) != dim or min(sizes, default=0) < 0:
            _raise(node, f"split {sizes} does not add up to dim {axis} of {list(x.shape)}")
        cuts = np.cumsum(sizes)[:-1].tolist()
    return list(np.split(x, cuts, axis=axis))


def _infer_split_to_sequence(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [SequenceType(tt(dt, None))]
    axis = normalize_axis(ctx, ctx.attr("axis"), len(s))
    if not ctx.has_input(1):
        if ctx.attr("keepdims"):
            return [SequenceType(tt(dt, [1 if k == axis else d for k, d in enumerate(s)]))]
        return [SequenceType(tt(dt, [d for k, d in enumerate(s) if k != axis]))]
    split = ctx.const(1)
    dim = s[axis]
    part = ctx.fresh()
    if split is not None:
        vals = [int(v) for v in np.asarray(split).reshape(-1)]
        if np.asarray(split).ndim == 0 and isinstance(dim, int) and vals[0] > 0 and dim % vals[0] == 0:
            part = vals[0]
        elif np.asarray(split).ndim == 1 and len(set(vals)) == 1:
            part = vals[0]
        if np.asarray(split).ndim == 1 and isinstance(dim, int) and sum(vals) != dim:
            ctx.fail(f"split {vals} adds up to {sum(vals)}, but dim {axis} of {list(s)} is {dim}")
    return [SequenceType(tt(dt, [part if k == axis else d for k, d in enumerate(s)]))]


_reg("SplitToSequence", _eval_split_to_sequence, _infer_split_to_sequence,
     attrs={"axis": Attr("int", 0), "keepdims": Attr("int", 1)}, inputs=(1, 2))


def _eval_concat_from_sequence(node, seq):
    if not seq:
        _raise(node, "cannot concatenate an empty sequence")
    axis = node.attrs["axis"]
    if node.attrs["new_axis"]:
        return np.stack(seq, axis=np_axis(axis, seq[0].ndim + 1))
    return np.concatenate(seq, axis=axis)


def _infer_concat_from_sequence(ctx):
    elem = _seq_elem(ctx, 0)
    if elem is None or elem.shape is None:
        return [tt(None if elem is None else elem.dtype, None)]
    s = list(elem.shape)
    if ctx.attr("new_axis"):
        axis = normalize_axis(ctx, ctx.attr("axis"), len(s) + 1)
        s.insert(axis, ctx.fresh())
    else:
        axis = normalize_axis(ctx, ctx.attr("axis"), len(s))
        s[axis] = ctx.fresh()
    return [tt(elem.dtype, s)]


_reg("ConcatFromSequence", _eval_concat_from_sequence, _infer_concat_from_sequence,
     attrs={"axis": Attr("int", REQUIRED), "new_axis": Attr("int", 0)})


# ---- optionals ---------------------------------------------------------------------------------------
def _infer_optional(ctx):
    if ctx.has_input(0):
        return [OptionalType(ctx.type(0))]
    t = ctx.attr("type")
    if t is None:
        ctx.fail("an Optional without input needs the type attribute")
    return [OptionalType(t)]


_reg("Optional", lambda node, x=None: x, _infer_optional, attrs={"type": Attr("type_proto")}, inputs=(0, 1))


def _infer_optional_has_element(ctx):
    return [tt(DType.bool, ())]


_reg("OptionalHasElement", lambda node, x=None: np.array(x is not None), _infer_optional_has_element,
     inputs=(0, 1))


def _eval_optional_get_element(node, x):
    if x is None:
        _raise(node, "the optional is empty")
    return x


def _infer_optional_get_element(ctx):
    t = ctx.type(0)
    return [t.elem if isinstance(t, OptionalType) else t]


_reg("OptionalGetElement", _eval_optional_get_element, _infer_optional_get_element)


# ---- gradients: none yet (graphc.autodiff names these ops when one cuts a gradient path) ------------
set_grads({}, {name: "sequence and optional values carry no gradients yet"
               for name in ("SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceAt", "SequenceErase",
                            "SequenceLength", "SplitToSequence", "ConcatFromSequence", "Optional",
                            "OptionalHasElement", "OptionalGetElement")})
set_facts(value_sized=("SplitToSequence",))
