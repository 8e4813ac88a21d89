"""Elementwise operators: unary math, binary arithmetic with broadcasting, casts, activations.

Every op here maps each output element to the elements at the same (broadcast) position of its inputs.
The ops are registered from tables: a row names the op, its NumPy kernel, the element types it accepts
(checked by inference) and, where older opsets differ, the upgrade that rewrites an old node.
"""
from __future__ import annotations

import functools
import math

import ml_dtypes
import numpy as np

from ..errors import OpAttributeError, node_label
from ..ir import DType, Graph, Node, TensorType
from .common import attr_to_input, broadcast_shapes, drop_attrs, tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "elementwise"

# ---- element type sets (the ONNX type constraints, used by inference to reject wrong inputs) ----------
FLOATS = frozenset({DType.float16, DType.float32, DType.float64, DType.bfloat16})
SIGNED_INTS = frozenset({DType.int8, DType.int16, DType.int32, DType.int64})
UNSIGNED_INTS = frozenset({DType.uint8, DType.uint16, DType.uint32, DType.uint64})
INTS = SIGNED_INTS | UNSIGNED_INTS
SIGNED = FLOATS | SIGNED_INTS
NUMERIC = FLOATS | INTS
BOOL = frozenset({DType.bool})
FLOAT8 = frozenset({DType.float8e4m3fn, DType.float8e4m3fnuz, DType.float8e5m2, DType.float8e5m2fnuz})

_STD_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _names(types) -> str:
    return ", ".join(sorted(d.name for d in types))


def check_dtype(ctx: InferContext, i: int, allowed, what: str = "") -> None:
    """Fail when input i has a known element type outside ``allowed``."""
    dt = ctx.dtype(i)
    if allowed is None or dt is None or dt in allowed:
        return
    name = ctx.node.inputs[i].name
    ctx.fail(f"input {i} ('{name}') must be {what or 'one of ' + _names(allowed)}, got {dt.name}")


def _same_dtypes(ctx: InferContext, indices) -> DType | None:
    """Fail unless the known element types of these inputs agree; returns that type (None: unknown)."""
    dts = {ctx.dtype(i) for i in indices if ctx.has_input(i) and ctx.dtype(i) is not None}
    if len(dts) > 1:
        ctx.fail(f"inputs must share one element type, got {', '.join(sorted(d.name for d in dts))}")
    return next(iter(dts), None)


def infer_broadcast_checked(types, out_dtype: DType | None = None):
    """Inference for ops whose inputs share one element type from ``types`` and broadcast together."""

    def infer(ctx: InferContext) -> list:
        present = [i for i in range(ctx.n_inputs) if ctx.has_input(i)]
        for i in present:
            check_dtype(ctx, i, types)
        dtype = _same_dtypes(ctx, present)
        return [tt(out_dtype or dtype, broadcast_shapes(ctx, [ctx.shape(i) for i in present]))]

    return infer


# ---- kernels' dtype discipline --------------------------------------------------------------------
def _work_dtype(dt: np.dtype) -> np.dtype:
    """The dtype math runs in: float32/64 as they are, narrower floats in float32, integers in float64."""
    if dt in _STD_FLOATS:
        return dt
    if dt.kind == "f" or dt in _ML_FLOATS:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


_ML_FLOATS = {np.dtype(t) for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                    ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz, ml_dtypes.float4_e2m1fn,
                                    ml_dtypes.float8_e8m0fnu)}


def float_math(fn):
    """Kernel ``fn(node, x)`` computed in float32/float64 and returned in x's element type."""

    @functools.wraps(fn)
    def ev(node, x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(node, x.astype(_work_dtype(x.dtype), copy=False))).astype(x.dtype, copy=False)

    return ev


def keep_dtype(ufunc):
    """Kernel applying a NumPy ufunc natively (widening only types NumPy lacks loops for), same dtype out."""

    def ev(node, *xs):
        dt = xs[0].dtype
        if dt in _ML_FLOATS:
            xs = [x.astype(np.float32) for x in xs]
        with np.errstate(all="ignore"):
            return np.asarray(ufunc(*xs)).astype(dt, copy=False)

    return ev


# ---- registration helpers -------------------------------------------------------------------------
_OLD_UNARY = {6: drop_attrs("consumed_inputs")}


def _unary(name: str, fn, types=FLOATS, attrs=None, out_dtype: DType | None = None, upgrades=None,
           infer=None, doc: str = "") -> OpDef:
    """Register a one-input, same-shape op; output has the input's element type unless ``out_dtype``."""

    def infer_unary(ctx: InferContext) -> list:
        check_dtype(ctx, 0, types)
        return [tt(out_dtype or ctx.dtype(0), ctx.shape(0))]

    return register(OpDef(name, eval=fn, infer=infer or infer_unary, attrs=attrs or {}, kind=Kind.ELEMENTWISE,
                          inputs=(1, 1), upgrades=dict(upgrades or {}), family=FAMILY, doc=doc))


def _binary(name: str, fn, types=NUMERIC, out_dtype: DType | None = None, attrs=None, upgrades=None,
            infer=None, doc: str = "") -> OpDef:
    """Register a two-input op with NumPy broadcasting; both inputs share one element type."""
    return register(OpDef(name, eval=fn, infer=infer or infer_broadcast_checked(types, out_dtype),
                          attrs=attrs or {}, kind=Kind.BROADCAST, inputs=(2, 2), upgrades=dict(upgrades or {}),
                          family=FAMILY, doc=doc))


# ---- opset < 7: "broadcast"/"axis" attributes on binary ops ---------------------------------------------
def legacy_broadcast(node: Node, graph: Graph) -> None:
    """Rewrite an opset<7 binary node (``broadcast``, ``axis``) into NumPy broadcasting.

    With ``broadcast=1`` the second input's dims line up with the first input's dims from ``axis`` on;
    trailing unit dims are appended to it (a reshaped constant, or an Unsqueeze node) so that NumPy's
    right-aligned broadcasting gives the same result.
    """
    node.attrs.pop("consumed_inputs", None)
    bcast = node.attrs.pop("broadcast", 0)
    axis = node.attrs.pop("axis", None)
    if not bcast or axis is None or len(node.inputs) < 2:
        return  # same shapes, or suffix alignment: NumPy broadcasting already agrees
    a, b = node.inputs[0], node.inputs[1]
    rank_a = a.type.rank if isinstance(a.type, TensorType) else None
    rank_b = b.data.ndim if b.data is not None else b.type.rank if isinstance(b.type, TensorType) else None
    if rank_b is None or (rank_a is None and axis >= 0):
        raise OpAttributeError(f"{node_label(node)}: legacy broadcast with axis={axis} (opset < 7) needs the "
                               f"ranks of both inputs, but they are not declared in the model")
    pad = -axis - rank_b if axis < 0 else rank_a - axis - rank_b  # unit dims to append to B
    if pad < 0 or (rank_a is not None and not -rank_a <= axis < rank_a):
        raise OpAttributeError(f"{node_label(node)}: legacy broadcast axis={axis} does not fit input ranks "
                               f"{rank_a} and {rank_b}")
    if pad == 0:
        return
    _append_unit_dims(node, graph, 1, rank_b, pad, "B", "legacy_bcast")


