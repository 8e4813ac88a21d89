"""CUDA lowerings of data-layout and sampling ops: Resize, QuantizeLinear, DequantizeLinear, DepthToSpace,
SpaceToDepth, EyeLike, ReverseSequence and RotaryEmbedding.

Each is one generated grid-stride loop kernel with one thread per output element. Resize reads its
scales or sizes (and roi) at run time, so a model feeding them works as one folding them into constants:
each thread maps its coordinate on every resized axis to input taps and weights (nearest, linear or
cubic; antialias and exclude_outside renormalizing them) in double, in the NumPy reference's order of
operations, then sums the taps of all axes and converts once. The quantizers read their scale and zero
point per tensor, per axis or per block at an index computed from the element's.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ir import DType, Node, Value

from .codegen import (HELPERS, CodegenUnsupported, cctype, compute_dtype, ctype, dtype_of, index_type, literal,
                      load_expr, numel, round_to, shape_of, store_expr)
from .codegen_conv import decode, loop_step
from .lowering import LowerContext, Step, register_lowering

HALF_TYPES = (DType.float16, DType.bfloat16)
FLOAT_TYPES = (DType.float16, DType.bfloat16, DType.float32, DType.float64)
_QUANT_RANGES = {DType.int8: (-128, 127), DType.uint8: (0, 255), DType.int16: (-32768, 32767),
                 DType.uint16: (0, 65535)}
_DEQUANT_INPUTS = (DType.int8, DType.uint8, DType.int16, DType.uint16, DType.int32)


#: A double rounded to float toward zero, its last bit set when inexact ("round to odd"): converting that
#: float to a half type then rounds as converting the double directly would (no double rounding).
HELPERS["float_round_odd"] = (
    "__device__ __forceinline__ float gc_float_round_odd(double d) { float f = (float)d; "
    "if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f); "
    "if ((double)f != d) f = __uint_as_float(__float_as_uint(f) | 1u); return f; }")


def _to_output(expr: str, dt: DType) -> str:
    """A double ``expr`` as an element of ``dt`` (stored form), rounded once as NumPy's conversion does:
    half types through ``gc_float_round_odd``, integers half to even and saturated."""
    if dt in HALF_TYPES:
        return store_expr(f"gc_float_round_odd({expr})", dt)
    if dt.is_float:
        return f"(float)({expr})" if dt == DType.float32 else expr
    if dt == DType.bool:
        return f"({expr}) != 0.0"
    info = np.iinfo(dt.np)
    return f"({ctype(dt)})fmin(fmax(rint({expr}), {float(info.min)!r}), {float(info.max)!r})"


# ---- Resize --------------------------------------------------------------------------------------
#: Where output index ``y`` of an axis falls in input coordinates, per coordinate_transformation_mode
#: (``sc``: the axis's scale, ``len``: scale * input length, ``lo``/``hi``: its roi), in the reference's order
#: of operations so that both round alike.
_COORDS = {
    "half_pixel": "(y + 0.5) / sc - 0.5",
    "half_pixel_symmetric": "{n} / 2.0 * (1.0 - {m} / len) + (y + 0.5) / sc - 0.5",
    "pytorch_half_pixel": "len > 1.0 ? (y + 0.5) / sc - 0.5 : -0.5",
    "align_corners": "len != 1.0 ? y * {n1} / (len - 1.0) : 0.0",
    "asymmetric": "y / sc",
    "tf_crop_and_resize": "(len > 1.0 ? y * (hi - lo) * {n1} / (len - 1.0) : (hi - lo) * {n1} / 2.0) + lo * {n1}",
}
_NEAREST = {"round_prefer_floor": "ceil(X - 0.5)", "round_prefer_ceil": "floor(X + 0.5)", "floor": "floor(X)",
            "ceil": "ceil(X)"}


def _scale_exprs(node: Node, xs, axes: list[int]) -> tuple[list[str], list[tuple[str, Value, DType]]]:
    """Per resized axis, C lines defining ``sc<a>`` (its scale, read from scales or sizes at run time) and
    the inputs they read."""
    attrs = node.attrs
    given = [node.inputs[i] if i < len(node.inputs) and node.inputs[i] is not None and
             numel(shape_of(node.inputs[i])) > 0 else None for i in range(4)]
    scales, sizes = given[2], given[3]
    if (scales is None) == (sizes is None):
        raise CodegenUnsupported(node, "exactly one of scales and sizes must be given")
    given_n = numel(shape_of(scales if scales is not None else sizes))
    if given_n != len(axes):
        raise CodegenUnsupported(node, f"{'scales' if scales is not None else 'sizes'} has {given_n} entries for "
                                       f"{len(axes)} axes")
    lines, ins = [], []
    if scales is not None:
        ins.append(("scales", scales, dtype_of(scales)))
        exprs = [f"(double)scales[{j}]" for j in range(len(axes))]
    else:
        ins.append(("sizes", sizes, dtype_of(sizes)))
        ratios = [f"(double)sizes[{j}] / {float(xs[a])!r}" for j, a in enumerate(axes)]
        policy = attrs["keep_aspect_ratio_policy"]
        if policy == "stretch":
            exprs = ratios
        else:
            pick = "fmin" if policy == "not_larger" else "fmax"
            q = ratios[0]
            for r in ratios[1:]:
                q = f"{pick}({q}, {r})"
            lines.append(f"        const double q = {q};  // keep_aspect_ratio_policy {policy}")
            exprs = ["q"] * len(axes)
    for a, e in zip(axes, exprs):
        lines.append(f"        const double sc{a} = {e};")
    return lines, ins


def _max_taps(mode: str, antialias: bool, n_in: int, n_out: int) -> int:
    """An upper bound of the taps of an axis: the scale is at least about n_out / n_in."""
    support = 1 if mode == "linear" else 2
    s = min(1.0, max(n_out - 0.5, 0.5) / n_in) if antialias else 1.0
    return 2 - 2 * (math.floor(-support / s) + 1)


def lower_resize(node: Node, ctx: LowerContext) -> list[Step]:
    """One thread per output element: each resized axis maps its output coordinate to input taps (weights
    computed in double from the scales read at run time), the taps of all axes are summed, converted once."""
    x, y = node.inputs[0], node.outputs[0]
    xs, ys, dt = shape_of(x), shape_of(y), dtype_of(x)
    attrs = node.attrs
    mode, ctm = attrs["mode"], attrs["coordinate_transformation_mode"]
    if mode != "nearest" and dt == DType.bool:
        raise CodegenUnsupported(node, f"{mode} Resize of {dt}")
    r = len(xs)
    axes = attrs.get("axes")
    axes = list(range(r)) if axes is None else [a % r for a in axes]
    it = index_type(max(numel(xs), numel(ys)))
    body = decode("i", [(f"o{d}", ys[d]) for d in range(r)], it)
    scale_lines, ins = _scale_exprs(node, xs, axes)
    ins = [("x", x, dt)] + ins
    body += scale_lines
    if ctm == "tf_crop_and_resize":
        roi = node.inputs[1] if len(node.inputs) > 1 else None
        if roi is None or numel(shape_of(roi)) == 0:
            raise CodegenUnsupported(node, "tf_crop_and_resize without a roi")
        if numel(shape_of(roi)) != 2 * len(axes):
            raise CodegenUnsupported(node, f"roi has {numel(shape_of(roi))} entries for {len(axes)} axes")
        ins.append(("roi", roi, dtype_of(roi)))
    elif ctm not in _COORDS:
        raise CodegenUnsupported(node, f"coordinate_transformation_mode '{ctm}'")
    linear = mode != "nearest"
    antialias, exclude = bool(attrs["antialias"]), bool(attrs["exclude_outside"])
    a_cubic = float(attrs["cubic_coeff_a"])
    support = 1 if mode == "linear" else 2
    outside = []
    for a in sorted(axes):
        k = axes.index(a)
        n, m = xs[a], ys[a]
        body.append(f"        // axis {a}: {n} -> {m}")
        coord = _COORDS[ctm].format(n=f"{float(n)!r}", m=f"{float(m)!r}", n1=f"{float(n - 1)!r}")
        coord = coord.replace("sc", f"sc{a}").replace("len", f"len{a}").replace("y ", f"(double)o{a} ")
        coord = coord.replace("lo", f"lo{a}").replace("hi", f"hi{a}")
        if ctm == "tf_crop_and_resize":
            body.append(f"        const double lo{a} = (double)roi[{k}], hi{a} = (double)roi[{k + len(axes)}];")
        body.append(f"        const double len{a} = sc{a} * {float(n)!r};  // the resized length before rounding")
        body.append(f"        const double c{a} = {coord};")
        if ctm == "tf_crop_and_resize":
            outside.append(f"c{a} < 0.0 || c{a} > {float(n - 1)!r}")
        if not linear:
            pick = _NEAREST.get(attrs["nearest_mode"])
            if pick is None:
                raise CodegenUnsupported(node, f"nearest_mode '{attrs['nearest_mode']}'")
            body.append(f"        const long long s{a} = gc_clamp_index((long long){pick.replace('X', f'c{a}')}, {n});")
            continue
        t = _max_taps(mode, antialias, n, m)
        ss = f"fmin(sc{a}, 1.0)" if antialias else "1.0"
        if mode == "linear":
            weight = "fmax(1.0 - fabs(d), 0.0)"
        else:
            ac = repr(a_cubic)
            weight = (f"fabs(d) <= 1.0 ? (({ac} + 2.0) * fabs(d) - ({ac} + 3.0)) * fabs(d) * fabs(d) + 1.0 : "
                      f"(fabs(d) < 2.0 ? ((({ac}) * fabs(d) - 5.0 * ({ac})) * fabs(d) + 8.0 * ({ac})) * fabs(d) "
                      f"- 4.0 * ({ac}) : 0.0)")
        body += [f"        const double ss{a} = {ss};  // the kernel's stretch (antialias widens it)",
                 f"        const int first{a} = (int)floor(-{float(support)!r} / ss{a}) + 1;",
                 f"        int nt{a} = 2 - 2 * first{a} < {t} ? 2 - 2 * first{a} : {t};  // taps (at most {t})",
                 f"        long long ix{a}[{t}];",
                 f"        double wx{a}[{t}];",
                 f"        double tot{a} = 0.0;",
                 f"        for (int t = 0; t < nt{a}; ++t) {{",
                 f"            const double at = ceil(c{a}) - 1.0 + (double)(first{a} + t);",
                 f"            const double d = (at - c{a}) * ss{a};",
                 f"            const double w = {weight};",
                 f"            ix{a}[t] = (long long)at;",
                 f"            wx{a}[t] = w;",
                 f"            tot{a} += w;",
                 "        }"]
        if antialias:
            body.append(f"        for (int t = 0; t < nt{a}; ++t) wx{a}[t] /= tot{a};")
        if exclude:
            body += [f"        tot{a} = 0.0;",
                     f"        for (int t = 0; t < nt{a}; ++t) {{",
                     f"            if (ix{a}[t] < 0 || ix{a}[t] >= {n}) wx{a}[t] = 0.0;",
                     f"            tot{a} += wx{a}[t];",
                     "        }",
                     f"        for (int t = 0; t < nt{a}; ++t) wx{a}[t] /= (tot{a} == 0.0 ? 1.0 : tot{a});"]
        body.append(f"        for (int t = 0; t < nt{a}; ++t) ix{a}[t] = gc_clamp_index(ix{a}[t], {n});")
        if m == n and ctm != "tf_crop_and_resize":  # the reference leaves such an axis as it is
            body.append(f"        if (sc{a} == 1.0) {{ nt{a} = 1; ix{a}[0] = o{a}; wx{a}[0] = 1.0; }}  // not resized")
    for d in range(r):
        if d not in axes:
            body.append(f"        const long long s{d} = o{d};")
    strides = [numel(xs[d + 1:]) for d in range(r)]
    at = " + ".join(f"s{d} * {strides[d]}" if strides[d] != 1 else f"s{d}" for d in range(r)) or "0"
    fill = _to_output(repr(float(attrs["extrapolation_value"])), dt)
    if outside:
        body.append(f"        if ({' || '.join(outside)}) {{ y[i] = {fill}; continue; }}  // extrapolation")
    ind = "        "
    if not linear:
        body.append(f"{ind}y[i] = x[{at}];")
    else:
        body.append(f"{ind}double acc = 0.0;")
        weight = "1.0"
        for a in sorted(axes):
            body.append(f"{ind}for (int t{a} = 0; t{a} < nt{a}; ++t{a}) {{")
            ind += "    "
            body.append(f"{ind}const long long s{a} = ix{a}[t{a}];")
            body.append(f"{ind}const double w{a} = {weight} * wx{a}[t{a}];")
            weight = f"w{a}"
        body.append(f"{ind}acc += {weight} * (double)({load_expr(f'x[{at}]', dt)});")
        for _ in axes:
            ind = ind[:-4]
            body.append(f"{ind}}}")
        body.append(f"{ind}y[i] = {_to_output('acc', dt)};")
    what = f"{mode}{' antialiased' if antialias and linear else ''}, {ctm}, axes {sorted(axes)}"
    return [loop_step(ctx, node, "resize", ins, [("y", y, dt)], numel(ys), body,
                      f"Resize {what}: {dt}{list(xs)} -> {list(ys)}", it, helpers={"clamp_index", "float_round_odd"})]


# ---- QuantizeLinear, DequantizeLinear ------------------------------------------------------------
def _param_index(node: Node, xs, param: Value, it: str, body: list[str]) -> str:
    """The index into a scale or zero point of output element ``i``: per tensor, per axis or blocked."""
    ps = shape_of(param)
    if numel(ps) == 1 and not node.attrs.get("block_size", 0):
        return "0"
    axis = node.attrs.get("axis", 1) % len(xs)
    dim, inner = xs[axis], numel(xs[axis + 1:])
    along = "i" if inner == 1 else f"(i / {inner})"
    body.append(f"        const {it} a = {along} % {dim};  // coordinate along axis {axis}")
    block = node.attrs.get("block_size", 0)
    if not block:
        return "a"
    blocks = ps[axis]
    if inner == 1:
        return f"(i / {dim}) * {blocks} + a / {block}"
    return f"(i / {dim * inner}) * {blocks * inner} + (a / {block}) * {inner} + i % {inner}"


def lower_quantize(node: Node, ctx: LowerContext) -> list[Step]:
    x, s = node.inputs[:2]
    zp = node.inputs[2] if len(node.inputs) > 2 else None
    y = node.outputs[0]
    xs, xd, sd, yd = shape_of(x), dtype_of(x), dtype_of(s), dtype_of(y)
    if yd not in _QUANT_RANGES:
        raise CodegenUnsupported(node, f"quantizing to {yd} (the CUDA backend quantizes to "
                                       f"{', '.join(str(d) for d in _QUANT_RANGES)})")
    prec = node.attrs.get("precision", 0)
    work = DType(prec) if prec else DType.from_np(np.result_type(xd.np, sd.np))
    if work not in FLOAT_TYPES:
        raise CodegenUnsupported(node, f"x / y_scale computed in {work}")
    it = index_type(numel(xs))
    body: list[str] = []
    k = _param_index(node, xs, s, it, body)
    wc = cctype(work)
    quotient = f"({wc})({load_expr('x[i]', xd)}) / ({wc})({load_expr(f's[{k}]', sd)})"
    body.append(f"        const {wc} v = {round_to(quotient, work)};  // x / scale in {work}")
    rint = "rint" if compute_dtype(work) == DType.float64 else "rintf"
    zero = f" + (double)zp[{k}]" if zp is not None else ""
    lo, hi = _QUANT_RANGES[yd]
    body.append(f"        const double q = (double){rint}(v){zero};  // rounded half to even")
    body.append(f"        y[i] = ({ctype(yd)})fmin(fmax(q, {float(lo)!r}), {float(hi)!r});  // saturated")
    ins = [("x", x, xd), ("s", s, sd)] + ([("zp", zp, dtype_of(zp))] if zp is not None else [])
    return [loop_step(ctx, node, "quantize", ins, [("y", y, yd)], numel(xs), body,
                      f"QuantizeLinear {xd}{list(xs)} -> {yd}, scale {list(shape_of(s))}", it)]


def lower_dequantize(node: Node, ctx: LowerContext) -> list[Step]:
    x, s = node.inputs[:2]
    zp = node.inputs[2] if len(node.inputs) > 2 else None
    y = node.outputs[0]
    xs, xd, sd, yd = shape_of(x), dtype_of(x), dtype_of(s), dtype_of(y)
    if xd not in _DEQUANT_INPUTS or sd not in FLOAT_TYPES or yd not in FLOAT_TYPES:
        raise CodegenUnsupported(node, f"dequantizing {xd} with a {sd} scale to {yd}")
    it = index_type(numel(xs))
    body: list[str] = []
    k = _param_index(node, xs, s, it, body)
    zero = f" - (float)zp[{k}]" if zp is not None else ""
    body.append(f"        const float v = (float)x[i]{zero};")
    product = f"v * (float)({load_expr(f's[{k}]', sd)})"
    body.append(f"        y[i] = {store_expr(product if yd != DType.float64 else f'(double)({product})', yd)};")
    ins = [("x", x, xd), ("s", s, sd)] + ([("zp", zp, dtype_of(zp))] if zp is not None else [])
    return [loop_step(ctx, node, "dequantize", ins, [("y", y, yd)], numel(xs), body,
                      f"DequantizeLinear {xd}{list(xs)} -> {yd}, scale {list(shape_of(s))}", it)]


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


# ---- RotaryEmbedding -----------------------------------------------------------------------------
def lower_rotary(node: Node, ctx: LowerContext) -> list[Step]:
    x, cos, sin = node.inputs[:3]
    pos = node.inputs[3] if len(node.inputs) > 3 else None
    y = node.outputs[0]
    xs, dt = shape_of(x), dtype_of(x)
    if dt not in FLOAT_TYPES or dtype_of(cos) != dt or dtype_of(sin) != dt:
        raise CodegenUnsupported(node, f"RotaryEmbedding of {dt} with {dtype_of(cos)} caches")
    if len(xs) == 4:  # (batch, heads, seq, head size), in memory order
        batch, heads, seq, d = xs
        dims = [("b", batch), ("h", heads), ("s", seq), ("j", d)]
    else:  # (batch, seq, heads * head size)
        heads = int(node.attrs.get("num_heads") or 0)
        if len(xs) != 3 or not heads:
            raise CodegenUnsupported(node, f"input of shape {list(xs)} (num_heads {heads})")
        batch, seq, d = xs[0], xs[1], xs[2] // heads
        dims = [("b", batch), ("s", seq), ("h", heads), ("j", d)]
    rd = int(node.attrs.get("rotary_embedding_dim") or 0) or d
    half = rd // 2
    if shape_of(cos)[-1] != half or shape_of(sin)[-1] != half:
        raise CodegenUnsupported(node, f"cos/sin caches must have last dim {half}")
    it = index_type(numel(xs))
    c = cctype(dt)
    body = decode("i", dims, it)
    if rd < d:
        body.append(f"        if (j >= {rd}) {{ y[i] = x[i]; continue; }}  // past the rotated part")
    if node.attrs.get("interleaved", 0):
        body += ["        const int p = j / 2;  // pairs (x[2p], x[2p + 1])",
                 "        const bool first = j % 2 == 0;",
                 "        const long long i1 = first ? (long long)i : (long long)i - 1;",
                 "        const long long i2 = i1 + 1;"]
    else:
        body += [f"        const int p = j % {half};  // pairs (x[p], x[p + {half}])",
                 f"        const bool first = j < {half};",
                 f"        const long long i1 = first ? (long long)i : (long long)i - {half};",
                 f"        const long long i2 = i1 + {half};"]
    row = f"(long long)pos[b * {seq} + s]" if pos is not None else f"((long long)b * {seq} + s)"
    body += [f"        const long long at = {row} * {half} + p;",
             f"        const {c} co = {load_expr('cos_cache[at]', dt)}, si = {load_expr('sin_cache[at]', dt)};",
             f"        const {c} x1 = {load_expr('x[i1]', dt)}, x2 = {load_expr('x[i2]', dt)};",
             f"        const {c} u = {round_to('(first ? co : si) * x1', dt)};",
             f"        const {c} v = {round_to('(first ? si : co) * x2', dt)};",
             f"        y[i] = {store_expr('first ? u - v : u + v', dt)};"]
    ins = [("x", x, dt), ("cos_cache", cos, dt), ("sin_cache", sin, dt)]
    if pos is not None:
        ins.append(("pos", pos, dtype_of(pos)))
    return [loop_step(ctx, node, "rotary", ins, [("y", y, dt)], numel(xs), body,
                      f"RotaryEmbedding {'interleaved' if node.attrs.get('interleaved', 0) else 'halves'} over "
                      f"{rd} of {d} of {dt}{list(xs)}", it)]


register_lowering("Resize", lower_resize)
register_lowering("QuantizeLinear", lower_quantize)
register_lowering("DequantizeLinear", lower_dequantize)
register_lowering("DepthToSpace", lower_depth_space)
register_lowering("SpaceToDepth", lower_depth_space)
register_lowering("ReverseSequence", lower_reverse_sequence)
register_lowering("EyeLike", lower_eye_like)
register_lowering("RotaryEmbedding", lower_rotary)

__all__: list[str] = []
