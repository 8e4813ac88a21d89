"""Resampling operators: Resize, Upsample, GridSample and AffineGrid."""
from __future__ import annotations

import math

import numpy as np

from ..errors import node_label
from ..ir import Graph, Node
from .common import attr_to_input, family_register, normalize_axis, route_back_grad, tt
from .registry import Attr, Kind, set_facts, set_grads
from .symbolic import as_dim, fmt_shape, input_length, merge_dim, raise_at, sym_or_unknown

FAMILY = "resize"


_reg = family_register(FAMILY)


# ---- Resize, Upsample ------------------------------------------------------------------------------
def _cubic_kernel(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, roi) -> np.ndarray:
    """Where each output index falls in input coordinates, for one axis."""
    y = np.arange(out_len, dtype=np.float64)
    length = scale * in_len  # the resized length before rounding
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / length)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if length > 1 else np.full(out_len, -0.5)
    if mode == "align_corners":
        return y * (in_len - 1) / (length - 1) if length != 1 else np.zeros(out_len)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":  # Resize-11 only
        return (y + 0.5) / scale
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        if length > 1:
            x = y * (hi - lo) * (in_len - 1) / (length - 1)
        else:
            x = np.full(out_len, (hi - lo) * (in_len - 1) / 2)
        return x + lo * (in_len - 1)
    raise ValueError(f"unknown coordinate_transformation_mode '{mode}'")


