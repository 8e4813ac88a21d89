"""Reduction operators: Reduce*, ArgMax/ArgMin, Softmax-like ops, cumulative ops, TopK and the two losses.

Reductions take ``axes`` as an input (the newest opsets); older opsets' ``axes`` attribute is moved to
that input by an upgrade. Softmax, LogSoftmax and Hardmax before opset 13 flattened the input to 2-D
at ``axis`` (default 1): the upgrade keeps that meaning with the ``legacy_coerce_2d`` marker attribute.
"""
from __future__ import annotations

import numpy as np

from ..ir import DType, Graph, Node, TensorType
from .common import attr_to_input, normalize_axis, np_axis, tt
from .registry import Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "reduce"

#: Set on Softmax/LogSoftmax/Hardmax nodes from opset < 13: the op works on the input flattened to
#: 2-D at ``axis`` (all axes from ``axis`` on form one), as those opsets defined it.
LEGACY_COERCE_2D = "legacy_coerce_2d"


def _int_attr(ctx: InferContext, name: str, default: int) -> int:
    v = ctx.attr(name, default)
    return default if v is None else int(v)


# ---- Reduce* ------------------------------------------------------------------------------------
def _reduce_axes(node: Node, x: np.ndarray, axes) -> tuple:
    """The axes to reduce as a sorted tuple.

    Empty axes with ``noop_with_empty_axes`` give ``()``: a reduction over no axis, which still applies
    the elementwise steps of composite reductions (ReduceSumSquare squares, ReduceLogSum takes the log).
    """
    if axes is None or np.size(axes) == 0:
        return () if node.attrs.get("noop_with_empty_axes", 0) else tuple(range(x.ndim))
    out = []
    for a in np.asarray(axes).reshape(-1).tolist():
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"axis {a} is out of range for an input of rank {x.ndim}")
        out.append(a + x.ndim if a < 0 else a)
    if len(set(out)) != len(out):
        raise ValueError(f"axes {np.asarray(axes).tolist()} name an axis twice")
    return tuple(sorted(out))


def _lowest(dtype: np.dtype):
    if dtype == np.bool_:
        return False
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return -np.inf


def _highest(dtype: np.dtype):
    if dtype == np.bool_:
        return True
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return np.inf


def _int_mean(s: np.ndarray, n: int) -> np.ndarray:
    """Integer mean truncated toward zero (as C does), without going through floating point."""
    q = np.abs(s) // n
    return np.where(s < 0, -q, q)


def _float_work(x: np.ndarray) -> np.ndarray:
    """Floats without native NumPy arithmetic (bfloat16, float8) are computed in float32 and cast back.

    float16 stays float16: ONNX's reference (and its test data) computes in the input's precision.
    """
    if x.dtype.kind in "iub" or x.dtype in (np.float16, np.float32, np.float64):
        return x
    return x.astype(np.float32)


def _logsumexp(x, axes, keepdims):
    w = _float_work(x)
    m = np.max(w, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(w.dtype, copy=False)
    s = np.log(np.sum(np.exp(w - m), axis=axes, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axes)


#: name -> (kernel(x, axes, keepdims), identity of an empty reduction as a function of dtype)
_REDUCERS = {
    "ReduceSum": (lambda x, a, k: np.sum(x, axis=a, keepdims=k, dtype=x.dtype), lambda dt: 0),
    "ReduceMean": (None, lambda dt: np.nan if dt.kind not in "iub" else 0),
    "ReduceMax": (lambda x, a, k: np.max(x, axis=a, keepdims=k), _lowest),
    "ReduceMin": (lambda x, a, k: np.min(x, axis=a, keepdims=k), _highest),
    "ReduceProd": (lambda x, a, k: np.prod(x, axis=a, keepdims=k, dtype=x.dtype), lambda dt: 1),
    "ReduceL1": (lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k, dtype=x.dtype), lambda dt: 0),
    "ReduceL2": (lambda x, a, k: np.sqrt(np.sum(np.square(_float_work(x)), axis=a, keepdims=k)), lambda dt: 0),
    "ReduceLogSum": (lambda x, a, k: np.log(np.sum(_float_work(x), axis=a, keepdims=k)), lambda dt: -np.inf),
    "ReduceLogSumExp": (_logsumexp, lambda dt: -np.inf),
    "ReduceSumSquare": (lambda x, a, k: np.sum(np.square(x), axis=a, keepdims=k, dtype=x.dtype), lambda dt: 0),
}


def _reduce_mean(x, axes, keepdims):
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if x.dtype.kind in "iu":
        return _int_mean(np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype), n)
    return np.mean(x, axis=axes, keepdims=keepdims)


