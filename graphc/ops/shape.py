"""Shape operators: reshape/transpose/slice/pad/concat/split/tile, shape arithmetic (Shape, Range, OneHot...),
depth-space moves and Trilu. (Gather, scatter and data-dependent selection: index.py; Resize, Upsample,
GridSample and AffineGrid: resize.py; the symbolic dim helpers they share: symbolic.py.)

Inference here is what keeps exported models static: targets that a model computes with
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains are read through ``ctx.sym`` (known values,
or partly known ones whose entries are dim symbols) and propagated with ``ctx.set_sym``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import OpAttributeError, node_label
from ..ir import DType, Graph, Node
from ..ir.types import TensorType
from .common import (attr_to_input, broadcast_shapes, drop_attrs, family_register, normalize_axis, np_axis,
                     route_back_grad, tt)
from .symbolic import (as_dim, const_ints, fmt_shape, input_length, merge_dim, product_dim, quotient_dim, raise_at,
                       record_sym, small_sym, sym_or_unknown)
from .registry import REQUIRED, Attr, Kind, set_facts, set_grads

FAMILY = "shape"


_reg = family_register(FAMILY)


# ---- Identity, Constant ------------------------------------------------------------------------
def _infer_identity(ctx):
    if isinstance(ctx.type(0), TensorType) and ctx.rank(0) is not None and ctx.rank(0) <= 1:
        record_sym(ctx, 0, small_sym(ctx, 0))
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
                             lambda m: raise_at(node, m))
    return x.reshape(target)


def _infer_reshape(ctx):
    dt, ishape = ctx.dtype(0), ctx.shape(0)
    target = sym_or_unknown(ctx, 1)
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
                ctx.fail(f"shape entry {k} is 0 (copy input dim {k}) but the input {fmt_shape(ishape)} has rank "
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
            out[neg] = quotient_dim(ctx, ishape, others)
        else:
            out[neg] = None
    elif ishape is not None and all(isinstance(d, int) for d in ishape) and all(isinstance(d, int) for d in out):
        if math.prod(ishape) != math.prod(out):
            ctx.fail(f"cannot reshape {fmt_shape(ishape)} ({math.prod(ishape)} elements) to {fmt_shape(out)} "
                     f"({math.prod(out)} elements)")
    if neg is not None and ishape is not None and isinstance(out[neg], int) and \
            all(isinstance(d, int) for d in ishape) and out[neg] < 0:
        ctx.fail(f"cannot reshape {fmt_shape(ishape)} to {list(target)}")
    # Reshape of a partly known shape value (rank <= 1 in and out) keeps its entries.
    if ishape is not None and len(ishape) <= 1 and len(out) <= 1:
        record_sym(ctx, 0, small_sym(ctx, 0))
    return [tt(dt, [as_dim(ctx, d) for d in out])]


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
    return [tt(ctx.dtype(0), [product_dim(ctx, s[:axis]), product_dim(ctx, s[axis:])])]


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
        axes = const_ints(ctx, 1)
        if axes is None:
            n = input_length(ctx, 1)
            return [tt(dt, None if n is None else [ctx.fresh() for _ in range(len(s) - n)])]
        ax = {normalize_axis(ctx, a, len(s), "axes entry") for a in axes}
        for a in sorted(ax):
            if isinstance(s[a], int) and s[a] != 1:
                ctx.fail(f"cannot squeeze axis {a} of {fmt_shape(s)}: its size is {s[a]}, not 1")
        out = [d for k, d in enumerate(s) if k not in ax]
    else:
        out = [d for d in s if d != 1]  # as ONNX does: symbolic dims are taken not to be 1
    if len(out) <= 1 and len(s) <= 1:
        record_sym(ctx, 0, small_sym(ctx, 0))
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
    axes = const_ints(ctx, 1)
    if s is None:
        return [tt(dt, None)]
    if axes is None:
        n = input_length(ctx, 1)
        return [tt(dt, None if n is None else [ctx.fresh() for _ in range(len(s) + n)])]
    r = len(s) + len(axes)
    ax = [normalize_axis(ctx, a, r, "axes entry") for a in axes]
    if len(set(ax)) != len(ax):
        ctx.fail(f"axes {axes} repeat an axis")
    out = list(s)
    for a in sorted(ax):
        out.insert(a, 1)
    if r <= 1:
        record_sym(ctx, 0, small_sym(ctx, 0))
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
            ctx.fail(f"inputs must have the same rank, got {' and '.join(fmt_shape(s) for s in known)}")
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
                d = s[k] if d is None else merge_dim(ctx, d, s[k], f"dim {k} differs between inputs "
                                                     f"{' and '.join(fmt_shape(s) for s in known)}")
            out.append(d)
    if rank == 1:
        parts = [small_sym(ctx, i) for i in idx]
        if all(p is not None for p in parts):
            record_sym(ctx, 0, tuple(e for p in parts for e in p))
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
        raise_at(node, f"split sizes {sizes} do not add up to dim {axis} of {list(x.shape)}")
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
    split = const_ints(ctx, 1) if ctx.has_input(1) else None
    dim = s[axis]
    if ctx.has_input(1) and split is None:
        sizes = [ctx.fresh() for _ in range(n_out)]
    elif split is not None:
        if len(split) != n_out:
            ctx.fail(f"split {split} has {len(split)} entries but the node has {n_out} outputs")
        if isinstance(dim, int) and sum(split) != dim:
            ctx.fail(f"split {split} adds up to {sum(split)}, but dim {axis} of {fmt_shape(s)} is {dim}")
        sizes = split
    elif isinstance(dim, int):
        sizes = _split_sizes(ctx.node, dim, None, n_out)
        if ctx.node.opset is not None and ctx.node.opset < 18 and dim % n_out:
            ctx.fail(f"dim {axis} of {fmt_shape(s)} ({dim}) does not split into {n_out} equal parts")
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
        raise_at(node, f"starts, ends, axes and steps must have the same length, got "
                     f"{len(starts)}, {len(ends)}, {len(axes)}, {len(steps)}")
    return starts, ends, [a + rank if a < 0 else a for a in axes], steps


def _eval_slice(node, x, starts, ends, axes=None, steps=None):
    starts, ends, axes, steps = slice_args(node, x.ndim, starts, ends, axes, steps)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise_at(node, "a step of 0 is not allowed")
        s, e, _ = slice_bounds(s, e, st, x.shape[a])
        index[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(index)]


_BIG = 2**31 - 1  # ends at or past this mean "to the end", whatever the dim


def _infer_slice(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    # starts/ends may be partly known (e.g. an end taken from Shape): entries int, dim symbol or None.
    starts, ends = small_sym(ctx, 1), small_sym(ctx, 2)
    axes = const_ints(ctx, 3) if ctx.has_input(3) else None
    steps = const_ints(ctx, 4) if ctx.has_input(4) else None
    if starts is None or ends is None or (ctx.has_input(3) and axes is None) or \
            (ctx.has_input(4) and steps is None):
        # Axes we cannot see change size; without axes, the first len(starts) may.
        if axes is not None:
            touched = {normalize_axis(ctx, a, len(s), "axes entry") for a in axes}
        else:
            n = input_length(ctx, 1)
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
        v = small_sym(ctx, 0)
        if v is not None and len(v) == s[0]:
            b, e, _ = slice_bounds(starts[0], ends[0], steps[0], len(v))
            record_sym(ctx, 0, v[slice(b, e if e >= 0 else None, steps[0])])
    return [tt(dt, out)]


def _upgrade_slice(node: Node, graph: Graph) -> None:
    """Slice-1 kept starts/ends/axes as attributes; later opsets take them as inputs 1..3."""
    for k, name in ((1, "starts"), (2, "ends"), (3, "axes")):
        if name in node.attrs:
            attr_to_input(name, k)(node, graph)


_reg("Slice", _eval_slice, _infer_slice, inputs=(3, 5), upgrades={10: _upgrade_slice})


# ---- Expand, Tile, Pad ---------------------------------------------------------------------------
def _eval_expand(node, x, shape):
    target = tuple(int(d) for d in shape.reshape(-1))
    out = np.broadcast_shapes(x.shape, target)
    return np.broadcast_to(x, out).copy()


def _infer_expand(ctx):
    s, dt = ctx.shape(0), ctx.dtype(0)
    target = sym_or_unknown(ctx, 1)
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
    reps = const_ints(ctx, 1)
    if reps is None:
        return [tt(dt, [d if isinstance(d, int) and d == 0 else ctx.fresh() for d in s])]
    if len(reps) != len(s):
        ctx.fail(f"repeats {reps} must have one entry per dim of the input {fmt_shape(s)}")
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
        raise_at(node, f"pads has {len(pads)} entries, expected {2 * len(axes)} (begin and end for each axis)")
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
    pads = const_ints(ctx, 1)
    axes = const_ints(ctx, 3) if ctx.has_input(3) else list(range(len(s)))
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
                ctx.fail(f"pads {pads} crop more than dim {a} of {fmt_shape(s)} holds")
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
    target = sym_or_unknown(ctx, 1)
    out = list(s)
    if target is not None and len(target) != len(axes):
        ctx.fail(f"shape has {len(target)} entries but there are {len(axes)} axes")
    for j, a in enumerate(axes):
        out[a] = ctx.fresh() if target is None else as_dim(ctx, target[j])
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
    record_sym(ctx, 0, dims)
    return [tt(DType.int64, [len(dims)])]


_reg("Shape", _eval_shape, _infer_shape, attrs={"start": Attr("int", 0), "end": Attr("int")}, kind=Kind.OPAQUE)


def _infer_size(ctx):
    s = ctx.shape(0)
    if s is not None and all(isinstance(d, int) for d in s):
        record_sym(ctx, 0, [math.prod(s)])
    elif s is not None:
        d = product_dim(ctx, s)
        if d in s:  # one symbolic dim, the others 1
            record_sym(ctx, 0, [d])
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
    target = sym_or_unknown(ctx, 0)
    if target is not None:
        for d in target:
            if isinstance(d, int) and d < 0:
                ctx.fail(f"shape {list(target)} has a negative entry")
    return [tt(dt, None if target is None else [as_dim(ctx, d) for d in target])]


_reg("ConstantOfShape", _eval_constant_of_shape, _infer_constant_of_shape, attrs={"value": Attr("tensor")},
     kind=Kind.OPAQUE)


def _eval_range(node, start, limit, delta):
    dt = start.dtype
    s, l, d = start.item(), limit.item(), delta.item()
    if d == 0:
        raise_at(node, "delta must not be 0")
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
        if ctx.rank(i) not in (None, 0) and input_length(ctx, i) != 1:
            ctx.fail(f"input {i} must be a scalar, got {fmt_shape(ctx.shape(i))}")
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
        ctx.fail(f"input must be 2-D, got {fmt_shape(s)}")
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
    if ctx.shape(2) is not None and input_length(ctx, 2) not in (None, 2):
        ctx.fail(f"values must hold 2 entries [off, on], got {fmt_shape(ctx.shape(2))}")
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
        ctx.fail(f"input must be 4-D [N,C,H,W], got {fmt_shape(s)}")
    b = ctx.attr("blocksize")
    if b <= 0:
        ctx.fail(f"blocksize must be positive, got {b}")
    if ctx.attr("mode") not in ("DCR", "CRD"):
        ctx.fail(f"mode must be DCR or CRD, got '{ctx.attr('mode')}'")
    n, c, h, w = s
    if ctx.node.op_type == "DepthToSpace":
        out = [n, _scale_dim(ctx, c, 1, b * b, f"channels of {fmt_shape(s)}"), _scale_dim(ctx, h, b),
               _scale_dim(ctx, w, b)]
    else:
        out = [n, _scale_dim(ctx, c, b * b), _scale_dim(ctx, h, 1, b, f"height of {fmt_shape(s)}"),
               _scale_dim(ctx, w, 1, b, f"width of {fmt_shape(s)}")]
    return [tt(ctx.dtype(0), out)]


_D2S_ATTRS = {"blocksize": Attr("int", REQUIRED), "mode": Attr("string", "DCR")}
_reg("DepthToSpace", _eval_depth_to_space, _infer_depth_to_space, attrs=_D2S_ATTRS)
_reg("SpaceToDepth", _eval_space_to_depth, _infer_depth_to_space, attrs=_D2S_ATTRS)


def _eval_trilu(node, x, k=None):
    kk = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    if x.ndim < 2:
        raise_at(node, f"input must have rank >= 2, got {list(x.shape)}")
    rows, cols = x.shape[-2:]
    keep = np.arange(cols)[None, :] - np.arange(rows)[:, None]
    mask = keep >= kk if node.attrs["upper"] else keep <= kk
    return np.where(mask, x, np.zeros((), dtype=x.dtype))


def _infer_trilu(ctx):
    r = ctx.rank(0)
    if r is not None and r < 2:
        ctx.fail(f"input must have rank >= 2, got {fmt_shape(ctx.shape(0))}")
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
        ctx.fail(f"input must have rank >= 2, got {fmt_shape(s)}")
    return [ctx.type(0)]


_reg("ReverseSequence", _eval_reverse_sequence, _infer_reverse_sequence,
     attrs={"batch_axis": Attr("int", 1), "time_axis": Attr("int", 0)}, inputs=(2, 2))


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext). Ops that only
# move elements get theirs from ``ctx.route_back``; ops that only change the shape reshape back.
def _reshape_back(ctx, node, dys):
    return [ctx.reshape_like(dys[0], node.inputs[0])] + [None] * (len(node.inputs) - 1)


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
        return route_back_grad(ctx, node, dys)
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes.reshape(-1)]
    steps = [1] * len(axes) if steps is None else [int(s) for s in steps.reshape(-1)]
    if any(s != 1 for s in steps):
        return route_back_grad(ctx, node, dys)
    pads = [0] * (2 * rank)
    for a, st, en in zip(axes, starts.reshape(-1), ends.reshape(-1)):
        b, e, _ = slice(int(st), int(en)).indices(shape[a])
        e = max(e, b)
        pads[a], pads[a + rank] = b, shape[a] - e
    return [ctx.op("Pad", g, ctx.ints(pads))] + [None] * (len(node.inputs) - 1)


def _pad_grad(ctx, node, dys):
    if node.attrs["mode"] != "constant":
        return route_back_grad(ctx, node, dys)
    x, pads = node.inputs[0], node.inputs[1]
    axes = node.inputs[3] if len(node.inputs) > 3 else None
    # cropping by the pads undoes them (a negative pad crops, and padding back what was cropped gives 0)
    dx = ctx.op("Pad", dys[0], ctx.op("Neg", pads), None, axes)
    return [dx] + [None] * (len(node.inputs) - 1)


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
    "Tile": route_back_grad,
    "DepthToSpace": route_back_grad,
    "SpaceToDepth": route_back_grad,
    "ReverseSequence": route_back_grad,
    "CenterCropPad": route_back_grad,
    "Pad": _pad_grad,
    "Expand": lambda ctx, node, dys: [ctx.unbroadcast(dys[0], node.inputs[0]), None],
    "Trilu": lambda ctx, node, dys: [ctx.op("Trilu", dys[0], *node.inputs[1:], upper=node.attrs["upper"])]
    + [None] * (len(node.inputs) - 1),
}, {
    "Shape": "its output is a shape (integers)",
    "Size": "its output is an element count (integer)",
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
    value_sized=("ConstantOfShape", "Expand", "Tile", "Range", "Pad", "CenterCropPad", "OneHot", "Reshape", "EyeLike",
                 "Slice", "Split"),
)
