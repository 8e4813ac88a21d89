"""Normalization operators: Batch/Instance/Layer/Group/RMS/MeanVariance/Lp normalization, LRN and Dropout.

Statistics of low-precision floats (float16, bfloat16) are computed in float32 and the result cast back.
Older opsets are rewritten into the newest form by upgrades: BatchNormalization's ``consumed_inputs``,
``is_test`` and ``spatial``, Dropout's ``ratio`` attribute, GroupNormalization's per-group scale.
"""
from __future__ import annotations

import numpy as np

from ..ir import DType, Graph, Node
from .common import attr_to_input, drop_attrs, normalize_axis, np_axis, tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "norm"

#: Set on Dropout nodes from opset < 10, whose mask output had the element type of the data.
LEGACY_FLOAT_MASK = "legacy_float_mask"
#: Set on GroupNormalization nodes from opset < 21, whose scale and bias hold one entry per group.
LEGACY_GROUP_AFFINE = "legacy_group_affine"


def _work(x: np.ndarray) -> np.ndarray:
    """The array statistics are computed on: float32 for low-precision floats, else x itself."""
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _fmt(shape) -> str:
    return "[" + ",".join(map(str, shape)) + "]" if shape is not None else "[...]"


def _check_float(ctx: InferContext, i: int, what: str) -> None:
    dt = ctx.dtype(i)
    if dt is not None and not dt.is_float:
        ctx.fail(f"{what} (input {i}) must be a floating-point tensor, got {dt}")


def _check_vector(ctx: InferContext, i: int, what: str, size) -> None:
    """Input i must be 1-D of ``size`` entries (a dim; symbols are not compared)."""
    s = ctx.shape(i)
    if s is None:
        return
    if len(s) != 1 or (isinstance(s[0], int) and isinstance(size, int) and s[0] != size):
        ctx.fail(f"{what} (input {i}) must have shape [{size}], got {_fmt(s)}")


def _check_unidirectional(ctx: InferContext, i: int, what: str, target) -> None:
    """Input i must broadcast to ``target`` without changing it (unidirectional broadcasting)."""
    s = ctx.shape(i)
    if s is None or target is None:
        return
    ok = len(s) <= len(target) and all(
        not (isinstance(a, int) and isinstance(b, int)) or a == b or a == 1
        for a, b in zip(s[::-1], target[::-1]))
    if not ok:
        ctx.fail(f"{what} (input {i}) of shape {_fmt(s)} does not broadcast to the input's shape {_fmt(target)}")


# ---- BatchNormalization -------------------------------------------------------------------------
def _per_channel(p: np.ndarray, ndim: int) -> np.ndarray:
    """Align a parameter of shape (C,) or (C, D1, ...) with an input (N, C, D1, ...)."""
    return p.reshape(p.shape + (1,) * (ndim - 1 - p.ndim)) if ndim >= 2 else p


#: Elements per block when BatchNormalization's two passes (multiply, add) run block by block,
#: so that the second pass finds the block still in cache.
_AFFINE_BLOCK = 1 << 16