def _append_unit_dims(node: Node, graph: Graph, i: int, rank: int, pad: int, const_suffix: str, node_suffix: str):
    """Give input ``i`` (of ``rank`` dims) ``pad`` trailing unit dims: a reshaped constant, or an Unsqueeze node
    placed right before ``node`` (upgrades of old opsets' broadcasting rules)."""
    x = node.inputs[i]
    if x.data is not None:
        node.inputs[i] = graph.add_constant(x.data.reshape(x.data.shape + (1,) * pad), f"{node.name}_{const_suffix}")
        return
    axes = graph.add_constant(np.arange(rank, rank + pad, dtype=np.int64), f"{node.name}_{node_suffix}_axes")
    unsq = graph.add_node("Unsqueeze", [x, axes], name=f"{node.name}_{node_suffix}")
    unsq.opset = None
    graph.nodes.pop()  # place it right before the node when the node is already in the graph
    where = next((k for k, n in enumerate(graph.nodes) if n is node), len(graph.nodes))
    graph.nodes.insert(where, unsq)
    node.inputs[i] = unsq.outputs[0]


_OLD_BINARY = {7: legacy_broadcast}


# ==== unary math ========================================================================================
def _erf_exact(x: np.ndarray) -> np.ndarray:
    """erf in float64 to ~1e-15, slowly: a positive-term series below 3, the erfc continued fraction above.

    Used once at import to fit the fast form below.
    """
    a = np.abs(np.asarray(x, dtype=np.float64))
    out = np.empty_like(a)
    small = a < 3.0
    s = a[small]
    x2 = s * s
    term = s.copy()
    total = s.copy()
    for n in range(1, 200):  # erf(x) = 2/sqrt(pi) e^{-x^2} sum 2^n x^{2n+1} / (2n+1)!!
        term *= 2.0 * x2 / (2 * n + 1)
        total += term
        if not np.any(term > 1e-17 * total):
            break
    out[small] = (2.0 / math.sqrt(math.pi)) * np.exp(-x2) * total
    out[~small] = 1.0 - np.exp(-a[~small] ** 2) * _erfc_scaled_cf(a[~small])
    return np.copysign(out, x)


def _erfc_scaled_cf(x: np.ndarray) -> np.ndarray:
    """erfc(x) * e^{x^2} for x >= 3: 1/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))."""
    f = x.copy()
    for k in range(60, 0, -1):
        f = x + (k / 2.0) / f
    return 1.0 / (math.sqrt(math.pi) * f)


class _ErfFit:
    """Fast erf from two Chebyshev fits (made at import against ``_erf_exact``).

    Below 2, erf(x) = x p(x^2); from 2 to ``cutoff``, erf(x) = 1 - e^{-x^2} q(x) / x with q smooth and
    nearly constant; beyond ``cutoff`` erf rounds to +-1 in the working precision.
    """

    def __init__(self, dtype, deg_small: int, deg_large: int, cutoff: float):
        cheb = np.polynomial.chebyshev
        self.dtype, self.cutoff = np.dtype(dtype), cutoff
        self.small = cheb.chebinterpolate(self._erf_over_x, deg_small).astype(dtype)
        self.large = cheb.chebinterpolate(self._erfc_times, deg_large).astype(dtype)

    @staticmethod
    def _erf_over_x(t):  # p(u) = erf(sqrt(u)) / sqrt(u), u = 2 (t + 1) in [0, 4]
        x = np.sqrt(2.0 * (t + 1.0))
        safe = np.where(x == 0, 1.0, x)
        return np.where(x == 0, 2.0 / math.sqrt(math.pi), _erf_exact(safe) / safe)

    def _erfc_times(self, t):  # q(x) = erfc(x) e^{x^2} x, x in [2, cutoff]
        x = 2.0 + (t + 1.0) * (self.cutoff - 2.0) / 2.0
        scaled = np.where(x < 3.0, (1.0 - _erf_exact(np.minimum(x, 3.0))) * np.exp(x * x),
                          _erfc_scaled_cf(np.maximum(x, 3.0)))
        return scaled * x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        cheb = np.polynomial.chebyshev
        a = np.abs(x)
        out = np.ones_like(a)
        small = a < 2.0
        s = a[small]
        out[small] = s * cheb.chebval(s * s * 0.5 - 1.0, self.small)
        mid = (a >= 2.0) & (a < self.cutoff)
        s = a[mid]
        t = (s - 2.0) * (2.0 / (self.cutoff - 2.0)) - 1.0
        out[mid] = 1.0 - np.exp(-s * s) * cheb.chebval(t, self.large) / s
        out[np.isnan(a)] = np.nan
        return np.copysign(out, x)