def _reduce_eval(name: str):
    kernel, identity = _REDUCERS[name]
    if kernel is None:
        kernel = _reduce_mean

    def ev(node: Node, x: np.ndarray, axes=None):
        ax = _reduce_axes(node, x, axes)
        keep = bool(node.attrs["keepdims"])
        if any(x.shape[a] == 0 for a in ax):  # an empty set: the identity element of the reduction
            shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape) if keep or i not in ax)
            return np.full(shape, identity(x.dtype), dtype=x.dtype)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = kernel(x, ax, keep)
        return np.asarray(y).astype(x.dtype, copy=False)

    return ev


def _reduced_shape(ctx: InferContext, shape, axes, keepdims: bool) -> tuple:
    rank = len(shape)
    norm = [normalize_axis(ctx, int(a), rank, "axes entry") for a in axes]
    if len(set(norm)) != len(norm):
        ctx.fail(f"axes {list(map(int, axes))} name an axis twice")
    return tuple(1 if i in norm else d for i, d in enumerate(shape) if keepdims or i not in norm)


def infer_reduce(ctx: InferContext) -> list:
    dtype, shape = ctx.dtype(0), ctx.shape(0)
    if dtype is DType.string:
        ctx.fail("input must be numeric, got string")
    keep = bool(_int_attr(ctx, "keepdims", 1))
    noop = bool(_int_attr(ctx, "noop_with_empty_axes", 0))
    if ctx.has_input(1):
        axes = ctx.const(1)
        if ctx.dtype(1) is not None and ctx.dtype(1) is not DType.int64:
            ctx.fail(f"axes (input 1) must be int64, got {ctx.dtype(1)}")
        if ctx.rank(1) is not None and ctx.rank(1) > 1:
            ctx.fail(f"axes (input 1) must be 1-D, got rank {ctx.rank(1)}")
    else:
        axes = np.zeros(0, np.int64)
    if shape is None:
        return [tt(dtype, None)]
    if axes is None:  # axes computed at run time: the rank is known only in some cases
        n_axes = ctx.shape(1)[0] if ctx.rank(1) == 1 else None
        if n_axes == 0 and noop:
            return [tt(dtype, shape)]
        if keep:
            return [tt(dtype, [1 if d == 1 else ctx.fresh() for d in shape])]
        if isinstance(n_axes, int) and n_axes > 0:
            return [tt(dtype, [ctx.fresh() for _ in range(len(shape) - n_axes)])]
        return [tt(dtype, None)]
    axes = np.asarray(axes).reshape(-1)
    if axes.size == 0:
        if noop:
            return [tt(dtype, shape)]
        axes = np.arange(len(shape))
    return [tt(dtype, _reduced_shape(ctx, shape, axes.tolist(), keep))]


_REDUCE_ATTRS = {"keepdims": Attr("int", 1), "noop_with_empty_axes": Attr("int", 0)}

#: The opset from which each reduction takes ``axes`` as an input rather than an attribute.
_AXES_INPUT_SINCE = {"ReduceSum": 13}

for _name in _REDUCERS:
    register(OpDef(_name, eval=_reduce_eval(_name), infer=infer_reduce, attrs=dict(_REDUCE_ATTRS),
                   kind=Kind.REDUCTION, inputs=(1, 2), family=FAMILY,
                   upgrades={_AXES_INPUT_SINCE.get(_name, 18): attr_to_input("axes", 1)},
                   doc=f"{_name} over the axes given as input 1 (all axes when absent)."))