def _affine_per_channel(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x * a + b with a, b of shape (C,) (or (C, D1, ...)) aligned with axis 1 of x."""
    nd = x.ndim
    if nd < 3 or a.ndim != 1 or x.size < 4 * _AFFINE_BLOCK or not x.flags.c_contiguous:
        y = np.multiply(x, _per_channel(a, nd))
        y += _per_channel(b, nd)
        return y
    rows = x.shape[0] * x.shape[1]
    x2 = x.reshape(rows, -1)
    y = np.empty_like(x)
    y2 = y.reshape(rows, -1)
    a2, b2 = np.tile(a, x.shape[0])[:, None], np.tile(b, x.shape[0])[:, None]
    step = max(1, _AFFINE_BLOCK // x2.shape[1])
    for i in range(0, rows, step):
        blk = y2[i:i + step]
        np.multiply(x2[i:i + step], a2[i:i + step], out=blk)
        blk += b2[i:i + step]
    return y


def _batchnorm_eval(node: Node, x, scale, bias, mean, var):
    eps = node.attrs["epsilon"]
    nd = x.ndim
    if not node.attrs["training_mode"]:
        # y = x * a + b with a = scale / sqrt(var + eps), b = bias - mean * a: two passes over x.
        a = _work(scale) / np.sqrt(_work(var) + eps)
        b = _work(bias) - _work(mean) * a
        return _affine_per_channel(x, a.astype(x.dtype, copy=False), b.astype(x.dtype, copy=False))
    momentum = node.attrs["momentum"]
    axes = (0,) + tuple(range(1 + scale.ndim, nd))  # all axes the parameters do not cover
    w = _work(x)
    bmean = np.mean(w, axis=axes)
    bvar = np.mean(np.square(w - _per_channel(bmean, nd)), axis=axes)
    a = _work(scale) / np.sqrt(bvar + eps)
    b = _work(bias) - bmean * a
    y = (w * _per_channel(a, nd) + _per_channel(b, nd)).astype(x.dtype, copy=False)
    run_mean = (mean * momentum + bmean * (1 - momentum)).astype(mean.dtype, copy=False)
    run_var = (var * momentum + bvar * (1 - momentum)).astype(var.dtype, copy=False)
    # Outputs 3 and 4 exist only in models from opset < 14 (saved_mean, saved_var): the batch statistics.
    return y, run_mean, run_var, bmean.astype(mean.dtype, copy=False), bvar.astype(var.dtype, copy=False)


def infer_batchnorm(ctx: InferContext) -> list:
    for i, what in enumerate(("X", "scale", "B", "input_mean", "input_var")):
        _check_float(ctx, i, what)
    shape = ctx.shape(0)
    if shape is not None and len(shape) < 1:
        ctx.fail("X (input 0) must have rank >= 1, got a scalar")
    c = (shape[1] if len(shape) > 1 else 1) if shape is not None else None
    for i, what in enumerate(("scale", "B", "input_mean", "input_var")):
        s = ctx.shape(i + 1)
        if s is not None and len(s) == 1 and c is not None:
            _check_vector(ctx, i + 1, what, c)
        elif s is not None and shape is not None and len(s) > 1:  # per-activation statistics (old spatial=0)
            if len(s) != len(shape) - 1 or any(isinstance(a, int) and isinstance(b, int) and a != b
                                               for a, b in zip(s, shape[1:])):
                ctx.fail(f"{what} (input {i + 1}) must have shape [{c}] (or {_fmt(shape[1:])} per activation), "
                         f"got {_fmt(s)}")
    stat = ctx.shape(3) if ctx.shape(3) is not None else (None if c is None else (c,))
    # outputs 3 and 4 (saved_mean, saved_var) exist only in models from opset < 14
    return [tt(ctx.dtype(0), shape), tt(ctx.dtype(3), stat), tt(ctx.dtype(4), stat), tt(ctx.dtype(3), stat),
            tt(ctx.dtype(4), stat)]


def _upgrade_batchnorm_is_test(node: Node, graph: Graph) -> None:
    """Opsets 1 and 6: ``is_test`` chose the mode (when absent, the outputs asked for decide, as from opset 7)."""
    node.attrs.pop("consumed_inputs", None)
    if "is_test" in node.attrs:
        node.attrs["training_mode"] = int(not node.attrs.pop("is_test"))


def _upgrade_batchnorm_outputs(node: Node, graph: Graph) -> None:
    """Opsets 7 and 9: training mode was implied by asking for the statistics outputs."""
    if "training_mode" not in node.attrs and sum(v is not None for v in node.outputs) > 1:
        node.attrs["training_mode"] = 1


register(OpDef("BatchNormalization", eval=_batchnorm_eval, infer=infer_batchnorm,
               attrs={"epsilon": Attr("float", 1e-5), "momentum": Attr("float", 0.9),
                      "training_mode": Attr("int", 0)},
               kind=Kind.OPAQUE, inputs=(5, 5), outputs=(1, 5), family=FAMILY,
               # ``spatial`` = 0 (opset < 9) is read from the parameters' shape (C, D1, ...), so it drops.
               upgrades={7: _upgrade_batchnorm_is_test, 9: drop_attrs("spatial"), 14: _upgrade_batchnorm_outputs},
               doc="Batch normalization; outputs 3-4 (saved mean/var) only for models from opset < 14."))


# ---- InstanceNormalization ----------------------------------------------------------------------
def _instancenorm_eval(node: Node, x, scale, bias):
    eps = node.attrs["epsilon"]
    w = _work(x)
    axes = tuple(range(2, x.ndim))
    mean = np.mean(w, axis=axes, keepdims=True)
    d = w - mean
    inv = 1.0 / np.sqrt(np.mean(np.square(d), axis=axes, keepdims=True) + eps)
    inv = inv.astype(w.dtype, copy=False)
    y = d * (inv * _per_channel(_work(scale), x.ndim)) + _per_channel(_work(bias), x.ndim)
    return y.astype(x.dtype, copy=False)


def infer_instancenorm(ctx: InferContext) -> list:
    for i, what in enumerate(("input", "scale", "B")):
        _check_float(ctx, i, what)
    shape = ctx.shape(0)
    if shape is not None:
        if len(shape) < 2:
            ctx.fail(f"input must have shape (N, C, D1, ...), got rank {len(shape)}")
        _check_vector(ctx, 1, "scale", shape[1])
        _check_vector(ctx, 2, "B", shape[1])
    return [tt(ctx.dtype(0), shape)]


register(OpDef("InstanceNormalization", eval=_instancenorm_eval, infer=infer_instancenorm,
               attrs={"epsilon": Attr("float", 1e-5)}, kind=Kind.OPAQUE, inputs=(3, 3), family=FAMILY))


# ---- LayerNormalization / RMSNormalization ------------------------------------------------------
def _stash(x: np.ndarray, stash_type: int) -> np.ndarray:
    """The input in the precision ``stash_type`` asks for (never below the input's own precision)."""
    try:
        st = DType(stash_type).np
    except ValueError:
        raise ValueError(f"stash_type {stash_type} is not an element type code") from None
    return x.astype(np.promote_types(x.dtype, st), copy=False)


def _layernorm_eval(node: Node, x, scale, bias=None):
    axis = np_axis(node.attrs["axis"], x.ndim)
    axes = tuple(range(axis, x.ndim))
    w = _stash(x, node.attrs["stash_type"])
    mean = np.mean(w, axis=axes, keepdims=True)
    d = w - mean
    inv = (1.0 / np.sqrt(np.mean(np.square(d), axis=axes, keepdims=True) + node.attrs["epsilon"]))
    inv = inv.astype(w.dtype, copy=False)
    y = (d * inv).astype(x.dtype, copy=False) * scale
    if bias is not None:
        y = y + bias
    u = DType(node.attrs["stash_type"]).np
    return y.astype(x.dtype, copy=False), mean.astype(u, copy=False), inv.astype(u, copy=False)


def _infer_last_axes_norm(ctx: InferContext, params: tuple[str, ...]) -> tuple:
    _check_float(ctx, 0, "X")
    shape = ctx.shape(0)
    axis = None
    if shape is not None:
        axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), max(len(shape), 1))
        for i, what in enumerate(params):
            if ctx.has_input(i + 1):
                _check_unidirectional(ctx, i + 1, what, shape)
    st = ctx.attr("stash_type", 1)
    try:
        u = DType(st)
    except ValueError:
        ctx.fail(f"attribute 'stash_type' must be an element type code, got {st}")
    return shape, axis, u