_ERF64 = _ErfFit(np.float64, 18, 18, 6.0)
#: erf for float32 arrays (the fit Erf's eval uses; the NumPy runtime's fused kernels call it too).
ERF32 = _ErfFit(np.float32, 9, 8, 4.0)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, vectorised: in float32 for float32 inputs (error ~1e-7), else in float64 (~1e-15)."""
    if x.dtype == np.float32:
        return ERF32(x)
    return _ERF64(np.asarray(x, dtype=np.float64))


def _isinf(node, x):
    x = x.astype(np.float32) if x.dtype in _ML_FLOATS else x
    pos, neg = node.attrs["detect_positive"], node.attrs["detect_negative"]
    if pos and neg:
        return np.isinf(x)
    if pos:
        return np.isposinf(x)
    if neg:
        return np.isneginf(x)
    return np.zeros(x.shape, dtype=np.bool_)


_UNARY_MATH = [
    # name, kernel, accepted input types
    ("Abs", keep_dtype(np.abs), NUMERIC),
    ("Neg", keep_dtype(np.negative), SIGNED),
    ("Sign", keep_dtype(np.sign), NUMERIC),
    ("Floor", keep_dtype(np.floor), FLOATS),
    ("Ceil", keep_dtype(np.ceil), FLOATS),
    ("Round", keep_dtype(np.round), FLOATS),  # halves to even, as ONNX specifies
    ("Reciprocal", float_math(lambda node, x: np.reciprocal(x)), FLOATS),
    ("Exp", float_math(lambda node, x: np.exp(x)), FLOATS),
    ("Log", float_math(lambda node, x: np.log(x)), FLOATS),
    ("Sqrt", float_math(lambda node, x: np.sqrt(x)), FLOATS),
    ("Sin", float_math(lambda node, x: np.sin(x)), FLOATS),
    ("Cos", float_math(lambda node, x: np.cos(x)), FLOATS),
    ("Tan", float_math(lambda node, x: np.tan(x)), FLOATS),
    ("Asin", float_math(lambda node, x: np.arcsin(x)), FLOATS),
    ("Acos", float_math(lambda node, x: np.arccos(x)), FLOATS),
    ("Atan", float_math(lambda node, x: np.arctan(x)), FLOATS),
    ("Sinh", float_math(lambda node, x: np.sinh(x)), FLOATS),
    ("Cosh", float_math(lambda node, x: np.cosh(x)), FLOATS),
    ("Asinh", float_math(lambda node, x: np.arcsinh(x)), FLOATS),
    ("Acosh", float_math(lambda node, x: np.arccosh(x)), FLOATS),
    ("Atanh", float_math(lambda node, x: np.arctanh(x)), FLOATS),
    ("Erf", float_math(lambda node, x: _erf(x)), FLOATS),
    ("BitwiseNot", lambda node, x: np.invert(x), INTS),
]
for _name, _fn, _types in _UNARY_MATH:
    _unary(_name, _fn, _types, upgrades=_OLD_UNARY)

_unary("Not", lambda node, x: np.logical_not(x), BOOL)
_unary("IsNaN", lambda node, x: np.isnan(x.astype(np.float32) if x.dtype in _ML_FLOATS else x),
       FLOATS | FLOAT8, out_dtype=DType.bool)
_unary("IsInf", _isinf, FLOATS | FLOAT8, out_dtype=DType.bool,
       attrs={"detect_negative": Attr("int", 1), "detect_positive": Attr("int", 1)})


# ==== binary arithmetic ==================================================================================
def _div(node, a, b):
    if a.dtype.kind == "u":
        with np.errstate(all="ignore"):
            return np.floor_divide(a, b).astype(a.dtype, copy=False)
    if a.dtype.kind == "i":  # C semantics: the quotient truncates toward zero
        with np.errstate(all="ignore"):
            q = np.floor_divide(a, b)
            fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
            return (q + fix.astype(q.dtype)).astype(a.dtype, copy=False)
    return keep_dtype(np.divide)(node, a, b)


def _mod(node, a, b):
    fn = np.fmod if node.attrs["fmod"] else np.mod  # fmod: sign of the dividend; else sign of the divisor
    return keep_dtype(fn)(node, a, b)


def _pow(node, a, b):
    """Pow: the result has the base's element type, whatever the exponent's."""
    with np.errstate(all="ignore"):
        if a.dtype.kind in "iu" and b.dtype.kind in "iu" and not np.any(b < 0):
            return np.power(a, b.astype(a.dtype)).astype(a.dtype, copy=False)
        wide = a.dtype == np.float64 or b.dtype.kind in "iu" or b.dtype == np.float64 or a.dtype.kind in "iu"
        w = np.float64 if wide else np.float32
        return np.power(a.astype(w, copy=False), b.astype(w, copy=False)).astype(a.dtype, copy=False)


def _bitshift(node, x, y):
    direction = node.attrs["direction"]
    bits = x.dtype.itemsize * 8
    y = y.astype(x.dtype, copy=False)
    out_of_range = (y >= bits) | (y < 0) if x.dtype.kind == "i" else y >= bits
    safe = np.where(out_of_range, 0, y).astype(x.dtype, copy=False)
    if direction == "LEFT":
        r = np.left_shift(x, safe)
        fill = np.zeros((), dtype=x.dtype)
    else:
        r = np.right_shift(x, safe)
        fill = np.where(x < 0, -1, 0).astype(x.dtype) if x.dtype.kind == "i" else np.zeros((), dtype=x.dtype)
    return np.where(out_of_range, fill, r).astype(x.dtype, copy=False)


def _infer_bitshift(ctx: InferContext) -> list:
    if ctx.attr("direction") not in ("LEFT", "RIGHT"):
        raise OpAttributeError(f"{node_label(ctx.node)}: attribute 'direction' must be 'LEFT' or 'RIGHT', "
                               f"got {ctx.attr('direction')!r}")
    return infer_broadcast_checked(INTS)(ctx)


def _infer_pow(ctx: InferContext) -> list:
    check_dtype(ctx, 0, FLOATS | {DType.int32, DType.int64})
    check_dtype(ctx, 1, NUMERIC)
    return [tt(ctx.dtype(0), broadcast_shapes(ctx, [ctx.shape(0), ctx.shape(1)]))]


_BINARY = [
    # name, kernel, accepted input types, output type (None: the inputs')
    ("Add", keep_dtype(np.add), NUMERIC, None),
    ("Sub", keep_dtype(np.subtract), NUMERIC, None),
    ("Mul", keep_dtype(np.multiply), NUMERIC, None),
    ("Div", _div, NUMERIC, None),
    ("BitwiseAnd", lambda node, a, b: np.bitwise_and(a, b), INTS, None),
    ("BitwiseOr", lambda node, a, b: np.bitwise_or(a, b), INTS, None),
    ("BitwiseXor", lambda node, a, b: np.bitwise_xor(a, b), INTS, None),
    ("And", lambda node, a, b: np.logical_and(a, b), BOOL, DType.bool),
    ("Or", lambda node, a, b: np.logical_or(a, b), BOOL, DType.bool),
    ("Xor", lambda node, a, b: np.logical_xor(a, b), BOOL, DType.bool),
    ("Equal", lambda node, a, b: np.asarray(np.equal(a, b), dtype=np.bool_), NUMERIC | BOOL | {DType.string},
     DType.bool),
    ("Less", lambda node, a, b: np.less(a, b), NUMERIC, DType.bool),
    ("LessOrEqual", lambda node, a, b: np.less_equal(a, b), NUMERIC, DType.bool),
    ("Greater", lambda node, a, b: np.greater(a, b), NUMERIC, DType.bool),
    ("GreaterOrEqual", lambda node, a, b: np.greater_equal(a, b), NUMERIC, DType.bool),
]
for _name, _fn, _types, _out in _BINARY:
    _binary(_name, _fn, _types, out_dtype=_out, upgrades=_OLD_BINARY)

_binary("Mod", _mod, NUMERIC, attrs={"fmod": Attr("int", 0)})
_binary("Pow", _pow, infer=_infer_pow, upgrades=_OLD_BINARY)
_binary("BitShift", _bitshift, INTS, attrs={"direction": Attr("string", REQUIRED)}, infer=_infer_bitshift)


# ==== variadic ===========================================================================================
def _variadic(name: str, fn, types) -> None:
    register(OpDef(name, eval=fn, infer=infer_broadcast_checked(types), kind=Kind.BROADCAST, inputs=(1, 2**31),
                   upgrades=_OLD_UNARY, family=FAMILY))


def _fold(ufunc):
    def ev(node, *xs):
        if len(xs) == 1:
            return xs[0].copy()
        return keep_dtype(lambda *ys: functools.reduce(ufunc, ys))(node, *xs)

    return ev


def _mean(node, *xs):
    w = _work_dtype(xs[0].dtype)
    total = functools.reduce(np.add, (x.astype(w, copy=False) for x in xs))
    return (total / w.type(len(xs))).astype(xs[0].dtype, copy=False)


_variadic("Sum", _fold(np.add), NUMERIC)
_variadic("Max", _fold(np.maximum), NUMERIC)
_variadic("Min", _fold(np.minimum), NUMERIC)
_variadic("Mean", _mean, FLOATS)


# ==== Where, Clip ========================================================================================
def _infer_where(ctx: InferContext) -> list:
    check_dtype(ctx, 0, BOOL, "bool")
    return [tt(_same_dtypes(ctx, (1, 2)), broadcast_shapes(ctx, [ctx.shape(i) for i in range(3)]))]


register(OpDef("Where", eval=lambda node, c, x, y: np.where(c, x, y), infer=_infer_where, kind=Kind.BROADCAST,
               inputs=(3, 3), family=FAMILY))


def _clip(node, x, lo=None, hi=None):
    if lo is not None:
        x = np.maximum(x, np.asarray(lo, dtype=x.dtype).reshape(()))
    if hi is not None:
        x = np.minimum(x, np.asarray(hi, dtype=x.dtype).reshape(()))  # min > max gives max, as specified
    return x.copy() if lo is None and hi is None else x


def _infer_clip(ctx: InferContext) -> list:
    check_dtype(ctx, 0, NUMERIC)
    for i, what in ((1, "min"), (2, "max")):
        t = ctx.type(i)
        if isinstance(t, TensorType) and t.is_static and t.numel != 1:
            ctx.fail(f"input {i} ('{what}') must be a scalar, got shape {list(t.shape)}")
    return [tt(ctx.dtype(0), ctx.shape(0))]


def _clip_attrs_to_inputs(node: Node, graph: Graph) -> None:
    """Clip before opset 11 took min/max as float attributes; now they are optional inputs."""
    node.attrs.pop("consumed_inputs", None)
    t = node.inputs[0].type
    dt = t.dtype.np if isinstance(t, TensorType) and t.dtype is not None else np.float32
    for attr, idx in (("min", 1), ("max", 2)):
        attr_to_input(attr, idx, dtype=dt)(node, graph)


register(OpDef("Clip", eval=_clip, infer=_infer_clip, kind=Kind.BROADCAST, inputs=(1, 3),
               upgrades={11: _clip_attrs_to_inputs}, family=FAMILY))


# ==== Cast, CastLike, BitCast ============================================================================
_SATURATING_F8 = {DType.float8e4m3fn, DType.float8e4m3fnuz, DType.float8e5m2, DType.float8e5m2fnuz}


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """float -> float8e8m0 (a bare power-of-two exponent), rounding by ``round_mode``."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.uint16)
    mant = bits & 0x7FFFFF
    special = exp == 0xFF
    if round_mode == "up":
        exp += ((mant != 0) & ~special).astype(np.uint16)
    elif round_mode == "nearest":
        exp += ((mant >= 0x400000) & ~special).astype(np.uint16)
    overflow = (exp > 0xFE) & ~special
    is_inf = special & (mant == 0)
    if saturate:
        exp[overflow | is_inf] = 0xFE
    else:
        exp[overflow | is_inf | ((bits & 0x7FFFFFFF) == 0)] = 0xFF
    return exp.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)


