"""Lowering of Resize (the resize family): one thread per output element.

Resize reads its scales or sizes (and roi) at run time, so a model feeding them works as one folding them
into constants: each thread maps its coordinate on every resized axis to input taps and weights (nearest,
linear or cubic; antialias and exclude_outside renormalizing them) in double, in the NumPy reference's order
of operations, then sums the taps of all axes and converts once (half types through a round-to-odd float, so
that nothing is rounded twice).
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ir import DType, Node, Value

from ..kernel import HELPERS, CodegenUnsupported, ctype, dtype_of, index_type, load_expr, numel, shape_of, store_expr
from ..lowering import LowerContext, Step, register_lowering
from ..steps import decode, loop_step

#: A double rounded to float toward zero, its last bit set when inexact ("round to odd"): converting that
#: float to a half type then rounds as converting the double directly would (no double rounding).
HELPERS["float_round_odd"] = (
    "__device__ __forceinline__ float gc_float_round_odd(double d) { float f = (float)d; "
    "if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f); "
    "if ((double)f != d) f = __uint_as_float(__float_as_uint(f) | 1u); return f; }")

HALF_TYPES = (DType.float16, DType.bfloat16)


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

register_lowering("Resize", lower_resize)


__all__ = ['HALF_TYPES', 'lower_resize']