def infer_layernorm(ctx: InferContext) -> list:
    shape, axis, u = _infer_last_axes_norm(ctx, ("Scale", "B"))
    stat = None if shape is None else tuple(d if i < axis else 1 for i, d in enumerate(shape))
    return [tt(ctx.dtype(0), shape), tt(u, stat), tt(u, stat)]


register(OpDef("LayerNormalization", eval=_layernorm_eval, infer=infer_layernorm,
               attrs={"axis": Attr("int", -1), "epsilon": Attr("float", 1e-5), "stash_type": Attr("int", 1)},
               kind=Kind.OPAQUE, inputs=(2, 3), outputs=(1, 3), family=FAMILY))


def _rmsnorm_eval(node: Node, x, scale):
    axis = np_axis(node.attrs["axis"], x.ndim)
    axes = tuple(range(axis, x.ndim))
    w = _stash(x, node.attrs["stash_type"])
    inv = 1.0 / np.sqrt(np.mean(np.square(w), axis=axes, keepdims=True) + node.attrs["epsilon"])
    y = (w * inv.astype(w.dtype, copy=False)).astype(x.dtype, copy=False)
    return (y * scale).astype(scale.dtype, copy=False)


def infer_rmsnorm(ctx: InferContext) -> list:
    shape, _, _ = _infer_last_axes_norm(ctx, ("scale",))
    return [tt(ctx.dtype(1) or ctx.dtype(0), shape)]


