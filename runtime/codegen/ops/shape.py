"""Lowerings of the shape family: ops that move elements or make them from shapes and coordinates.

- Split: all outputs in one grid-stride loop kernel;
- ConstantOfShape (a fill), OneHot (``on`` where the axis coordinate equals the index, ``off`` elsewhere),
  Trilu (a triangle of its input, zero elsewhere), Range (start + i * delta), Shape and Size (the bound shape,
  written as literals): code emitters (``OP_EMITTERS``), so the value at any output coordinate is an
  expression, and a lone node is lowered to one loop kernel. Shapes are static once the plan's dims are bound,
  so ConstantOfShape's shape, OneHot's depth, Shape and Size read nothing at run time; Trilu's ``k`` and
  Range's start and delta are read from memory when a run computes them (at -O0 nothing folds them);
- DepthToSpace, SpaceToDepth, ReverseSequence, EyeLike, CenterCropPad: one thread per output element reading
  the input element it maps to (or writing 0 where there is none).

Reshape, Transpose, Slice, Concat, Gather, Pad and the other injective ops need no lowering: they map
coordinates inside any fused kernel (injective.py).
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node

from ..elementwise import generate_loop
from ..kernel import (
    OP_EMITTERS,
    CodegenUnsupported,
    Coords,
    Emitter,
    KernelGroup,
    Param,
    cctype,
    dtype_of,
    index_type,
    literal,
    numel,
    shape_of,
    store_expr,
)
from ..lowering import LowerContext, Step, register_lowering, step_args
from ..steps import decode, kernel_from, loop_step, spatial_offset


def _split(node: Node, ctx: LowerContext) -> list[Step]:
    """Split along an axis: one thread per input element writes it to the output whose range holds it."""
    x = node.inputs[0]
    shape = shape_of(x)
    dt = dtype_of(x)
    axis = node.attrs.get("axis", 0) % len(shape)
    dim, post = shape[axis], numel(shape[axis + 1:])
    outs = [v for v in node.outputs if v is not None]
    n = numel(shape)
    it = index_type(n)
    body = [f"const {it} o = i / {dim * post};",
            f"const {it} r = i - o * {dim * post};",
            f"const {it} a = r / {post};" if post > 1 else f"const {it} a = r;",
            f"const {it} p = r - a * {post};" if post > 1 else f"const {it} p = 0;"]
    params = [Param("input", 0, "in0", dt)]
    start, first = 0, True
    for v in node.outputs:
        if v is None:
            continue
        size = shape_of(v)[axis]
        k = outs.index(v)
        params.append(Param("output", k, f"out{k}", dt))
        if size == 0:
            continue
        cond = f"a < {start + size}"
        at = f"o * {size * post} + (a - {start}) * {post} + p"
        body.append(f"{'if' if first else 'else if'} ({cond}) out{k}[{at}] = in0[i];")
        start += size
        first = False
    if start != dim:
        raise CodegenUnsupported(node, f"its outputs cover {start} of the {dim} entries of dim {axis}")
    group = KernelGroup(node.name, [node], [x], outs)
    kernel = kernel_from(ctx, group, params, body, n, f"Split axis={axis} of {dt}{list(shape)} into {len(outs)}")
    args = [x] + outs
    return [Step(kernel, args, node)]

register_lowering("Split", _split)


def _constant_of_shape(em: Emitter, node: Node, coords: Coords) -> str:
    value = node.attrs.get("value")
    x = 0 if value is None else np.asarray(value).reshape(-1)[0].item()
    return literal(x, dtype_of(node.outputs[0]))


def _one_hot(em: Emitter, node: Node, coords: Coords) -> str:
    idx, _, values = node.inputs[:3]
    out = node.outputs[0]
    oshape = shape_of(out)
    axis = node.attrs.get("axis", -1) % len(oshape)
    depth = oshape[axis]
    dims = coords.dims(em)
    ishape = shape_of(idx)
    idims = dims[:axis] + dims[axis + 1:]
    raw = em.value(idx, Coords(ishape, dims=idims or None, linear=None if ishape else "0"))
    g = em.temp("h", "long long", f"(long long)({raw})", f"OneHot '{node.name}' index (truncated)")
    g = em.temp("h", "long long", f"{g} < 0 ? {g} + {depth} : {g}")
    off = em.value(values, Coords((2,), linear="0"))
    on = em.value(values, Coords((2,), linear="1"))
    return em.temp("v", cctype(dtype_of(out)), f"{g} == (long long)({dims[axis]}) ? {on} : {off}",
                   f"OneHot '{node.name}' axis={axis} depth={depth}")

OP_EMITTERS.update({"ConstantOfShape": _constant_of_shape, "OneHot": _one_hot})


def _loop(node: Node, ctx: LowerContext) -> list[Step]:
    """One grid-stride loop kernel for the node alone (its emitter computes every output element)."""
    if node.op_type == "OneHot" and shape_of(node.inputs[2]) != (2,):
        raise CodegenUnsupported(node, f"values must hold [off, on], got shape {list(shape_of(node.inputs[2]))}")
    if node.op_type == "Trilu" and len(shape_of(node.inputs[0])) < 2:
        raise CodegenUnsupported(node, f"input of rank {len(shape_of(node.inputs[0]))}: Trilu needs rank >= 2")
    group = KernelGroup.of_node(node)
    if node.op_type in ("ConstantOfShape", "Shape", "Size"):
        group.inputs = []  # the shape is static: nothing to read
    elif node.op_type == "Range":
        group.inputs = [v for v in group.inputs if v is not node.inputs[1]]  # the limit only sizes the output
    group.name = ctx.unique_name(group.name)
    kernel = generate_loop(group, ctx.props)
    return [Step(kernel, step_args(kernel, group.inputs, group.outputs, group.constants), node)]




def _scalar(em: Emitter, node: Node, i: int) -> str:
    """Input ``i`` (one element) as an expression: a literal when constant, else a load of element 0."""
    v = node.inputs[i]
    return em.value(v, Coords(shape_of(v), linear="0"))


def _trilu(em: Emitter, node: Node, coords: Coords) -> str:
    x, out = node.inputs[0], node.outputs[0]
    dims = coords.dims(em)
    k = "0LL" if len(node.inputs) < 2 or node.inputs[1] is None else f"(long long)({_scalar(em, node, 1)})"
    upper = bool(node.attrs.get("upper", 1))
    diff = f"(long long)({dims[-1]}) - (long long)({dims[-2]})"
    keep = em.temp("t", "bool", f"{diff} {'>=' if upper else '<='} {k}",
                   f"Trilu '{node.name}' {'upper' if upper else 'lower'}")
    dt = dtype_of(out)
    return em.temp("v", cctype(dt), f"{keep} ? {em.value(x, coords)} : {literal(0, dt)}")


def _range(em: Emitter, node: Node, coords: Coords) -> str:
    dt = dtype_of(node.outputs[0])
    i = coords.linear(em)
    start, delta = _scalar(em, node, 0), _scalar(em, node, 2)
    if dt.is_float:  # as the NumPy reference: start + i * delta in the work type (float32, or float64)
        work = "double" if dt == DType.float64 else "float"
        expr = f"({work})({start}) + ({work})({i}) * ({work})({delta})"
    else:
        expr = f"(long long)({start}) + (long long)({i}) * (long long)({delta})"
    return em.temp("v", cctype(dt), f"({cctype(dt)})({expr})", f"Range '{node.name}'")


def _shape_values(node: Node) -> list[int]:
    shape = list(shape_of(node.inputs[0]))
    if node.op_type == "Size":
        n = 1
        for d in shape:
            n *= d
        return [n]
    r = len(shape)
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    start = max(0, min(r, start + r if start < 0 else start))
    end = r if end is None else max(0, min(r, end + r if end < 0 else end))
    return shape[start:end]


def _shape(em: Emitter, node: Node, coords: Coords) -> str:
    vals = _shape_values(node)
    if len(vals) <= 1:
        return literal(vals[0] if vals else 0, DType.int64)
    i = coords.linear(em)
    expr = literal(vals[-1], DType.int64)
    for j in range(len(vals) - 2, -1, -1):
        expr = f"({i}) == {j} ? {literal(vals[j], DType.int64)} : ({expr})"
    return em.temp("v", "long long", expr, f"{node.op_type} '{node.name}' = {vals}")

OP_EMITTERS.update({"Trilu": _trilu, "Range": _range, "Shape": _shape, "Size": _shape})

for _op in ("ConstantOfShape", "OneHot", "Trilu", "Range", "Shape", "Size"):
    register_lowering(_op, _loop)

# ---- DepthToSpace, SpaceToDepth, ReverseSequence: gathers ----------------------------------------
def lower_depth_space(node: Node, ctx: LowerContext) -> list[Step]:
    x, y = node.inputs[0], node.outputs[0]
    xs, ys, dt = shape_of(x), shape_of(y), dtype_of(x)
    b, dcr = node.attrs["blocksize"], node.attrs["mode"] == "DCR"
    it = index_type(numel(xs))
    body = decode("i", [("n", ys[0]), ("c", ys[1]), ("h", ys[2]), ("w", ys[3])], it)
    if node.op_type == "DepthToSpace":  # y[n, c, h, w] = x[n, channel of block (h % b, w % b), h / b, w / b]
        cy = ys[1]
        chan = f"(h % {b} * {b} + w % {b}) * {cy} + c" if dcr else f"c * {b * b} + h % {b} * {b} + w % {b}"
        src = f"((n * {xs[1]} + {chan}) * {xs[2]} + h / {b}) * {xs[3]} + w / {b}"
    else:  # y[n, c, h, w] = x[n, channel cx, h * b + bh, w * b + bw] for the block (bh, bw) that c names
        cx = xs[1]
        if dcr:
            body += [f"        const {it} cx = c % {cx};", f"        const {it} blk = c / {cx};"]
        else:
            body += [f"        const {it} cx = c / {b * b};", f"        const {it} blk = c % {b * b};"]
        src = f"((n * {cx} + cx) * {xs[2]} + h * {b} + blk / {b}) * {xs[3]} + w * {b} + blk % {b}"
    body.append(f"        y[i] = x[{src}];")
    return [loop_step(ctx, node, node.op_type.lower(), [("x", x, dt)], [("y", y, dt)], numel(ys), body,
                      f"{node.op_type} {node.attrs['mode']} blocksize {b}: {dt}{list(xs)} -> {list(ys)}", it)]


def lower_reverse_sequence(node: Node, ctx: LowerContext) -> list[Step]:
    x, lens = node.inputs
    y = node.outputs[0]
    xs, dt, ld = shape_of(x), dtype_of(x), dtype_of(lens)
    ta, ba = node.attrs["time_axis"], node.attrs["batch_axis"]
    inner = numel(xs[2:])
    it = index_type(numel(xs))
    coords = decode("i", [("d0", xs[0]), ("d1", xs[1]), ("rest", inner)], it)
    t, bb = ("d0", "d1") if ta == 0 else ("d1", "d0")
    stride = numel(xs[ta + 1:])
    body = coords + [f"        const long long len = (long long)lens[{bb}];",
                     f"        const long long src = {t} < len ? len - 1 - {t} : {t};  // reversed within len",
                     f"        y[i] = x[i + (src - {t}) * {stride}];"]
    return [loop_step(ctx, node, "reverse_sequence", [("x", x, dt), ("lens", lens, ld)], [("y", y, dt)],
                      numel(xs), body, f"ReverseSequence time_axis={ta} batch_axis={ba}: {dt}{list(xs)}", it)]

# ---- EyeLike -------------------------------------------------------------------------------------
def lower_eye_like(node: Node, ctx: LowerContext) -> list[Step]:
    y = node.outputs[0]
    ys, dt = shape_of(y), dtype_of(y)
    if len(ys) != 2:
        raise CodegenUnsupported(node, f"output of rank {len(ys)}: EyeLike is 2-D")
    k = int(node.attrs.get("k", 0))
    it = index_type(numel(ys))
    one, zero = store_expr(literal(1, dt), dt), store_expr(literal(0, dt), dt)
    body = decode("i", [("r", ys[0]), ("c", ys[1])], it)
    body.append(f"        y[i] = (long long)c - (long long)r == {k}LL ? {one} : {zero};")
    return [loop_step(ctx, node, "eye", [], [("y", y, dt)], numel(ys), body,
                      f"EyeLike k={k}: ones on a diagonal of {dt}{list(ys)}", it)]

register_lowering("DepthToSpace", lower_depth_space)

register_lowering("SpaceToDepth", lower_depth_space)

register_lowering("ReverseSequence", lower_reverse_sequence)

register_lowering("EyeLike", lower_eye_like)

# ---- CenterCropPad and Col2Im ---------------------------------------------------------------------
def _center_crop_pad(node: Node, ctx: LowerContext) -> list[Step]:
    x, y = node.inputs[0], node.outputs[0]
    xs, ys, dt = shape_of(x), shape_of(y), dtype_of(y)
    n = numel(ys)
    if n == 0:
        return []
    it = index_type(max(n, numel(xs)))
    body = decode("i", [(f"o{d}", ys[d]) for d in range(len(ys))], it)
    coords, conds = [], []
    for d, (a, b) in enumerate(zip(xs, ys)):
        shift = (a - b) // 2 if a > b else -((b - a) // 2)  # crop: skip the first rows; pad: leave them 0
        if shift == 0 and a == b:
            coords.append(f"o{d}")
            continue
        body.append(f"        const {it} s{d} = o{d} + ({shift});")
        coords.append(f"s{d}")
        if a < b:
            conds.append(f"s{d} >= 0 && s{d} < {a}")
    src = f"x[{spatial_offset(coords, list(xs))}]" if xs else "x[0]"
    zero = store_expr(literal(0, dt), dt)
    body.append(f"        y[i] = {' && '.join(conds)} ? {src} : {zero};" if conds else f"        y[i] = {src};")
    return [loop_step(ctx, node, "center_crop_pad", [("x", x, dt)], [("y", y, dt)], n, body,
                      f"CenterCropPad of {dt}{list(xs)} to {list(ys)}: each output reads the input element it "
                      f"is centred on (0 in the padding)", it)]

register_lowering("CenterCropPad", _center_crop_pad)


__all__ = ['lower_depth_space', 'lower_eye_like', 'lower_reverse_sequence']