# ---- ArgMax / ArgMin ----------------------------------------------------------------------------
def _arg_eval(fn):
    def ev(node: Node, x: np.ndarray):
        axis = np_axis(node.attrs["axis"], x.ndim)
        if node.attrs["select_last_index"]:
            idx = (x.shape[axis] - 1) - fn(np.flip(x, axis=axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        idx = idx.astype(np.int64, copy=False)
        return np.expand_dims(idx, axis) if node.attrs["keepdims"] else idx

    return ev


def infer_arg(ctx: InferContext) -> list:
    shape = ctx.shape(0)
    if shape is None:
        return [tt(DType.int64, None)]
    if len(shape) == 0:
        ctx.fail("input must have rank >= 1, got a scalar")
    axis = normalize_axis(ctx, _int_attr(ctx, "axis", 0), len(shape))
    keep = bool(_int_attr(ctx, "keepdims", 1))
    return [tt(DType.int64, [1 if i == axis else d for i, d in enumerate(shape) if keep or i != axis])]


_ARG_ATTRS = {"axis": Attr("int", 0), "keepdims": Attr("int", 1), "select_last_index": Attr("int", 0)}
register(OpDef("ArgMax", eval=_arg_eval(np.argmax), infer=infer_arg, attrs=dict(_ARG_ATTRS), kind=Kind.REDUCTION,
               inputs=(1, 1), family=FAMILY))
register(OpDef("ArgMin", eval=_arg_eval(np.argmin), infer=infer_arg, attrs=dict(_ARG_ATTRS), kind=Kind.REDUCTION,
               inputs=(1, 1), family=FAMILY))


# ---- Softmax, LogSoftmax, Hardmax ---------------------------------------------------------------
def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    w = _float_work(x)
    e = np.exp(w - np.max(w, axis=axis, keepdims=True))
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    w = _float_work(x)
    d = w - np.max(w, axis=axis, keepdims=True)
    return d - np.log(np.sum(np.exp(d), axis=axis, keepdims=True))


def _hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros_like(x)
    np.put_along_axis(y, idx, 1, axis=axis)
    return y


def _softmax_like_eval(fn):
    def ev(node: Node, x: np.ndarray):
        axis = np_axis(node.attrs["axis"], x.ndim)
        if node.attrs.get(LEGACY_COERCE_2D) and axis != x.ndim - 1 and x.ndim > 0:
            rows = int(np.prod(x.shape[:axis], dtype=np.int64))
            y = fn(x.reshape(rows, -1), 1).reshape(x.shape)
        else:
            y = fn(x, axis)
        return y.astype(x.dtype, copy=False)

    return ev


def infer_softmax_like(ctx: InferContext) -> list:
    dtype, shape = ctx.dtype(0), ctx.shape(0)
    if dtype is not None and not dtype.is_float:
        ctx.fail(f"input must be a floating-point tensor, got {dtype}")
    if shape is not None:
        normalize_axis(ctx, _int_attr(ctx, "axis", -1), max(len(shape), 1))
    return [tt(dtype, shape)]


def upgrade_coerce_2d(node: Node, graph: Graph) -> None:
    """Before opset 13 these ops flattened the input to 2-D at ``axis`` (default 1)."""
    axis = node.attrs.get("axis", 1)
    node.attrs["axis"] = axis
    t = node.inputs[0].type if node.inputs and node.inputs[0] is not None else None
    if isinstance(t, TensorType) and t.shape is not None and axis in (-1, len(t.shape) - 1):
        return  # flattening from the last axis changes nothing
    node.attrs[LEGACY_COERCE_2D] = 1


for _name, _fn in (("Softmax", _softmax), ("LogSoftmax", _log_softmax), ("Hardmax", _hardmax)):
    register(OpDef(_name, eval=_softmax_like_eval(_fn), infer=infer_softmax_like,
                   attrs={"axis": Attr("int", -1), LEGACY_COERCE_2D: Attr("int", internal=True)}, kind=Kind.OPAQUE,
                   inputs=(1, 1), upgrades={13: upgrade_coerce_2d}, family=FAMILY))


# ---- CumSum / CumProd ---------------------------------------------------------------------------
def _cumulative_eval(fn, identity):
    def ev(node: Node, x: np.ndarray, axis: np.ndarray):
        ax = int(np.asarray(axis).reshape(-1)[0])
        if not -x.ndim <= ax < max(x.ndim, 1):
            raise ValueError(f"axis {ax} is out of range for an input of rank {x.ndim}")
        ax = np_axis(ax, x.ndim)
        rev = bool(node.attrs["reverse"])
        w = np.flip(x, axis=ax) if rev else x
        if node.attrs["exclusive"]:
            # shift by one: the first entry is the identity, then the running result of all but the last
            head = np.full(w.shape[:ax] + (min(1, w.shape[ax]),) + w.shape[ax + 1:], identity, dtype=x.dtype)
            body = fn(np.take(w, np.arange(w.shape[ax] - 1), axis=ax), axis=ax, dtype=x.dtype)
            y = np.concatenate([head, body], axis=ax)
        else:
            y = fn(w, axis=ax, dtype=x.dtype)
        return np.ascontiguousarray(np.flip(y, axis=ax)) if rev else y

    return ev


def infer_cumulative(ctx: InferContext) -> list:
    shape, ashape = ctx.shape(0), ctx.shape(1)
    if ashape is not None and (len(ashape) > 1 or (len(ashape) == 1 and isinstance(ashape[0], int) and ashape[0] != 1)):
        ctx.fail(f"axis (input 1) must be a scalar, got shape {list(ashape)}")
    if ctx.dtype(1) is not None and ctx.dtype(1) not in (DType.int32, DType.int64):
        ctx.fail(f"axis (input 1) must be int32 or int64, got {ctx.dtype(1)}")
    a = ctx.const(1)
    if a is not None and shape is not None:
        normalize_axis(ctx, int(np.asarray(a).reshape(-1)[0]), max(len(shape), 1))
    return [tt(ctx.dtype(0), shape)]


_CUM_ATTRS = {"exclusive": Attr("int", 0), "reverse": Attr("int", 0)}
register(OpDef("CumSum", eval=_cumulative_eval(np.cumsum, 0), infer=infer_cumulative, attrs=dict(_CUM_ATTRS),
               kind=Kind.OPAQUE, inputs=(2, 2), family=FAMILY))
register(OpDef("CumProd", eval=_cumulative_eval(np.cumprod, 1), infer=infer_cumulative, attrs=dict(_CUM_ATTRS),
               kind=Kind.OPAQUE, inputs=(2, 2), family=FAMILY))


# ---- TopK ---------------------------------------------------------------------------------------
def _topk_eval(node: Node, x: np.ndarray, k: np.ndarray):
    axis = np_axis(node.attrs["axis"], x.ndim)
    k = int(np.asarray(k).reshape(-1)[0])
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"k = {k} is out of range for axis {axis} of size {n}")
    if node.attrs["largest"]:
        # Stable ascending sort of the reversed axis, read backwards: descending values, and among
        # equal values the lower original index first (works for unsigned types, unlike negation).
        order = np.argsort(np.flip(x, axis=axis), axis=axis, kind="stable")
        idx = (n - 1) - np.flip(np.take(order, np.arange(n - k, n), axis=axis), axis=axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
        idx = np.take(order, np.arange(k), axis=axis)
    idx = idx.astype(np.int64, copy=False)
    return np.take_along_axis(x, idx, axis=axis), idx


def infer_topk(ctx: InferContext) -> list:
    dtype, shape = ctx.dtype(0), ctx.shape(0)
    if ctx.dtype(1) is not None and ctx.dtype(1) is not DType.int64:
        ctx.fail(f"K (input 1) must be int64, got {ctx.dtype(1)}")
    ks = ctx.shape(1)
    if ks is not None and (len(ks) != 1 or (isinstance(ks[0], int) and ks[0] != 1)):
        ctx.fail(f"K (input 1) must be a 1-D tensor of one element, got shape {list(ks)}")
    if shape is None:
        return [tt(dtype, None), tt(DType.int64, None)]
    axis = normalize_axis(ctx, _int_attr(ctx, "axis", -1), len(shape))
    k = ctx.const(1)
    if k is not None:
        k = int(np.asarray(k).reshape(-1)[0])
        if k < 0 or (isinstance(shape[axis], int) and k > shape[axis]):
            ctx.fail(f"K = {k} is out of range for axis {axis} of size {shape[axis]}")
    else:
        k = ctx.fresh()
    out = tuple(k if i == axis else d for i, d in enumerate(shape))
    return [tt(dtype, out), tt(DType.int64, out)]


def _upgrade_topk_k(node: Node, graph: Graph) -> None:
    """Before opset 10, k was an attribute; since then it is a 1-D int64 input."""
    if "k" in node.attrs:
        k = node.attrs.pop("k")
        node.inputs[1:] = [graph.add_constant(np.array([k], np.int64), f"{node.name}_k")]


register(OpDef("TopK", eval=_topk_eval, infer=infer_topk,
               attrs={"axis": Attr("int", -1), "largest": Attr("int", 1), "sorted": Attr("int", 1)},
               kind=Kind.OPAQUE, inputs=(2, 2), outputs=(1, 2), upgrades={10: _upgrade_topk_k}, family=FAMILY))


# ---- NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss ----------------------------------------
def _nll(node: Node, logp: np.ndarray, target: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """The loss from log-probabilities (N, C, d...) and class indices (N, d...)."""
    reduction = node.attrs["reduction"]
    ignore = node.attrs.get("ignore_index")
    c = logp.shape[1]
    keep = np.ones(target.shape, dtype=bool) if ignore is None else target != ignore
    t = np.where(keep, target, 0).astype(np.intp, copy=False)
    if np.any((t < 0) | (t >= c)):
        bad = target[keep & ((target < 0) | (target >= c))].reshape(-1)[0]
        raise ValueError(f"target value {bad} is out of range for {c} classes")
    picked = np.take_along_axis(logp, np.expand_dims(t, 1), axis=1)[:, 0]
    w = (np.ones((), logp.dtype) if weight is None else weight[t]) * keep
    w = w.astype(logp.dtype, copy=False)
    loss = -picked * w
    if reduction == "none":
        return loss.astype(logp.dtype, copy=False)
    if reduction == "sum":
        return np.asarray(np.sum(loss), dtype=logp.dtype)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.sum(loss) / np.sum(w), dtype=logp.dtype)
    raise ValueError(f"reduction '{reduction}' is not one of none, sum, mean")


def _nll_eval(node: Node, x: np.ndarray, target: np.ndarray, weight=None):
    return _nll(node, x, target, weight)


def _sce_eval(node: Node, scores: np.ndarray, labels: np.ndarray, weights=None):
    logp = _log_softmax(scores, 1).astype(scores.dtype, copy=False)
    return _nll(node, logp, labels, weights), logp


def _infer_loss(ctx: InferContext, what: str) -> list:
    dtype, shape, tshape = ctx.dtype(0), ctx.shape(0), ctx.shape(1)
    reduction = ctx.attr("reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        ctx.fail(f"attribute 'reduction' must be 'none', 'sum' or 'mean', got '{reduction}'")
    if ctx.dtype(1) is not None and ctx.dtype(1) not in (DType.int32, DType.int64):
        ctx.fail(f"{what} (input 1) must be int32 or int64, got {ctx.dtype(1)}")
    if shape is not None and len(shape) < 2:
        ctx.fail(f"input 0 must have shape (N, C, d1, ...), got rank {len(shape)}")
    if shape is not None and tshape is not None:
        want = (shape[0],) + tuple(shape[2:])
        if len(tshape) != len(want) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                           for a, b in zip(tshape, want)):
            ctx.fail(f"{what} (input 1) must have shape [{','.join(map(str, want))}] to match input 0 "
                     f"[{','.join(map(str, shape))}], got [{','.join(map(str, tshape))}]")
    ws = ctx.shape(2)
    if ws is not None and shape is not None and (len(ws) != 1 or (isinstance(ws[0], int) and isinstance(shape[1], int)
                                                                   and ws[0] != shape[1])):
        ctx.fail(f"weight (input 2) must have shape [{shape[1]}], got [{','.join(map(str, ws))}]")
    if reduction == "none":
        out = tshape if tshape is not None else (
            None if shape is None else (shape[0],) + tuple(shape[2:]))
    else:
        out = ()
    return [tt(dtype, out), tt(dtype, shape)]


_LOSS_ATTRS = {"ignore_index": Attr("int"), "reduction": Attr("string", "mean")}
register(OpDef("NegativeLogLikelihoodLoss", eval=_nll_eval, infer=lambda ctx: _infer_loss(ctx, "target")[:1],
               attrs=dict(_LOSS_ATTRS), kind=Kind.OPAQUE, inputs=(2, 3), family=FAMILY))
register(OpDef("SoftmaxCrossEntropyLoss", eval=_sce_eval, infer=lambda ctx: _infer_loss(ctx, "labels"),
               attrs=dict(_LOSS_ATTRS), kind=Kind.OPAQUE, inputs=(2, 3), outputs=(1, 2), family=FAMILY))


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext).
def _reduce_rule(local):
    """Rule for Reduce*: ``local(ctx, node, x, y_kept, g_kept)`` gives dx from the kept-dims output/grad."""

    def rule(ctx, node, dys):
        x, y = node.inputs[0], node.outputs[0]
        rank = ctx.rank(x)
        axes = node.inputs[1] if len(node.inputs) > 1 else None
        if node.attrs["noop_with_empty_axes"] and axes is not None and axes.data is not None and axes.data.size == 0:
            g_kept, y_kept = dys[0], y  # a reduction over no axis is elementwise
        else:
            g_kept, y_kept = ctx.restore_reduced(dys[0], node, rank), ctx.restore_reduced(y, node, rank)
        return [local(ctx, node, x, y_kept, ctx.expand_like(g_kept, x))] + [None] * (len(node.inputs) - 1)

    return rule


def _reduce_mean_local(ctx, node, x, y_kept, g):
    count = ctx.op("Div", ctx.size(x, like=x), ctx.size(y_kept, like=x))
    return ctx.op("Div", g, count)


def _reduce_extremum_local(ctx, node, x, y_kept, g):
    """The gradient goes to the elements equal to the extremum, split evenly among ties."""
    mask = ctx.op("Cast", ctx.op("Equal", x, y_kept), to=ctx.dtype(x).value)
    axes = node.inputs[1] if len(node.inputs) > 1 else None
    count = ctx.op("ReduceSum", mask, axes, keepdims=1, noop_with_empty_axes=node.attrs["noop_with_empty_axes"])
    return ctx.op("Mul", g, ctx.op("Div", mask, count))


def _softmax_axes(ctx, node) -> list[int]:
    rank = ctx.rank(node.inputs[0])
    axis = node.attrs["axis"] % max(rank, 1)
    return list(range(axis, rank)) if node.attrs.get(LEGACY_COERCE_2D) else [axis]


def _softmax_rule(ctx, node, dys):
    y, g = node.outputs[0], dys[0]
    dot = ctx.op("ReduceSum", ctx.op("Mul", g, y), ctx.ints(_softmax_axes(ctx, node)), keepdims=1)
    return [ctx.op("Mul", y, ctx.op("Sub", g, dot))]


def _log_softmax_rule(ctx, node, dys):
    y, g = node.outputs[0], dys[0]
    total = ctx.op("ReduceSum", g, ctx.ints(_softmax_axes(ctx, node)), keepdims=1)
    return [ctx.op("Sub", g, ctx.op("Mul", ctx.op("Exp", y), total))]


def _cumulative_rule(ctx, node, dys):
    x, axis = node.inputs
    g, y = dys[0], node.outputs[0]
    flip = {"reverse": 1 - node.attrs["reverse"], "exclusive": node.attrs["exclusive"]}
    if node.op_type == "CumSum":
        return [ctx.op("CumSum", g, axis, **flip), None]
    # d y_i / d x_j = y_i / x_j for the j that enter y_i: a cumulative sum the other way, over x
    return [ctx.op("Div", ctx.op("CumSum", ctx.op("Mul", g, y), axis, **flip), x), None]


def _topk_rule(ctx, node, dys):
    x = node.inputs[0]
    if dys[0] is None:
        return [None, None]
    idx = ctx.output(node, 1)
    return [ctx.op("ScatterElements", ctx.zeros_like(x), idx, dys[0], axis=node.attrs["axis"], reduction="add"),
            None]


def _nll_parts(ctx, node, logp):
    """The NegativeLogLikelihoodLoss of ``logp`` (N, C, d...) from differentiable primitives."""
    target = node.inputs[1]
    weight = node.inputs[2] if len(node.inputs) > 2 else None
    ignore = node.attrs.get("ignore_index")
    keep = None
    if ignore is not None:
        keep = ctx.op("Not", ctx.op("Equal", target, ctx.const(np.array(ignore), like=target)))
        target = ctx.op("Where", keep, target, ctx.const(np.array(0), like=target))
    picked = ctx.op("GatherElements", logp, ctx.op("Unsqueeze", target, ctx.ints([1])), axis=1)
    picked = ctx.op("Squeeze", picked, ctx.ints([1]))
    w = ctx.op("Gather", weight, target) if weight is not None else None
    if keep is not None:
        k = ctx.op("Cast", keep, to=ctx.dtype(logp).value)
        w = k if w is None else ctx.op("Mul", w, k)
    loss = ctx.op("Neg", picked if w is None else ctx.op("Mul", picked, w))
    reduction = node.attrs["reduction"]
    if reduction == "none":
        return loss
    total = ctx.op("ReduceSum", loss, keepdims=0)
    if reduction == "sum":
        return total
    if w is None:
        return ctx.op("Div", total, ctx.size(loss, like=loss))
    return ctx.op("Div", total, ctx.op("ReduceSum", w, keepdims=0))


def _nll_rule(ctx, node, dys):
    return ctx.by_decomposition(node, dys, lambda c, n: [_nll_parts(c, n, n.inputs[0])])


def _sce_rule(ctx, node, dys):
    def build(c, n):
        logp = c.op("LogSoftmax", n.inputs[0], axis=1)
        return [_nll_parts(c, n, logp), logp]

    return ctx.by_decomposition(node, dys, build)


set_grads({
    "ReduceSum": _reduce_rule(lambda ctx, node, x, y, g: g),
    "ReduceMean": _reduce_rule(_reduce_mean_local),
    "ReduceMax": _reduce_rule(_reduce_extremum_local),
    "ReduceMin": _reduce_rule(_reduce_extremum_local),
    "ReduceProd": _reduce_rule(lambda ctx, node, x, y, g: ctx.op("Div", ctx.op("Mul", g, y), x)),
    "ReduceL1": _reduce_rule(lambda ctx, node, x, y, g: ctx.op("Mul", g, ctx.op("Sign", x))),
    "ReduceL2": _reduce_rule(lambda ctx, node, x, y, g: ctx.op("Mul", g, ctx.op("Div", x, y))),
    "ReduceLogSum": _reduce_rule(lambda ctx, node, x, y, g: ctx.op("Div", g, ctx.op("Exp", y))),
    "ReduceLogSumExp": _reduce_rule(lambda ctx, node, x, y, g: ctx.op("Mul", g, ctx.op("Exp", ctx.op("Sub", x, y)))),
    "ReduceSumSquare": _reduce_rule(lambda ctx, node, x, y, g: ctx.op(
        "Mul", g, ctx.op("Add", x, x))),
    "Softmax": _softmax_rule,
    "LogSoftmax": _log_softmax_rule,
    "Hardmax": lambda ctx, node, dys: [ctx.zeros_like(node.inputs[0])],  # piecewise constant
    "CumSum": _cumulative_rule,
    "CumProd": _cumulative_rule,
    "TopK": _topk_rule,
    "NegativeLogLikelihoodLoss": _nll_rule,
    "SoftmaxCrossEntropyLoss": _sce_rule,
}, {
    "ArgMax": "its output is an integer index",
    "ArgMin": "its output is an integer index",
})
set_facts(value_sized=("TopK",))