register(OpDef("RMSNormalization", eval=_rmsnorm_eval, infer=infer_rmsnorm,
               attrs={"axis": Attr("int", -1), "epsilon": Attr("float", 1e-5), "stash_type": Attr("int", 1)},
               kind=Kind.OPAQUE, inputs=(2, 2), family=FAMILY))


# ---- GroupNormalization -------------------------------------------------------------------------
def _groupnorm_eval(node: Node, x, scale, bias):
    g = node.attrs["num_groups"]
    n, c = x.shape[0], x.shape[1]
    if g <= 0 or c % g:
        raise ValueError(f"num_groups {g} must divide the number of channels {c}")
    w = _stash(x, node.attrs["stash_type"]).reshape(n, g, -1)
    mean = np.mean(w, axis=2, keepdims=True)
    d = w - mean
    inv = (1.0 / np.sqrt(np.mean(np.square(d), axis=2, keepdims=True) + node.attrs["epsilon"]))
    y = (d * inv.astype(w.dtype, copy=False)).reshape(x.shape).astype(x.dtype, copy=False)
    if node.attrs.get(LEGACY_GROUP_AFFINE):
        scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
    return (y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)).astype(x.dtype, copy=False)


def infer_groupnorm(ctx: InferContext) -> list:
    for i, what in enumerate(("X", "scale", "bias")):
        _check_float(ctx, i, what)
    g = ctx.attr("num_groups")
    if g is None:
        ctx.fail("required attribute 'num_groups' (int) is missing")
    shape = ctx.shape(0)
    if shape is not None:
        if len(shape) < 2:
            ctx.fail(f"X must have shape (N, C, D1, ...), got rank {len(shape)}")
        c = shape[1]
        if isinstance(c, int) and (g <= 0 or c % g):
            ctx.fail(f"num_groups {g} must divide the number of channels {c}")
        size = g if ctx.attr(LEGACY_GROUP_AFFINE) else c
        _check_vector(ctx, 1, "scale", size)
        _check_vector(ctx, 2, "bias", size)
    return [tt(ctx.dtype(0), shape)]


def _upgrade_groupnorm_affine(node: Node, graph: Graph) -> None:
    """Before opset 21, scale and bias had one entry per group rather than per channel."""
    node.attrs[LEGACY_GROUP_AFFINE] = 1


register(OpDef("GroupNormalization", eval=_groupnorm_eval, infer=infer_groupnorm,
               attrs={"num_groups": Attr("int", REQUIRED), "epsilon": Attr("float", 1e-5),
                      "stash_type": Attr("int", 1), LEGACY_GROUP_AFFINE: Attr("int", internal=True)},
               kind=Kind.OPAQUE, inputs=(3, 3), upgrades={21: _upgrade_groupnorm_affine}, family=FAMILY))


# ---- MeanVarianceNormalization, LpNormalization, LRN --------------------------------------------
def _mvn_eval(node: Node, x):
    axes = tuple(np_axis(a, x.ndim) for a in node.attrs["axes"])
    w = _work(x)
    mean = np.mean(w, axis=axes, keepdims=True)
    d = w - mean
    std = np.sqrt(np.mean(np.square(d), axis=axes, keepdims=True))
    return (d / (std + 1e-9)).astype(x.dtype, copy=False)