def _axis_taps(attrs, x: np.ndarray, in_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Input indices [out, taps] and their weights [out, taps] of one axis's interpolation."""
    mode = attrs["mode"]
    if mode == "nearest":
        nm = attrs["nearest_mode"]
        if nm == "round_prefer_floor":
            i = np.ceil(x - 0.5)
        elif nm == "round_prefer_ceil":
            i = np.floor(x + 0.5)
        elif nm == "floor":
            i = np.floor(x)
        elif nm == "ceil":
            i = np.ceil(x)
        else:
            raise ValueError(f"unknown nearest_mode '{nm}'")
        return np.clip(i, 0, in_len - 1).astype(np.int64)[:, None], np.ones((x.size, 1))
    support = 1 if mode == "linear" else 2
    s = min(scale, 1.0) if attrs["antialias"] else 1.0
    first = math.floor(-support / s) + 1
    base = np.ceil(x) - 1  # the tap left of x, with x itself counted as right of it when integral
    offsets = np.arange(first, 2 - first)
    idx = base[:, None] + offsets[None, :]
    dist = (idx - x[:, None]) * s
    if mode == "linear":
        w = np.clip(1 - np.abs(dist), 0, None)
    else:
        w = _cubic_kernel(dist, attrs["cubic_coeff_a"])
    if attrs["antialias"]:
        w = w / w.sum(axis=1, keepdims=True)
    if attrs["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, in_len - 1).astype(np.int64), w


def _resize_plan(node, shape, roi, scales, sizes):
    """Per-axis (scale, output size, roi) of a Resize node on an input of ``shape``."""
    r = len(shape)
    attrs = node.attrs
    axes = attrs.get("axes")
    axes = list(range(r)) if axes is None else [a + r if a < 0 else a for a in axes]
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and sizes.size == 0:
        sizes = None
    if (scales is None) == (sizes is None):
        raise_at(node, "exactly one of scales and sizes must be given")
    scale = [1.0] * r
    out = list(shape)
    if scales is not None:
        sc = [float(v) for v in scales.reshape(-1)]
        if len(sc) != len(axes):
            raise_at(node, f"scales has {len(sc)} entries for {len(axes)} axes")
        for a, v in zip(axes, sc):
            scale[a] = v
            out[a] = int(shape[a] * v)
    else:
        sz = [int(v) for v in sizes.reshape(-1)]
        if len(sz) != len(axes):
            raise_at(node, f"sizes has {len(sz)} entries for {len(axes)} axes")
        policy = attrs["keep_aspect_ratio_policy"]
        ratios = [t / shape[a] for a, t in zip(axes, sz)]
        if policy == "stretch":
            for a, t, q in zip(axes, sz, ratios):
                scale[a], out[a] = q, t
        else:
            q = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                scale[a] = q
                out[a] = int(q * shape[a] + 0.5)
    rois = [(0.0, 1.0)] * r
    if roi is not None and roi.size:
        rv = roi.reshape(-1).astype(np.float64)
        k = len(axes)
        if rv.size != 2 * k:
            raise_at(node, f"roi has {rv.size} entries, expected {2 * k}")
        for j, a in enumerate(axes):
            rois[a] = (rv[j], rv[j + k])
    return axes, scale, out, rois


def _eval_resize(node, x, roi=None, scales=None, sizes=None):
    attrs = node.attrs
    axes, scale, out_shape, rois = _resize_plan(node, x.shape, roi, scales, sizes)
    ctm = attrs["coordinate_transformation_mode"]
    y = x.astype(np.float64) if attrs["mode"] != "nearest" else x
    for a in axes:
        if out_shape[a] == x.shape[a] and scale[a] == 1.0 and ctm != "tf_crop_and_resize":
            continue
        coords = _source_coords(ctm, out_shape[a], x.shape[a], scale[a], rois[a])
        idx, w = _axis_taps(attrs, coords, x.shape[a], scale[a])
        if attrs["mode"] == "nearest":
            y = np.take(y, idx[:, 0], axis=a)
        else:
            taps = np.take(y, idx.reshape(-1), axis=a)
            taps = taps.reshape(y.shape[:a] + idx.shape + y.shape[a + 1:])
            y = np.einsum(taps, list(range(taps.ndim)), w, [a, a + 1],
                          [k for k in range(taps.ndim) if k != a + 1])
        if ctm == "tf_crop_and_resize":
            outside = (coords < 0) | (coords > x.shape[a] - 1)
            if outside.any():
                y = y.astype(np.float64) if y.dtype != np.float64 else y
                mask = outside.reshape([-1 if k == a else 1 for k in range(x.ndim)])
                y = np.where(mask, attrs["extrapolation_value"], y)
    if y.dtype == x.dtype:
        return y
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(x.dtype)
    return y.astype(x.dtype)


#: The values each string attribute of Resize may take (the operator's specification, opsets 10-19).
RESIZE_CHOICES = {
    "mode": ("nearest", "linear", "cubic"),
    "coordinate_transformation_mode": ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                       "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"),
    "nearest_mode": ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"),
    "keep_aspect_ratio_policy": ("stretch", "not_larger", "not_smaller"),
}


def _infer_resize(ctx):
    for name, choices in RESIZE_CHOICES.items():
        value = ctx.attr(name)
        if value is not None and value not in choices:
            ctx.fail(f"attribute {name}='{value}' is not one of {', '.join(choices)}")
    s, dt = ctx.shape(0), ctx.dtype(0)
    if s is None:
        return [tt(dt, None)]
    r = len(s)
    axes = ctx.attr("axes")
    axes = list(range(r)) if axes is None else [normalize_axis(ctx, a, r, "axes entry") for a in axes]
    if len(set(axes)) != len(axes):
        ctx.fail(f"axes {ctx.attr('axes')} repeat an axis")
    scales = ctx.const(2) if ctx.has_input(2) else None
    sizes = ctx.const(3) if ctx.has_input(3) else None

    def given(i: int, c) -> bool | None:
        """Whether input i holds values (True), is absent or empty (False), or cannot be told (None)."""
        if not ctx.has_input(i):
            return False
        n = c.size if c is not None else input_length(ctx, i)
        return None if n is None else n > 0

    scales_given, sizes_given = given(2, scales), given(3, sizes)
    if scales_given and sizes_given:
        ctx.fail("give scales or sizes, not both")
    if scales_given is False and sizes_given is False:
        ctx.fail("one of scales and sizes must be given")
    if scales_given is None and sizes_given is None:
        return [tt(dt, [ctx.fresh() if k in axes else d for k, d in enumerate(s)])]
    sizes_given = sizes_given or scales_given is False
    out = list(s)
    if sizes_given:
        target = sym_or_unknown(ctx, 3)
        if target is not None and len(target) != len(axes):
            ctx.fail(f"sizes has {len(target)} entries for {len(axes)} axes")
        if ctx.attr("keep_aspect_ratio_policy") != "stretch":
            if sizes is not None and all(isinstance(s[a], int) for a in axes):
                _, _, out, _ = _resize_plan(ctx.node, s, None, None, sizes)
            else:
                out = [ctx.fresh() if k in axes else d for k, d in enumerate(s)]
        else:
            for j, a in enumerate(axes):
                out[a] = ctx.fresh() if target is None else as_dim(ctx, target[j])
    else:
        sc = None if scales is None else [float(v) for v in scales.reshape(-1)]
        if sc is not None and len(sc) != len(axes):
            ctx.fail(f"scales has {len(sc)} entries for {len(axes)} axes")
        for j, a in enumerate(axes):
            if sc is None:
                out[a] = ctx.fresh()
            elif sc[j] <= 0:
                ctx.fail(f"scales must be positive, got {sc}")
            elif isinstance(s[a], int):
                out[a] = int(s[a] * sc[j])
            elif sc[j] != 1.0:
                out[a] = ctx.fresh()
    return [tt(dt, out)]


_RESIZE_ATTRS = {
    "mode": Attr("string", "nearest"), "coordinate_transformation_mode": Attr("string", "half_pixel"),
    "nearest_mode": Attr("string", "round_prefer_floor"), "cubic_coeff_a": Attr("float", -0.75),
    "exclude_outside": Attr("int", 0), "extrapolation_value": Attr("float", 0.0), "antialias": Attr("int", 0),
    "axes": Attr("ints"), "keep_aspect_ratio_policy": Attr("string", "stretch"),
}


def _upgrade_resize10(node: Node, graph: Graph) -> None:
    """Resize-10 took (X, scales) and sampled like Upsample: asymmetric coordinates, nearest rounds down."""
    node.inputs = [node.inputs[0], None] + node.inputs[1:2]
    node.attrs.setdefault("coordinate_transformation_mode", "asymmetric")
    node.attrs.setdefault("nearest_mode", "floor")


_reg("Resize", _eval_resize, _infer_resize, attrs=_RESIZE_ATTRS, inputs=(1, 4), kind=Kind.OPAQUE,
     upgrades={11: _upgrade_resize10})


def _upsample_attrs(node) -> dict:
    attrs = {k: a.default for k, a in _RESIZE_ATTRS.items()}
    attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                 mode=node.attrs["mode"].replace("bilinear", "linear"))
    return attrs


