"""Lowerings of the conv family's windowed ops: MaxPool (with Indices), AveragePool and LpPool.

Each is one generated kernel with one thread per output element (grid-stride) looping over its window's taps
(padding and ceil-mode overhang read as the op's neutral value: the lowest value for max, nothing for sums).
AveragePool and LpPool without dilation loop over only the taps inside the image (a global-sized window over a
small map, as exporters write a global pool, costs its map, not its window) and count them from the bounds.
In the C dialect a 2-D undilated MaxPool without indices, 16 outputs wide or more, works by output rows (each
tap a vectorized loop along the row). Any number of spatial dims. GlobalAveragePool and GlobalMaxPool are reductions (rows.py).
"""
from __future__ import annotations

from graphc.ir import DType, Node
from graphc.ops.conv import geometry

from ..dialect import current
from ..kernel import (
    CodegenUnsupported,
    cctype,
    compute_dtype,
    ctype,
    index_type,
    literal,
    load_expr,
    numel,
    shape_of,
    store_expr,
)
from ..lowering import LowerContext, Step, register_lowering
from ..rows import lowest
from ..steps import FLOAT_TYPES, decode, float_type, loop_step, row_window, tap_bounds

MAX_TYPES = FLOAT_TYPES + (DType.int8, DType.uint8)


def _offset(coords: list[str], steps: list[int]) -> str:
    terms = [c if s == 1 else f"{c} * {s}" for c, s in zip(coords, steps)]
    return " + ".join(terms) if terms else "0"


def _row_major(shape) -> list[int]:
    return [numel(shape[d + 1:]) for d in range(len(shape))]


def _window(node: Node, x, y, ceil_mode: bool):
    xs, ys = shape_of(x), shape_of(y)
    kernel = list(node.attrs["kernel_shape"])
    spatial = list(xs[2:])
    outs, strides, dils, pb, pe = geometry(node, spatial, kernel, ceil_mode)
    if list(ys) != list(xs[:2]) + outs:
        raise CodegenUnsupported(node, f"output shape {list(ys)} differs from the geometry's {list(xs[:2]) + outs}")
    return xs, kernel, spatial, outs, strides, dils, pb, pe


def _tap_loops(kernel, outs, strides, dils, pb, it, ind="        ") -> tuple[list[str], str]:
    """Nested loops over the window's taps naming each input coordinate ``s<d>``; returns (lines, indent)."""
    lines = []
    for d in range(len(kernel)):
        lines.append(f"{ind}for (int k{d} = 0; k{d} < {kernel[d]}; ++k{d}) {{")
        ind += "    "
        lines.append(f"{ind}const {it} s{d} = o{d} * {strides[d]} - {pb[d]} + k{d} * {dils[d]};")
    return lines, ind


def _clipped_tap_loops(kernel, spatial, strides, pb, pe, it, include_pad, ind="        "):
    """Undilated windows: loops over only the taps inside the image (``k<d>`` from ``lo<d>`` to ``hi<d>``), and
    per dim the C expression of how many taps the mean divides by (inside the image; with ``include_pad``, inside
    the explicit padding too, not a ceil-mode overhang past it). Returns (lines, indent, counts)."""
    lines, counts = [], []
    for d in range(len(kernel)):
        lines += tap_bounds(f"lo{d}", f"hi{d}", f"o{d}", strides[d], pb[d], spatial[d], kernel[d], ind)
        if include_pad:
            end = f"{spatial[d] + pe[d] + pb[d]} - o{d} * {strides[d]}"
            counts.append(f"({end} < {kernel[d]} ? ({end} > 0 ? {end} : 0) : {kernel[d]})")
        else:
            counts.append(f"(hi{d} > lo{d} ? hi{d} - lo{d} : 0)")
    for d in range(len(kernel)):
        lines.append(f"{ind}for (int k{d} = lo{d}; k{d} < hi{d}; ++k{d}) {{")
        ind += "    "
        lines.append(f"{ind}const {it} s{d} = o{d} * {strides[d]} - {pb[d]} + k{d};")
    return lines, ind, counts


def _inside(spatial, kernel, outs, strides, dils, pb) -> str:
    """The condition that tap ``s<d>`` lies in the image, for the dims where some window reaches out of it (no
    padding there, and the last window's last tap inside); "" when no window does."""
    return " && ".join(f"s{d} >= 0 && s{d} < {spatial[d]}" for d in range(len(kernel))
                       if pb[d] > 0 or (outs[d] - 1) * strides[d] + (kernel[d] - 1) * dils[d] - pb[d] >= spatial[d])