def infer_mvn(ctx: InferContext) -> list:
    _check_float(ctx, 0, "X")
    shape = ctx.shape(0)
    if shape is not None:
        axes = [normalize_axis(ctx, int(a), len(shape), "axes entry") for a in ctx.attr("axes", [0, 2, 3])]
        if len(set(axes)) != len(axes):
            ctx.fail(f"axes {ctx.attr('axes')} name an axis twice")
    return [tt(ctx.dtype(0), shape)]


register(OpDef("MeanVarianceNormalization", eval=_mvn_eval, infer=infer_mvn,
               attrs={"axes": Attr("ints", [0, 2, 3])}, kind=Kind.OPAQUE, inputs=(1, 1), family=FAMILY))


def _lpnorm_eval(node: Node, x):
    axis = np_axis(node.attrs["axis"], x.ndim)
    p = node.attrs["p"]
    w = _work(x)
    if p == 1:
        norm = np.sum(np.abs(w), axis=axis, keepdims=True)
    elif p == 2:
        norm = np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))
    else:
        raise ValueError(f"attribute p must be 1 or 2, got {p}")
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(norm == 0, 0, w / norm)  # a zero norm gives zero, not NaN
    return y.astype(x.dtype, copy=False)


def infer_lpnorm(ctx: InferContext) -> list:
    _check_float(ctx, 0, "input")
    if ctx.attr("p", 2) not in (1, 2):
        ctx.fail(f"attribute 'p' must be 1 or 2, got {ctx.attr('p')}")
    shape = ctx.shape(0)
    if shape is not None:
        normalize_axis(ctx, int(ctx.attr("axis", -1)), max(len(shape), 1))
    return [tt(ctx.dtype(0), shape)]


register(OpDef("LpNormalization", eval=_lpnorm_eval, infer=infer_lpnorm,
               attrs={"axis": Attr("int", -1), "p": Attr("int", 2)}, kind=Kind.OPAQUE, inputs=(1, 1), family=FAMILY))


def _lrn_eval(node: Node, x):
    size = node.attrs["size"]
    alpha, beta, bias = node.attrs["alpha"], node.attrs["beta"], node.attrs["bias"]
    w = _work(x)
    sq = np.square(w)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2  # window [c - lo, c + hi]
    total = np.zeros_like(sq)
    # One shifted add per window position; positions c or more channels away see only the zero padding.
    for off in range(-min(lo, c - 1), min(hi, c - 1) + 1):
        if off >= 0:
            total[:, :c - off] += sq[:, off:]
        else:
            total[:, -off:] += sq[:, :c + off]
    y = w / np.power(bias + (alpha / size) * total, beta)
    return y.astype(x.dtype, copy=False)


def infer_lrn(ctx: InferContext) -> list:
    _check_float(ctx, 0, "X")
    if ctx.attr("size") is not None and ctx.attr("size") <= 0:
        ctx.fail(f"attribute 'size' must be positive, got {ctx.attr('size')}")
    shape = ctx.shape(0)
    if shape is not None and len(shape) < 2:
        ctx.fail(f"X must have shape (N, C, D1, ...), got rank {len(shape)}")
    return [tt(ctx.dtype(0), shape)]


register(OpDef("LRN", eval=_lrn_eval, infer=infer_lrn,
               attrs={"size": Attr("int", REQUIRED), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
                      "bias": Attr("float", 1.0)},
               kind=Kind.OPAQUE, inputs=(1, 1), family=FAMILY))


