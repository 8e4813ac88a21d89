"""Shape and index operators: reshape/transpose/slice/gather/scatter/pad/concat, shape arithmetic, resizing.

Inference here is what keeps exported models static: targets that a model computes with
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains are read through ``ctx.sym`` (known values,
or partly known ones whose entries are dim symbols) and propagated with ``ctx.set_sym``.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..errors import ExecutionError, OpAttributeError, node_label
from ..ir import DType, Graph, Node
from ..ir.dims import dim_from_factors, product_of
from ..ir.types import TensorType
from .common import attr_to_input, broadcast_shapes, drop_attrs, normalize_axis, np_axis, tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_grads, set_facts

FAMILY = "shape"

#: Longest partly known value that inference tracks (shapes, not data).
_SYM_LIMIT = 64


def _reg(name: str, eval, infer, attrs=None, kind=Kind.INJECTIVE, inputs=(1, 1), outputs=(1, 1), upgrades=None,
         doc: str = "") -> None:
    register(OpDef(name, eval=eval, infer=infer, attrs=attrs or {}, kind=kind, inputs=inputs, outputs=outputs,
                   upgrades=upgrades or {}, family=FAMILY, doc=doc))


# ---- symbolic dim arithmetic -------------------------------------------------------------------
def _factors(dims) -> tuple[int, Counter]:
    """A product of dims as (product of the known ones, multiset of symbols); ``3*N`` counts as 3 and N."""
    return product_of(dims)


def _product_dim(ctx: InferContext, dims):
    """The product of dims as one dim: an int, the symbol itself when it is the only factor, else ``4*N``."""
    n, syms = _factors(dims)
    return dim_from_factors(n, syms)


def _quotient_dim(ctx: InferContext, total, part):
    """prod(total) / prod(part) as one dim, cancelling shared symbols; fails on a known remainder."""
    nt, st = _factors(total)
    np_, sp = _factors(part)
    if any(sp[k] > st[k] for k in sp):
        return ctx.fresh()
    rest = st - sp
    if np_ == 0:
        return ctx.fresh()
    if nt % np_:
        if rest:
            return ctx.fresh()
        ctx.fail(f"cannot infer the -1 dim: {nt} elements do not divide into parts of {np_}")
    return dim_from_factors(nt // np_, rest)


def _fmt(shape) -> str:
    return "[...]" if shape is None else "[" + ",".join(map(str, shape)) + "]"


def _ints(ctx: InferContext, i: int) -> list[int] | None:
    """Input i as a list of ints when known ahead of time."""
    c = ctx.const(i)
    if c is None:
        return None
    return [int(x) for x in np.asarray(c).reshape(-1)]


def _length(ctx: InferContext, i: int) -> int | None:
    """Number of entries of a rank-0/1 input when its shape is static."""
    s = ctx.shape(i)
    if s is None or len(s) > 1:
        return None
    if len(s) == 0:
        return 1
    return s[0] if isinstance(s[0], int) else None


def _sym_or_unknown(ctx: InferContext, i: int) -> tuple | None:
    """ctx.sym(i), else a tuple of None as long as the input when only its length is known."""
    s = ctx.sym(i)
    if s is not None:
        return s
    n = _length(ctx, i)
    return None if n is None or n > _SYM_LIMIT else (None,) * n


def _small_sym(ctx: InferContext, i: int) -> tuple | None:
    """Like _sym_or_unknown, for inputs that may be data rather than shapes: only short ones are read."""
    n = _length(ctx, i)
    return None if n is None or n > _SYM_LIMIT else _sym_or_unknown(ctx, i)


def _set_sym(ctx: InferContext, k: int, dims) -> None:
    if dims is not None and len(dims) <= _SYM_LIMIT and any(d is not None for d in dims):
        ctx.set_sym(k, dims)


def _as_dim(ctx: InferContext, d):
    """An entry of a partly known value used as a dim (None becomes a fresh symbol)."""
    return ctx.fresh() if d is None else d


def _merge_dim(ctx: InferContext, a, b, what: str):
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            ctx.fail(f"{what}: {a} vs {b}")
        return a
    if isinstance(a, int):
        return a
    return b


# ---- Identity, Constant ------------------------------------------------------------------------
def _infer_identity(ctx):
    if isinstance(ctx.type(0), TensorType) and ctx.rank(0) is not None and ctx.rank(0) <= 1:
        _set_sym(ctx, 0, _small_sym(ctx, 0))
    return [ctx.type(0)]


_reg("Identity", lambda node, x: x, _infer_identity, kind=Kind.ELEMENTWISE)


_CONSTANT_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                   "value_strings", "sparse_value")


def _constant_value(node) -> np.ndarray:
    given = [k for k in _CONSTANT_ATTRS if node.attrs.get(k) is not None]
    if len(given) != 1:
        raise OpAttributeError(f"{node_label(node)}: exactly one of {', '.join(_CONSTANT_ATTRS)} must be given, "
                               f"got {', '.join(given) or 'none'}")
    k = given[0]
    v = node.attrs[k]
    if k in ("value", "sparse_value"):
        return np.asarray(v)
    if k == "value_float":
        return np.array(v, dtype=np.float32)
    if k == "value_floats":
        return np.array(v, dtype=np.float32).reshape(-1)
    if k == "value_int":
        return np.array(v, dtype=np.int64)
    if k == "value_ints":
        return np.array(v, dtype=np.int64).reshape(-1)
    if k == "value_string":
        out = np.empty((), dtype=object)
        out[()] = v
        return out
    return np.array(list(v), dtype=object).reshape(-1)


def _infer_constant(ctx):
    x = _constant_value(ctx.node)
    dt = DType.string if x.dtype == object else DType.from_np(x.dtype)
    return [tt(dt, x.shape)]


_reg("Constant", lambda node: _constant_value(node), _infer_constant, kind=Kind.OPAQUE, inputs=(0, 0),
     attrs={"value": Attr("tensor"), "value_float": Attr("float"), "value_floats": Attr("floats"),
            "value_int": Attr("int"), "value_ints": Attr("ints"), "value_string": Attr("string"),
            "value_strings": Attr("strings"), "sparse_value": Attr("sparse_tensor")})


# ---- Reshape, Flatten, Squeeze, Unsqueeze ------------------------------------------------------
def _reshape_target(in_shape, target, allowzero: int, fail) -> list[int]:
    out = []
    for k, d in enumerate(target):
        d = int(d)
        if d == 0 and not allowzero:
            if k >= len(in_shape):
                fail(f"shape entry {k} is 0 (copy the input dim) but the input has rank {len(in_shape)}")
            d = in_shape[k]
        out.append(d)
    return out


def _eval_reshape(node, x, shape):
    allowzero = node.attrs.get("allowzero", 0)
    target = _reshape_target(x.shape, shape.reshape(-1).tolist(), allowzero,
                             lambda m: _raise(node, m))
    return x.reshape(target)


def _raise(node, msg):
    raise ExecutionError(f"{node_label(node)}: {msg}")


def _infer_reshape(ctx):
    dt, ishape = ctx.dtype(0), ctx.shape(0)
    target = _sym_or_unknown(ctx, 1)
    if ctx.rank(1) is not None and ctx.rank(1) != 1:
        ctx.fail(f"the shape input must be 1-D, got rank {ctx.rank(1)}")
    if target is None:
        return [tt(dt, None)]
    allowzero = ctx.attr("allowzero", 0)
    out: list = []
    neg = None
    for k, d in enumerate(target):
        if d is None:
            out.append(None)
        elif isinstance(d, str):
            out.append(d)
        elif d == -1:
            if neg is not None:
                ctx.fail(f"shape {list(target)} has more than one -1")
            neg = k
            out.append(None)
        elif d == 0 and not allowzero:
            if ishape is None:
                out.append(None)
            elif k >= len(ishape):
                ctx.fail(f"shape entry {k} is 0 (copy input dim {k}) but the input {_fmt(ishape)} has rank "
                         f"{len(ishape)}")
            else:
                out.append(ishape[k])
        elif d < -1:
            ctx.fail(f"shape {list(target)} has the invalid entry {d}")
        else:
            out.append(d)
    if allowzero and neg is not None and 0 in target:
        ctx.fail(f"shape {list(target)} has both 0 and -1, which allowzero=1 forbids")
    if neg is not None:
        others = [d for k, d in enumerate(out) if k != neg]
        if ishape is not None and all(d is not None for d in others):
            out[neg] = _quotient_dim(ctx, ishape, others)
        else:
            out[neg] = None
    elif ishape is not None and all(isinstance(d, int) for d in ishape) and all(isinstance(d, int) for d in out):
        if math.prod(ishape) != math.prod(out):
            ctx.fail(f"cannot reshape {_fmt(ishape)} ({math.prod(ishape)} elements) to {_fmt(out)} "
                     f"({math.prod(out)} elements)")
    if neg is not None and ishape is not None and isinstance(out[neg], int) and \
            all(isinstance(d, int) for d in ishape) and out[neg] < 0:
        ctx.fail(f"cannot reshape {_fmt(ishape)} to {list(target)}")
    # Reshape of a partly known shape value (rank <= 1 in and out) keeps its entries.
    if ishape is not None and len(ishape) <= 1 and len(out) <= 1:
        _set_sym(ctx, 0, _small_sym(ctx, 0))
    return [tt(dt, [_as_dim(ctx, d) for d in out])]


def _upgrade_reshape(node: Node, graph: Graph) -> None:
    """Reshape-1 took the target shape as an attribute (and had consumed_inputs)."""
    drop_attrs("consumed_inputs")(node, graph)
    attr_to_input("shape", 1)(node, graph)


_reg("Reshape", _eval_reshape, _infer_reshape, attrs={"allowzero": Attr("int", 0)}, inputs=(2, 2),
     upgrades={5: _upgrade_reshape})


def _eval_flatten(node, x):
    axis = node.attrs["axis"]
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _infer_flatten(ctx):
    s = ctx.shape(0)
    if s is None:
        return [tt(ctx.dtype(0), None)]
    axis = ctx.attr("axis")
    if not -len(s) <= axis <= len(s):
        ctx.fail(f"axis {axis} is out of range for an input of rank {len(s)} (expected -{len(s)}..{len(s)})")
    axis = axis + len(s) if axis < 0 else axis
    return [tt(ctx.dtype(0), [_product_dim(ctx, s[:axis]), _product_dim(ctx, s[axis:])])]


_reg("Flatten", _eval_flatten, _infer_flatten, attrs={"axis": Attr("int", 1)})


def _eval_squeeze(node, x, axes=None):
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    ax = tuple(sorted({a + x.ndim if a < 0 else a for a in axes.reshape(-1).tolist()}))
    return np.squeeze(x, axis=ax)


def _infer_squeeze(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    if ctx.has_input(1):
        axes = _ints(ctx, 1)
        if axes is None:
            n = _length(ctx, 1)
            return [tt(dt, None if n is None else [ctx.fresh() for _ in range(len(s) - n)])]
        ax = {normalize_axis(ctx, a, len(s), "axes entry") for a in axes}
        for a in sorted(ax):
            if isinstance(s[a], int) and s[a] != 1:
                ctx.fail(f"cannot squeeze axis {a} of {_fmt(s)}: its size is {s[a]}, not 1")
        out = [d for k, d in enumerate(s) if k not in ax]
    else:
        out = [d for d in s if d != 1]  # as ONNX does: symbolic dims are taken not to be 1
    if len(out) <= 1 and len(s) <= 1:
        _set_sym(ctx, 0, _small_sym(ctx, 0))
    return [tt(dt, out)]


_reg("Squeeze", _eval_squeeze, _infer_squeeze, inputs=(1, 2), upgrades={13: attr_to_input("axes", 1)})


def _eval_unsqueeze(node, x, axes):
    r = x.ndim + axes.size
    ax = sorted(a + r if a < 0 else a for a in axes.reshape(-1).tolist())
    shape = list(x.shape)
    for a in ax:
        shape.insert(a, 1)
    return x.reshape(shape)


def _infer_unsqueeze(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    axes = _ints(ctx, 1)
    if s is None:
        return [tt(dt, None)]
    if axes is None:
        n = _length(ctx, 1)
        return [tt(dt, None if n is None else [ctx.fresh() for _ in range(len(s) + n)])]
    r = len(s) + len(axes)
    ax = [normalize_axis(ctx, a, r, "axes entry") for a in axes]
    if len(set(ax)) != len(ax):
        ctx.fail(f"axes {axes} repeat an axis")
    out = list(s)
    for a in sorted(ax):
        out.insert(a, 1)
    if r <= 1:
        _set_sym(ctx, 0, _small_sym(ctx, 0))
    return [tt(dt, out)]


_reg("Unsqueeze", _eval_unsqueeze, _infer_unsqueeze, inputs=(2, 2), upgrades={13: attr_to_input("axes", 1)})


# ---- Transpose, Concat, Split ------------------------------------------------------------------
def _eval_transpose(node, x):
    perm = node.attrs.get("perm")
    return np.transpose(x, perm)


def _infer_transpose(ctx):
    s = ctx.shape(0)
    perm = ctx.attr("perm")
    if s is None:
        return [tt(ctx.dtype(0), None if perm is None else [ctx.fresh() for _ in perm])]
    if perm is None:
        perm = list(range(len(s)))[::-1]
    if sorted(perm) != list(range(len(s))):
        ctx.fail(f"perm {perm} is not a permutation of the axes of an input of rank {len(s)}")
    return [tt(ctx.dtype(0), [s[p] for p in perm])]


_reg("Transpose", _eval_transpose, _infer_transpose, attrs={"perm": Attr("ints")})


def _eval_concat(node, *xs):
    xs = [x for x in xs if x is not None]
    return np.concatenate(xs, axis=node.attrs["axis"])


def _infer_concat(ctx):
    idx = [i for i in range(ctx.n_inputs) if ctx.has_input(i)]
    dts = {ctx.dtype(i) for i in idx if ctx.dtype(i) is not None}
    if len(dts) > 1:
        ctx.fail(f"inputs must share one element type, got {', '.join(sorted(d.name for d in dts))}")
    dt = dts.pop() if dts else None
    shapes = [ctx.shape(i) for i in idx]
    known = [s for s in shapes if s is not None]
    if not known:
        return [tt(dt, None)]
    rank = len(known[0])
    for s in known:
        if len(s) != rank:
            ctx.fail(f"inputs must have the same rank, got {' and '.join(_fmt(s) for s in known)}")
    axis = normalize_axis(ctx, ctx.attr("axis"), rank)
    out = []
    for k in range(rank):
        if k == axis:
            if len(known) < len(shapes):
                out.append(ctx.fresh())
            else:
                dims = [s[k] for s in known]
                total = sum(d for d in dims if isinstance(d, int))
                syms = [d for d in dims if isinstance(d, str)]
                out.append(total if not syms else syms[0] if len(syms) == 1 and total == 0 else ctx.fresh())
        else:
            d = None
            for s in known:
                d = s[k] if d is None else _merge_dim(ctx, d, s[k], f"dim {k} differs between inputs "
                                                     f"{' and '.join(_fmt(s) for s in known)}")
            out.append(d)
    if rank == 1:
        parts = [_small_sym(ctx, i) for i in idx]
        if all(p is not None for p in parts):
            _set_sym(ctx, 0, tuple(e for p in parts for e in p))
    return [tt(dt, out)]


_reg("Concat", _eval_concat, _infer_concat, attrs={"axis": Attr("int", REQUIRED)}, inputs=(1, 2**31),
     upgrades={4: lambda node, g: node.attrs.setdefault("axis", 1)})


def _split_sizes(node, dim: int, split, n_out: int) -> list[int]:
    if split is not None:
        return [int(s) for s in np.asarray(split).reshape(-1)]
    n = node.attrs.get("num_outputs") or n_out
    chunk = -(-dim // n)
    sizes = [chunk] * (n - 1)
    return sizes + [dim - chunk * (n - 1)]


def _eval_split(node, x, split=None):
    axis = np_axis(node.attrs["axis"], x.ndim)
    sizes = _split_sizes(node, x.shape[axis], split, len(node.outputs))
    if sum(sizes) != x.shape[axis] or min(sizes, default=0) < 0:
        _raise(node, f"split sizes {sizes} do not add up to dim {axis} of {list(x.shape)}")
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _infer_split(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    n_out = len(ctx.node.outputs)
    num = ctx.attr("num_outputs")
    if num is not None and ctx.has_input(1):
        ctx.fail("give either the split input or the num_outputs attribute, not both")
    if num is not None and num != n_out:
        ctx.fail(f"num_outputs is {num} but the node has {n_out} outputs")
    if s is None:
        return [tt(dt, None)] * n_out
    axis = normalize_axis(ctx, ctx.attr("axis"), len(s))
    split = _ints(ctx, 1) if ctx.has_input(1) else None
    dim = s[axis]
    if ctx.has_input(1) and split is None:
        sizes = [ctx.fresh() for _ in range(n_out)]
    elif split is not None:
        if len(split) != n_out:
            ctx.fail(f"split {split} has {len(split)} entries but the node has {n_out} outputs")
        if isinstance(dim, int) and sum(split) != dim:
            ctx.fail(f"split {split} adds up to {sum(split)}, but dim {axis} of {_fmt(s)} is {dim}")
        sizes = split
    elif isinstance(dim, int):
        sizes = _split_sizes(ctx.node, dim, None, n_out)
        if ctx.node.opset is not None and ctx.node.opset < 18 and dim % n_out:
            ctx.fail(f"dim {axis} of {_fmt(s)} ({dim}) does not split into {n_out} equal parts")
    else:
        sizes = [ctx.fresh() for _ in range(n_out)]
    return [tt(dt, [d if k != axis else sizes[j] for k, d in enumerate(s)]) for j in range(n_out)]


_reg("Split", _eval_split, _infer_split, attrs={"axis": Attr("int", 0), "num_outputs": Attr("int")},
     inputs=(1, 2), outputs=(1, 2**31), upgrades={13: attr_to_input("split", 1)})


# ---- Slice ---------------------------------------------------------------------------------------
def slice_bounds(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """ONNX Slice clamping for one axis; returns (start, end, length) with end -1 meaning 'before 0'."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
        n = max(0, -(-(end - start) // step))
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
        n = max(0, -(-(start - end) // -step))
    return start, end, n


def slice_args(node, rank, starts, ends, axes, steps):
    """Slice's inputs as lists (starts, ends, axes made non-negative, steps; the defaults filled in)."""
    starts = np.asarray(starts).reshape(-1).tolist()
    ends = np.asarray(ends).reshape(-1).tolist()
    axes = list(range(len(starts))) if axes is None else np.asarray(axes).reshape(-1).tolist()
    steps = [1] * len(starts) if steps is None else np.asarray(steps).reshape(-1).tolist()
    if not len(starts) == len(ends) == len(axes) == len(steps):
        _raise(node, f"starts, ends, axes and steps must have the same length, got "
                     f"{len(starts)}, {len(ends)}, {len(axes)}, {len(steps)}")
    return starts, ends, [a + rank if a < 0 else a for a in axes], steps


def _eval_slice(node, x, starts, ends, axes=None, steps=None):
    starts, ends, axes, steps = slice_args(node, x.ndim, starts, ends, axes, steps)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            _raise(node, "a step of 0 is not allowed")
        s, e, _ = slice_bounds(s, e, st, x.shape[a])
        index[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(index)]


_BIG = 2**31 - 1  # ends at or past this mean "to the end", whatever the dim


def _infer_slice(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    # starts/ends may be partly known (e.g. an end taken from Shape): entries int, dim symbol or None.
    starts, ends = _small_sym(ctx, 1), _small_sym(ctx, 2)
    axes = _ints(ctx, 3) if ctx.has_input(3) else None
    steps = _ints(ctx, 4) if ctx.has_input(4) else None
    if starts is None or ends is None or (ctx.has_input(3) and axes is None) or \
            (ctx.has_input(4) and steps is None):
        # Axes we cannot see change size; without axes, the first len(starts) may.
        if axes is not None:
            touched = {normalize_axis(ctx, a, len(s), "axes entry") for a in axes}
        else:
            n = _length(ctx, 1)
            touched = set(range(n)) if n is not None and not ctx.has_input(3) else set(range(len(s)))
        return [tt(dt, [ctx.fresh() if k in touched else d for k, d in enumerate(s)])]
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        ctx.fail(f"starts, ends, axes and steps must have the same length, got "
                 f"{len(starts)}, {len(ends)}, {len(axes)}, {len(steps)}")
    out = list(s)
    seen = set()
    for st, en, a, step in zip(starts, ends, axes, steps):
        a = normalize_axis(ctx, a, len(s), "axes entry")
        if a in seen:
            ctx.fail(f"axes {axes} repeat axis {a}")
        seen.add(a)
        if step == 0:
            ctx.fail("a step of 0 is not allowed")
        d = s[a]
        if isinstance(d, int) and isinstance(st, int) and isinstance(en, int):
            out[a] = slice_bounds(st, en, step, d)[2]
        elif step == 1 and st == 0 and (en == d or isinstance(en, int) and en >= _BIG):
            out[a] = d
        elif step == -1 and st in (-1, _BIG, 2**63 - 1) and isinstance(en, int) and en <= -_BIG:
            out[a] = d
        elif isinstance(d, int) and isinstance(st, int) and st >= d and step > 0:
            out[a] = 0
        else:
            out[a] = ctx.fresh()
    if len(s) == 1 and all(isinstance(x, int) for x in starts + ends):
        v = _small_sym(ctx, 0)
        if v is not None and len(v) == s[0]:
            b, e, _ = slice_bounds(starts[0], ends[0], steps[0], len(v))
            _set_sym(ctx, 0, v[slice(b, e if e >= 0 else None, steps[0])])
    return [tt(dt, out)]


def _upgrade_slice(node: Node, graph: Graph) -> None:
    """Slice-1 kept starts/ends/axes as attributes; later opsets take them as inputs 1..3."""
    for k, name in ((1, "starts"), (2, "ends"), (3, "axes")):
        if name in node.attrs:
            attr_to_input(name, k)(node, graph)


_reg("Slice", _eval_slice, _infer_slice, inputs=(3, 5), upgrades={10: _upgrade_slice})


# ---- Gather family -------------------------------------------------------------------------------
def _check_indices(node, idx, dim: int, what="indices"):
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        bad = idx[(idx < -dim) | (idx >= dim)].reshape(-1)[0]
        _raise(node, f"{what} contain {bad}, out of range for a dim of size {dim}")
    return np.where(idx < 0, idx + dim, idx)


def _eval_gather(node, x, indices):
    axis = np_axis(node.attrs["axis"], x.ndim)
    idx = _check_indices(node, indices.astype(np.int64), x.shape[axis])
    return np.take(x, idx, axis=axis)


def _infer_gather(ctx):
    s, q = ctx.shape(0), ctx.shape(1)
    dt = ctx.dtype(0)
    if s is not None and len(s) == 0:
        ctx.fail("data must have rank >= 1, got a scalar")
    if s is None or q is None:
        return [tt(dt, None)]
    axis = normalize_axis(ctx, ctx.attr("axis"), len(s))
    out = list(s[:axis]) + list(q) + list(s[axis + 1:])
    if len(s) == 1 and len(q) <= 1:
        data = _small_sym(ctx, 0)
        idx = _ints(ctx, 1) if _length(ctx, 1) is not None and _length(ctx, 1) <= _SYM_LIMIT else None
        if idx is not None and isinstance(s[0], int):
            for i in idx:
                if not -s[0] <= i < s[0]:
                    ctx.fail(f"index {i} is out of range for axis {axis} of size {s[0]}")
            if data is not None and len(data) == s[0]:
                _set_sym(ctx, 0, [data[i] for i in idx])
    return [tt(dt, out)]


_reg("Gather", _eval_gather, _infer_gather, attrs={"axis": Attr("int", 0)}, inputs=(2, 2))


def _eval_gather_elements(node, x, indices):
    axis = np_axis(node.attrs["axis"], x.ndim)
    idx = _check_indices(node, indices.astype(np.int64), x.shape[axis])
    # indices may be shorter than data along the other axes: those read the leading part of data
    x = x[tuple(slice(None) if a == axis else slice(0, n) for a, n in enumerate(idx.shape))]
    return np.take_along_axis(x, idx, axis=axis)


def _infer_gather_elements(ctx):
    s, q = ctx.shape(0), ctx.shape(1)
    if s is not None and q is not None:
        if len(s) != len(q):
            ctx.fail(f"indices {_fmt(q)} must have the rank of data {_fmt(s)}")
        normalize_axis(ctx, ctx.attr("axis"), len(s))
    return [tt(ctx.dtype(0), q)]


_reg("GatherElements", _eval_gather_elements, _infer_gather_elements, attrs={"axis": Attr("int", 0)},
     inputs=(2, 2))


def _nd_index(node, data_shape, indices, b: int):
    """Flattened batch index plus per-dim index arrays for GatherND/ScatterND (negatives wrapped)."""
    k = indices.shape[-1]
    idx = indices.astype(np.int64).reshape(-1, k)
    dims = np.array(data_shape[b:b + k], dtype=np.int64)
    if idx.size and ((idx < -dims).any() or (idx >= dims).any()):
        _raise(node, f"indices are out of range for data of shape {list(data_shape)}")
    idx = np.where(idx < 0, idx + dims, idx)
    return idx, k


def _eval_gather_nd(node, x, indices):
    b = node.attrs["batch_dims"]
    nb = math.prod(x.shape[:b])
    k = indices.shape[-1]
    idx, _ = _nd_index(node, x.shape, indices, b)
    per = idx.shape[0] // nb if nb else 0
    flat = x.reshape((nb,) + x.shape[b:])
    batch = np.repeat(np.arange(nb), per)
    got = flat[(batch,) + tuple(idx[:, j] for j in range(k))]
    return got.reshape(indices.shape[:-1] + x.shape[b + k:])


def _infer_gather_nd(ctx):
    s, q = ctx.shape(0), ctx.shape(1)
    b = ctx.attr("batch_dims")
    if s is None or q is None:
        return [tt(ctx.dtype(0), None)]
    if len(q) < 1 or b >= min(len(s), len(q)):
        ctx.fail(f"batch_dims {b} must be less than the ranks of data {_fmt(s)} and indices {_fmt(q)}")
    k = q[-1]
    if not isinstance(k, int):
        return [tt(ctx.dtype(0), None)]
    if k > len(s) - b:
        ctx.fail(f"indices {_fmt(q)} index {k} dims but data {_fmt(s)} has only {len(s) - b} after the batch dims")
    return [tt(ctx.dtype(0), list(q[:-1]) + list(s[b + k:]))]


_reg("GatherND", _eval_gather_nd, _infer_gather_nd, attrs={"batch_dims": Attr("int", 0)}, inputs=(2, 2))


# ---- Scatter family ------------------------------------------------------------------------------
_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_into(node, out, index, updates):
    red = node.attrs.get("reduction", "none")
    if red == "none":
        out[index] = updates
    elif red in _REDUCE:
        _REDUCE[red].at(out, index, updates)
    else:
        raise OpAttributeError(f"{node_label(node)}: reduction must be none, add, mul, max or min, got '{red}'")
    return out


def _eval_scatter_elements(node, x, indices, updates):
    axis = np_axis(node.attrs["axis"], x.ndim)
    idx = _check_indices(node, indices.astype(np.int64), x.shape[axis])
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx
    return _scatter_into(node, x.copy(), tuple(grid), updates)


def _infer_scatter(ctx):
    s, q, u = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if ctx.dtype(0) is not None and ctx.dtype(2) is not None and ctx.dtype(0) != ctx.dtype(2):
        ctx.fail(f"updates ({ctx.dtype(2)}) must have the element type of data ({ctx.dtype(0)})")
    if ctx.node.op_type != "ScatterND":
        if s is not None and q is not None and len(s) != len(q):
            ctx.fail(f"indices {_fmt(q)} must have the rank of data {_fmt(s)}")
        if q is not None and u is not None and len(q) != len(u):
            ctx.fail(f"updates {_fmt(u)} must have the shape of indices {_fmt(q)}")
        if s is not None:
            normalize_axis(ctx, ctx.attr("axis"), len(s))
    return [tt(ctx.dtype(0), s)]


_SCATTER_ATTRS = {"axis": Attr("int", 0), "reduction": Attr("string", "none")}
_reg("ScatterElements", _eval_scatter_elements, _infer_scatter, attrs=_SCATTER_ATTRS, inputs=(3, 3),
     kind=Kind.OPAQUE)
_reg("Scatter", _eval_scatter_elements, _infer_scatter, attrs={"axis": Attr("int", 0)}, inputs=(3, 3),
     kind=Kind.OPAQUE, doc="Deprecated alias of ScatterElements (opsets 9-10).")


def _eval_scatter_nd(node, x, indices, updates):
    idx, k = _nd_index(node, x.shape, indices, 0)
    out = x.copy()
    flat_updates = updates.reshape((idx.shape[0],) + x.shape[k:])
    return _scatter_into(node, out, tuple(idx[:, j] for j in range(k)), flat_updates)


_reg("ScatterND", _eval_scatter_nd, _infer_scatter, attrs={"reduction": Attr("string", "none")}, inputs=(3, 3),
     kind=Kind.OPAQUE)


def _eval_tensor_scatter(node, past, update, write_indices=None):
    axis = np_axis(node.attrs["axis"], past.ndim)
    out = past.copy()
    cache = np.moveaxis(out, axis, 1)   # a view: writes land in out
    upd = np.moveaxis(update, axis, 1)
    nb, seq, max_seq = past.shape[0], update.shape[axis], past.shape[axis]
    start = np.zeros(nb, np.int64) if write_indices is None else write_indices.astype(np.int64).reshape(-1)
    pos = start[:, None] + np.arange(seq)[None, :]
    if node.attrs["mode"] == "circular":
        pos %= max_seq
    elif pos.size and pos.max() >= max_seq:
        _raise(node, f"write index + update length exceeds the cache length {max_seq} (mode 'linear')")
    cache[np.arange(nb)[:, None], pos] = upd
    return out


def _infer_tensor_scatter(ctx):
    s, u = ctx.shape(0), ctx.shape(1)
    if s is not None:
        axis = normalize_axis(ctx, ctx.attr("axis"), len(s))
        if axis == 0:
            ctx.fail("axis cannot be 0 (the batch dim)")
        if u is not None:
            if len(u) != len(s):
                ctx.fail(f"update {_fmt(u)} must have the rank of the cache {_fmt(s)}")
            for k, (a, b) in enumerate(zip(s, u)):
                if k != axis and isinstance(a, int) and isinstance(b, int) and a != b:
                    ctx.fail(f"update {_fmt(u)} and cache {_fmt(s)} differ in dim {k}")
    return [tt(ctx.dtype(0), s)]


_reg("TensorScatter", _eval_tensor_scatter, _infer_tensor_scatter,
     attrs={"axis": Attr("int", -2), "mode": Attr("string", "linear")}, inputs=(2, 3), kind=Kind.OPAQUE)


# ---- Expand, Tile, Pad ---------------------------------------------------------------------------
def _eval_expand(node, x, shape):
    target = tuple(int(d) for d in shape.reshape(-1))
    out = np.broadcast_shapes(x.shape, target)
    return np.broadcast_to(x, out).copy()


def _infer_expand(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    target = _sym_or_unknown(ctx, 1)
    if s is None or target is None:
        return [tt(dt, None)]
    rank = max(len(s), len(target))
    s_al = [1] * (rank - len(s)) + list(s)
    t_al = [1] * (rank - len(target)) + list(target)
    out = []
    for k, (a, b) in enumerate(zip(s_al, t_al)):
        if b is None:
            out.append(a if isinstance(a, int) and a != 1 else ctx.fresh())
        else:
            out.append(broadcast_shapes(ctx, [(a,), (b,)])[0])
    return [tt(dt, out)]


_reg("Expand", _eval_expand, _infer_expand, inputs=(2, 2))


def _eval_tile(node, x, repeats):
    return np.tile(x, [int(r) for r in repeats.reshape(-1)])


def _infer_tile(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    reps = _ints(ctx, 1)
    if reps is None:
        return [tt(dt, [d if isinstance(d, int) and d == 0 else ctx.fresh() for d in s])]
    if len(reps) != len(s):
        ctx.fail(f"repeats {reps} must have one entry per dim of the input {_fmt(s)}")
    if any(r < 0 for r in reps):
        ctx.fail(f"repeats {reps} must not be negative")
    return [tt(dt, [d * r if isinstance(d, int) else d if r == 1 else ctx.fresh() for d, r in zip(s, reps)])]


_reg("Tile", _eval_tile, _infer_tile, inputs=(2, 2))


_NP_PAD_MODE = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad_axes(node, rank: int, pads, axes):
    """Pad's ``pads`` (for ``axes``, default all) as [begin, end] for every one of ``rank`` axes."""
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in
                                                   np.asarray(axes).reshape(-1).tolist()]
    if len(pads) != 2 * len(axes):
        _raise(node, f"pads has {len(pads)} entries, expected {2 * len(axes)} (begin and end for each axis)")
    full = [[0, 0] for _ in range(rank)]
    for j, a in enumerate(axes):
        full[a] = [pads[j], pads[j + len(axes)]]
    return full


def _eval_pad(node, x, pads, constant_value=None, axes=None):
    mode = node.attrs["mode"]
    if mode not in _NP_PAD_MODE:
        raise OpAttributeError(f"{node_label(node)}: mode must be constant, reflect, edge or wrap, got '{mode}'")
    full = pad_axes(node, x.ndim, pads, axes)
    # Negative pads crop first; then the rest pads.
    crop = tuple(slice(-b if b < 0 else 0, x.shape[k] + e if e < 0 else None) for k, (b, e) in enumerate(full))
    x = x[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in full]
    if not any(b or e for b, e in widths):
        return x.copy()
    if mode == "constant":
        cv = 0 if constant_value is None or constant_value.size == 0 else constant_value.reshape(-1)[0]
        if x.dtype == object:
            out = np.full([d + b + e for d, (b, e) in zip(x.shape, widths)], cv if constant_value is not None
                          else "", dtype=object)
            out[tuple(slice(b, b + d) for d, (b, _) in zip(x.shape, widths))] = x
            return out
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(cv).astype(x.dtype))
    return np.pad(x, widths, mode=_NP_PAD_MODE[mode])


def _infer_pad(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    pads = _ints(ctx, 1)
    axes = _ints(ctx, 3) if ctx.has_input(3) else list(range(len(s)))
    if axes is None:
        return [tt(dt, [ctx.fresh() for _ in s])]
    axes = [normalize_axis(ctx, a, len(s), "axes entry") for a in axes]
    if pads is None:
        return [tt(dt, [ctx.fresh() if k in axes else d for k, d in enumerate(s)])]
    if len(pads) != 2 * len(axes):
        ctx.fail(f"pads {pads} must have {2 * len(axes)} entries (begin and end for each of {len(axes)} axes)")
    out = list(s)
    for j, a in enumerate(axes):
        b, e = pads[j], pads[j + len(axes)]
        if isinstance(s[a], int):
            out[a] = s[a] + b + e
            if out[a] < 0:
                ctx.fail(f"pads {pads} crop more than dim {a} of {_fmt(s)} holds")
        elif b + e != 0:
            out[a] = ctx.fresh()
    return [tt(dt, out)]


def _upgrade_pad(node: Node, graph: Graph) -> None:
    """Pad-1/2 kept pads and value as attributes (Pad-1 named pads 'paddings')."""
    if "paddings" in node.attrs:
        node.attrs["pads"] = node.attrs.pop("paddings")
    attr_to_input("pads", 1)(node, graph)
    value = node.attrs.pop("value", 0.0)
    if value != 0.0:
        x = node.inputs[0]
        dt = x.type.dtype.np if isinstance(x.type, TensorType) and x.type.dtype is not None else np.float32
        c = graph.add_constant(np.array(value, dtype=dt), f"{node.name}_value")
        node.inputs.append(c)


_reg("Pad", _eval_pad, _infer_pad, attrs={"mode": Attr("string", "constant")}, inputs=(2, 4),
     upgrades={11: _upgrade_pad})


def _eval_center_crop_pad(node, x, shape):
    axes = node.attrs.get("axes")
    axes = list(range(x.ndim)) if axes is None else [a + x.ndim if a < 0 else a for a in axes]
    target = [int(t) for t in shape.reshape(-1)]
    out_shape = list(x.shape)
    src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    for a, t in zip(axes, target):
        d = x.shape[a]
        out_shape[a] = t
        if d > t:
            b = (d - t) // 2
            src[a] = slice(b, b + t)
        elif d < t:
            b = (t - d) // 2
            dst[a] = slice(b, b + d)
    out = np.zeros(out_shape, dtype=x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


def _infer_center_crop_pad(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    axes = ctx.attr("axes")
    axes = list(range(len(s))) if axes is None else [normalize_axis(ctx, a, len(s), "axes entry") for a in axes]
    target = _sym_or_unknown(ctx, 1)
    out = list(s)
    if target is not None and len(target) != len(axes):
        ctx.fail(f"shape has {len(target)} entries but there are {len(axes)} axes")
    for j, a in enumerate(axes):
        out[a] = ctx.fresh() if target is None else _as_dim(ctx, target[j])
    return [tt(dt, out)]


_reg("CenterCropPad", _eval_center_crop_pad, _infer_center_crop_pad, attrs={"axes": Attr("ints")},
     inputs=(2, 2))


# ---- Shape, Size, ConstantOfShape, Range, EyeLike, OneHot ---------------------------------------
def _eval_shape(node, x):
    return np.array(x.shape[node.attrs["start"]:node.attrs.get("end")], dtype=np.int64)


def _infer_shape(ctx):
    s = ctx.shape(0)
    if s is None:
        return [tt(DType.int64, [ctx.fresh()])]
    dims = s[ctx.attr("start"):ctx.attr("end")]
    _set_sym(ctx, 0, dims)
    return [tt(DType.int64, [len(dims)])]


_reg("Shape", _eval_shape, _infer_shape, attrs={"start": Attr("int", 0), "end": Attr("int")}, kind=Kind.OPAQUE)


def _infer_size(ctx):
    s = ctx.shape(0)
    if s is not None and all(isinstance(d, int) for d in s):
        _set_sym(ctx, 0, [math.prod(s)])
    elif s is not None:
        d = _product_dim(ctx, s)
        if d in s:  # one symbolic dim, the others 1
            _set_sym(ctx, 0, [d])
    return [tt(DType.int64, ())]


_reg("Size", lambda node, x: np.array(x.size, dtype=np.int64), _infer_size, kind=Kind.OPAQUE)


def _const_of_shape_value(node) -> np.ndarray:
    v = node.attrs.get("value")
    return np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)


def _eval_constant_of_shape(node, shape):
    v = _const_of_shape_value(node)
    return np.full([int(d) for d in shape.reshape(-1)], v[0], dtype=v.dtype)


def _infer_constant_of_shape(ctx):
    v = _const_of_shape_value(ctx.node)
    if v.size != 1:
        ctx.fail(f"value must hold one element, got {v.size}")
    dt = DType.string if v.dtype == object else DType.from_np(v.dtype)
    target = _sym_or_unknown(ctx, 0)
    if target is not None:
        for d in target:
            if isinstance(d, int) and d < 0:
                ctx.fail(f"shape {list(target)} has a negative entry")
    return [tt(dt, None if target is None else [_as_dim(ctx, d) for d in target])]


_reg("ConstantOfShape", _eval_constant_of_shape, _infer_constant_of_shape, attrs={"value": Attr("tensor")},
     kind=Kind.OPAQUE)


def _eval_range(node, start, limit, delta):
    dt = start.dtype
    s, l, d = start.item(), limit.item(), delta.item()
    if d == 0:
        _raise(node, "delta must not be 0")
    n = max(int(math.ceil((l - s) / d)), 0)
    if dt.kind in "iu":
        return (s + d * np.arange(n, dtype=np.int64)).astype(dt)
    work = np.float64 if dt == np.float64 else np.float32
    return (np.asarray(s, work) + np.arange(n, dtype=work) * np.asarray(d, work)).astype(dt)


def _infer_range(ctx):
    dts = {ctx.dtype(i) for i in range(3) if ctx.dtype(i) is not None}
    if len(dts) > 1:
        ctx.fail(f"start, limit and delta must share one element type, got {', '.join(sorted(d.name for d in dts))}")
    dt = dts.pop() if dts else None
    for i in range(3):
        if ctx.rank(i) not in (None, 0) and _length(ctx, i) != 1:
            ctx.fail(f"input {i} must be a scalar, got {_fmt(ctx.shape(i))}")
    vals = [ctx.const(i) for i in range(3)]
    if all(v is not None for v in vals):
        s, l, d = (float(np.asarray(v).reshape(-1)[0]) for v in vals)
        if d == 0:
            ctx.fail("delta must not be 0")
        return [tt(dt, [max(int(math.ceil((l - s) / d)), 0)])]
    syms = [ctx.sym(i) for i in range(3)]
    if syms[0] == (0,) and syms[2] == (1,) and syms[1] is not None and isinstance(syms[1][0], str):
        return [tt(dt, [syms[1][0]])]  # Range(0, N, 1) has N entries
    return [tt(dt, [ctx.fresh()])]


_reg("Range", _eval_range, _infer_range, attrs={"stash_type": Attr("int", 1)}, inputs=(3, 3), kind=Kind.OPAQUE)


def _eval_eye_like(node, x):
    dt = node.attrs.get("dtype")
    dtype = x.dtype if dt is None else DType(dt).np
    return np.eye(x.shape[0], x.shape[1], k=node.attrs["k"], dtype=dtype)


def _infer_eye_like(ctx):
    s = ctx.shape(0)
    if s is not None and len(s) != 2:
        ctx.fail(f"input must be 2-D, got {_fmt(s)}")
    dt = ctx.attr("dtype")
    return [tt(ctx.dtype(0) if dt is None else DType(dt), s)]


_reg("EyeLike", _eval_eye_like, _infer_eye_like, attrs={"dtype": Attr("int"), "k": Attr("int", 0)},
     kind=Kind.OPAQUE)


def _eval_one_hot(node, indices, depth, values):
    d = int(np.asarray(depth).reshape(-1)[0])
    r = indices.ndim + 1
    axis = np_axis(node.attrs["axis"], r)
    idx = indices.astype(np.int64) if indices.dtype.kind in "iu" else np.trunc(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + d, idx)
    hot = np.expand_dims(idx, axis) == np.arange(d).reshape([d if k == axis else 1 for k in range(r)])
    vals = values.reshape(-1)
    return np.where(hot, vals[1], vals[0]).astype(values.dtype)


def _infer_one_hot(ctx):
    s = ctx.shape(0)
    dt = ctx.dtype(2)
    if ctx.shape(2) is not None and _length(ctx, 2) not in (None, 2):
        ctx.fail(f"values must hold 2 entries [off, on], got {_fmt(ctx.shape(2))}")
    if s is None:
        return [tt(dt, None)]
    r = len(s) + 1
    axis = normalize_axis(ctx, ctx.attr("axis"), r)
    depth = ctx.const(1)
    if depth is not None:
        dim = int(np.asarray(depth).reshape(-1)[0])
    else:
        sym = ctx.sym(1)
        dim = sym[0] if sym is not None and len(sym) == 1 and sym[0] is not None else ctx.fresh()
    out = list(s)
    out.insert(axis, dim)
    return [tt(dt, out)]


_reg("OneHot", _eval_one_hot, _infer_one_hot, attrs={"axis": Attr("int", -1)}, inputs=(3, 3), kind=Kind.OPAQUE)


# ---- data-dependent shapes: NonZero, Compress, Unique ------------------------------------------
def _eval_nonzero(node, x):
    if x.ndim == 0:
        return np.zeros((0, int(bool(x))), dtype=np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


def _infer_nonzero(ctx):
    r = ctx.rank(0)
    return [tt(DType.int64, None if r is None else [r, ctx.fresh()])]


_reg("NonZero", _eval_nonzero, _infer_nonzero, kind=Kind.OPAQUE)


def _eval_compress(node, x, condition):
    axis = node.attrs.get("axis")
    cond = condition.reshape(-1).astype(bool)
    if axis is None:
        return np.compress(cond, x.reshape(-1))
    return np.compress(cond, x, axis=np_axis(axis, x.ndim))


def _infer_compress(ctx):
    s = ctx.shape(0)
    if ctx.rank(1) not in (None, 1):
        ctx.fail(f"condition must be 1-D, got {_fmt(ctx.shape(1))}")
    cond = ctx.const(1)
    n = int(np.count_nonzero(cond)) if cond is not None else ctx.fresh()
    axis = ctx.attr("axis")
    if axis is None:
        return [tt(ctx.dtype(0), [n])]
    if s is None:
        return [tt(ctx.dtype(0), None)]
    a = normalize_axis(ctx, axis, len(s))
    return [tt(ctx.dtype(0), [n if k == a else d for k, d in enumerate(s)])]


_reg("Compress", _eval_compress, _infer_compress, attrs={"axis": Attr("int")}, inputs=(2, 2), kind=Kind.OPAQUE)


def _eval_unique(node, x):
    axis = node.attrs.get("axis")
    data = x.reshape(-1) if axis is None else x
    ax = None if axis is None else np_axis(axis, x.ndim)
    y, first, inverse, counts = np.unique(data, return_index=True, return_inverse=True, return_counts=True, axis=ax)
    inverse = inverse.reshape(-1)
    if not node.attrs["sorted"]:
        order = np.argsort(first, kind="stable")
        y = np.take(y, order, axis=0 if ax is None else ax)
        first, counts = first[order], counts[order]
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        inverse = rank[inverse]
    i64 = np.int64
    return y, first.astype(i64), inverse.astype(i64), counts.astype(i64)


def _infer_unique(ctx):
    s = ctx.shape(0)
    dt = ctx.dtype(0)
    u = ctx.fresh()
    axis = ctx.attr("axis")
    if axis is None:
        y = tt(dt, [u])
        total = None if s is None else _product_dim(ctx, s)
    elif s is None:
        y, total = tt(dt, None), None
    else:
        a = normalize_axis(ctx, axis, len(s))
        y = tt(dt, [u if k == a else d for k, d in enumerate(s)])
        total = s[a]
    i64 = DType.int64
    return [y, tt(i64, [u]), tt(i64, [total if total is not None else ctx.fresh()]), tt(i64, [u])]


_reg("Unique", _eval_unique, _infer_unique, attrs={"axis": Attr("int"), "sorted": Attr("int", 1)},
     outputs=(1, 4), kind=Kind.OPAQUE)


# ---- DepthToSpace, SpaceToDepth, Trilu, ReverseSequence -----------------------------------------
def _eval_depth_to_space(node, x):
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    if node.attrs["mode"] == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


def _eval_space_to_depth(node, x):
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b)
    y = y.transpose(0, 3, 5, 1, 2, 4) if node.attrs["mode"] == "DCR" else y.transpose(0, 1, 3, 5, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def _scale_dim(ctx, d, mul: int = 1, div: int = 1, what: str = ""):
    if isinstance(d, int):
        if d * mul % div:
            ctx.fail(f"{what} ({d}) is not divisible by {div}")
        return d * mul // div
    return d if mul == div else ctx.fresh()


def _infer_depth_to_space(ctx):
    s = ctx.shape(0)
    if s is None:
        return [tt(ctx.dtype(0), [ctx.fresh() for _ in range(4)])]
    if len(s) != 4:
        ctx.fail(f"input must be 4-D [N,C,H,W], got {_fmt(s)}")
    b = ctx.attr("blocksize")
    if b <= 0:
        ctx.fail(f"blocksize must be positive, got {b}")
    if ctx.attr("mode") not in ("DCR", "CRD"):
        ctx.fail(f"mode must be DCR or CRD, got '{ctx.attr('mode')}'")
    n, c, h, w = s
    if ctx.node.op_type == "DepthToSpace":
        out = [n, _scale_dim(ctx, c, 1, b * b, f"channels of {_fmt(s)}"), _scale_dim(ctx, h, b), _scale_dim(ctx, w, b)]
    else:
        out = [n, _scale_dim(ctx, c, b * b), _scale_dim(ctx, h, 1, b, f"height of {_fmt(s)}"),
               _scale_dim(ctx, w, 1, b, f"width of {_fmt(s)}")]
    return [tt(ctx.dtype(0), out)]


_D2S_ATTRS = {"blocksize": Attr("int", REQUIRED), "mode": Attr("string", "DCR")}
_reg("DepthToSpace", _eval_depth_to_space, _infer_depth_to_space, attrs=_D2S_ATTRS)
_reg("SpaceToDepth", _eval_space_to_depth, _infer_depth_to_space, attrs=_D2S_ATTRS)


def _eval_trilu(node, x, k=None):
    kk = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    if x.ndim < 2:
        _raise(node, f"input must have rank >= 2, got {list(x.shape)}")
    rows, cols = x.shape[-2:]
    keep = np.arange(cols)[None, :] - np.arange(rows)[:, None]
    mask = keep >= kk if node.attrs["upper"] else keep <= kk
    return np.where(mask, x, np.zeros((), dtype=x.dtype))


def _infer_trilu(ctx):
    r = ctx.rank(0)
    if r is not None and r < 2:
        ctx.fail(f"input must have rank >= 2, got {_fmt(ctx.shape(0))}")
    return [ctx.type(0)]


_reg("Trilu", _eval_trilu, _infer_trilu, attrs={"upper": Attr("int", 1)}, inputs=(1, 2), kind=Kind.OPAQUE)


def _eval_reverse_sequence(node, x, lens):
    ta, ba = node.attrs["time_axis"], node.attrs["batch_axis"]
    t = np.arange(x.shape[ta])
    ln = lens.astype(np.int64).reshape(-1)
    src = np.where(t[None, :] < ln[:, None], ln[:, None] - 1 - t[None, :], t[None, :])  # [batch, time]
    if ta < ba:
        src = src.T
    src = src.reshape(src.shape + (1,) * (x.ndim - 2))
    return np.take_along_axis(x, np.broadcast_to(src, x.shape), axis=ta)


def _infer_reverse_sequence(ctx):
    s = ctx.shape(0)
    ta, ba = ctx.attr("time_axis"), ctx.attr("batch_axis")
    if {ta, ba} != {0, 1}:
        ctx.fail(f"time_axis and batch_axis must be 0 and 1 in some order, got {ta} and {ba}")
    if s is not None and len(s) < 2:
        ctx.fail(f"input must have rank >= 2, got {_fmt(s)}")
    return [ctx.type(0)]


_reg("ReverseSequence", _eval_reverse_sequence, _infer_reverse_sequence,
     attrs={"batch_axis": Attr("int", 1), "time_axis": Attr("int", 0)}, inputs=(2, 2))


# ---- Resize, Upsample ------------------------------------------------------------------------------
def _cubic_kernel(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, roi) -> np.ndarray:
    """Where each output index falls in input coordinates, for one axis."""
    y = np.arange(out_len, dtype=np.float64)
    length = scale * in_len  # the resized length before rounding
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / length)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if length > 1 else np.full(out_len, -0.5)
    if mode == "align_corners":
        return y * (in_len - 1) / (length - 1) if length != 1 else np.zeros(out_len)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        if length > 1:
            x = y * (hi - lo) * (in_len - 1) / (length - 1)
        else:
            x = np.full(out_len, (hi - lo) * (in_len - 1) / 2)
        return x + lo * (in_len - 1)
    raise ValueError(f"unknown coordinate_transformation_mode '{mode}'")


def _axis_taps(attrs, x: np.ndarray, in_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Input indices [out, taps] and their weights [out, taps] of one axis's interpolation."""
    mode = attrs["mode"]
    if mode == "nearest":
        nm = attrs["nearest_mode"]
        if nm == "round_prefer_floor":
            i = np.ceil(x - 0.5)
        elif nm == "round_prefer_ceil":
            i = np.floor(x + 0.5)
        elif nm == "floor":
            i = np.floor(x)
        elif nm == "ceil":
            i = np.ceil(x)
        else:
            raise ValueError(f"unknown nearest_mode '{nm}'")
        return np.clip(i, 0, in_len - 1).astype(np.int64)[:, None], np.ones((x.size, 1))
    support = 1 if mode == "linear" else 2
    s = min(scale, 1.0) if attrs["antialias"] else 1.0
    first = math.floor(-support / s) + 1
    base = np.ceil(x) - 1  # the tap left of x, with x itself counted as right of it when integral
    offsets = np.arange(first, 2 - first)
    idx = base[:, None] + offsets[None, :]
    dist = (idx - x[:, None]) * s
    if mode == "linear":
        w = np.clip(1 - np.abs(dist), 0, None)
    else:
        w = _cubic_kernel(dist, attrs["cubic_coeff_a"])
    if attrs["antialias"]:
        w = w / w.sum(axis=1, keepdims=True)
    if attrs["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, in_len - 1).astype(np.int64), w


def _resize_plan(node, shape, roi, scales, sizes):
    """Per-axis (scale, output size, roi) of a Resize node on an input of ``shape``."""
    r = len(shape)
    attrs = node.attrs
    axes = attrs.get("axes")
    axes = list(range(r)) if axes is None else [a + r if a < 0 else a for a in axes]
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and sizes.size == 0:
        sizes = None
    if (scales is None) == (sizes is None):
        _raise(node, "exactly one of scales and sizes must be given")
    scale = [1.0] * r
    out = list(shape)
    if scales is not None:
        sc = [float(v) for v in scales.reshape(-1)]
        if len(sc) != len(axes):
            _raise(node, f"scales has {len(sc)} entries for {len(axes)} axes")
        for a, v in zip(axes, sc):
            scale[a] = v
            out[a] = int(shape[a] * v)
    else:
        sz = [int(v) for v in sizes.reshape(-1)]
        if len(sz) != len(axes):
            _raise(node, f"sizes has {len(sz)} entries for {len(axes)} axes")
        policy = attrs["keep_aspect_ratio_policy"]
        ratios = [t / shape[a] for a, t in zip(axes, sz)]
        if policy == "stretch":
            for a, t, q in zip(axes, sz, ratios):
                scale[a], out[a] = q, t
        else:
            q = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                scale[a] = q
                out[a] = int(q * shape[a] + 0.5)
    rois = [(0.0, 1.0)] * r
    if roi is not None and roi.size:
        rv = roi.reshape(-1).astype(np.float64)
        k = len(axes)
        if rv.size != 2 * k:
            _raise(node, f"roi has {rv.size} entries, expected {2 * k}")
        for j, a in enumerate(axes):
            rois[a] = (rv[j], rv[j + k])
    return axes, scale, out, rois


def _eval_resize(node, x, roi=None, scales=None, sizes=None):
    attrs = node.attrs
    axes, scale, out_shape, rois = _resize_plan(node, x.shape, roi, scales, sizes)
    ctm = attrs["coordinate_transformation_mode"]
    y = x.astype(np.float64) if attrs["mode"] != "nearest" else x
    for a in axes:
        if out_shape[a] == x.shape[a] and scale[a] == 1.0 and ctm != "tf_crop_and_resize":
            continue
        coords = _source_coords(ctm, out_shape[a], x.shape[a], scale[a], rois[a])
        idx, w = _axis_taps(attrs, coords, x.shape[a], scale[a])
        if attrs["mode"] == "nearest":
            y = np.take(y, idx[:, 0], axis=a)
        else:
            taps = np.take(y, idx.reshape(-1), axis=a)
            taps = taps.reshape(y.shape[:a] + idx.shape + y.shape[a + 1:])
            y = np.einsum(taps, list(range(taps.ndim)), w, [a, a + 1],
                          [k for k in range(taps.ndim) if k != a + 1])
        if ctm == "tf_crop_and_resize":
            outside = (coords < 0) | (coords > x.shape[a] - 1)
            if outside.any():
                y = y.astype(np.float64) if y.dtype != np.float64 else y
                mask = outside.reshape([-1 if k == a else 1 for k in range(x.ndim)])
                y = np.where(mask, attrs["extrapolation_value"], y)
    if y.dtype == x.dtype:
        return y
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(x.dtype)
    return y.astype(x.dtype)


def _infer_resize(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    r = len(s)
    axes = ctx.attr("axes")
    axes = list(range(r)) if axes is None else [normalize_axis(ctx, a, r, "axes entry") for a in axes]
    if len(set(axes)) != len(axes):
        ctx.fail(f"axes {ctx.attr('axes')} repeat an axis")
    scales = ctx.const(2) if ctx.has_input(2) else None
    sizes = ctx.const(3) if ctx.has_input(3) else None

    def given(i: int, c) -> bool | None:
        """Whether input i holds values (True), is absent or empty (False), or cannot be told (None)."""
        if not ctx.has_input(i):
            return False
        n = c.size if c is not None else _length(ctx, i)
        return None if n is None else n > 0

    scales_given, sizes_given = given(2, scales), given(3, sizes)
    if scales_given and sizes_given:
        ctx.fail("give scales or sizes, not both")
    if scales_given is False and sizes_given is False:
        ctx.fail("one of scales and sizes must be given")
    if scales_given is None and sizes_given is None:
        return [tt(dt, [ctx.fresh() if k in axes else d for k, d in enumerate(s)])]
    sizes_given = sizes_given or scales_given is False
    out = list(s)
    if sizes_given:
        target = _sym_or_unknown(ctx, 3)
        if target is not None and len(target) != len(axes):
            ctx.fail(f"sizes has {len(target)} entries for {len(axes)} axes")
        if ctx.attr("keep_aspect_ratio_policy") != "stretch":
            if sizes is not None and all(isinstance(s[a], int) for a in axes):
                _, _, out, _ = _resize_plan(ctx.node, s, None, None, sizes)
            else:
                out = [ctx.fresh() if k in axes else d for k, d in enumerate(s)]
        else:
            for j, a in enumerate(axes):
                out[a] = ctx.fresh() if target is None else _as_dim(ctx, target[j])
    else:
        sc = None if scales is None else [float(v) for v in scales.reshape(-1)]
        if sc is not None and len(sc) != len(axes):
            ctx.fail(f"scales has {len(sc)} entries for {len(axes)} axes")
        for j, a in enumerate(axes):
            if sc is None:
                out[a] = ctx.fresh()
            elif sc[j] <= 0:
                ctx.fail(f"scales must be positive, got {sc}")
            elif isinstance(s[a], int):
                out[a] = int(s[a] * sc[j])
            elif sc[j] != 1.0:
                out[a] = ctx.fresh()
    return [tt(dt, out)]


_RESIZE_ATTRS = {
    "mode": Attr("string", "nearest"), "coordinate_transformation_mode": Attr("string", "half_pixel"),
    "nearest_mode": Attr("string", "round_prefer_floor"), "cubic_coeff_a": Attr("float", -0.75),
    "exclude_outside": Attr("int", 0), "extrapolation_value": Attr("float", 0.0), "antialias": Attr("int", 0),
    "axes": Attr("ints"), "keep_aspect_ratio_policy": Attr("string", "stretch"),
}


def _upgrade_resize10(node: Node, graph: Graph) -> None:
    """Resize-10 took (X, scales) and sampled like Upsample: asymmetric coordinates, nearest rounds down."""
    node.inputs = [node.inputs[0], None] + node.inputs[1:2]
    node.attrs.setdefault("coordinate_transformation_mode", "asymmetric")
    node.attrs.setdefault("nearest_mode", "floor")


_reg("Resize", _eval_resize, _infer_resize, attrs=_RESIZE_ATTRS, inputs=(1, 4), kind=Kind.OPAQUE,
     upgrades={11: _upgrade_resize10})


def _upsample_attrs(node) -> dict:
    attrs = {k: a.default for k, a in _RESIZE_ATTRS.items()}
    attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                 mode=node.attrs["mode"].replace("bilinear", "linear"))
    return attrs


class _AttrView:
    """A node-like view carrying Resize attributes, so Upsample reuses Resize's kernel."""

    def __init__(self, node, attrs):
        self.attrs = attrs
        self.op_type, self.name, self.source = node.op_type, node.name, getattr(node, "source", None)


def _eval_upsample(node, x, scales):
    return _eval_resize(_AttrView(node, _upsample_attrs(node)), x, None, scales, None)


def _infer_upsample(ctx):
    s = ctx.shape(0)
    sc = ctx.const(1)
    if ctx.attr("mode") not in ("nearest", "linear", "bilinear"):
        ctx.fail(f"mode must be nearest or linear, got '{ctx.attr('mode')}'")
    if s is None:
        return [tt(ctx.dtype(0), None)]
    if sc is None:
        return [tt(ctx.dtype(0), [ctx.fresh() for _ in s])]
    sc = [float(v) for v in sc.reshape(-1)]
    if len(sc) != len(s):
        ctx.fail(f"scales {sc} must have one entry per dim of the input {_fmt(s)}")
    return [tt(ctx.dtype(0), [int(d * f) if isinstance(d, int) else d if f == 1 else ctx.fresh()
                              for d, f in zip(s, sc)])]


def _upgrade_upsample(node: Node, graph: Graph) -> None:
    """Upsample-1 had height_scale/width_scale, Upsample-7 a scales attribute; 9 takes scales as input."""
    if "height_scale" in node.attrs or "width_scale" in node.attrs:
        h, w = node.attrs.pop("height_scale", 1.0), node.attrs.pop("width_scale", 1.0)
        node.attrs["scales"] = [1.0, 1.0, h, w]
    attr_to_input("scales", 1, dtype=np.float32)(node, graph)


_reg("Upsample", _eval_upsample, _infer_upsample, attrs={"mode": Attr("string", "nearest")}, inputs=(2, 2),
     kind=Kind.OPAQUE, upgrades={9: _upgrade_upsample})


# ---- GridSample, AffineGrid ---------------------------------------------------------------------
def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold coordinates into [lo, hi] by reflecting at the borders (repeatedly)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    below = lo - x
    above = x - hi
    out = x.copy()
    for d, base, sign in ((below, lo, 1), (above, hi, -1)):
        m = d > 0
        n = np.floor(d / span)
        r = d - n * span
        even = (n % 2) == 0
        val = np.where(even, base + sign * r, (hi if sign == 1 else lo) - sign * r)
        out = np.where(m, val, out)
    return out


def _eval_grid_sample(node, x, grid):
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(node.attrs["mode"], node.attrs["mode"])
    pad = node.attrs["padding_mode"]
    align = node.attrs["align_corners"]
    n, c = x.shape[:2]
    dims = x.shape[2:]
    r = len(dims)
    g = grid.astype(np.float64)
    out_sp = grid.shape[1:-1]
    g = g.reshape(n, -1, r)  # [N, P, r], last axis in (x, y, z) order = reversed dims
    coords, lows, highs = [], [], []
    for k in range(r):
        size = dims[k]
        u = g[..., r - 1 - k]
        pos = (u + 1) / 2 * (size - 1) if align else ((u + 1) * size - 1) / 2
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        if mode == "nearest":
            pos = np.rint(pos)
        outside = (pos < lo) | (pos > hi)
        if pad == "border":
            pos = np.where(outside, np.clip(pos, 0, size - 1), pos)
        elif pad == "reflection":
            pos = np.where(outside, _reflect(pos, lo, hi), pos)
        coords.append(pos)
        lows.append(lo)
        highs.append(hi)

    def fetch_index(i: np.ndarray, k: int):
        """Integer tap index -> (clipped index, validity) under the padding mode."""
        size = dims[k]
        if pad == "zeros":
            return np.clip(i, 0, size - 1), (i >= 0) & (i < size)
        if pad == "border":
            return np.clip(i, 0, size - 1), None
        j = np.trunc(_reflect(i.astype(np.float64), lows[k], highs[k])).astype(np.int64)
        return np.clip(j, 0, size - 1), None

    taps = []  # per dim: list of (index, weight) over the kernel
    for k in range(r):
        pos = coords[k]
        if mode == "nearest":
            taps.append([(pos.astype(np.int64), None)])
            continue
        base = np.floor(pos)
        t = pos - base
        if mode == "linear":
            offs, ws = (0, 1), (1 - t, t)
        else:
            offs = (-1, 0, 1, 2)
            ws = tuple(_cubic_kernel(t - o, -0.75) for o in offs)
        taps.append([(base.astype(np.int64) + o, w) for o, w in zip(offs, ws)])

    xt = np.moveaxis(x, 1, -1)  # [N, D..., C]
    batch = np.arange(n)[:, None]
    acc = np.zeros((n, g.shape[1], c), dtype=np.float64)
    for combo in np.ndindex(*[len(t) for t in taps]):
        index = [batch]
        weight = np.ones((n, g.shape[1]))
        for k, j in enumerate(combo):
            i, w = taps[k][j]
            i, valid = fetch_index(i, k)
            index.append(i)
            if w is not None:
                weight = weight * w
            if valid is not None:
                weight = weight * valid
        acc += xt[tuple(index)] * weight[..., None]
    out = np.moveaxis(acc, -1, 1).reshape((n, c) + tuple(out_sp))
    return out.astype(x.dtype)


def _infer_grid_sample(ctx):
    s, gs = ctx.shape(0), ctx.shape(1)
    if ctx.attr("mode") not in ("linear", "nearest", "cubic", "bilinear", "bicubic"):
        ctx.fail(f"mode must be linear, nearest or cubic, got '{ctx.attr('mode')}'")
    if ctx.attr("padding_mode") not in ("zeros", "border", "reflection"):
        ctx.fail(f"padding_mode must be zeros, border or reflection, got '{ctx.attr('padding_mode')}'")
    if s is None or gs is None:
        return [tt(ctx.dtype(0), None)]
    if len(gs) != len(s) or (isinstance(gs[-1], int) and gs[-1] != len(s) - 2):
        ctx.fail(f"grid {_fmt(gs)} must be [N, spatial out..., {len(s) - 2}] for input {_fmt(s)}")
    n = _merge_dim(ctx, s[0], gs[0], f"batch dims of input {_fmt(s)} and grid {_fmt(gs)} differ")
    return [tt(ctx.dtype(0), [n, s[1]] + list(gs[1:-1]))]


_reg("GridSample", _eval_grid_sample, _infer_grid_sample, inputs=(2, 2), kind=Kind.OPAQUE,
     attrs={"mode": Attr("string", "linear"), "padding_mode": Attr("string", "zeros"),
            "align_corners": Attr("int", 0)},
     upgrades={20: lambda node, g: node.attrs.update(
         mode={"bilinear": "linear", "bicubic": "cubic"}.get(node.attrs.get("mode", "bilinear"),
                                                            node.attrs.get("mode", "bilinear")))})


def _eval_affine_grid(node, theta, size):
    sz = [int(v) for v in size.reshape(-1)]
    n, spatial = sz[0], sz[2:]
    align = node.attrs["align_corners"]
    axes = []
    for d in spatial:
        if align:
            axes.append(np.linspace(-1.0, 1.0, d) if d > 1 else np.zeros(1))
        else:
            axes.append((2 * np.arange(d) + 1) / d - 1)
    mesh = np.meshgrid(*axes, indexing="ij")  # one array per spatial dim, in (D, H, W) order
    base = np.stack([m.reshape(-1) for m in mesh[::-1]] + [np.ones(mesh[0].size)], axis=-1)  # (x, y, z, 1)
    out = np.einsum("pk,njk->npj", base, theta.astype(np.float64))
    return out.reshape([n] + spatial + [len(spatial)]).astype(theta.dtype)


def _infer_affine_grid(ctx):
    t = ctx.shape(0)
    size = _sym_or_unknown(ctx, 1)
    if t is not None and (len(t) != 3 or (isinstance(t[1], int) and t[1] not in (2, 3))):
        ctx.fail(f"theta must be [N, 2, 3] or [N, 3, 4], got {_fmt(t)}")
    if size is None:
        r = t[1] if t is not None and isinstance(t[1], int) else None
        return [tt(ctx.dtype(0), None if r is None else [ctx.fresh() for _ in range(r + 2)])]
    if len(size) not in (4, 5):
        ctx.fail(f"size must have 4 or 5 entries, got {len(size)}")
    spatial = [_as_dim(ctx, d) for d in size[2:]]
    n = _as_dim(ctx, size[0]) if t is None else _merge_dim(ctx, t[0], _as_dim(ctx, size[0]), "batch of theta and size")
    return [tt(ctx.dtype(0), [n] + spatial + [len(spatial)])]


_reg("AffineGrid", _eval_affine_grid, _infer_affine_grid, attrs={"align_corners": Attr("int", 0)},
     inputs=(2, 2), kind=Kind.OPAQUE)


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext). Ops that only
# move elements get theirs from ``ctx.route_back``; ops that only change the shape reshape back.
def _reshape_back(ctx, node, dys):
    return [ctx.reshape_like(dys[0], node.inputs[0])] + [None] * (len(node.inputs) - 1)


def _route_back(ctx, node, dys):
    return [ctx.route_back(node, dys[0], 0)] + [None] * (len(node.inputs) - 1)


def _transpose_grad(ctx, node, dys):
    rank = ctx.rank(node.inputs[0])
    perm = node.attrs.get("perm") or list(reversed(range(rank)))
    return [ctx.op("Transpose", dys[0], perm=[int(i) for i in np.argsort(perm)])]


def _concat_grad(ctx, node, dys):
    axis = node.attrs["axis"] % ctx.rank(node.inputs[0])
    sizes = ctx.shape_vector([ctx.shape_of(x)[axis] if isinstance(ctx.shape_of(x)[axis], int) else ctx.dim(x, axis)
                              for x in node.inputs])
    return ctx.op_n("Split", dys[0], sizes, num_outputs=len(node.inputs), axis=axis)


def _split_grad(ctx, node, dys):
    parts = [g if g is not None else ctx.zeros_like(y) for y, g in zip(node.outputs, dys)]
    return [ctx.op("Concat", *parts, axis=node.attrs["axis"])] + [None] * (len(node.inputs) - 1)


def _slice_grad(ctx, node, dys):
    x, g = node.inputs[0], dys[0]
    shape = ctx.static_shape(x)
    consts = [v.data if v is not None else None for v in node.inputs[1:]] + [None] * (5 - len(node.inputs))
    starts, ends, axes, steps = consts[:4]
    given = [v is not None for v in node.inputs[1:5]] + [False] * (5 - len(node.inputs))
    if shape is None or starts is None or ends is None or (given[2] and axes is None) or (given[3] and steps is None):
        return _route_back(ctx, node, dys)
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes.reshape(-1)]
    steps = [1] * len(axes) if steps is None else [int(s) for s in steps.reshape(-1)]
    if any(s != 1 for s in steps):
        return _route_back(ctx, node, dys)
    pads = [0] * (2 * rank)
    for a, st, en in zip(axes, starts.reshape(-1), ends.reshape(-1)):
        b, e, _ = slice(int(st), int(en)).indices(shape[a])
        e = max(e, b)
        pads[a], pads[a + rank] = b, shape[a] - e
    return [ctx.op("Pad", g, ctx.ints(pads))] + [None] * (len(node.inputs) - 1)


def _pad_grad(ctx, node, dys):
    if node.attrs["mode"] != "constant":
        return _route_back(ctx, node, dys)
    x, pads = node.inputs[0], node.inputs[1]
    axes = node.inputs[3] if len(node.inputs) > 3 else None
    # cropping by the pads undoes them (a negative pad crops, and padding back what was cropped gives 0)
    dx = ctx.op("Pad", dys[0], ctx.op("Neg", pads), None, axes)
    return [dx] + [None] * (len(node.inputs) - 1)


def _scatter_grad(gather_op: str):
    def rule(ctx, node, dys):
        data, idx, upd = node.inputs
        g = dys[0]
        red = node.attrs.get("reduction", "none")
        attrs = {"axis": node.attrs["axis"]} if "axis" in node.attrs else {}
        if red not in ("none", "add"):
            from ..errors import GradientError

            raise GradientError(f"{node_label(node)}: no gradient for reduction '{red}' (only 'none' and 'add')")
        d_upd = ctx.op(gather_op, g, idx, **attrs)
        d_data = g if red == "add" else ctx.op(node.op_type, g, idx, ctx.zeros_like(upd), **attrs)
        return [d_data, None, d_upd]

    return rule


def _resize_grad(ctx, node, dys):
    if node.attrs.get("mode") != "nearest":
        from ..errors import GradientError

        raise GradientError(f"{node_label(node)}: Resize in mode '{node.attrs.get('mode')}' has no gradient rule "
                            f"yet (only 'nearest')")
    return _route_back(ctx, node, dys)


set_grads({
    "Identity": lambda ctx, node, dys: [dys[0]],
    "Reshape": _reshape_back,
    "Flatten": _reshape_back,
    "Squeeze": _reshape_back,
    "Unsqueeze": _reshape_back,
    "Transpose": _transpose_grad,
    "Concat": _concat_grad,
    "Split": _split_grad,
    "Slice": _slice_grad,
    "Gather": _route_back,
    "GatherElements": _route_back,
    "GatherND": _route_back,
    "Compress": _route_back,
    "Tile": _route_back,
    "DepthToSpace": _route_back,
    "SpaceToDepth": _route_back,
    "ReverseSequence": _route_back,
    "CenterCropPad": _route_back,
    "Resize": _resize_grad,
    "Upsample": _resize_grad,
    "Pad": _pad_grad,
    "Expand": lambda ctx, node, dys: [ctx.unbroadcast(dys[0], node.inputs[0]), None],
    "Trilu": lambda ctx, node, dys: [ctx.op("Trilu", dys[0], *node.inputs[1:], upper=node.attrs["upper"])]
    + [None] * (len(node.inputs) - 1),
    "ScatterElements": _scatter_grad("GatherElements"),
    "Scatter": _scatter_grad("GatherElements"),
    "ScatterND": _scatter_grad("GatherND"),
}, {
    "Shape": "its output is a shape (integers)",
    "Size": "its output is an element count (integer)",
    "NonZero": "its output holds integer indices",
    "Unique": "its outputs are chosen by comparisons and include integer indices and counts",
    "ConstantOfShape": "its input is a shape (integers)",
    "EyeLike": "its output depends only on the input's shape",
    "Range": "its output length depends on the values of its inputs",
    "OneHot": "its output is built from integer indices",
    "Constant": "it has no inputs",
})
set_facts(
    view=("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"),
    reshape=("Reshape", "Flatten", "Squeeze", "Unsqueeze"),
    layout=("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose"),
    value_sized=("ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad", "CenterCropPad", "OneHot",
                 "Reshape", "AffineGrid", "EyeLike", "Slice", "Split"),
)