def _close(lines: list[str], nd: int, ind: str) -> None:
    for _ in range(nd):
        ind = ind[:-4]
        lines.append(f"{ind}}}")


def _prologue(xs, outs, it):
    """Decode (n, c, o...) of output ``i`` and the offset of image (n, c) in x."""
    nd = len(outs)
    body = decode("i", [("n", xs[0]), ("c", xs[1])] + [(f"o{d}", outs[d]) for d in range(nd)], it)
    body.append(f"        const {it} base = (n * {xs[1]} + c) * {numel(xs[2:])};")
    return body

# ---- MaxPool -------------------------------------------------------------------------------------
def lower_maxpool(node: Node, ctx: LowerContext) -> list[Step]:
    x, y = node.inputs[0], node.outputs[0]
    idx = node.outputs[1] if len(node.outputs) > 1 else None
    dt = float_type(node, x, MAX_TYPES)
    xs, kernel, spatial, outs, strides, dils, pb, _ = _window(node, x, y, bool(node.attrs["ceil_mode"]))
    nd = len(kernel)
    if current().row_loops and idx is None and nd == 2 and dils == [1, 1] and outs[-1] >= ROWS_MIN:
        return [_maxpool_rows(ctx, node, x, y, dt, xs, kernel, spatial, outs, strides, pb)]
    steps = _row_major(spatial) if node.attrs["storage_order"] == 0 else [numel(spatial[:d]) for d in range(nd)]
    it = index_type(max(numel(xs), numel(shape_of(y))))
    c = cctype(dt)
    body = _prologue(xs, outs, it)
    body.append(f"        {c} acc = {lowest(compute_dtype(dt))};  // what the padding holds")
    if idx is not None:
        body += ["        long long arg = 0;", "        bool first = true;"]
    loops, ind = _tap_loops(kernel, outs, strides, dils, pb, it)
    body += loops
    inside = _inside(spatial, kernel, outs, strides, dils, pb)
    at = _offset([f"s{d}" for d in range(nd)], _row_major(spatial))
    if inside:
        body.append(f"{ind}const {c} v = ({inside}) ? {load_expr(f'x[base + {at}]', dt)} : {lowest(compute_dtype(dt))};")
    else:  # every tap of every window lies in the image: a plain load (a loop the C compiler vectorizes)
        body.append(f"{ind}const {c} v = {load_expr(f'x[base + {at}]', dt)};")
    if idx is not None:  # the first tap holding the maximum wins; its flat index in the unpadded input
        flat = _offset([f"(long long)s{d}" for d in range(nd)], steps)
        body += [f"{ind}if (first || v > acc) {{ acc = v; arg = (long long)base + {flat}; }}", f"{ind}first = false;"]
    else:
        nan = "v != v || " if dt.is_float else ""
        body.append(f"{ind}acc = ({nan}v > acc) ? v : acc;  // NaN propagates")
    _close(body, nd, ind)
    body.append(f"        y[i] = {store_expr('acc', dt)};")
    outs_ = [("y", y, dt)]
    if idx is not None:
        body.append("        indices[i] = arg;")
        outs_.append(("indices", idx, DType.int64))
    return [loop_step(ctx, node, "maxpool", [("x", x, dt)], outs_, numel(shape_of(y)), body,
                      f"max over windows {kernel}, strides {strides}, dilations {dils}, pads {pb}"
                      + (f", with flat argmax indices (storage order {node.attrs['storage_order']})" if idx is not None
                         else ""), it)]

#: The C dialect's MaxPool works by output rows from this width on (see ``_maxpool_rows``).
ROWS_MIN = 16


def _maxpool_rows(ctx, node, x, y, dt, xs, kernel, spatial, outs, strides, pb) -> Step:
    """C dialect, 2-D, undilated, no indices: one work item per output row (n, c, oh) kept in a local row; for
    each tap inside the image, one loop along the row over the outputs whose input is inside too (vectorized),
    as the depthwise convolution's row kernel. The padding holds the lowest value, which never wins."""
    (H, W), (OH, OW) = spatial, outs
    it = index_type(max(numel(xs), numel(shape_of(y))))
    c = cctype(dt)
    nan = "v != v || " if dt.is_float else ""
    body = decode("i", [("n", xs[0]), ("c", xs[1]), ("oh", OH)], it)
    body += [f"        const {ctype(dt)}* xm = x + (n * {xs[1]} + c) * {H * W};",
             f"        {c} acc[{OW}];",
             f"        for (int ow = 0; ow < {OW}; ++ow) acc[ow] = {lowest(compute_dtype(dt))};",
             *row_window(spatial, kernel, outs, strides, pb, ctype(dt), [],
                         lambda at: ["for (int ow = lo; ow < hi; ++ow) {",
                                     f"    const {c} v = {load_expr(at, dt)};",
                                     f"    acc[ow] = ({nan}v > acc[ow]) ? v : acc[ow];  // NaN propagates",
                                     "}"]),
             f"        for (int ow = 0; ow < {OW}; ++ow) y[i * {OW} + ow] = {store_expr('acc[ow]', dt)};"]
    return loop_step(ctx, node, "maxpool", [("x", x, dt)], [("y", y, dt)], xs[0] * xs[1] * OH, body,
                     f"max over windows {kernel}, strides {strides}, pads {pb}: one output row per work item", it)