# ---- Dropout ------------------------------------------------------------------------------------
def _dropout_eval(node: Node, x, ratio=None, training_mode=None):
    r = 0.5 if ratio is None else float(np.asarray(ratio).reshape(-1)[0])
    training = training_mode is not None and bool(np.asarray(training_mode).reshape(-1)[0])
    mask_dtype = x.dtype if node.attrs.get(LEGACY_FLOAT_MASK) else np.bool_
    if not training or r == 0:
        return x, np.ones(x.shape, dtype=mask_dtype)
    if not 0 <= r <= 1:
        raise ValueError(f"ratio must lie in [0, 1], got {r}")
    seed = node.attrs.get("seed")
    # With a seed, the draw is NumPy's legacy generator seeded by it, as ONNX's test cases were made.
    u = np.random.RandomState(seed).uniform(0, 1, x.shape) if seed is not None else \
        np.random.default_rng().random(x.shape)
    mask = u >= r
    scale = x.dtype.type(0 if r == 1 else 1.0 / (1.0 - r))
    return (x * mask * scale).astype(x.dtype, copy=False), mask.astype(mask_dtype, copy=False)


def infer_dropout(ctx: InferContext) -> list:
    _check_float(ctx, 0, "data")
    _check_float(ctx, 1, "ratio")
    for i, what in ((1, "ratio"), (2, "training_mode")):
        s = ctx.shape(i)
        if s is not None and (len(s) > 1 or (len(s) == 1 and isinstance(s[0], int) and s[0] != 1)):
            ctx.fail(f"{what} (input {i}) must be a scalar, got shape {_fmt(s)}")
    if ctx.dtype(2) is not None and ctx.dtype(2) is not DType.bool:
        ctx.fail(f"training_mode (input 2) must be bool, got {ctx.dtype(2)}")
    mask = ctx.dtype(0) if ctx.attr(LEGACY_FLOAT_MASK) else DType.bool
    return [tt(ctx.dtype(0), ctx.shape(0)), tt(mask, ctx.shape(0))]


def _upgrade_dropout_is_test(node: Node, graph: Graph) -> None:
    """Opsets 1 and 6: ``is_test`` = 0 asked for training mode. Like ONNX's version converter, an absent
    ``is_test`` is read as inference (the converter refuses an explicit 0; graphc runs it as training)."""
    node.attrs.pop("consumed_inputs", None)
    if "is_test" in node.attrs and not node.attrs.pop("is_test"):
        ratio = node.attrs.pop("ratio", 0.5)
        node.inputs[1:] = [graph.add_constant(np.array(ratio, np.float32), f"{node.name}_ratio"),
                           graph.add_constant(np.array(True), f"{node.name}_training_mode")]
    node.attrs.pop("is_test", None)


def _upgrade_dropout_mask(node: Node, graph: Graph) -> None:
    node.attrs[LEGACY_FLOAT_MASK] = 1


def _upgrade_dropout_ratio(node: Node, graph: Graph) -> None:
    """Before opset 12 the ratio was an attribute, only used in training (which only opset < 7 could ask for)."""
    if "ratio" in node.attrs:
        attr_to_input("ratio", 1, np.float32)(node, graph)


register(OpDef("Dropout", eval=_dropout_eval, infer=infer_dropout,
               attrs={"seed": Attr("int"), LEGACY_FLOAT_MASK: Attr("int", internal=True)},
               kind=Kind.OPAQUE, inputs=(1, 3), outputs=(1, 2), family=FAMILY,
               upgrades={7: _upgrade_dropout_is_test, 10: _upgrade_dropout_mask, 12: _upgrade_dropout_ratio}))


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext). Normalizations
# are recomputed from differentiable primitives (ReduceMean, Sub, Mul, Sqrt...) whose rules give the
# gradient, including the terms through the batch statistics; Dropout scales by its recorded mask.
def _aligned(ctx, p, rank: int):
    """A per-channel parameter (C,) or (C, D1, ...) reshaped to broadcast against (N, C, D1, ...)."""
    extra = rank - 1 - ctx.rank(p)
    return ctx.op("Unsqueeze", p, ctx.ints(range(ctx.rank(p), ctx.rank(p) + extra))) if extra > 0 else p


