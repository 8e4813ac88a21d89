"""CUDA C for injective ops: each maps its output coordinates to the input coordinates it reads.

Transpose permutes coordinates, Slice scales and shifts them, Expand zeroes broadcast dims, the
reshaping ops go through the linear index, Pad shifts them and selects the pad value outside the input,
Concat picks the input whose range holds the axis coordinate, Gather/GatherElements read the
coordinate from the indices tensor, Tile wraps them. A chain of such ops becomes one expression: the
value at the output's coordinates is the group input's value at the mapped coordinates, so one kernel
reads each input element it needs and writes each output element once.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import Node, Value
from graphc.ops.shape import pad_axes, slice_args, slice_bounds

from .kernel import OP_EMITTERS, CodegenUnsupported, Coords, Emitter, cctype, dtype_of, literal, shape_of


def _const(node: Node, i: int, what: str):
    """The data of constant input ``i`` (None when absent); a computed one cannot be generated statically."""
    if i >= len(node.inputs) or node.inputs[i] is None:
        return None
    v = node.inputs[i]
    if v.data is None:
        raise CodegenUnsupported(node, f"its {what} (input {i}, '{v.name}') is computed at run time; the CUDA "
                                       f"backend needs it constant")
    return np.asarray(v.data)


def _out(node: Node) -> Value:
    return node.outputs[0]


def _mapped(em: Emitter, node: Node, x: Value, coords: Coords, comment: str) -> str:
    """The value of ``x`` at ``coords`` (its own coordinates), named after ``node`` in a comment."""
    em.line(f"// {comment}: reads %{x.name}")
    return em.value(x, coords)


def _reshape(em, node, coords):
    x = node.inputs[0]
    lin = coords.linear(em)
    return _mapped(em, node, x, Coords(shape_of(x), linear=lin, guarded=coords.guarded),
                   f"{node.op_type} '{node.name}': same elements, shape {list(shape_of(_out(node)))}")


def _transpose(em, node, coords):
    x = node.inputs[0]
    rank = len(shape_of(x))
    perm = node.attrs.get("perm") or list(range(rank))[::-1]
    dims = [""] * rank
    for j, p in enumerate(perm):
        dims[p] = coords.dim(em, j)
    return _mapped(em, node, x, Coords(shape_of(x), dims=dims, guarded=coords.guarded),
                   f"Transpose '{node.name}' perm={list(perm)}")


def _expand(em, node, coords):
    x = node.inputs[0]
    return _mapped(em, node, x, coords.broadcast_to(shape_of(x)), f"Expand '{node.name}'")


def _slice(em, node, coords):
    x = node.inputs[0]
    shape = shape_of(x)
    starts, ends, axes, steps = slice_args(node, len(shape), _const(node, 1, "starts"), _const(node, 2, "ends"),
                                            _const(node, 3, "axes"), _const(node, 4, "steps"))
    dims = coords.dims(em)
    for s, e, a, st in zip(starts, ends, axes, steps):
        start, _, _ = slice_bounds(int(s), int(e), int(st), shape[a])
        c = dims[a]
        scaled = c if st == 1 else f"{c} * {st}" if st > 0 else f"{c} * ({st})"
        dims[a] = scaled if start == 0 else f"({start} + {scaled})"
        if c == "0":
            dims[a] = str(start)
    return _mapped(em, node, x, Coords(shape, dims=dims, guarded=coords.guarded), f"Slice '{node.name}'")


def _pad(em, node, coords):
    x = node.inputs[0]
    shape = shape_of(x)
    full = pad_axes(node, len(shape), _const(node, 1, "pads"), _const(node, 3, "axes"))
    mode = node.attrs["mode"]
    dims, inside = [], []
    for d, (c, (b, _)) in enumerate(zip(coords.dims(em), full)):
        n = shape[d]
        s = c if b == 0 else f"{c} - {b}" if b > 0 else f"{c} + {-b}"
        if b == 0 and full[d][1] <= 0:
            dims.append(s)
            continue
        t = em.temp("p", em.index_type, s, f"Pad '{node.name}' dim {d}")
        if mode == "constant":
            inside.append(f"{t} >= 0 && {t} < {n}")
            dims.append(t)
        elif mode == "edge":
            dims.append(em.temp("p", em.index_type, f"{t} < 0 ? 0 : ({t} >= {n} ? {n - 1} : {t})"))
        elif mode == "reflect":
            if n == 1:
                dims.append("0")
                continue
            r = em.temp("p", em.index_type, f"{t} < 0 ? -{t} : {t}")
            dims.append(em.temp("p", em.index_type, f"{r} >= {n} ? {2 * (n - 1)} - {r} : {r}"))
        elif mode == "wrap":
            dims.append(em.temp("p", em.index_type, f"(({t} % {n}) + {n}) % {n}"))
        else:
            raise CodegenUnsupported(node, f"Pad mode '{mode}'")
    dt = dtype_of(x)
    if not inside:
        return _mapped(em, node, x, Coords(shape, dims=dims, guarded=coords.guarded), f"Pad '{node.name}' ({mode})")
    cv = _const(node, 2, "constant_value")
    value = literal(0 if cv is None or cv.size == 0 else cv.reshape(-1)[0].item(), dt)
    inner = em.value(x, Coords(shape, dims=dims, guarded=True))
    return em.temp("v", cctype(dt), f"({' && '.join(inside)}) ? {inner} : {value}", f"Pad '{node.name}' (constant)")


def _concat(em, node, coords):
    out_shape = shape_of(_out(node))
    axis = node.attrs["axis"] % len(out_shape)
    dims = coords.dims(em)
    c = dims[axis]
    pieces, offset = [], 0
    for x in node.inputs:
        n = shape_of(x)[axis]
        if n == 0:
            continue
        sub = list(dims)
        sub[axis] = c if offset == 0 else f"({c} - {offset})"
        guarded = coords.guarded or len(node.inputs) > 1
        pieces.append((offset + n, em.value(x, Coords(shape_of(x), dims=sub, guarded=guarded))))
        offset += n
    expr = pieces[-1][1]
    for end, val in reversed(pieces[:-1]):
        expr = f"{c} < {end} ? {val} : {expr}"
    return em.temp("v", cctype(dtype_of(_out(node))), expr, f"Concat '{node.name}' axis={axis}")


def _index_value(em: Emitter, node: Node, idx: Value, coords: Coords, dim: int) -> str:
    """An index read from ``idx`` at ``coords``, wrapped if negative and clamped into ``[0, dim)``."""
    raw = em.value(idx, Coords(coords.shape, dims=coords.dims(em), guarded=True))
    g = em.temp("g", "long long", f"(long long){raw}", f"{node.op_type} '{node.name}' index")
    return em.temp("g", "long long", f"{g} < 0 ? ({g} + {dim} < 0 ? 0 : {g} + {dim}) : ({g} >= {dim} ? {dim - 1} : {g})")


def _gather(em, node, coords):
    data, idx = node.inputs[0], node.inputs[1]
    shape, ishape = shape_of(data), shape_of(idx)
    axis = node.attrs["axis"] % len(shape)
    dims = coords.dims(em)
    idx_coords = Coords(ishape, dims=dims[axis:axis + len(ishape)] or None, linear=None if ishape else "0")
    g = _index_value(em, node, idx, idx_coords, shape[axis])
    data_dims = dims[:axis] + [g] + dims[axis + len(ishape):]
    return _mapped(em, node, data, Coords(shape, dims=data_dims, guarded=coords.guarded), f"Gather '{node.name}'")


def _gather_elements(em, node, coords):
    data, idx = node.inputs[0], node.inputs[1]
    shape = shape_of(data)
    axis = node.attrs["axis"] % len(shape)
    dims = coords.dims(em)
    g = _index_value(em, node, idx, Coords(shape_of(idx), dims=dims), shape[axis])
    data_dims = list(dims)
    data_dims[axis] = g
    return _mapped(em, node, data, Coords(shape, dims=data_dims, guarded=coords.guarded),
                   f"GatherElements '{node.name}'")


def _tile(em, node, coords):
    x = node.inputs[0]
    shape = shape_of(x)
    dims = [c if n == m else f"{c} % {n}" for c, n, m in zip(coords.dims(em), shape, shape_of(_out(node)))]
    return _mapped(em, node, x, Coords(shape, dims=dims, guarded=coords.guarded), f"Tile '{node.name}'")


# Identity is an elementwise op (expressions.py): its element is its input's at the same coordinates
_EMITTERS = {"Reshape": _reshape, "Flatten": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
             "Transpose": _transpose, "Expand": _expand, "Slice": _slice, "Pad": _pad,
             "Concat": _concat, "Gather": _gather, "GatherElements": _gather_elements, "Tile": _tile}
OP_EMITTERS.update(_EMITTERS)

#: The injective ops this module generates code for.
INJECTIVE_OPS = frozenset(_EMITTERS)

__all__ = ["INJECTIVE_OPS"]
