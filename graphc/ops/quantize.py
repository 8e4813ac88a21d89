"""Quantization operators: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearConv, QLinearMatMul.

Scales and zero points come per tensor (scalar), per axis (1-D along ``axis``) or blocked (the input's
shape with one dim divided into blocks of ``block_size``); ``_expand_param`` turns all three into an
array that broadcasts against the input. Integer products run as exact float64 matmuls.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ..ir import DType
from .common import normalize_axis, np_axis, tt
from .conv import CONV_ATTRS, infer_conv_like, integer_conv
from .linalg import matmul_shape
from .registry import Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "quantize"

#: Integer targets and their saturation ranges.
_INT_RANGES = {DType.uint8: (0, 255), DType.int8: (-128, 127), DType.uint16: (0, 65535),
               DType.int16: (-32768, 32767), DType.uint4: (0, 15), DType.int4: (-8, 7), DType.uint2: (0, 3),
               DType.int2: (-2, 1)}
_FLOAT8 = {DType.float8e4m3fn, DType.float8e4m3fnuz, DType.float8e5m2, DType.float8e5m2fnuz}
_QUANT_TYPES = set(_INT_RANGES) | _FLOAT8 | {DType.float4e2m1}
_DEQUANT_OUT = {DType.float32, DType.float16, DType.bfloat16}


def _expand_param(p: np.ndarray, x_shape, axis: int, block_size: int) -> np.ndarray:
    """A scale or zero point reshaped (per axis) or repeated (blocked) to broadcast against x."""
    p = np.asarray(p)
    if p.ndim == 0 or (p.size == 1 and not block_size):
        return p.reshape(())
    ax = np_axis(axis, len(x_shape))
    if not 0 <= ax < len(x_shape):
        raise ValueError(f"axis {axis} is out of range for an input of rank {len(x_shape)}")
    if not block_size:
        if p.ndim != 1 or p.shape[0] != x_shape[ax]:
            raise ValueError(f"a per-axis scale/zero point must be 1-D of length {x_shape[ax]} "
                             f"(axis {axis}), got shape {list(p.shape)}")
        shape = [1] * len(x_shape)
        shape[ax] = -1
        return p.reshape(shape)
    if block_size < 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    full = np.repeat(p, block_size, axis=ax)
    if full.shape[ax] < x_shape[ax]:
        raise ValueError(f"{p.shape[ax]} blocks of {block_size} do not cover dim {ax} of size {x_shape[ax]}")
    full = np.take(full, np.arange(x_shape[ax]), axis=ax)
    if full.shape != tuple(x_shape):
        raise ValueError(f"blocked scale of shape {list(p.shape)} does not match input shape {list(x_shape)} "
                         f"outside axis {ax}")
    return full


def _saturate_float(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    info = ml_dtypes.finfo(dtype)
    return np.asarray(np.clip(v, float(info.min), float(info.max))).astype(dtype)


def quantize(v: np.ndarray, target: DType, zero_point=None, saturate: bool = True) -> np.ndarray:
    """Round/convert already-scaled values ``v`` (x / scale) into ``target``, adding the zero point."""
    if target in _INT_RANGES:
        lo, hi = _INT_RANGES[target]
        r = np.rint(v).astype(np.float64)
        if zero_point is not None:
            r += np.asarray(zero_point).astype(np.float64)
        return np.asarray(np.clip(r, lo, hi)).astype(target.np)
    if zero_point is not None:
        zp = np.asarray(zero_point).astype(np.float32)
        if np.any(zp != 0):
            v = v + zp
    if target in _FLOAT8 and not saturate:
        return np.asarray(v).astype(target.np)
    return _saturate_float(v, target.np)


# ---- QuantizeLinear ------------------------------------------------------------------------------
def _quant_target(node, zp) -> DType:
    out = node.attrs.get("output_dtype", 0)
    if zp is not None:
        zd = DType.from_np(zp.dtype)
        if out and DType(out) != zd:
            raise ValueError(f"output_dtype {DType(out)} differs from y_zero_point's type {zd}")
        return zd
    return DType(out) if out else DType.uint8


def _quantize_linear_eval(node, x, scale, zp=None):
    a = node.attrs
    target = _quant_target(node, zp)
    s = _expand_param(scale, x.shape, a["axis"], a["block_size"])
    if a["precision"]:
        p = DType(a["precision"]).np
        v = x.astype(p) / s.astype(p)
    else:
        v = x / s
    z = _expand_param(zp, x.shape, a["axis"], a["block_size"]) if zp is not None else None
    return quantize(v, target, z, bool(a["saturate"]))


def _check_param_shapes(ctx: InferContext, scale_in: int, zp_in: int) -> None:
    xs, ss, zs = ctx.shape(0), ctx.shape(scale_in), ctx.shape(zp_in)
    names = ctx.node.op_type == "QuantizeLinear" and ("y_scale", "y_zero_point") or ("x_scale", "x_zero_point")
    if ss is not None and zs is not None and len(ss) == len(zs):
        for a, b in zip(ss, zs):
            if isinstance(a, int) and isinstance(b, int) and a != b:
                ctx.fail(f"{names[0]} of shape {list(ss)} and {names[1]} of shape {list(zs)} must match")
    if xs is None or ss is None:
        return
    block = ctx.attr("block_size", 0)
    numel = 1
    for d in ss:
        numel = numel * d if isinstance(d, int) and isinstance(numel, int) else None
    if len(ss) == 0 or numel == 1:
        return
    if not xs:
        ctx.fail(f"a scalar input needs a scalar {names[0]}, got shape {list(ss)}")
    axis = normalize_axis(ctx, ctx.attr("axis", 1), len(xs))
    if not block:
        if len(ss) != 1:
            ctx.fail(f"{names[0]} must be a scalar or 1-D (per-axis) without block_size, got shape {list(ss)}")
        if isinstance(ss[0], int) and isinstance(xs[axis], int) and ss[0] != xs[axis]:
            ctx.fail(f"per-axis {names[0]} has {ss[0]} values but input dim {axis} has {xs[axis]}")
        return
    if block < 0:
        ctx.fail(f"block_size must be positive, got {block}")
    if len(ss) != len(xs):
        ctx.fail(f"blocked {names[0]} must have the input's rank {len(xs)}, got shape {list(ss)}")
    for i, (a, b) in enumerate(zip(ss, xs)):
        if not (isinstance(a, int) and isinstance(b, int)):
            continue
        if i == axis:
            if not -(-b // block) == a:
                ctx.fail(f"blocked {names[0]} dim {i} must be ceil({b} / block_size {block}) = "
                         f"{-(-b // block)}, got {a}")
        elif a != b:
            ctx.fail(f"blocked {names[0]} of shape {list(ss)} must match input shape {list(xs)} except on axis {axis}")


def _infer_quantize_linear(ctx: InferContext) -> list:
    out = ctx.attr("output_dtype", 0)
    zd = ctx.dtype(2)
    if out:
        try:
            od = DType(out)
        except ValueError:
            ctx.fail(f"output_dtype {out} is not an element type")
        if zd is not None and zd != od:
            ctx.fail(f"output_dtype {od} differs from y_zero_point's type {zd}")
    else:
        od = zd if ctx.has_input(2) else DType.uint8
    if od is not None and od not in _QUANT_TYPES:
        ctx.fail(f"cannot quantize to {od}; supported: {', '.join(sorted(d.name for d in _QUANT_TYPES))}")
    _check_param_shapes(ctx, 1, 2)
    return [tt(od, ctx.shape(0))]


register(OpDef("QuantizeLinear", eval=_quantize_linear_eval, infer=_infer_quantize_linear,
               attrs={"axis": Attr("int", 1), "block_size": Attr("int", 0), "output_dtype": Attr("int", 0),
                      "precision": Attr("int", 0), "saturate": Attr("int", 1)},
               kind=Kind.OPAQUE, inputs=(2, 3), family=FAMILY,
               doc="y = saturate(round(x / y_scale) + y_zero_point), per tensor, per axis or blocked."))


# ---- DequantizeLinear ----------------------------------------------------------------------------
def _dequantize_linear_eval(node, x, scale, zp=None):
    a = node.attrs
    out = DType(a["output_dtype"]).np if a["output_dtype"] else scale.dtype
    v = x.astype(np.float32)
    if zp is not None:  # (zero for float8/float4 inputs by convention, but honoured if not)
        v -= _expand_param(zp, x.shape, a["axis"], a["block_size"]).astype(np.float32)
    s = _expand_param(scale, x.shape, a["axis"], a["block_size"])
    if s.dtype == DType.float8e8m0.np:
        s = s.astype(np.float32)
    return np.asarray(v * s).astype(out)


def _infer_dequantize_linear(ctx: InferContext) -> list:
    out = ctx.attr("output_dtype", 0)
    if out:
        try:
            od = DType(out)
        except ValueError:
            ctx.fail(f"output_dtype {out} is not an element type")
        if od not in _DEQUANT_OUT:
            ctx.fail(f"output_dtype must be float32, float16 or bfloat16, got {od}")
    else:
        od = ctx.dtype(1)
        if od is not None and od not in _DEQUANT_OUT:
            ctx.fail(f"x_scale of type {od} needs the output_dtype attribute (float32, float16 or bfloat16)")
    xd, zd = ctx.dtype(0), ctx.dtype(2)
    if xd is not None and zd is not None and xd != zd:
        ctx.fail(f"x_zero_point must have x's element type {xd}, got {zd}")
    _check_param_shapes(ctx, 1, 2)
    return [tt(od, ctx.shape(0))]


register(OpDef("DequantizeLinear", eval=_dequantize_linear_eval, infer=_infer_dequantize_linear,
               attrs={"axis": Attr("int", 1), "block_size": Attr("int", 0), "output_dtype": Attr("int", 0)},
               kind=Kind.OPAQUE, inputs=(2, 3), family=FAMILY,
               doc="y = (x - x_zero_point) * x_scale, per tensor, per axis or blocked."))


# ---- DynamicQuantizeLinear -----------------------------------------------------------------------
def _dynamic_quantize_eval(node, x):
    hi = np.float32(max(0.0, float(np.max(x)))) if x.size else np.float32(0)
    lo = np.float32(min(0.0, float(np.min(x)))) if x.size else np.float32(0)
    scale = np.float32((hi - lo) if hi != lo else 1.0) / np.float32(255)
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
    y = np.asarray(np.clip(np.rint(x / scale) + zp, 0, 255)).astype(np.uint8)
    return y, np.array(scale, dtype=np.float32), np.array(zp, dtype=np.uint8)


def _infer_dynamic_quantize(ctx: InferContext) -> list:
    if ctx.dtype(0) is not None and ctx.dtype(0) != DType.float32:
        ctx.fail(f"x must be float32, got {ctx.dtype(0)}")
    return [tt(DType.uint8, ctx.shape(0)), tt(DType.float32, ()), tt(DType.uint8, ())]


register(OpDef("DynamicQuantizeLinear", eval=_dynamic_quantize_eval, infer=_infer_dynamic_quantize,
               kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 3), family=FAMILY,
               doc="uint8 quantization with scale and zero point computed from x's range."))


# ---- QLinearMatMul -------------------------------------------------------------------------------
def _requantize(acc: np.ndarray, multiplier, y_zp: np.ndarray) -> np.ndarray:
    target = DType.from_np(y_zp.dtype)
    return quantize(acc * np.asarray(multiplier).astype(np.float64), target, y_zp)


def _qlinear_matmul_eval(node, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp):
    af = a.astype(np.float64)
    bf = b.astype(np.float64)
    a_s, a_zp = np.asarray(a_s), np.asarray(a_zp)
    if a_s.ndim == 1 and a_s.size > 1:  # per-row quantization of A
        a_s = a_s.reshape(-1, 1)
    if a_zp.ndim == 1 and a_zp.size > 1:
        a_zp = a_zp.reshape(-1, 1)
    af -= a_zp.astype(np.float64)
    bf -= np.asarray(b_zp).astype(np.float64)  # scalar or per column
    acc = np.matmul(af, bf)
    return _requantize(acc, a_s * b_s / y_s, y_zp)


def _infer_qlinear_matmul(ctx: InferContext) -> list:
    for i, name in ((0, "a"), (3, "b")):
        dt = ctx.dtype(i)
        if dt is not None and dt not in (DType.int8, DType.uint8):
            ctx.fail(f"{name} must be int8 or uint8, got {dt}")
    return [tt(ctx.dtype(7), matmul_shape(ctx, ctx.shape(0), ctx.shape(3)))]


register(OpDef("QLinearMatMul", eval=_qlinear_matmul_eval, infer=_infer_qlinear_matmul, kind=Kind.OPAQUE,
               inputs=(8, 8), family=FAMILY, doc="Quantized matmul: requantized product of dequantized a and b."))


# ---- QLinearConv ---------------------------------------------------------------------------------
def _qlinear_conv_eval(node, x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, b=None):
    acc = integer_conv(node, x, w, x_zp, w_zp)
    if b is not None:
        acc += b.astype(np.float64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    w_s = np.asarray(w_s)
    if w_s.ndim == 1 and w_s.size > 1:  # one scale per output channel
        w_s = w_s.reshape((1, -1) + (1,) * (acc.ndim - 2))
    return _requantize(acc, x_s * w_s / y_s, y_zp)


def _infer_qlinear_conv(ctx: InferContext) -> list:
    return infer_conv_like(ctx, out_dtype=ctx.dtype(7), w_in=3)


register(OpDef("QLinearConv", eval=_qlinear_conv_eval, infer=_infer_qlinear_conv, attrs=dict(CONV_ATTRS),
               kind=Kind.OPAQUE, inputs=(8, 9), family=FAMILY,
               doc="Quantized convolution with requantized output."))


# ---- gradients: none (graphc.autodiff names these ops when one cuts a gradient path) -----------------
set_grads({}, {
    "QuantizeLinear": "its output is integer (quantized)",
    "DynamicQuantizeLinear": "its output is integer (quantized)",
    "DequantizeLinear": "its input is integer (quantized)",
    "QLinearMatMul": "it works on integers (quantized)",
    "QLinearConv": "it works on integers (quantized)",
})
set_facts(weight_inputs={"QLinearConv": {3, 8}, "QLinearMatMul": {3}})
