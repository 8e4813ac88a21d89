"""Convolution and pooling operators: Conv (im2col + matmul), ConvTranspose, pools, Col2Im, RoiAlign.

Every windowed op shares one geometry: per spatial dim a kernel size ``k``, stride ``s``, dilation ``d``
(effective window ``(k-1)*d+1``) and begin/end padding, from explicit ``pads`` or ``auto_pad``. Kernels
loop over *kernel positions* (a handful) and process whole strided planes at once, never over output
pixels, so they stay fast enough to run full-size CNNs as the reference runtime.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import DType
from .common import tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "conv"

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
#: float types whose products numpy has no fast kernel for: computed in float32, rounded back.
_UPCAST = {np.dtype(np.float16)} | {DType.bfloat16.np}


# ---- geometry ------------------------------------------------------------------------------------
def _spatial_attr(node, name: str, nd: int, default: int) -> list[int]:
    v = node.attrs.get(name)
    return [default] * nd if v is None else list(v)


def window_params(node, nd: int, kernel) -> tuple[list[int], list[int], list[int], list[int]]:
    """strides, dilations, pads_begin, pads_end (explicit pads; auto_pad is resolved per input size)."""
    strides = _spatial_attr(node, "strides", nd, 1)
    dilations = _spatial_attr(node, "dilations", nd, 1)
    pads = _spatial_attr(node, "pads", 2 * nd, 0)
    return strides, dilations, pads[:nd], pads[nd:]


def out_size(n_in: int, k: int, s: int, d: int, pb: int, pe: int, auto_pad: str,
             ceil_mode: bool = False) -> tuple[int, int, int]:
    """Output length and the (begin, end) padding actually used along one spatial dim."""
    dk = (k - 1) * d + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-n_in // s)
        total = max(0, (out - 1) * s + dk - n_in)
        small = total // 2
        pb, pe = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        return out, pb, pe
    if auto_pad == "VALID":
        return (n_in - dk) // s + 1, 0, 0
    span = n_in + pb + pe - dk
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n_in + pb:  # a window may not start in the end padding
            out -= 1
    else:
        out = span // s + 1
    return out, pb, pe


def geometry(node, spatial, kernel, ceil_mode: bool = False):
    """(outs, strides, dilations, pads_begin, pads_end) for a concrete input spatial shape."""
    nd = len(kernel)
    strides, dilations, pb, pe = window_params(node, nd, kernel)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    outs, b, e = [], [], []
    for i in range(nd):
        o, p0, p1 = out_size(spatial[i], kernel[i], strides[i], dilations[i], pb[i], pe[i], auto_pad, ceil_mode)
        if o <= 0:
            raise ValueError(f"window {kernel[i]} (dilation {dilations[i]}) does not fit spatial dim {i} of size "
                             f"{spatial[i]} with pads {p0},{p1}")
        outs.append(o)
        b.append(p0)
        e.append(p1)
    return outs, strides, dilations, b, e


def _check_window_attrs(ctx: InferContext, nd: int) -> None:
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in _AUTO_PADS:
        ctx.fail(f"auto_pad must be one of {', '.join(_AUTO_PADS)}, got '{auto_pad}'")
    for name, n in (("strides", nd), ("dilations", nd), ("pads", 2 * nd), ("kernel_shape", nd)):
        v = ctx.attr(name)
        if v is not None and len(v) != n:
            ctx.fail(f"attribute '{name}' needs {n} values for {nd} spatial dims, got {len(v)}: {list(v)}")
    for name in ("strides", "dilations", "kernel_shape"):
        v = ctx.attr(name)
        if v is not None and any(x < 1 for x in v):
            ctx.fail(f"attribute '{name}' must be positive, got {list(v)}")
    pads = ctx.attr("pads")
    if pads is not None and any(p < 0 for p in pads):
        ctx.fail(f"attribute 'pads' must be non-negative, got {list(pads)}")


def infer_spatial(ctx: InferContext, spatial, kernel, ceil_mode: bool = False) -> list:
    """Symbolic output spatial dims: ints where known, the input symbol where the size is kept, else fresh."""
    nd = len(spatial)
    strides, dilations, pb, pe = window_params(ctx.node, nd, kernel)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    outs = []
    for i in range(nd):
        n, k = spatial[i], kernel[i] if kernel is not None else None
        s, d = strides[i], dilations[i]
        if isinstance(n, int) and isinstance(k, int):
            o, _, _ = out_size(n, k, s, d, pb[i], pe[i], auto_pad, ceil_mode)
            if o <= 0:
                ctx.fail(f"the window ({k} with dilation {d}) is larger than spatial dim {i} "
                         f"(size {n}, pads {pb[i]},{pe[i]})")
            outs.append(o)
        elif isinstance(n, str) and s == 1 and (
                auto_pad in ("SAME_UPPER", "SAME_LOWER")
                or (isinstance(k, int) and (0 if auto_pad == "VALID" else pb[i] + pe[i]) == (k - 1) * d)):
            outs.append(n)  # stride 1 with "same" padding keeps the size
        else:
            outs.append(ctx.fresh())
    return outs


# ---- kernels -------------------------------------------------------------------------------------
def pad_spatial(x: np.ndarray, pb, pe, value=0) -> np.ndarray:
    """x with its spatial dims (from axis 2) padded by constant ``value``; x itself when no padding."""
    if not any(pb) and not any(pe):
        return x
    shape = x.shape[:2] + tuple(n + b + e for n, b, e in zip(x.shape[2:], pb, pe))
    out = np.full(shape, value, dtype=x.dtype) if value != 0 else np.zeros(shape, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(b, b + n) for b, n in zip(pb, x.shape[2:]))] = x
    return out


def tap_slices(kpos, outs, strides, dilations) -> tuple:
    """The strided slice of a padded input seen by kernel position ``kpos`` across all outputs."""
    return (slice(None), slice(None)) + tuple(
        slice(k * d, k * d + (o - 1) * s + 1, s) for k, o, s, d in zip(kpos, outs, strides, dilations))


def conv_core(x: np.ndarray, w: np.ndarray, strides, dilations, pb, pe, group: int) -> np.ndarray:
    """Correlation of x (N, C, *S) with w (M, C/group, *K), no bias; result in x's dtype.

    im2col: one strided copy per kernel position into (N, C, *K, *O), then one batched matmul for
    all groups (depthwise included: measured faster than a multiply-accumulate per tap). 1x1 kernels
    at stride 1 without padding need no copy at all.
    """
    n, c = x.shape[:2]
    m = w.shape[0]
    kernel = w.shape[2:]
    x = pad_spatial(x, pb, pe)
    outs = [(x.shape[2 + i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(len(kernel))]
    p = math.prod(outs)
    kk = math.prod(kernel)
    cg, mg = c // group, m // group
    if kk == 1:
        cols = x[tap_slices((0,) * len(kernel), outs, strides, dilations)].reshape(n, group, cg, p)
    else:
        cols = np.empty((n, c) + tuple(kernel) + tuple(outs), dtype=x.dtype)
        for kpos in np.ndindex(*kernel):
            cols[(slice(None), slice(None)) + kpos] = x[tap_slices(kpos, outs, strides, dilations)]
        cols = cols.reshape(n, group, cg * kk, p)
    wm = w.reshape(group, mg, cg * kk)
    if group == 1:
        y = np.matmul(wm[0], cols[:, 0])
    else:
        y = np.matmul(wm, cols)
    return y.reshape((n, m) + tuple(outs))


def col2im_add(cols: np.ndarray, full, kernel, ins, strides, dilations) -> np.ndarray:
    """Scatter-add cols (N, C, *K, *I) into a zero image (N, C, *full): the adjoint of im2col."""
    n, c = cols.shape[:2]
    out = np.zeros((n, c) + tuple(full), dtype=cols.dtype)
    for kpos in np.ndindex(*kernel):
        out[tap_slices(kpos, ins, strides, dilations)] += cols[(slice(None), slice(None)) + kpos]
    return out


def _float_compute(*xs):
    """Arrays in a dtype numpy multiplies quickly (float16/bfloat16 -> float32) and the dtype to return."""
    dt = xs[0].dtype
    if dt in _UPCAST:
        return [None if x is None else x.astype(np.float32) for x in xs], dt
    return list(xs), dt


def _kernel_of(node, w_shape):
    ks = node.attrs.get("kernel_shape")
    return list(ks) if ks is not None else list(w_shape[2:])


# ---- Conv ----------------------------------------------------------------------------------------
def _conv_eval(node, x, w, b=None):
    (x, w, b), dt = _float_compute(x, w, b)
    kernel = _kernel_of(node, w.shape)
    if list(w.shape[2:]) != kernel:
        raise ValueError(f"kernel_shape {kernel} does not match W's spatial shape {list(w.shape[2:])}")
    _, strides, dilations, pb, pe = geometry(node, x.shape[2:], kernel)
    y = conv_core(x, w, strides, dilations, pb, pe, node.attrs["group"])
    if b is not None:
        y += b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y.astype(dt, copy=False)


def infer_conv_like(ctx: InferContext, out_dtype=None, w_in: int = 1, transposed: bool = False) -> list:
    """Shared inference for Conv, ConvInteger, QLinearConv, DeformConv (input 0 = X, ``w_in`` = W)."""
    xs, ws = ctx.shape(0), ctx.shape(w_in)
    dtype = out_dtype if out_dtype is not None else ctx.dtype(0)
    if out_dtype is None and ctx.dtype(0) is not None and ctx.dtype(w_in) is not None \
            and ctx.dtype(0) != ctx.dtype(w_in):
        ctx.fail(f"X and W must share one element type, got {ctx.dtype(0)} and {ctx.dtype(w_in)}")
    rank = len(xs) if xs is not None else len(ws) if ws is not None else None
    if rank is None:
        return [tt(dtype, None)]
    if rank < 3:
        ctx.fail(f"X must have rank >= 3 (N, C, spatial...), got rank {rank}")
    if xs is not None and ws is not None and len(ws) != len(xs):
        ctx.fail(f"W must have the rank of X ({len(xs)}), got W of shape {list(ws)}")
    nd = rank - 2
    _check_window_attrs(ctx, nd)
    group = ctx.attr("group", 1)
    if group < 1:
        ctx.fail(f"group must be positive, got {group}")
    kernel = ctx.attr("kernel_shape")
    if kernel is None and ws is not None:
        kernel = list(ws[2:])
    elif kernel is not None and ws is not None:
        for i, (a, b) in enumerate(zip(kernel, ws[2:])):
            if isinstance(b, int) and a != b:
                ctx.fail(f"kernel_shape {list(kernel)} does not match W's spatial dims {list(ws[2:])}")
    c = xs[1] if xs is not None else None
    if ws is not None:
        wc = ws[0] if transposed else ws[1]
        if isinstance(c, int) and isinstance(wc, int) and (c != wc * group if not transposed else c != wc):
            want = f"{c} // group {group} = {c / group:g}" if not transposed else f"{c}"
            ctx.fail(f"W's {'dim 0' if transposed else 'dim 1'} must be input channels {want}, "
                     f"got W of shape {list(ws)}")
        m = ws[1] * group if transposed and isinstance(ws[1], int) else (None if transposed else ws[0])
        if not transposed and isinstance(m, int) and m % group:
            ctx.fail(f"W's output channels ({m}) must be divisible by group {group}")
    else:
        m = None
    if m is None:
        m = ctx.fresh()
    n = xs[0] if xs is not None else ctx.fresh()
    spatial = list(xs[2:]) if xs is not None else [ctx.fresh() for _ in range(nd)]
    if kernel is None:
        kernel = [None] * nd
    return [tt(dtype, [n, m] + _spatial_out(ctx, spatial, kernel, transposed))]


def _spatial_out(ctx, spatial, kernel, transposed):
    if not transposed:
        return infer_spatial(ctx, spatial, kernel)
    return _convtranspose_spatial(ctx, spatial, kernel)


def _infer_conv(ctx: InferContext) -> list:
    out = infer_conv_like(ctx)
    b = ctx.shape(2)
    if b is not None and out[0].shape is not None:
        m = out[0].shape[1]
        if len(b) != 1 or (isinstance(b[0], int) and isinstance(m, int) and b[0] != m):
            ctx.fail(f"B must be a 1-D tensor of the {m} output channels, got shape {list(b)}")
    return out


CONV_ATTRS = {"auto_pad": Attr("string", "NOTSET"), "dilations": Attr("ints"), "group": Attr("int", 1),
               "kernel_shape": Attr("ints"), "pads": Attr("ints"), "strides": Attr("ints")}

register(OpDef("Conv", eval=_conv_eval, infer=_infer_conv, attrs=dict(CONV_ATTRS), kind=Kind.OUT_FUSABLE,
               inputs=(2, 3), family=FAMILY, doc="N-d convolution (cross-correlation) with groups."))


# ---- ConvInteger ---------------------------------------------------------------------------------
def _zero_point_per_channel(zp, ndim: int):
    zp = np.asarray(zp)
    if zp.ndim == 1 and zp.size > 1:
        return zp.reshape((-1,) + (1,) * (ndim - 1))
    return zp.reshape(())


def integer_conv(node, x, w, x_zp, w_zp) -> np.ndarray:
    """Exact integer convolution of (x - x_zp) and (w - w_zp): float64 matmuls are exact here."""
    xf = x.astype(np.float64)
    if x_zp is not None:
        xf -= np.asarray(x_zp, dtype=np.float64).reshape(())
    wf = w.astype(np.float64)
    if w_zp is not None:
        wf -= _zero_point_per_channel(w_zp, w.ndim).astype(np.float64)
    kernel = _kernel_of(node, w.shape)
    _, strides, dilations, pb, pe = geometry(node, x.shape[2:], kernel)
    return conv_core(xf, wf, strides, dilations, pb, pe, node.attrs["group"])


def _conv_integer_eval(node, x, w, x_zp=None, w_zp=None):
    return np.rint(integer_conv(node, x, w, x_zp, w_zp)).astype(np.int32)


register(OpDef("ConvInteger", eval=_conv_integer_eval,
               infer=lambda ctx: infer_conv_like(ctx, out_dtype=DType.int32),
               attrs=dict(CONV_ATTRS), kind=Kind.OPAQUE, inputs=(2, 4), family=FAMILY,
               doc="Integer convolution with zero points; int32 result."))


# ---- ConvTranspose -------------------------------------------------------------------------------
def convtranspose_pads(node, ins, kernel):
    """(output sizes, pads_begin) for ConvTranspose on concrete input sizes."""
    nd = len(kernel)
    strides, dilations, pb, pe = window_params(node, nd, kernel)
    opad = _spatial_attr(node, "output_padding", nd, 0)
    oshape = node.attrs.get("output_shape")
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if oshape is not None and len(oshape) > nd:
        oshape = oshape[-nd:]
    outs, begins = [], []
    for i in range(nd):
        full = strides[i] * (ins[i] - 1) + opad[i] + (kernel[i] - 1) * dilations[i] + 1
        if oshape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = oshape[i] if oshape is not None else ins[i] * strides[i]
            total = full - o
            begins.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        elif auto_pad == "VALID":
            o = full
            begins.append(0)
        else:
            o = full - pb[i] - pe[i]
            begins.append(pb[i])
        outs.append(o)
    return outs, begins, strides, dilations


def _convtranspose_spatial(ctx, spatial, kernel):
    nd = len(spatial)
    oshape = ctx.attr("output_shape")
    if oshape is not None:
        return list(oshape[-nd:])
    if any(not isinstance(n, int) for n in spatial) or any(k is None or not isinstance(k, int) for k in kernel):
        strides = _spatial_attr(ctx.node, "strides", nd, 1)
        return [n if isinstance(n, str) and strides[i] == 1 and ctx.attr("auto_pad", "NOTSET").startswith("SAME")
                else ctx.fresh() for i, n in enumerate(spatial)]
    outs, _, _, _ = convtranspose_pads(ctx.node, spatial, kernel)
    if any(o <= 0 for o in outs):
        ctx.fail(f"output spatial shape {outs} is not positive")
    return outs


def _convtranspose_eval(node, x, w, b=None):
    (x, w, b), dt = _float_compute(x, w, b)
    group = node.attrs["group"]
    kernel = _kernel_of(node, w.shape)
    n, c = x.shape[:2]
    ins = list(x.shape[2:])
    mg = w.shape[1]
    cg = c // group
    kk = math.prod(kernel)
    p = math.prod(ins)
    outs, begins, strides, dilations = convtranspose_pads(node, ins, kernel)
    # cols[n, g, (mg, K), P] = W_g^T @ X_g
    wt = w.reshape(group, cg, mg * kk).transpose(0, 2, 1)
    xg = x.reshape(n, group, cg, p)
    cols = np.matmul(wt, xg).reshape((n, group * mg) + tuple(kernel) + tuple(ins))
    full = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(ins, kernel, strides, dilations)]
    img = col2im_add(cols, full, kernel, ins, strides, dilations)
    y = np.zeros((n, group * mg) + tuple(outs), dtype=img.dtype)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for o, f, b0 in zip(outs, full, begins):
        lo, hi = max(b0, 0), min(f, b0 + o)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - b0, max(hi, lo) - b0))
    y[tuple(dst)] = img[tuple(src)]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * len(outs))
    return y.astype(dt, copy=False)


register(OpDef("ConvTranspose", eval=_convtranspose_eval,
               infer=lambda ctx: infer_conv_like(ctx, transposed=True),
               attrs=dict(CONV_ATTRS, output_padding=Attr("ints"), output_shape=Attr("ints")),
               kind=Kind.OUT_FUSABLE, inputs=(2, 3), family=FAMILY,
               doc="Transposed convolution (gradient of Conv wrt its input)."))


# ---- DeformConv ----------------------------------------------------------------------------------
def _bilinear_zero(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of img (B, C, H, W) at (B, 1, ...) float coordinates; zero outside the image."""
    h, w = img.shape[2:]
    b, c = img.shape[:2]
    flat = img.reshape(b, c, h * w)
    y0 = np.floor(ys)
    x0 = np.floor(xs)
    out = 0
    for dy in (0, 1):
        for dx in (0, 1):
            yy = y0 + dy
            xx = x0 + dx
            wgt = (1 - np.abs(ys - yy)) * (1 - np.abs(xs - xx))
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = (np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1)).astype(np.int64)
            vals = np.take_along_axis(flat, idx.reshape(b, 1, -1), axis=2).reshape((b, c) + ys.shape[2:])
            out = out + vals * np.where(ok, wgt, 0)
    return out