def _normalized(ctx, x, axes, eps: float):
    """(x - mean) / sqrt(var + eps) over ``axes``; returns (normalized, mean, inverse std), stats kept dims."""
    ax = ctx.ints(axes)
    mean = ctx.op("ReduceMean", x, ax, keepdims=1)
    d = ctx.op("Sub", x, mean)
    var = ctx.op("ReduceMean", ctx.op("Mul", d, d), ax, keepdims=1)
    inv = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", var, ctx.scalar(eps, x))))
    return ctx.op("Mul", d, inv), mean, inv, var


def _batchnorm_parts(ctx, node):
    x, scale, bias, mean, var = node.inputs
    rank, eps = ctx.rank(x), node.attrs["epsilon"]
    s, b = _aligned(ctx, scale, rank), _aligned(ctx, bias, rank)
    if not node.attrs["training_mode"]:
        inv = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", _aligned(ctx, var, rank), ctx.scalar(eps, var))))
        xhat = ctx.op("Mul", ctx.op("Sub", x, _aligned(ctx, mean, rank)), inv)
        return [ctx.op("Add", ctx.op("Mul", xhat, s), b)]
    axes = [0] + list(range(1 + ctx.rank(scale), rank))
    xhat, bmean, _, bvar = _normalized(ctx, x, axes, eps)
    m = node.attrs["momentum"]
    bmean, bvar = ctx.reshape_like(bmean, mean), ctx.reshape_like(bvar, var)
    run_mean = ctx.op("Add", ctx.op("Mul", mean, ctx.scalar(m, mean)), ctx.op("Mul", bmean, ctx.scalar(1 - m, mean)))
    run_var = ctx.op("Add", ctx.op("Mul", var, ctx.scalar(m, var)), ctx.op("Mul", bvar, ctx.scalar(1 - m, var)))
    return [ctx.op("Add", ctx.op("Mul", xhat, s), b), run_mean, run_var, bmean, bvar]


def _layernorm_parts(ctx, node):
    x, scale = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    rank = ctx.rank(x)
    axes = list(range(node.attrs["axis"] % rank, rank))
    xhat, mean, inv, _ = _normalized(ctx, x, axes, node.attrs["epsilon"])
    y = ctx.op("Mul", xhat, scale)
    return [y if bias is None else ctx.op("Add", y, bias), mean, inv]


def _rmsnorm_parts(ctx, node):
    x, scale = node.inputs
    rank = ctx.rank(x)
    axes = ctx.ints(range(node.attrs["axis"] % rank, rank))
    ms = ctx.op("ReduceMean", ctx.op("Mul", x, x), axes, keepdims=1)
    inv = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", ms, ctx.scalar(node.attrs["epsilon"], x))))
    return [ctx.op("Mul", ctx.op("Mul", x, inv), scale)]


def _instancenorm_parts(ctx, node):
    x, scale, bias = node.inputs
    rank = ctx.rank(x)
    xhat = _normalized(ctx, x, list(range(2, rank)), node.attrs["epsilon"])[0]
    return [ctx.op("Add", ctx.op("Mul", xhat, _aligned(ctx, scale, rank)), _aligned(ctx, bias, rank))]


def _groupnorm_parts(ctx, node):
    x, scale, bias = node.inputs
    rank, groups = ctx.rank(x), node.attrs["num_groups"]
    grouped = ctx.op("Reshape", x, ctx.ints([0, groups, -1]))
    xhat = ctx.reshape_like(_normalized(ctx, grouped, [2], node.attrs["epsilon"])[0], x)
    if node.attrs.get(LEGACY_GROUP_AFFINE):  # one entry per group: repeat it over the group's channels
        per = ctx.shape_of(x)[1] // groups
        scale, bias = (ctx.op("Reshape", ctx.op("Expand", ctx.op("Unsqueeze", p, ctx.ints([1])),
                                                ctx.ints([groups, per])), ctx.ints([-1])) for p in (scale, bias))
    return [ctx.op("Add", ctx.op("Mul", xhat, _aligned(ctx, scale, rank)), _aligned(ctx, bias, rank))]