def _to_strings(x: np.ndarray) -> np.ndarray:
    """Numbers as text: shortest round-trip digits, ONNX's literals NaN/INF/-INF, booleans as 1/0."""
    if x.dtype == object:
        return x.copy()
    if x.dtype == np.bool_:
        return np.where(x, "1", "0").astype(object)
    if x.dtype in _ML_FLOATS:
        x = x.astype(np.float32)
    out = x.astype(str).astype(object)
    if x.dtype.kind == "f":
        out[np.isnan(x)] = "NaN"
        out[np.isposinf(x)] = "INF"
        out[np.isneginf(x)] = "-INF"
    return out


def _strings_to(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    s = np.asarray(x, dtype=str)
    if dt == np.bool_:
        low = np.char.lower(s)
        s = np.where(low == "true", "1", np.where(low == "false", "0", s))
    if dt.kind in "iu":
        try:
            return s.astype(dt)
        except (ValueError, OverflowError):
            pass
    f = s.astype(np.float64)  # understands "1e-5", "INF", "+inf", "-INF", "NaN" in any case
    return f != 0 if dt == np.bool_ else f.astype(dt)


def _saturating_cast(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """A float array to the integer type ``dt`` where ONNX leaves out-of-range values undefined, as every graphc
    backend does it (and a GPU's conversion instructions): NaN -> 0, below the range -> its minimum, above it ->
    its maximum, the rest truncated toward zero."""
    info = np.iinfo(dt)
    w = x.astype(np.float64) if x.dtype == np.float64 else x.astype(np.float32)  # half types widen exactly
    lo, hi = w.dtype.type(info.min), w.dtype.type(float(info.max) + 1.0)  # powers of two (or 0): exact
    nan, under, over = np.isnan(w), w < lo, w >= hi
    out = np.where(nan | under | over, 0, w).astype(dt)
    out[under] = info.min
    out[over] = info.max
    return out


def cast_array(x: np.ndarray, to: DType, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """Cast with ONNX's rules: float8 saturation, float8e8m0 rounding, strings parsed and printed."""
    dt = to.np
    with np.errstate(all="ignore"):
        if to is DType.string:
            return _to_strings(x)
        if x.dtype == object or x.dtype.kind in "US":
            return _strings_to(x, dt)
        if to is DType.float8e8m0:
            return _to_e8m0(x.astype(np.float32), saturate, round_mode)
        if to in _SATURATING_F8 and saturate and x.dtype != np.bool_:
            info = ml_dtypes.finfo(dt)
            w = x.astype(np.float64) if x.dtype in (np.float64, np.int64, np.uint64) else x.astype(np.float32)
            return np.clip(w, float(info.min), float(info.max)).astype(dt)
        if dt.kind in "iu" and x.dtype.kind not in "iub":  # a float to an integer: saturate (docs/cuda.md, "Casts")
            return _saturating_cast(x, dt)
        try:
            return x.astype(dt)
        except (TypeError, ValueError):  # pairs of ml_dtypes types without a direct conversion
            return x.astype(np.float32).astype(dt)


def _cast_target(node: Node) -> DType:
    to = node.attrs["to"]
    try:
        return DType(to)
    except ValueError:
        raise OpAttributeError(f"{node_label(node)}: attribute 'to' is {to}, which is not an element type "
                               f"graphc knows (ONNX TensorProto.DataType codes 1-26)") from None


def _check_round_mode(node: Node) -> None:
    if node.attrs.get("round_mode", "up") not in ("up", "down", "nearest"):
        raise OpAttributeError(f"{node_label(node)}: attribute 'round_mode' must be 'up', 'down' or 'nearest', "
                               f"got {node.attrs['round_mode']!r}")


def _cast(node, x):
    return cast_array(x, _cast_target(node), bool(node.attrs["saturate"]), node.attrs["round_mode"])


def _infer_cast(ctx: InferContext) -> list:
    _check_round_mode(ctx.node)
    to = _cast_target(ctx.node)
    # A shape cast between 32/64-bit integers keeps its dim symbols (the TorchScript exporter casts
    # Gather(Shape(x)) to int64 before Range), so later Reshape/Range targets stay symbolic.
    if to in (DType.int64, DType.int32) and ctx.dtype(0) in (DType.int64, DType.int32) and ctx.rank(0) in (0, 1):
        dims = ctx.sym(0)
        if dims is not None and any(isinstance(d, str) for d in dims):
            ctx.set_sym(0, dims)
    return [tt(to, ctx.shape(0))]


def _cast_like(node, x, like):
    return cast_array(x, DType.from_np(like.dtype), bool(node.attrs["saturate"]), node.attrs["round_mode"])


def _infer_cast_like(ctx: InferContext) -> list:
    _check_round_mode(ctx.node)
    return [tt(ctx.dtype(1), ctx.shape(0))]


_CAST_ATTRS = {"saturate": Attr("int", 1), "round_mode": Attr("string", "up")}


def _cast_to_from_name(node, graph) -> None:
    """Opsets 1-5 name Cast's target type with a string such as "FLOAT"; later opsets use the type code."""
    to = node.attrs.get("to")
    if isinstance(to, str):
        names = {"FLOAT": DType.float32, "DOUBLE": DType.float64, "FLOAT16": DType.float16, "BOOL": DType.bool,
                 **{d.name.upper(): d for d in DType}}
        if to.upper() not in names:
            from ..errors import OpAttributeError, node_label

            raise OpAttributeError(f"{node_label(node)}: attribute 'to' names an unknown type '{to}'")
        node.attrs["to"] = names[to.upper()].value


register(OpDef("Cast", eval=_cast, infer=_infer_cast, attrs={"to": Attr("int", REQUIRED), **_CAST_ATTRS},
               kind=Kind.ELEMENTWISE, inputs=(1, 1), upgrades={6: _cast_to_from_name}, family=FAMILY))
# CastLike reads only the element type of its second input, not its elements: not fusable as elementwise.
register(OpDef("CastLike", eval=_cast_like, infer=_infer_cast_like, attrs=dict(_CAST_ATTRS),
               kind=Kind.OPAQUE, inputs=(2, 2), family=FAMILY))

_SUB_BYTE_BITS = {DType.int4: 4, DType.uint4: 4, DType.float4e2m1: 4, DType.int2: 2, DType.uint2: 2}


def _bit_width(dt: DType) -> int:
    return _SUB_BYTE_BITS.get(dt, dt.itemsize * 8)


def _bitcast(node, x):
    to = _cast_target(node)
    src = DType.from_np(x.dtype)
    if _bit_width(src) != _bit_width(to):
        raise OpAttributeError(f"{node_label(node)}: cannot reinterpret {src.name} ({_bit_width(src)} bits) "
                               f"as {to.name} ({_bit_width(to)} bits)")
    if src in _SUB_BYTE_BITS:  # one element a byte, value in the low bits: reinterpret those bits only
        raw = x.view(np.uint8) & np.uint8((1 << _SUB_BYTE_BITS[src]) - 1)
        return raw.view(to.np)
    return np.ascontiguousarray(x).view(to.np).reshape(x.shape)


def _infer_bitcast(ctx: InferContext) -> list:
    to = _cast_target(ctx.node)
    src = ctx.dtype(0)
    if DType.string in (src, to):
        ctx.fail("BitCast does not accept strings")
    if src is not None and _bit_width(src) != _bit_width(to):
        ctx.fail(f"cannot reinterpret {src.name} ({_bit_width(src)} bits) as {to.name} ({_bit_width(to)} bits): "
                 f"the widths must be equal")
    return [tt(to, ctx.shape(0))]


register(OpDef("BitCast", eval=_bitcast, infer=_infer_bitcast, attrs={"to": Attr("int", REQUIRED)},
               kind=Kind.ELEMENTWISE, inputs=(1, 1), family=FAMILY))


# ==== activations ========================================================================================
def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x):
    return np.logaddexp(0.0, x)


def _gelu(node, x):
    if node.attrs["approximate"] == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))