def _deform_conv_eval(node, x, w, offset, b=None, mask=None):
    (x, w, offset, b, mask), dt = _float_compute(x, w, offset, b, mask)
    n, c, h, wd = x.shape
    m = w.shape[0]
    kernel = _kernel_of(node, w.shape)
    if len(kernel) != 2:
        raise ValueError("DeformConv supports 2-D inputs only")
    group, og = node.attrs["group"], node.attrs["offset_group"]
    outs, strides, dilations, pb, _ = geometry(node, (h, wd), kernel)
    kh, kw = kernel
    kk = kh * kw
    oh, ow = outs
    if offset.shape != (n, og * kk * 2, oh, ow):
        raise ValueError(f"offset must have shape {[n, og * kk * 2, oh, ow]} (offset_group {og}, kernel "
                         f"{kernel}, output {outs}), got {list(offset.shape)}")
    off = offset.reshape(n, og, kk, 2, oh, ow)
    msk = mask.reshape(n, og, kk, oh, ow) if mask is not None else None
    base_y = (np.arange(oh) * strides[0] - pb[0]).reshape(oh, 1)
    base_x = (np.arange(ow) * strides[1] - pb[1]).reshape(1, ow)
    cpo = c // og
    xg = x.reshape(n * og, cpo, h, wd)
    cols = np.empty((n, og, cpo, kk, oh, ow), dtype=x.dtype)
    for j, (i, k) in enumerate(np.ndindex(kh, kw)):
        ys = base_y + i * dilations[0] + off[:, :, j, 0]
        xs = base_x + k * dilations[1] + off[:, :, j, 1]
        v = _bilinear_zero(xg, ys.reshape(n * og, 1, oh, ow), xs.reshape(n * og, 1, oh, ow))
        v = v.reshape(n, og, cpo, oh, ow)
        if msk is not None:
            v = v * msk[:, :, j][:, :, None]
        cols[:, :, :, j] = v
    cols = cols.reshape(n, group, (c // group) * kk, oh * ow)
    y = np.matmul(w.reshape(group, m // group, (c // group) * kk), cols).reshape(n, m, oh, ow)
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    return y.astype(dt, copy=False)


register(OpDef("DeformConv", eval=_deform_conv_eval, infer=lambda ctx: infer_conv_like(ctx),
               attrs={"dilations": Attr("ints"), "group": Attr("int", 1), "kernel_shape": Attr("ints"),
                      "offset_group": Attr("int", 1), "pads": Attr("ints"), "strides": Attr("ints")},
               kind=Kind.OPAQUE, inputs=(3, 5), family=FAMILY,
               doc="Deformable convolution: kernel taps shifted by learned offsets, bilinearly sampled."))


# ---- pools ---------------------------------------------------------------------------------------
def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" or dtype in _UPCAST else np.iinfo(dtype).min


def pool_setup(node, x, ceil: bool):
    """A pool's window geometry on a concrete input ``x``: (kernel, output sizes, strides, dilations,
    pads_begin, pads_end), the end pads widened for the windows ceil mode runs past the input."""
    kernel = list(node.attrs["kernel_shape"])
    if len(kernel) != x.ndim - 2:
        raise ValueError(f"kernel_shape {kernel} has {len(kernel)} dims but X has {x.ndim - 2} spatial dims")
    outs, strides, dilations, pb, pe = geometry(node, x.shape[2:], kernel, ceil)
    # ceil mode may need windows that run past the end padding
    pe = [max(e, (o - 1) * s + (k - 1) * d + 1 - n - b)
          for o, s, k, d, n, b, e in zip(outs, strides, kernel, dilations, x.shape[2:], pb, pe)]
    return kernel, outs, strides, dilations, pb, pe


def window_reduce(xp: np.ndarray, kernel, outs, strides, dilations, ufunc) -> np.ndarray:
    """Reduce every window of a padded input with ``ufunc`` (np.maximum, np.add), one spatial axis at a time.

    Max and sum are separable, so a k1 x k2 window costs k1 + k2 passes instead of k1 * k2 (the
    per-pass cost, not the element count, dominates for typical pools); when that saves no pass
    (2x2, 1-D) one pass per tap touches less memory.
    """
    if math.prod(kernel) <= sum(kernel):
        acc = None
        for kpos in np.ndindex(*kernel):
            tap = xp[tap_slices(kpos, outs, strides, dilations)]
            if acc is None:
                acc = tap.copy()
            else:
                ufunc(acc, tap, out=acc)
        return acc
    cur = xp
    for i in reversed(range(len(kernel))):
        k, o, s, d = kernel[i], outs[i], strides[i], dilations[i]
        acc = None
        for j in range(k):
            sl = [slice(None)] * cur.ndim
            sl[2 + i] = slice(j * d, j * d + (o - 1) * s + 1, s)
            tap = cur[tuple(sl)]
            if acc is None:
                acc = tap.copy()
            else:
                ufunc(acc, tap, out=acc)
        cur = acc
    return cur


def _maxpool_eval(node, x):
    kernel, outs, strides, dilations, pb, pe = pool_setup(node, x, bool(node.attrs["ceil_mode"]))
    xp = pad_spatial(x, pb, pe, _lowest(x.dtype))
    want_idx = len(node.outputs) > 1 and node.outputs[1] is not None
    if not want_idx:
        return window_reduce(xp, kernel, outs, strides, dilations, np.maximum)
    # With Indices: keep, per output, the first tap holding the maximum and its flat input index.
    nd = len(kernel)
    spatial = x.shape[2:]
    if node.attrs["storage_order"] == 1:  # column-major flattening of the spatial dims
        steps = [math.prod(spatial[:i]) for i in range(nd)]
    else:
        steps = [math.prod(spatial[i + 1:]) for i in range(nd)]
    base = (np.arange(x.shape[0] * x.shape[1], dtype=np.int64) * math.prod(spatial)).reshape(
        (x.shape[0], x.shape[1]) + (1,) * nd)
    coords = [np.arange(o, dtype=np.int64) * s - b for o, s, b in zip(outs, strides, pb)]
    y = idx = None
    for kpos in np.ndindex(*kernel):
        tap = xp[tap_slices(kpos, outs, strides, dilations)]
        cand = base
        for i in range(nd):
            shape = [1] * (nd + 2)
            shape[2 + i] = -1
            cand = cand + ((coords[i] + kpos[i] * dilations[i]) * steps[i]).reshape(shape)
        if y is None:
            y, idx = tap.copy(), np.broadcast_to(cand, tap.shape).copy()
        else:
            better = tap > y
            np.copyto(y, tap, where=better)
            np.copyto(idx, np.broadcast_to(cand, tap.shape), where=better)
    return y, idx


def avgpool_counts(kernel, outs, strides, dilations, pb, pe, spatial, include_pad: bool):
    """Per-output-position divisor: the product over dims of the taps that fall inside the counted range."""
    count = np.ones((1, 1) + (1,) * len(kernel))
    for i, (k, o, s, d, b, e, n) in enumerate(zip(kernel, outs, strides, dilations, pb, pe, spatial)):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - b
        lo, hi = (-b, n + e) if include_pad else (0, n)
        c = ((pos >= lo) & (pos < hi)).sum(axis=1)
        shape = [1] * (len(kernel) + 2)
        shape[2 + i] = o
        count = count * c.reshape(shape)
    return count


def _sum_pool(node, x, fn=None):
    """Windowed sums of fn(x) over zero padding; returns (sums, geometry) for AveragePool and LpPool."""
    kernel, outs, strides, dilations, pb, pe = pool_setup(node, x, bool(node.attrs.get("ceil_mode", 0)))
    explicit_pe = geometry(node, x.shape[2:], kernel, bool(node.attrs.get("ceil_mode", 0)))[4]
    xp = pad_spatial(x if fn is None else fn(x), pb, pe)
    acc = window_reduce(xp, kernel, outs, strides, dilations, np.add)
    return acc, (kernel, outs, strides, dilations, pb, explicit_pe)


def _avgpool_eval(node, x):
    (xf,), dt = _float_compute(x)
    acc, (kernel, outs, strides, dilations, pb, pe) = _sum_pool(node, xf)
    count = avgpool_counts(kernel, outs, strides, dilations, pb, pe, x.shape[2:],
                            bool(node.attrs["count_include_pad"]))
    acc /= count.astype(acc.dtype)
    return acc.astype(dt, copy=False)


def _lppool_eval(node, x):
    (xf,), dt = _float_compute(x)
    p = node.attrs["p"]
    acc, _ = _sum_pool(node, xf, lambda v: np.abs(v) ** p)
    return (acc ** (1.0 / p)).astype(dt, copy=False)


def _infer_pool(ctx: InferContext) -> list:
    xs = ctx.shape(0)
    dtype = ctx.dtype(0)
    kernel = list(ctx.attr("kernel_shape"))
    if xs is None:
        return [tt(dtype, None)] + ([tt(DType.int64, None)] if len(ctx.node.outputs) > 1 else [])
    if len(xs) < 3:
        ctx.fail(f"X must have rank >= 3 (N, C, spatial...), got shape {list(xs)}")
    nd = len(xs) - 2
    if len(kernel) != nd:
        ctx.fail(f"kernel_shape {kernel} has {len(kernel)} dims but X of shape {list(xs)} has {nd} spatial dims")
    _check_window_attrs(ctx, nd)
    shape = [xs[0], xs[1]] + infer_spatial(ctx, xs[2:], kernel, bool(ctx.attr("ceil_mode", 0)))
    out = [tt(dtype, shape)]
    if len(ctx.node.outputs) > 1:
        out.append(tt(DType.int64, shape))
    return out


_POOL_ATTRS = {"auto_pad": Attr("string", "NOTSET"), "ceil_mode": Attr("int", 0), "dilations": Attr("ints"),
               "kernel_shape": Attr("ints", REQUIRED), "pads": Attr("ints"), "strides": Attr("ints")}

register(OpDef("MaxPool", eval=_maxpool_eval, infer=_infer_pool,
               attrs=dict(_POOL_ATTRS, storage_order=Attr("int", 0)), kind=Kind.OPAQUE, inputs=(1, 1),
               outputs=(1, 2), family=FAMILY, doc="Max over sliding windows; optional flat argmax Indices."))
register(OpDef("AveragePool", eval=_avgpool_eval, infer=_infer_pool,
               attrs=dict(_POOL_ATTRS, count_include_pad=Attr("int", 0)), kind=Kind.OPAQUE, inputs=(1, 1),
               family=FAMILY, doc="Mean over sliding windows (padding counted when count_include_pad)."))
register(OpDef("LpPool", eval=_lppool_eval, infer=_infer_pool,
               attrs=dict(_POOL_ATTRS, p=Attr("int", 2)), kind=Kind.OPAQUE, inputs=(1, 1),
               family=FAMILY, doc="Lp norm over sliding windows."))


# ---- global pools --------------------------------------------------------------------------------
def _infer_global(ctx: InferContext) -> list:
    xs = ctx.shape(0)
    if xs is None:
        return [tt(ctx.dtype(0), None)]
    if len(xs) < 3:
        ctx.fail(f"X must have rank >= 3 (N, C, spatial...), got shape {list(xs)}")
    return [tt(ctx.dtype(0), list(xs[:2]) + [1] * (len(xs) - 2))]


def _global(fn):
    def ev(node, x):
        axes = tuple(range(2, x.ndim))
        (xf,), dt = _float_compute(x)
        return np.asarray(fn(node, xf, axes)).astype(dt, copy=False)

    return ev


def _global_lp(node, x, axes):
    p = node.attrs["p"]
    return np.sum(np.abs(x) ** p, axis=axes, keepdims=True) ** (1.0 / p)


register(OpDef("GlobalAveragePool", eval=_global(lambda node, x, axes: np.mean(x, axis=axes, keepdims=True)),
               infer=_infer_global, kind=Kind.REDUCTION, inputs=(1, 1), family=FAMILY))
register(OpDef("GlobalMaxPool", eval=_global(lambda node, x, axes: np.max(x, axis=axes, keepdims=True)),
               infer=_infer_global, kind=Kind.REDUCTION, inputs=(1, 1), family=FAMILY))
register(OpDef("GlobalLpPool", eval=_global(_global_lp), infer=_infer_global, attrs={"p": Attr("int", 2)},
               kind=Kind.REDUCTION, inputs=(1, 1), family=FAMILY))


# ---- MaxUnpool -----------------------------------------------------------------------------------
def _unpool_spatial(node, spatial):
    kernel = list(node.attrs["kernel_shape"])
    nd = len(kernel)
    strides, _, pb, pe = window_params(node, nd, kernel)
    return [(n - 1) * s + k - b - e for n, s, k, b, e in zip(spatial, strides, kernel, pb, pe)]


def _maxunpool_eval(node, x, idx, output_shape=None):
    # Indices address the tensor of the shape MaxPool inverts (from kernel, strides, pads); a larger
    # output_shape pads that tensor with zeros at the end, as ONNX's reference and test data do
    # (onnxruntime instead reads the indices in output_shape's layout).
    inferred = x.shape[:2] + tuple(_unpool_spatial(node, x.shape[2:]))
    shape = inferred if output_shape is None else tuple(int(v) for v in output_shape)
    if shape == inferred:
        y = np.zeros(inferred, dtype=x.dtype)
        y.reshape(-1)[idx.reshape(-1)] = x.reshape(-1)
        return y
    # Place each value straight into the output (the inferred-layout tensor may be far larger).
    coords = np.unravel_index(idx.reshape(-1), inferred)
    keep = np.ones(idx.size, dtype=bool)
    for c, n in zip(coords, shape):
        keep &= c < n
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(c[keep] for c in coords)] = x.reshape(-1)[keep]
    return out


def _infer_maxunpool(ctx: InferContext) -> list:
    xs, dtype = ctx.shape(0), ctx.dtype(0)
    if ctx.dtype(1) is not None and ctx.dtype(1) != DType.int64:
        ctx.fail(f"I must be int64 indices, got {ctx.dtype(1)}")
    if ctx.has_input(2):
        shp = ctx.const(2)
        if shp is not None:
            return [tt(dtype, [int(v) for v in shp])]
        s2 = ctx.shape(2)
        if s2 is not None and isinstance(s2[0], int):
            return [tt(dtype, [ctx.fresh() for _ in range(s2[0])])]
        return [tt(dtype, None)]
    if xs is None:
        return [tt(dtype, None)]
    kernel = ctx.attr("kernel_shape")
    if len(kernel) != len(xs) - 2:
        ctx.fail(f"kernel_shape {list(kernel)} does not fit X of shape {list(xs)}")
    _check_window_attrs(ctx, len(kernel))
    known = _unpool_spatial(ctx.node, [n if isinstance(n, int) else 1 for n in xs[2:]])
    spatial = [o if isinstance(n, int) else ctx.fresh() for n, o in zip(xs[2:], known)]
    return [tt(dtype, list(xs[:2]) + spatial)]


register(OpDef("MaxUnpool", eval=_maxunpool_eval, infer=_infer_maxunpool,
               attrs={"kernel_shape": Attr("ints", REQUIRED), "pads": Attr("ints"), "strides": Attr("ints")},
               kind=Kind.OPAQUE, inputs=(2, 3), family=FAMILY,
               doc="Inverse of MaxPool: scatter values to their Indices, zeros elsewhere."))


# ---- Col2Im --------------------------------------------------------------------------------------
def _col2im_eval(node, x, image_shape, block_shape):
    image = [int(v) for v in image_shape]
    block = [int(v) for v in block_shape]
    nd = len(image)
    strides = _spatial_attr(node, "strides", nd, 1)
    dilations = _spatial_attr(node, "dilations", nd, 1)
    pads = _spatial_attr(node, "pads", 2 * nd, 0)
    pb, pe = pads[:nd], pads[nd:]
    n = x.shape[0]
    kk = math.prod(block)
    c = x.shape[1] // kk
    blocks = [(i + b + e - (k - 1) * d - 1) // s + 1
              for i, b, e, k, d, s in zip(image, pb, pe, block, dilations, strides)]
    if math.prod(blocks) != x.shape[2]:
        raise ValueError(f"input has {x.shape[2]} blocks but image {image} with block {block} gives {blocks}")
    (xf,), dt = _float_compute(x)
    cols = xf.reshape((n, c) + tuple(block) + tuple(blocks))
    full = [i + b + e for i, b, e in zip(image, pb, pe)]
    img = col2im_add(cols, full, block, blocks, strides, dilations)
    crop = (slice(None), slice(None)) + tuple(slice(b, b + i) for b, i in zip(pb, image))
    return np.ascontiguousarray(img[crop]).astype(dt, copy=False)


def _infer_col2im(ctx: InferContext) -> list:
    xs, dtype = ctx.shape(0), ctx.dtype(0)
    if xs is not None and len(xs) != 3:
        ctx.fail(f"input must be 3-D (N, C*prod(block_shape), L), got shape {list(xs)}")
    img, blk = ctx.const(1), ctx.const(2)
    n = xs[0] if xs is not None else ctx.fresh()
    if img is None:
        r = ctx.shape(1)
        if r is None or not isinstance(r[0], int):
            return [tt(dtype, None)]
        return [tt(dtype, [n, ctx.fresh()] + [ctx.fresh() for _ in range(r[0])])]
    c = ctx.fresh()
    if blk is not None and xs is not None and isinstance(xs[1], int):
        kk = int(np.prod(blk))
        if xs[1] % kk:
            ctx.fail(f"input dim 1 ({xs[1]}) must be divisible by prod(block_shape) = {kk}")
        c = xs[1] // kk
    return [tt(dtype, [n, c] + [int(v) for v in img])]


register(OpDef("Col2Im", eval=_col2im_eval, infer=_infer_col2im,
               attrs={"dilations": Attr("ints"), "pads": Attr("ints"), "strides": Attr("ints")},
               kind=Kind.OPAQUE, inputs=(3, 3), family=FAMILY,
               doc="Rearrange column blocks into an image, summing overlaps (adjoint of im2col)."))


# ---- RoiAlign ------------------------------------------------------------------------------------
def _roi_align_eval(node, x, rois, batch_indices):
    a = node.attrs
    oh, ow = a["output_height"], a["output_width"]
    scale, ratio = a["spatial_scale"], a["sampling_ratio"]
    half = a["coordinate_transformation_mode"] == "half_pixel"
    use_max = a["mode"] == "max"
    (xf,), dt = _float_compute(x)
    _, c, h, w = x.shape
    r = rois.shape[0]
    y = np.zeros((r, c, oh, ow), dtype=xf.dtype)
    off = 0.5 if half else 0.0
    for i in range(r):  # sample grids differ per ROI; everything inside one ROI is vectorised
        x0, y0, x1, y1 = (float(v) * scale - off for v in rois[i])
        rw, rh = x1 - x0, y1 - y0
        if not half:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = ratio if ratio > 0 else int(math.ceil(rh / oh))
        gw = ratio if ratio > 0 else int(math.ceil(rw / ow))
        if gh <= 0 or gw <= 0:
            continue
        ys = y0 + np.arange(oh)[:, None] * bh + (np.arange(gh)[None, :] + 0.5) * bh / gh  # (oh, gh)
        xs = x0 + np.arange(ow)[:, None] * bw + (np.arange(gw)[None, :] + 0.5) * bw / gw  # (ow, gw)
        wy, iy = _interp_1d(ys.reshape(-1), h)  # (oh*gh, 2) weights and indices
        wx, ix = _interp_1d(xs.reshape(-1), w)
        img = xf[int(batch_indices[i])]  # (c, h, w)
        # corner values (c, oh*gh, 2, ow*gw, 2), weighted
        vals = img[:, iy[:, :, None, None], ix[None, None, :, :]]
        wgt = (wy[:, :, None, None] * wx[None, None, :, :]).astype(xf.dtype)
        contrib = vals * wgt
        if use_max:
            s = contrib.max(axis=(2, 4))  # max over the four weighted corners of each sample
            s = s.reshape(c, oh, gh, ow, gw).max(axis=(2, 4))
        else:
            s = contrib.sum(axis=(2, 4)).reshape(c, oh, gh, ow, gw).sum(axis=(2, 4)) / max(gh * gw, 1)
        y[i] = s
    return y.astype(dt, copy=False)


def _interp_1d(pos: np.ndarray, size: int):
    """Bilinear weights and indices along one axis, with RoiAlign's border rules (zero outside [-1, size])."""
    outside = (pos < -1.0) | (pos > size)
    p = np.maximum(pos, 0.0)
    lo = p.astype(np.int64)
    at_end = lo >= size - 1
    lo = np.where(at_end, size - 1, lo)
    hi = np.where(at_end, size - 1, lo + 1)
    p = np.where(at_end, lo.astype(p.dtype), p)
    frac = p - lo
    wts = np.stack([1.0 - frac, frac], axis=1)
    wts[outside] = 0.0
    return wts, np.stack([lo, hi], axis=1)


def _infer_roi_align(ctx: InferContext) -> list:
    xs, rs, bs = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if xs is not None and len(xs) != 4:
        ctx.fail(f"X must be 4-D (N, C, H, W), got shape {list(xs)}")
    if rs is not None and (len(rs) != 2 or (isinstance(rs[1], int) and rs[1] != 4)):
        ctx.fail(f"rois must have shape (num_rois, 4), got {list(rs)}")
    if bs is not None and len(bs) != 1:
        ctx.fail(f"batch_indices must be 1-D (num_rois), got shape {list(bs)}")
    if ctx.attr("mode") not in ("avg", "max"):
        ctx.fail(f"mode must be 'avg' or 'max', got '{ctx.attr('mode')}'")
    r = rs[0] if rs is not None else bs[0] if bs is not None else ctx.fresh()
    c = xs[1] if xs is not None else ctx.fresh()
    return [tt(ctx.dtype(0), [r, c, ctx.attr("output_height"), ctx.attr("output_width")])]


register(OpDef("RoiAlign", eval=_roi_align_eval, infer=_infer_roi_align,
               attrs={"coordinate_transformation_mode": Attr("string", "half_pixel"), "mode": Attr("string", "avg"),
                      "output_height": Attr("int", 1), "output_width": Attr("int", 1),
                      "sampling_ratio": Attr("int", 0), "spatial_scale": Attr("float", 1.0)},
               upgrades={16: lambda node, graph: node.attrs.setdefault("coordinate_transformation_mode",
                                                                        "output_half_pixel")},
               kind=Kind.OPAQUE, inputs=(3, 3), family=FAMILY,
               doc="Region-of-interest align: bilinear sampling of each ROI into a fixed grid."))


# ---- MaxRoiPool ----------------------------------------------------------------------------------
def _max_roi_pool_eval(node, x, rois):
    ph, pw = node.attrs["pooled_shape"]
    scale = node.attrs["spatial_scale"]
    _, c, h, w = x.shape
    y = np.zeros((rois.shape[0], c, ph, pw), dtype=x.dtype)
    for i, roi in enumerate(rois):  # one ROI at a time; the bins of one ROI are sliced directly
        b = int(roi[0])
        x0, y0, x1, y1 = (int(np.round(float(v) * scale)) for v in roi[1:5])
        rh, rw = max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1)
        for py in range(ph):
            hs = min(max(int(math.floor(py * rh / ph)) + y0, 0), h)
            he = min(max(int(math.ceil((py + 1) * rh / ph)) + y0, 0), h)
            for px in range(pw):
                ws = min(max(int(math.floor(px * rw / pw)) + x0, 0), w)
                we = min(max(int(math.ceil((px + 1) * rw / pw)) + x0, 0), w)
                if he > hs and we > ws:
                    y[i, :, py, px] = x[b, :, hs:he, ws:we].max(axis=(1, 2))
    return y


def _infer_max_roi_pool(ctx: InferContext) -> list:
    xs, rs = ctx.shape(0), ctx.shape(1)
    if xs is not None and len(xs) != 4:
        ctx.fail(f"X must be 4-D (N, C, H, W), got shape {list(xs)}")
    if rs is not None and (len(rs) != 2 or (isinstance(rs[1], int) and rs[1] != 5)):
        ctx.fail(f"rois must have shape (num_rois, 5), got {list(rs)}")
    ps = ctx.attr("pooled_shape")
    if len(ps) != 2:
        ctx.fail(f"pooled_shape must have 2 values, got {list(ps)}")
    r = rs[0] if rs is not None else ctx.fresh()
    c = xs[1] if xs is not None else ctx.fresh()
    return [tt(ctx.dtype(0), [r, c, ps[0], ps[1]])]


register(OpDef("MaxRoiPool", eval=_max_roi_pool_eval, infer=_infer_max_roi_pool,
               attrs={"pooled_shape": Attr("ints", REQUIRED), "spatial_scale": Attr("float", 1.0)},
               kind=Kind.OPAQUE, inputs=(2, 2), family=FAMILY,
               doc="Max pooling of each region of interest into a fixed grid."))


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext). Convolution
# gradients are convolutions again: wrt the input a ConvTranspose with the same weights, wrt the weights
# a Conv of the input by the output gradient (strides and dilations swap roles), so no extra op is needed.
def _static_spatial(ctx, node, x):
    s = ctx.shape_of(x)
    if s is None or len(s) < 3 or not all(isinstance(d, int) for d in s[1:]):
        from ..errors import GradientError, node_label

        raise GradientError(f"{node_label(node)}: its gradient needs the channel and spatial dims of "
                            f"'{x.name}' to be known, got {x.type}")
    return list(s[2:])


def _fit_spatial(ctx, v, have: list[int], want: list[int]) -> list:
    """Crop or zero-pad the spatial dims (from axis 2) of v from sizes ``have`` to ``want`` (at the end)."""
    nd = len(want)
    if any(h > w for h, w in zip(have, want)):
        v = ctx.op("Slice", v, ctx.ints([0] * nd), ctx.ints(want), ctx.ints(range(2, 2 + nd)))
    if any(h < w for h, w in zip(have, want)):
        grow = [max(w - h, 0) for h, w in zip(have, want)]
        v = ctx.op("Pad", v, ctx.ints([0] * (2 + nd) + [0, 0] + grow))
    return v


def conv_input_grad(ctx, g, w, spatial, kernel, outs, strides, dilations, pb, group):
    """d(Conv(x, w))/dx applied to g: a ConvTranspose of g by w, fitted to x's spatial size."""
    nd = len(kernel)
    t = ctx.op("ConvTranspose", g, w, strides=strides, dilations=dilations, pads=list(pb) + [0] * nd, group=group,
               kernel_shape=list(kernel))
    full = [s * (o - 1) + d * (k - 1) + 1 - b for o, s, k, d, b in zip(outs, strides, kernel, dilations, pb)]
    return _fit_spatial(ctx, t, full, spatial)


def conv_weight_grad(ctx, x, g, channels, in_spatial, kernel, strides, dilations, pb, pe, group):
    """d(Conv(x, w))/dw applied to g: correlate x with g, batch playing the role of input channels.

    x (N, C, ...) becomes (C/G, G*N, ...) and g (N, O, ...) becomes (O, N, ...); a grouped Conv with the
    forward dilations as strides and the forward strides as dilations gives (C/G, O, >= kernel).
    """
    nd = len(kernel)
    cg = channels // group
    spatial = list(range(2, 2 + nd))
    if group == 1:
        xt = ctx.op("Transpose", x, perm=[1, 0] + spatial)
    else:
        x5 = ctx.op("Reshape", x, ctx.ints([0, group, cg] + list(in_spatial)))
        x5 = ctx.op("Transpose", x5, perm=[2, 1, 0] + [a + 1 for a in spatial])
        xt = ctx.op("Reshape", x5, ctx.ints([cg, -1] + list(in_spatial)))
    gt = ctx.op("Transpose", g, perm=[1, 0] + spatial)
    r = ctx.op("Conv", xt, gt, strides=dilations, dilations=strides, pads=list(pb) + list(pe), group=group)
    rs = ctx.shape_of(r)
    have = [d if isinstance(d, int) else 2**62 for d in rs[2:]] if rs is not None else [2**62] * nd
    r = _fit_spatial(ctx, r, have, list(kernel))
    return ctx.op("Transpose", r, perm=[1, 0] + spatial)


def _bias_grad(ctx, g):
    return ctx.op("ReduceSum", g, ctx.ints([0] + list(range(2, ctx.rank(g)))), keepdims=0)


def _conv_grad(ctx, node, dys):
    x, w = node.inputs[:2]
    g = dys[0]
    spatial = _static_spatial(ctx, node, x)
    ws = ctx.static_shape(w)
    kernel = _kernel_of(node, ws)
    outs, strides, dilations, pb, pe = geometry(node, spatial, kernel)
    group = node.attrs["group"]
    dx = conv_input_grad(ctx, g, w, spatial, kernel, outs, strides, dilations, pb, group)
    dw = conv_weight_grad(ctx, x, g, ctx.shape_of(x)[1], spatial, kernel, strides, dilations, pb, pe, group)
    grads = [dx, dw]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        grads.append(_bias_grad(ctx, g))
    return grads


def _convtranspose_grad(ctx, node, dys):
    """ConvTranspose is the adjoint of a Conv: y = crop(full), with full = Conv^T x; so dx = Conv(pad(g)) and
    dw is that Conv's weight gradient with the roles of x and g exchanged."""
    x, w = node.inputs[:2]
    g = dys[0]
    ins = _static_spatial(ctx, node, x)
    ws = ctx.static_shape(w)
    kernel = _kernel_of(node, ws)
    outs, begins, strides, dilations = convtranspose_pads(node, ins, kernel)
    opad = _spatial_attr(node, "output_padding", len(kernel), 0)
    full = [s * (i - 1) + p + (k - 1) * d + 1 for i, s, p, k, d in zip(ins, strides, opad, kernel, dilations)]
    nd = len(kernel)
    ends = [f - b - o for f, b, o in zip(full, begins, outs)]
    g_full = ctx.op("Pad", g, ctx.ints([0, 0] + list(begins) + [0, 0] + ends)) if any(begins) or any(ends) else g
    group = node.attrs["group"]
    dx = ctx.op("Conv", g_full, w, strides=strides, dilations=dilations, pads=[0] * (2 * nd), group=group)
    dx = _fit_spatial(ctx, dx, [(f - (k - 1) * d - 1) // s + 1 for f, k, d, s in zip(full, kernel, dilations, strides)],
                      ins)
    dw = conv_weight_grad(ctx, g_full, x, ws[1] * group, full, kernel, strides, dilations, [0] * nd, [0] * nd,
                          group)
    grads = [dx, dw]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        grads.append(_bias_grad(ctx, g))
    return grads


def _maxpool_grad(ctx, node, dys):
    """Each output's gradient goes to the input element its Indices output names (flat, row-major)."""
    x = node.inputs[0]
    if node.attrs["storage_order"] != 0:
        from ..errors import GradientError, node_label

        raise GradientError(f"{node_label(node)}: no gradient with storage_order=1 (column-major indices)")
    idx = ctx.output(node, 1)
    slots = ctx.zeros_like(ctx.op("Reshape", x, ctx.ints([-1])))
    dx = ctx.op("ScatterElements", slots, ctx.op("Reshape", idx, ctx.ints([-1])),
                ctx.op("Reshape", dys[0], ctx.ints([-1])), axis=0, reduction="add")
    return [ctx.reshape_like(dx, x)]


def _avgpool_grad(ctx, node, dys):
    """Each output's gradient, divided by its window's count, is spread over the window: a depthwise
    ConvTranspose with a kernel of ones."""
    x = node.inputs[0]
    spatial = _static_spatial(ctx, node, x)
    channels = ctx.shape_of(x)[1]
    kernel = list(node.attrs["kernel_shape"])
    outs, strides, dilations, pb, pe = geometry(node, spatial, kernel, bool(node.attrs["ceil_mode"]))
    count = avgpool_counts(kernel, outs, strides, dilations, pb, pe, spatial, bool(node.attrs["count_include_pad"]))
    g = ctx.op("Div", dys[0], ctx.const(count, like=x))
    ones = ctx.const(np.ones([channels, 1] + kernel), like=x)
    return [conv_input_grad(ctx, g, ones, spatial, kernel, outs, strides, dilations, pb, channels)]


def _lppool_parts(ctx, node):
    """LpPool from differentiable ops: (sum over the window of |x|^p)^(1/p), the sum as an AveragePool."""
    x = node.inputs[0]
    p = node.attrs["p"]
    kernel = list(node.attrs["kernel_shape"])
    attrs = {k: node.attrs[k] for k in ("auto_pad", "dilations", "pads", "strides", "ceil_mode") if k in node.attrs}
    powered = ctx.op("Pow", ctx.op("Abs", x), ctx.scalar(p, x))
    mean = ctx.op("AveragePool", powered, kernel_shape=kernel, count_include_pad=1, **attrs)
    total = ctx.op("Mul", mean, ctx.scalar(math.prod(kernel), x))
    return [ctx.op("Pow", total, ctx.scalar(1.0 / p, x))]


def _global_lp_parts(ctx, node):
    x = node.inputs[0]
    p = node.attrs["p"]
    axes = ctx.ints(range(2, ctx.rank(x)))
    total = ctx.op("ReduceSum", ctx.op("Pow", ctx.op("Abs", x), ctx.scalar(p, x)), axes, keepdims=1)
    return [ctx.op("Pow", total, ctx.scalar(1.0 / p, x))]


def _global_avg_grad(ctx, node, dys):
    x, y = node.inputs[0], node.outputs[0]
    return [ctx.op("Div", ctx.expand_like(dys[0], x), ctx.op("Div", ctx.size(x, like=x), ctx.size(y, like=x)))]


def _global_max_grad(ctx, node, dys):
    x, y = node.inputs[0], node.outputs[0]
    mask = ctx.op("Cast", ctx.op("Equal", x, y), to=ctx.dtype(x).value)
    count = ctx.op("ReduceSum", mask, ctx.ints(range(2, ctx.rank(x))), keepdims=1)
    return [ctx.op("Mul", dys[0], ctx.op("Div", mask, count))]


set_grads({
    "Conv": _conv_grad,
    "ConvTranspose": _convtranspose_grad,
    "MaxPool": _maxpool_grad,
    "AveragePool": _avgpool_grad,
    "LpPool": lambda ctx, node, dys: ctx.by_decomposition(node, dys, _lppool_parts),
    "GlobalAveragePool": _global_avg_grad,
    "GlobalMaxPool": _global_max_grad,
    "GlobalLpPool": lambda ctx, node, dys: ctx.by_decomposition(node, dys, _global_lp_parts),
}, {
    "ConvInteger": "it works on integers only",
})
set_facts(
    value_sized=("MaxUnpool", "Col2Im"),
    weight_inputs={"Conv": {1, 2}, "ConvTranspose": {1, 2}},
)