class _AttrView:
    """A node-like view carrying Resize attributes, so Upsample reuses Resize's kernel."""

    def __init__(self, node, attrs):
        self.attrs = attrs
        self.op_type, self.name, self.source = node.op_type, node.name, getattr(node, "source", None)


def _eval_upsample(node, x, scales):
    return _eval_resize(_AttrView(node, _upsample_attrs(node)), x, None, scales, None)


def _infer_upsample(ctx):
    s = ctx.shape(0)
    sc = ctx.const(1)
    if ctx.attr("mode") not in ("nearest", "linear", "bilinear"):
        ctx.fail(f"mode must be nearest or linear, got '{ctx.attr('mode')}'")
    if s is None:
        return [tt(ctx.dtype(0), None)]
    if sc is None:
        return [tt(ctx.dtype(0), [ctx.fresh() for _ in s])]
    sc = [float(v) for v in sc.reshape(-1)]
    if len(sc) != len(s):
        ctx.fail(f"scales {sc} must have one entry per dim of the input {fmt_shape(s)}")
    return [tt(ctx.dtype(0), [int(d * f) if isinstance(d, int) else d if f == 1 else ctx.fresh()
                              for d, f in zip(s, sc)])]


def _upgrade_upsample(node: Node, graph: Graph) -> None:
    """Upsample-1 had height_scale/width_scale, Upsample-7 a scales attribute; 9 takes scales as input."""
    if "height_scale" in node.attrs or "width_scale" in node.attrs:
        h, w = node.attrs.pop("height_scale", 1.0), node.attrs.pop("width_scale", 1.0)
        node.attrs["scales"] = [1.0, 1.0, h, w]
    attr_to_input("scales", 1, dtype=np.float32)(node, graph)