def _mvn_parts(ctx, node):
    x = node.inputs[0]
    ax = ctx.ints([a % ctx.rank(x) for a in node.attrs["axes"]])
    d = ctx.op("Sub", x, ctx.op("ReduceMean", x, ax, keepdims=1))
    std = ctx.op("Sqrt", ctx.op("ReduceMean", ctx.op("Mul", d, d), ax, keepdims=1))
    return [ctx.op("Div", d, ctx.op("Add", std, ctx.scalar(1e-9, x)))]


def _lpnorm_parts(ctx, node):
    x = node.inputs[0]
    ax = ctx.ints([node.attrs["axis"] % ctx.rank(x)])
    norm = ctx.op("ReduceL1" if node.attrs["p"] == 1 else "ReduceL2", x, ax, keepdims=1)
    return [ctx.op("Div", x, norm)]


def _lrn_parts(ctx, node):
    """x / (bias + alpha/size * (sum of x^2 over a window of channels))^beta, the window as shifted slices."""
    x = node.inputs[0]
    size, rank = node.attrs["size"], ctx.rank(x)
    c = ctx.shape_of(x)[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = ctx.op("Mul", x, x)
    padded = ctx.op("Pad", sq, ctx.ints([0, lo] + [0] * (rank - 2) + [0, hi] + [0] * (rank - 2)))
    parts = [ctx.op("Slice", padded, ctx.ints([k]), ctx.ints([k + c]), ctx.ints([1])) for k in range(size)]
    total = parts[0] if size == 1 else ctx.op("Sum", *parts)
    base = ctx.op("Add", ctx.op("Mul", total, ctx.scalar(node.attrs["alpha"] / size, x)),
                  ctx.scalar(node.attrs["bias"], x))
    return [ctx.op("Div", x, ctx.op("Pow", base, ctx.scalar(node.attrs["beta"], x)))]


def _dropout_grad(ctx, node, dys):
    x, g = node.inputs[0], dys[0]
    ratio = node.inputs[1] if len(node.inputs) > 1 else None
    training = node.inputs[2] if len(node.inputs) > 2 else None
    none = [None] * (len(node.inputs) - 1)
    if g is None:
        return [None] + none
    if training is None or (training.data is not None and not bool(np.asarray(training.data).reshape(-1)[0])):
        return [g] + none  # inference: the identity
    mask = ctx.op("Cast", ctx.output(node, 1), to=ctx.dtype(x).value)
    if ratio is None or ratio.data is not None:
        r = 0.5 if ratio is None else float(np.asarray(ratio.data).reshape(-1)[0])
        scale = ctx.scalar(0.0 if r == 1 else 1.0 / (1.0 - r), x)
    else:
        r = ctx.op("Reshape", ctx.op("Cast", ratio, to=ctx.dtype(x).value), ctx.ints([]))
        scale = ctx.op("Reciprocal", ctx.op("Sub", ctx.scalar(1.0, x), r))
    dx = ctx.op("Mul", ctx.op("Mul", g, mask), scale)
    if training.data is None:
        dx = ctx.op("Where", training, dx, g)
    return [dx] + none


def _decomposed(build):
    return lambda ctx, node, dys: ctx.by_decomposition(node, dys, build)


set_grads({
    "BatchNormalization": _decomposed(_batchnorm_parts),
    "LayerNormalization": _decomposed(_layernorm_parts),
    "RMSNormalization": _decomposed(_rmsnorm_parts),
    "InstanceNormalization": _decomposed(_instancenorm_parts),
    "GroupNormalization": _decomposed(_groupnorm_parts),
    "MeanVarianceNormalization": _decomposed(_mvn_parts),
    "LpNormalization": _decomposed(_lpnorm_parts),
    "LRN": _decomposed(_lrn_parts),
    "Dropout": _dropout_grad,
})
set_facts(
    nondeterministic=("Dropout",),  # random in training mode
    weight_inputs={"BatchNormalization": {1, 2, 3, 4}, "InstanceNormalization": {1, 2}, "LayerNormalization": {1, 2},
                   "GroupNormalization": {1, 2}, "RMSNormalization": {1}},
)
