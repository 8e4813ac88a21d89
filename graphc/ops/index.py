"""Index operators: Gather, GatherElements, GatherND, the Scatter family, and data-dependent selection
(NonZero, Compress, Unique)."""
from __future__ import annotations

import math

import numpy as np

from ..errors import OpAttributeError, node_label
from ..ir import DType
from .common import family_register, normalize_axis, np_axis, route_back_grad, tt
from .registry import Attr, Kind, set_grads
from .symbolic import SYM_LIMIT, const_ints, fmt_shape, input_length, product_dim, raise_at, record_sym, small_sym

FAMILY = "index"


_reg = family_register(FAMILY)


# ---- Gather family -------------------------------------------------------------------------------
def _check_indices(node, idx, dim: int, what="indices"):
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        bad = idx[(idx < -dim) | (idx >= dim)].reshape(-1)[0]
        raise_at(node, f"{what} contain {bad}, out of range for a dim of size {dim}")
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
        data = small_sym(ctx, 0)
        idx = const_ints(ctx, 1) if input_length(ctx, 1) is not None and input_length(ctx, 1) <= SYM_LIMIT else None
        if idx is not None and isinstance(s[0], int):
            for i in idx:
                if not -s[0] <= i < s[0]:
                    ctx.fail(f"index {i} is out of range for axis {axis} of size {s[0]}")
            if data is not None and len(data) == s[0]:
                record_sym(ctx, 0, [data[i] for i in idx])
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
            ctx.fail(f"indices {fmt_shape(q)} must have the rank of data {fmt_shape(s)}")
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
        raise_at(node, f"indices are out of range for data of shape {list(data_shape)}")
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
        ctx.fail(f"batch_dims {b} must be less than the ranks of data {fmt_shape(s)} and indices {fmt_shape(q)}")
    k = q[-1]
    if not isinstance(k, int):
        return [tt(ctx.dtype(0), None)]
    if k > len(s) - b:
        ctx.fail(f"indices {fmt_shape(q)} index {k} dims but data {fmt_shape(s)} has only {len(s) - b} after the "
                 f"batch dims")
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
            ctx.fail(f"indices {fmt_shape(q)} must have the rank of data {fmt_shape(s)}")
        if q is not None and u is not None and len(q) != len(u):
            ctx.fail(f"updates {fmt_shape(u)} must have the shape of indices {fmt_shape(q)}")
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
        raise_at(node, f"write index + update length exceeds the cache length {max_seq} (mode 'linear')")
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
                ctx.fail(f"update {fmt_shape(u)} must have the rank of the cache {fmt_shape(s)}")
            for k, (a, b) in enumerate(zip(s, u)):
                if k != axis and isinstance(a, int) and isinstance(b, int) and a != b:
                    ctx.fail(f"update {fmt_shape(u)} and cache {fmt_shape(s)} differ in dim {k}")
    return [tt(ctx.dtype(0), s)]


_reg("TensorScatter", _eval_tensor_scatter, _infer_tensor_scatter,
     attrs={"axis": Attr("int", -2), "mode": Attr("string", "linear")}, inputs=(2, 3), kind=Kind.OPAQUE)


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
        ctx.fail(f"condition must be 1-D, got {fmt_shape(ctx.shape(1))}")
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
        total = None if s is None else product_dim(ctx, s)
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


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext).
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


set_grads({
    "Gather": route_back_grad,
    "GatherElements": route_back_grad,
    "GatherND": route_back_grad,
    "Compress": route_back_grad,
    "ScatterElements": _scatter_grad("GatherElements"),
    "Scatter": _scatter_grad("GatherElements"),
    "ScatterND": _scatter_grad("GatherND"),
}, {
    "NonZero": "its output holds integer indices",
    "Unique": "its outputs are chosen by comparisons and include integer indices and counts",
})
