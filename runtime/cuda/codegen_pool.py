"""CUDA lowerings of windowed ops: MaxPool (with Indices), AveragePool, LpPool, LRN and inference BatchNormalization.

Each is one generated kernel with one thread per output element (grid-stride): a pool loops over its window's
taps (padding and ceil-mode overhang read as the op's neutral value: the lowest value for max, nothing for
sums), LRN over its channel window, BatchNormalization computes its per-channel scale and shift from the
four parameters. Any number of spatial dims. GlobalAveragePool and GlobalMaxPool are reductions
(codegen_reduce.py); Dropout and Identity are gone after simplification; Flatten and Reshape are views.
"""
from __future__ import annotations

from graphc.ir import DType, Node
from graphc.ops.conv import geometry

from .codegen import (CodegenUnsupported, cctype, compute_dtype, index_type, literal, load_expr, numel,
                      round_to, shape_of, store_expr)
from .codegen_conv import decode, float_type, loop_step
from .codegen_reduce import _lowest
from .lowering import LowerContext, Step, register_lowering

#: Element types the pools read (MaxPool also takes 8-bit integers, as ONNX allows).
FLOAT_TYPES = (DType.float16, DType.bfloat16, DType.float32, DType.float64)
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
    steps = _row_major(spatial) if node.attrs["storage_order"] == 0 else [numel(spatial[:d]) for d in range(nd)]
    it = index_type(max(numel(xs), numel(shape_of(y))))
    c = cctype(dt)
    body = _prologue(xs, outs, it)
    body.append(f"        {c} acc = {_lowest(compute_dtype(dt))};  // what the padding holds")
    if idx is not None:
        body += ["        long long arg = 0;", "        bool first = true;"]
    loops, ind = _tap_loops(kernel, outs, strides, dils, pb, it)
    body += loops
    inside = " && ".join(f"s{d} >= 0 && s{d} < {spatial[d]}" for d in range(nd))
    at = _offset([f"s{d}" for d in range(nd)], _row_major(spatial))
    body.append(f"{ind}const {c} v = ({inside}) ? {load_expr(f'x[base + {at}]', dt)} : {_lowest(compute_dtype(dt))};")
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
    if avg:
        body.append("        int count = 0;")
    loops, ind = _tap_loops(kernel, outs, strides, dils, pb, it)
    body += loops
    inside = " && ".join(f"s{d} >= 0 && s{d} < {spatial[d]}" for d in range(nd))
    at = _offset([f"s{d}" for d in range(nd)], _row_major(spatial))
    if include_pad:  # the explicit padding counts, a ceil-mode overhang past it does not
        counted = " && ".join(f"s{d} < {spatial[d] + pe[d]}" for d in range(nd))
        body.append(f"{ind}count += ({counted}) ? 1 : 0;")
    elif avg:
        body.append(f"{ind}count += ({inside}) ? 1 : 0;")
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


# ---- LRN -----------------------------------------------------------------------------------------
def lower_lrn(node: Node, ctx: LowerContext) -> list[Step]:
    """y = x / (bias + alpha / size * sum of x^2 over channels [c - (size-1)/2, c + size/2]) ^ beta."""
    x, y = node.inputs[0], node.outputs[0]
    dt = float_type(node, x, FLOAT_TYPES)
    xs = shape_of(x)
    if len(xs) < 2:
        raise CodegenUnsupported(node, f"LRN of rank {len(xs)}")
    size = int(node.attrs["size"])
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    C, R = xs[1], numel(xs[2:])
    it = index_type(numel(xs))
    c = cctype(dt)
    f = "" if c == "double" else "f"
    body = decode("i", [("n", xs[0]), ("ch", C), ("r", R)], it)
    body += [f"        const {it} first = ch < {lo} ? 0 : ch - {lo};",
             f"        const {it} last = ch + {hi} < {C} ? ch + {hi} : {C - 1};",
             f"        {c} sq = {literal(0, dt)};",
             f"        for ({it} j = first; j <= last; ++j) {{",
             f"            const {c} v = {load_expr(f'x[(n * {C} + j) * {R} + r]', dt)};",
             "            sq += v * v;",
             "        }",
             f"        const {c} scale = {literal(node.attrs['bias'], dt)} + {literal(node.attrs['alpha'] / size, dt)} * sq;"]
    xi = load_expr("x[i]", dt)
    result = f"{xi} / pow{f}(scale, {literal(node.attrs['beta'], dt)})"
    body.append(f"        y[i] = {store_expr(result, dt)};")
    return [loop_step(ctx, node, "lrn", [("x", x, dt)], [("y", y, dt)], numel(xs), body,
                      f"local response normalization over {size} channels", it)]


# ---- BatchNormalization (inference) --------------------------------------------------------------
def lower_batchnorm(node: Node, ctx: LowerContext) -> list[Step]:
    """y = x * a + b per channel, a = scale / sqrt(var + eps) and b = bias - mean * a computed per element
    from the four parameters (they may be graph inputs; when constant, the compiler folds the BN away)."""
    if node.attrs["training_mode"] or any(v is not None for v in node.outputs[1:]):
        raise CodegenUnsupported(node, "BatchNormalization in training mode (batch statistics) has no CUDA kernel "
                                       "yet; the inference form does")
    x, y = node.inputs[0], node.outputs[0]
    dt = float_type(node, x, FLOAT_TYPES)
    xs = shape_of(x)
    if len(xs) < 2:
        raise CodegenUnsupported(node, f"BatchNormalization of rank {len(xs)}")
    params = node.inputs[1:5]
    pdts = [float_type(node, p, FLOAT_TYPES) for p in params]
    pshape = shape_of(params[0])
    for p in params:
        if shape_of(p) != pshape or tuple(xs[1:1 + len(pshape)]) != pshape:
            raise CodegenUnsupported(node, f"parameter '{p.name}' of shape {list(shape_of(p))} for X {list(xs)}")
    inner = numel(xs[1 + len(pshape):])
    it = index_type(numel(xs))
    work = DType.float64 if DType.float64 in [dt] + pdts else DType.float32
    w = cctype(work)
    f = "" if w == "double" else "f"
    at = "i" if inner == 1 else f"i / {inner}"
    body = [f"        const {it} p = ({at}) % {numel(pshape)};  // the channel's parameters"]
    names = ["scale", "bias", "mean", "var"]
    for name, pdt in zip(names, pdts):
        body.append(f"        const {w} {name} = ({w}){load_expr(f'{name}_[p]', pdt)};")
    c = cctype(dt)
    product = round_to(load_expr("x[i]", dt) + " * ax", dt)
    body += [f"        const {w} a = scale / sqrt{f}(var + {literal(node.attrs['epsilon'], work)});",
             f"        const {c} ax = {round_to(f'({c})a', dt)};",
             f"        const {c} bx = {round_to(f'({c})(bias - mean * a)', dt)};",
             f"        y[i] = {store_expr(product + ' + bx', dt)};"]
    ins = [("x", x, dt)] + [(f"{n}_", p, pdt) for n, p, pdt in zip(names, params, pdts)]
    return [loop_step(ctx, node, "batchnorm", ins, [("y", y, dt)], numel(xs), body,
                      f"inference batch normalization over {list(xs)}, parameters of shape {list(pshape)}", it)]


register_lowering("MaxPool", lower_maxpool)
register_lowering("AveragePool", lower_avgpool)
register_lowering("LpPool", lower_lppool)
register_lowering("LRN", lower_lrn)
register_lowering("BatchNormalization", lower_batchnorm)

__all__ = ["lower_avgpool", "lower_batchnorm", "lower_lppool", "lower_lrn", "lower_maxpool"]