# ---- AveragePool, LpPool -------------------------------------------------------------------------
def _sum_pool(node: Node, ctx: LowerContext, what: str) -> list[Step]:
    x, y = node.inputs[0], node.outputs[0]
    dt = float_type(node, x, FLOAT_TYPES)
    xs, kernel, spatial, outs, strides, dils, pb, pe = _window(node, x, y, bool(node.attrs.get("ceil_mode", 0)))
    nd = len(kernel)
    it = index_type(max(numel(xs), numel(shape_of(y))))
    c = cctype(dt)
    body = _prologue(xs, outs, it)
    body.append(f"        {c} acc = {literal(0, dt)};")
    avg = node.op_type == "AveragePool"
    include_pad = avg and bool(node.attrs["count_include_pad"])
    clipped = all(d == 1 for d in dils)
    if clipped:  # the window's taps clipped to the image: no test per tap, the count from the bounds
        loops, ind, counts = _clipped_tap_loops(kernel, spatial, strides, pb, pe, it, include_pad)
        body += loops[:2 * nd]  # the bounds, then the count, then the loops
        if avg:
            body.append(f"        const int count = {' * '.join(counts)};")
        body += loops[2 * nd:]
    else:
        if avg:
            body.append("        int count = 0;")
        loops, ind = _tap_loops(kernel, outs, strides, dils, pb, it)
        body += loops
    inside = " && ".join(f"s{d} >= 0 && s{d} < {spatial[d]}" for d in range(nd))
    at = _offset([f"s{d}" for d in range(nd)], _row_major(spatial))
    if clipped:
        pass
    elif include_pad:  # the explicit padding counts, a ceil-mode overhang past it does not
        counted = " && ".join(f"s{d} < {spatial[d] + pe[d]}" for d in range(nd))
        body.append(f"{ind}count += ({counted}) ? 1 : 0;")
    elif avg:
        body.append(f"{ind}count += ({inside}) ? 1 : 0;")
    if not clipped:
        body.append(f"{ind}if (!({inside})) continue;")
    v = load_expr(f"x[base + {at}]", dt)
    if avg:
        body.append(f"{ind}acc += {v};")
    else:
        p = int(node.attrs["p"])
        f = "fabsf" if c == "float" else "fabs"
        body.append(f"{ind}const {c} a = {f}({v});")
        term = "a" if p == 1 else "a * a" if p == 2 else f"{'powf' if c == 'float' else 'pow'}(a, {literal(p, dt)})"
        body.append(f"{ind}acc += {term};  // |x|^{p}")
    _close(body, nd, ind)
    if avg:
        result = f"acc / ({c})count"
    else:
        p = int(node.attrs["p"])
        result = "acc" if p == 1 else f"{'sqrtf' if c == 'float' else 'sqrt'}(acc)" if p == 2 else \
            f"{'powf' if c == 'float' else 'pow'}(acc, {literal(1.0 / p, dt)})"
    body.append(f"        y[i] = {store_expr(result, dt)};")
    how = (f"mean (padding {'counted' if include_pad else 'not counted'})" if avg else f"L{node.attrs['p']} norm")
    return [loop_step(ctx, node, what, [("x", x, dt)], [("y", y, dt)], numel(shape_of(y)), body,
                      f"{how} over windows {kernel}, strides {strides}, dilations {dils}, pads {pb}", it)]


def lower_avgpool(node: Node, ctx: LowerContext) -> list[Step]:
    return _sum_pool(node, ctx, "avgpool")


def lower_lppool(node: Node, ctx: LowerContext) -> list[Step]:
    return _sum_pool(node, ctx, "lppool")

register_lowering("MaxPool", lower_maxpool)

register_lowering("AveragePool", lower_avgpool)

register_lowering("LpPool", lower_lppool)


__all__ = ['MAX_TYPES', 'lower_avgpool', 'lower_lppool', 'lower_maxpool']
