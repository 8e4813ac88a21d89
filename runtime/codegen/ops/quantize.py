"""Lowerings of the quantize family: QuantizeLinear and DequantizeLinear.

One thread per element; the scale and zero point are read per tensor, per axis or per block at an index
computed from the element's. Quantizing rounds half to even and saturates to the output type's range.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node, Value

from ..kernel import (
    CodegenUnsupported,
    cctype,
    compute_dtype,
    ctype,
    dtype_of,
    index_type,
    load_expr,
    numel,
    round_to,
    shape_of,
    store_expr,
)
from ..lowering import LowerContext, Step, register_lowering
from ..steps import FLOAT_TYPES, loop_step

_QUANT_RANGES = {DType.int8: (-128, 127), DType.uint8: (0, 255), DType.int16: (-32768, 32767),
                 DType.uint16: (0, 65535)}

_DEQUANT_INPUTS = (DType.int8, DType.uint8, DType.int16, DType.uint16, DType.int32)

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

register_lowering("QuantizeLinear", lower_quantize)

register_lowering("DequantizeLinear", lower_dequantize)


__all__ = ['lower_dequantize', 'lower_quantize']