_reg("Upsample", _eval_upsample, _infer_upsample, attrs={"mode": Attr("string", "nearest")}, inputs=(2, 2),
     kind=Kind.OPAQUE, upgrades={9: _upgrade_upsample})


# ---- GridSample, AffineGrid ---------------------------------------------------------------------
def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold coordinates into [lo, hi] by reflecting at the borders (repeatedly)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    below = lo - x
    above = x - hi
    out = x.copy()
    for d, base, sign in ((below, lo, 1), (above, hi, -1)):
        m = d > 0
        n = np.floor(d / span)
        r = d - n * span
        even = (n % 2) == 0
        val = np.where(even, base + sign * r, (hi if sign == 1 else lo) - sign * r)
        out = np.where(m, val, out)
    return out


def _eval_grid_sample(node, x, grid):
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(node.attrs["mode"], node.attrs["mode"])
    pad = node.attrs["padding_mode"]
    align = node.attrs["align_corners"]
    n, c = x.shape[:2]
    dims = x.shape[2:]
    r = len(dims)
    g = grid.astype(np.float64)
    out_sp = grid.shape[1:-1]
    g = g.reshape(n, -1, r)  # [N, P, r], last axis in (x, y, z) order = reversed dims
    coords, lows, highs = [], [], []
    for k in range(r):
        size = dims[k]
        u = g[..., r - 1 - k]
        pos = (u + 1) / 2 * (size - 1) if align else ((u + 1) * size - 1) / 2
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        if mode == "nearest":
            pos = np.rint(pos)
        outside = (pos < lo) | (pos > hi)
        if pad == "border":
            pos = np.where(outside, np.clip(pos, 0, size - 1), pos)
        elif pad == "reflection":
            pos = np.where(outside, _reflect(pos, lo, hi), pos)
        coords.append(pos)
        lows.append(lo)
        highs.append(hi)

    def fetch_index(i: np.ndarray, k: int):
        """Integer tap index -> (clipped index, validity) under the padding mode."""
        size = dims[k]
        if pad == "zeros":
            return np.clip(i, 0, size - 1), (i >= 0) & (i < size)
        if pad == "border":
            return np.clip(i, 0, size - 1), None
        j = np.trunc(_reflect(i.astype(np.float64), lows[k], highs[k])).astype(np.int64)
        return np.clip(j, 0, size - 1), None

    taps = []  # per dim: list of (index, weight) over the kernel
    for k in range(r):
        pos = coords[k]
        if mode == "nearest":
            taps.append([(pos.astype(np.int64), None)])
            continue
        base = np.floor(pos)
        t = pos - base
        if mode == "linear":
            offs, ws = (0, 1), (1 - t, t)
        else:
            offs = (-1, 0, 1, 2)
            ws = tuple(_cubic_kernel(t - o, -0.75) for o in offs)
        taps.append([(base.astype(np.int64) + o, w) for o, w in zip(offs, ws)])

    xt = np.moveaxis(x, 1, -1)  # [N, D..., C]
    batch = np.arange(n)[:, None]
    acc = np.zeros((n, g.shape[1], c), dtype=np.float64)
    for combo in np.ndindex(*[len(t) for t in taps]):
        index = [batch]
        weight = np.ones((n, g.shape[1]))
        for k, j in enumerate(combo):
            i, w = taps[k][j]
            i, valid = fetch_index(i, k)
            index.append(i)
            if w is not None:
                weight = weight * w
            if valid is not None:
                weight = weight * valid
        acc += xt[tuple(index)] * weight[..., None]
    out = np.moveaxis(acc, -1, 1).reshape((n, c) + tuple(out_sp))
    return out.astype(x.dtype)