def _infer_gelu(ctx: InferContext) -> list:
    if ctx.attr("approximate") not in ("none", "tanh"):
        raise OpAttributeError(f"{node_label(ctx.node)}: attribute 'approximate' must be 'none' or 'tanh', "
                               f"got {ctx.attr('approximate')!r}")
    check_dtype(ctx, 0, FLOATS)
    return [tt(ctx.dtype(0), ctx.shape(0))]


def _relu(node, x):
    return np.maximum(x, x.dtype.type(0)) if x.dtype not in _ML_FLOATS else float_math(
        lambda n, y: np.maximum(y, 0))(node, x)


_ACTIVATIONS = [
    # name, kernel on float32/float64 (or float64 for integer inputs), attributes, accepted types
    ("LeakyRelu", lambda node, x: np.where(x >= 0, x, node.attrs["alpha"] * x),
     {"alpha": Attr("float", 0.01)}, FLOATS),
    ("Elu", lambda node, x: np.where(x > 0, x, node.attrs["alpha"] * np.expm1(x)),
     {"alpha": Attr("float", 1.0)}, FLOATS),
    ("Selu", lambda node, x: node.attrs["gamma"] * np.where(x > 0, x, node.attrs["alpha"] * np.expm1(x)),
     {"alpha": Attr("float", 1.67326319217681884765625), "gamma": Attr("float", 1.05070102214813232421875)},
     FLOATS),
    ("Celu", lambda node, x: np.maximum(x, 0) + np.minimum(0, node.attrs["alpha"] * np.expm1(x / node.attrs["alpha"])),
     {"alpha": Attr("float", 1.0)}, FLOATS),
    ("HardSigmoid", lambda node, x: np.clip(node.attrs["alpha"] * x + node.attrs["beta"], 0, 1),
     {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)}, FLOATS),
    ("HardSwish", lambda node, x: x * np.clip(x / 6.0 + 0.5, 0, 1), {}, FLOATS),
    ("Sigmoid", lambda node, x: _sigmoid(x), {}, FLOATS),
    ("Tanh", lambda node, x: np.tanh(x), {}, FLOATS),
    ("Softplus", lambda node, x: _softplus(x), {}, FLOATS),
    ("Softsign", lambda node, x: x / (1.0 + np.abs(x)), {}, FLOATS),
    ("Mish", lambda node, x: x * np.tanh(_softplus(x)), {}, FLOATS),
    ("Swish", lambda node, x: x * _sigmoid(node.attrs["alpha"] * x), {"alpha": Attr("float", 1.0)}, FLOATS),
    ("ThresholdedRelu", lambda node, x: np.where(x > node.attrs["alpha"], x, 0), {"alpha": Attr("float", 1.0)},
     FLOATS),
    ("Shrink", lambda node, x: np.where(x < -node.attrs["lambd"], x + node.attrs["bias"],
                                        np.where(x > node.attrs["lambd"], x - node.attrs["bias"], 0)),
     {"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)}, NUMERIC),
]
for _name, _fn, _attrs, _types in _ACTIVATIONS:
    _unary(_name, float_math(_fn), _types, attrs=_attrs, upgrades=_OLD_UNARY)

_unary("Relu", _relu, SIGNED, upgrades=_OLD_UNARY)
_unary("Gelu", float_math(_gelu), attrs={"approximate": Attr("string", "none")}, infer=_infer_gelu)


def _prelu(node, x, slope):
    with np.errstate(all="ignore"):
        if x.dtype in _ML_FLOATS or x.dtype == np.float16:
            w = np.float32
            x32, s32 = x.astype(w), slope.astype(w)
            return np.broadcast_to(np.where(x32 < 0, s32 * x32, x32), x.shape).astype(x.dtype)
        r = np.where(x < 0, slope.astype(x.dtype, copy=False) * x, x)
        return np.broadcast_to(r, x.shape).astype(x.dtype, copy=False)


def _prelu_channel_slope(node: Node, graph: Graph) -> None:
    """Opset < 7: a 1-D slope of C values is per channel (axis 1 of an N x C x ... input), not broadcast from
    the right; it becomes a C x 1 x ... x 1 slope (a reshaped constant, or an Unsqueeze node)."""
    x, slope = node.inputs[0], node.inputs[1]
    rank_x = x.type.rank if isinstance(x.type, TensorType) else None
    shape_s = slope.data.shape if slope.data is not None else \
        tuple(slope.type.shape) if isinstance(slope.type, TensorType) and slope.type.shape is not None else None
    if rank_x is None or rank_x < 3 or shape_s is None or len(shape_s) != 1 or shape_s[0] == 1:
        return  # a shared slope, or a rank where axis 1 is the last axis: right-aligned broadcasting agrees
    _append_unit_dims(node, graph, 1, 1, rank_x - 2, "slope", "channel_slope")


def _infer_prelu(ctx: InferContext) -> list:
    check_dtype(ctx, 0, FLOATS | {DType.int32, DType.int64, DType.uint32, DType.uint64})
    _same_dtypes(ctx, (0, 1))
    x, s = ctx.shape(0), ctx.shape(1)
    if x is not None and s is not None:
        out = broadcast_shapes(ctx, [x, s])
        if len(out) != len(x) or any(isinstance(o, int) and isinstance(d, int) and o != d for o, d in zip(out, x)):
            ctx.fail(f"slope of shape {list(s)} must broadcast to the input's shape {list(x)}")
    return [tt(ctx.dtype(0), x)]


register(OpDef("PRelu", eval=_prelu, infer=_infer_prelu, kind=Kind.BROADCAST, inputs=(2, 2),
               upgrades={**_OLD_UNARY, 7: _prelu_channel_slope}, family=FAMILY))


# ==== gradients ==========================================================================================
# A rule maps (ctx, node, dys) to one gradient per input; ``ctx`` (graphc.autodiff.GradContext) builds
# the backward nodes from registered ops, so rules are themselves differentiable (higher order).
def _unary_rule(fn):
    """Rule for a one-input op from ``fn(ctx, node, x, y, g) -> dx``."""

    def rule(ctx, node, dys):
        return [fn(ctx, node, node.inputs[0], node.outputs[0], dys[0])]

    return rule


def _decomposed(build):
    """Rule from a forward decomposition ``build(ctx, node, x) -> y`` into differentiable primitives."""
    return lambda ctx, node, dys: ctx.by_decomposition(node, dys, lambda c, n: [build(c, n, n.inputs[0])])


def _k(ctx, value, like):
    return ctx.scalar(value, like)


def _zero_grad(ctx, node, x, y, g):
    return ctx.zeros_like(x)  # piecewise constant: the derivative is 0 wherever it exists


def _mask(ctx, cond, g):
    """g where ``cond`` holds, else 0."""
    return ctx.op("Where", cond, g, _k(ctx, 0, g))


def _sq(ctx, x):
    return ctx.op("Mul", x, x)


def _gelu_parts(ctx, node, x):
    half = ctx.op("Mul", x, _k(ctx, 0.5, x))
    if node.attrs["approximate"] == "tanh":
        cube = ctx.op("Mul", _sq(ctx, x), x)
        inner = ctx.op("Mul", ctx.op("Add", x, ctx.op("Mul", cube, _k(ctx, 0.044715, x))),
                       _k(ctx, math.sqrt(2.0 / math.pi), x))
        s = ctx.op("Tanh", inner)
    else:
        s = ctx.op("Erf", ctx.op("Mul", x, _k(ctx, 1.0 / math.sqrt(2.0), x)))
    return ctx.op("Mul", half, ctx.op("Add", s, _k(ctx, 1.0, x)))


def _binary_rule(fa, fb):
    """Rule for a broadcasting binary op from ``fa/fb(ctx, a, b, y, g)`` (before un-broadcasting)."""

    def rule(ctx, node, dys):
        a, b = node.inputs
        y, g = node.outputs[0], dys[0]
        return [ctx.unbroadcast(fa(ctx, a, b, y, g), a), ctx.unbroadcast(fb(ctx, a, b, y, g), b)]

    return rule


def _pow_rule(ctx, node, dys):
    a, b = node.inputs
    y, g = node.outputs[0], dys[0]
    bf = b if ctx.dtype(b) == ctx.dtype(a) else ctx.op("Cast", b, to=ctx.dtype(a).value)
    da = ctx.op("Mul", g, ctx.op("Mul", bf, ctx.op("Pow", a, ctx.op("Sub", bf, _k(ctx, 1, bf)))))
    db = None
    if ctx.dtype(b).is_float:
        db = ctx.op("Mul", g, ctx.op("Mul", y, ctx.op("Log", a)))
        if ctx.dtype(b) != ctx.dtype(a):
            db = ctx.op("Cast", db, to=ctx.dtype(b).value)
        db = ctx.unbroadcast(db, b)
    return [ctx.unbroadcast(da, a), db]


def _mod_rule(ctx, node, dys):
    a, b = node.inputs
    g = dys[0]
    if not ctx.dtype(a).is_float:
        return [None, None]
    q = ctx.op("Div", a, b)
    if node.attrs["fmod"]:  # a - b * trunc(a / b)
        q = ctx.op("Mul", ctx.op("Sign", q), ctx.op("Floor", ctx.op("Abs", q)))
    else:  # a - b * floor(a / b)
        q = ctx.op("Floor", q)
    return [ctx.unbroadcast(g, a), ctx.unbroadcast(ctx.op("Neg", ctx.op("Mul", g, q)), b)]


def _extremum_rule(ctx, node, dys):
    """Max/Min of several inputs: the gradient goes to the inputs equal to the result, split among ties."""
    g, y = dys[0], node.outputs[0]
    if len(node.inputs) == 1:
        return [g]
    masks = [ctx.op("Cast", ctx.op("Equal", x, y), to=ctx.dtype(y).value) for x in node.inputs]
    share = ctx.op("Div", g, ctx.op("Sum", *masks))
    return [ctx.unbroadcast(ctx.op("Mul", share, m), x) for m, x in zip(masks, node.inputs)]


def _where_rule(ctx, node, dys):
    c, a, b = node.inputs
    g = dys[0]
    zero = _k(ctx, 0, g)
    return [None, ctx.unbroadcast(ctx.op("Where", c, g, zero), a), ctx.unbroadcast(ctx.op("Where", c, zero, g), b)]


def _clip_rule(ctx, node, dys):
    x, g = node.inputs[0], dys[0]
    lo = node.inputs[1] if len(node.inputs) > 1 else None
    hi = node.inputs[2] if len(node.inputs) > 2 else None
    inside = None
    out = [None] * len(node.inputs)
    for i, bound, op in ((1, lo, "Less"), (2, hi, "Greater")):
        if bound is None:
            continue
        beyond = ctx.op(op, x, bound)
        out[i] = ctx.reshape_like(ctx.op("ReduceSum", _mask(ctx, beyond, g), keepdims=0), bound)
        keep = ctx.op("Not", beyond)
        inside = keep if inside is None else ctx.op("And", inside, keep)
    out[0] = g if inside is None else _mask(ctx, inside, g)
    return out


def _cast_rule(ctx, node, dys):
    x, y = node.inputs[0], node.outputs[0]
    if not (ctx.dtype(x).is_float and ctx.dtype(y).is_float):
        return [None] * len(node.inputs)  # to or from integers: no gradient flows
    return [ctx.op("Cast", dys[0], to=ctx.dtype(x).value)] + [None] * (len(node.inputs) - 1)


def _prelu_rule(ctx, node, dys):
    x, slope = node.inputs
    g = dys[0]
    neg = ctx.op("Less", x, _k(ctx, 0, x))
    dx = ctx.op("Where", neg, ctx.op("Mul", g, slope), g)
    ds = ctx.unbroadcast(_mask(ctx, neg, ctx.op("Mul", g, x)), slope)
    return [dx, ds]


_GRADS = {
    "Abs": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, ctx.op("Sign", x))),
    "Neg": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Neg", g)),
    "Sign": _unary_rule(_zero_grad),
    "Floor": _unary_rule(_zero_grad),
    "Ceil": _unary_rule(_zero_grad),
    "Round": _unary_rule(_zero_grad),
    "Reciprocal": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Neg", ctx.op("Mul", g, _sq(ctx, y)))),
    "Exp": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, y)),
    "Log": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Div", g, x)),
    "Sqrt": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Div", g, ctx.op("Mul", y, _k(ctx, 2, y)))),
    "Sin": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, ctx.op("Cos", x))),
    "Cos": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Neg", ctx.op("Mul", g, ctx.op("Sin", x)))),
    "Tan": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, ctx.op("Add", _sq(ctx, y), _k(ctx, 1, y)))),
    "Asin": _unary_rule(lambda ctx, n, x, y, g: ctx.op(
        "Div", g, ctx.op("Sqrt", ctx.op("Sub", _k(ctx, 1, x), _sq(ctx, x))))),
    "Acos": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Neg", ctx.op(
        "Div", g, ctx.op("Sqrt", ctx.op("Sub", _k(ctx, 1, x), _sq(ctx, x)))))),
    "Atan": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Div", g, ctx.op("Add", _sq(ctx, x), _k(ctx, 1, x)))),
    "Sinh": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, ctx.op("Cosh", x))),
    "Cosh": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, ctx.op("Sinh", x))),
    "Asinh": _unary_rule(lambda ctx, n, x, y, g: ctx.op(
        "Div", g, ctx.op("Sqrt", ctx.op("Add", _sq(ctx, x), _k(ctx, 1, x))))),
    "Acosh": _unary_rule(lambda ctx, n, x, y, g: ctx.op(
        "Div", g, ctx.op("Sqrt", ctx.op("Sub", _sq(ctx, x), _k(ctx, 1, x))))),
    "Atanh": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Div", g, ctx.op("Sub", _k(ctx, 1, x), _sq(ctx, x)))),
    "Erf": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", ctx.op("Mul", g, _k(ctx, 2 / math.sqrt(math.pi), x)),
                                                      ctx.op("Exp", ctx.op("Neg", _sq(ctx, x))))),
    "LeakyRelu": _unary_rule(lambda ctx, n, x, y, g: ctx.op(
        "Where", ctx.op("Less", x, _k(ctx, 0, x)), ctx.op("Mul", g, _k(ctx, n.attrs["alpha"], g)), g)),
    "Elu": _unary_rule(lambda ctx, n, x, y, g: ctx.op(
        "Where", ctx.op("Greater", x, _k(ctx, 0, x)), g,
        ctx.op("Mul", g, ctx.op("Add", y, _k(ctx, n.attrs["alpha"], y))))),
    "Selu": _decomposed(lambda ctx, n, x: ctx.op("Mul", _k(ctx, n.attrs["gamma"], x), ctx.op(
        "Elu", x, alpha=n.attrs["alpha"]))),
    "Celu": _unary_rule(lambda ctx, n, x, y, g: ctx.op(
        "Where", ctx.op("Greater", x, _k(ctx, 0, x)), g,
        ctx.op("Mul", g, ctx.op("Exp", ctx.op("Div", x, _k(ctx, n.attrs["alpha"], x)))))),
    "HardSigmoid": _unary_rule(lambda ctx, n, x, y, g: _mask(
        ctx, ctx.op("And", ctx.op("Greater", y, _k(ctx, 0, y)), ctx.op("Less", y, _k(ctx, 1, y))),
        ctx.op("Mul", g, _k(ctx, n.attrs["alpha"], g)))),
    "HardSwish": _decomposed(lambda ctx, n, x: ctx.op("Mul", x, ctx.op("HardSigmoid", x, alpha=1 / 6, beta=0.5))),
    "Sigmoid": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", ctx.op("Mul", g, y),
                                                          ctx.op("Sub", _k(ctx, 1, y), y))),
    "Tanh": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, ctx.op("Sub", _k(ctx, 1, y), _sq(ctx, y)))),
    "Softplus": _unary_rule(lambda ctx, n, x, y, g: ctx.op("Mul", g, ctx.op("Sigmoid", x))),
    "Softsign": _unary_rule(lambda ctx, n, x, y, g: ctx.op(
        "Div", g, _sq(ctx, ctx.op("Add", ctx.op("Abs", x), _k(ctx, 1, x))))),
    "Mish": _decomposed(lambda ctx, n, x: ctx.op("Mul", x, ctx.op("Tanh", ctx.op("Softplus", x)))),
    "Swish": _decomposed(lambda ctx, n, x: ctx.op("Mul", x, ctx.op(
        "Sigmoid", ctx.op("Mul", x, _k(ctx, n.attrs["alpha"], x))))),
    "ThresholdedRelu": _unary_rule(lambda ctx, n, x, y, g: _mask(
        ctx, ctx.op("Greater", x, _k(ctx, n.attrs["alpha"], x)), g)),
    "Shrink": _unary_rule(lambda ctx, n, x, y, g: _mask(
        ctx, ctx.op("Greater", ctx.op("Abs", x), _k(ctx, n.attrs["lambd"], x)), g)),
    "Relu": _unary_rule(lambda ctx, n, x, y, g: _mask(ctx, ctx.op("Greater", x, _k(ctx, 0, x)), g)),
    "Gelu": _decomposed(_gelu_parts),
    "PRelu": _prelu_rule,
    "Add": _binary_rule(lambda ctx, a, b, y, g: g, lambda ctx, a, b, y, g: g),
    "Sub": _binary_rule(lambda ctx, a, b, y, g: g, lambda ctx, a, b, y, g: ctx.op("Neg", g)),
    "Mul": _binary_rule(lambda ctx, a, b, y, g: ctx.op("Mul", g, b), lambda ctx, a, b, y, g: ctx.op("Mul", g, a)),
    "Div": _binary_rule(lambda ctx, a, b, y, g: ctx.op("Div", g, b),
                        lambda ctx, a, b, y, g: ctx.op("Neg", ctx.op("Div", ctx.op("Mul", g, y), b))),
    "Pow": _pow_rule,
    "Mod": _mod_rule,
    "Sum": lambda ctx, node, dys: [ctx.unbroadcast(dys[0], x) for x in node.inputs],
    "Mean": lambda ctx, node, dys: [ctx.unbroadcast(ctx.op("Div", dys[0], _k(ctx, len(node.inputs), dys[0])), x)
                                    for x in node.inputs],
    "Max": _extremum_rule,
    "Min": _extremum_rule,
    "Where": _where_rule,
    "Clip": _clip_rule,
    "Cast": _cast_rule,
    "CastLike": _cast_rule,
}
_BOOLEAN_OUT = "its output is boolean"
_NOT_DIFFERENTIABLE = {
    **{name: _BOOLEAN_OUT for name in ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "IsNaN",
                                       "IsInf", "And", "Or", "Xor", "Not")},
    **{name: "it works on integers only" for name in ("BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
                                                      "BitShift")},
    "BitCast": "it reinterprets bit patterns, which is no smooth function of the input",
}
set_grads(_GRADS, _NOT_DIFFERENTIABLE)
set_facts(
    commutative=("Add", "Mul", "Max", "Min", "Sum", "And", "Or", "Xor", "Equal"),
    bool_output=("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Not", "IsNaN",
                 "IsInf"),
    float_math=("Exp", "Log", "Sqrt", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
                "Atanh", "Erf", "Tanh", "Ceil", "Floor", "Round", "Sigmoid", "Softplus", "Softsign", "Mish", "Swish",
                "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "ThresholdedRelu", "Shrink",
                "Gelu"),
    weight_inputs={"PRelu": {1}},
)