def _infer_grid_sample(ctx):
    s, gs = ctx.shape(0), ctx.shape(1)
    if ctx.attr("mode") not in ("linear", "nearest", "cubic", "bilinear", "bicubic"):
        ctx.fail(f"mode must be linear, nearest or cubic, got '{ctx.attr('mode')}'")
    if ctx.attr("padding_mode") not in ("zeros", "border", "reflection"):
        ctx.fail(f"padding_mode must be zeros, border or reflection, got '{ctx.attr('padding_mode')}'")
    if s is None or gs is None:
        return [tt(ctx.dtype(0), None)]
    if len(gs) != len(s) or (isinstance(gs[-1], int) and gs[-1] != len(s) - 2):
        ctx.fail(f"grid {fmt_shape(gs)} must be [N, spatial out..., {len(s) - 2}] for input {fmt_shape(s)}")
    n = merge_dim(ctx, s[0], gs[0], f"batch dims of input {fmt_shape(s)} and grid {fmt_shape(gs)} differ")
    return [tt(ctx.dtype(0), [n, s[1]] + list(gs[1:-1]))]


_reg("GridSample", _eval_grid_sample, _infer_grid_sample, inputs=(2, 2), kind=Kind.OPAQUE,
     attrs={"mode": Attr("string", "linear"), "padding_mode": Attr("string", "zeros"),
            "align_corners": Attr("int", 0)},
     upgrades={20: lambda node, g: node.attrs.update(
         mode={"bilinear": "linear", "bicubic": "cubic"}.get(node.attrs.get("mode", "bilinear"),
                                                            node.attrs.get("mode", "bilinear")))})


def _eval_affine_grid(node, theta, size):
    sz = [int(v) for v in size.reshape(-1)]
    n, spatial = sz[0], sz[2:]
    align = node.attrs["align_corners"]
    axes = []
    for d in spatial:
        if align:
            axes.append(np.linspace(-1.0, 1.0, d) if d > 1 else np.zeros(1))
        else:
            axes.append((2 * np.arange(d) + 1) / d - 1)
    mesh = np.meshgrid(*axes, indexing="ij")  # one array per spatial dim, in (D, H, W) order
    base = np.stack([m.reshape(-1) for m in mesh[::-1]] + [np.ones(mesh[0].size)], axis=-1)  # (x, y, z, 1)
    out = np.einsum("pk,njk->npj", base, theta.astype(np.float64))
    return out.reshape([n] + spatial + [len(spatial)]).astype(theta.dtype)


def _infer_affine_grid(ctx):
    t = ctx.shape(0)
    size = sym_or_unknown(ctx, 1)
    if t is not None and (len(t) != 3 or (isinstance(t[1], int) and t[1] not in (2, 3))):
        ctx.fail(f"theta must be [N, 2, 3] or [N, 3, 4], got {fmt_shape(t)}")
    if size is None:
        r = t[1] if t is not None and isinstance(t[1], int) else None
        return [tt(ctx.dtype(0), None if r is None else [ctx.fresh() for _ in range(r + 2)])]
    if len(size) not in (4, 5):
        ctx.fail(f"size must have 4 or 5 entries, got {len(size)}")
    spatial = [as_dim(ctx, d) for d in size[2:]]
    n = as_dim(ctx, size[0]) if t is None else merge_dim(ctx, t[0], as_dim(ctx, size[0]), "batch of theta and size")
    return [tt(ctx.dtype(0), [n] + spatial + [len(spatial)])]


_reg("AffineGrid", _eval_affine_grid, _infer_affine_grid, attrs={"align_corners": Attr("int", 0)},
     inputs=(2, 2), kind=Kind.OPAQUE)


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext).
def _resize_grad(ctx, node, dys):
    if node.attrs.get("mode") != "nearest":
        from ..errors import GradientError

        raise GradientError(f"{node_label(node)}: Resize in mode '{node.attrs.get('mode')}' has no gradient rule "
                            f"yet (only 'nearest')")
    return route_back_grad(ctx, node, dys)


set_grads({"Resize": _resize_grad, "Upsample": _resize_grad})
set_facts(value_sized=("Resize", "Upsample", "AffineGrid"))
