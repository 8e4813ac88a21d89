"""Recognizes ops that exporters spell out in primitives and rewrites them into graphc's single ops.

- Gelu: ``x * 0.5 * (1 + Erf(x / sqrt 2))`` in any association order, and the tanh approximation
  ``0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))``.
- LayerNormalization: ``(x - mean) / Sqrt(ReduceMean((x - mean)^2) + eps)`` over trailing axes (or times the
  Reciprocal of that Sqrt); a following
  ``* gamma`` and ``+ beta`` fold into its scale and bias.
- Softmax: ``Exp(x [- ReduceMax(x)]) / ReduceSum(Exp(...))`` over one axis.
- Attention: ``MatMul(Softmax(MatMul(Q, K^T) [/ c | * c] [+ mask]), V)`` over 3-D or 4-D tensors.
Each is a rule in one table run by the rewrite engine (``rewrite.apply_rules``).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Value
from ..ops.reduce import LEGACY_COERCE_2D
from .manager import register_pass
from .rewrite import Editor, Match, P, Rule, all_equal, apply_rules, dtype_of, rule_table, static_shape


def _scalar(v: Value | None) -> float | None:
    if v is None or v.data is None or v.data.size != 1 or v.data.dtype.kind not in "fiu":
        return None
    return float(v.data.reshape(-1)[0])


def _close(a: float | None, b: float, rtol: float = 1e-3) -> bool:
    return a is not None and abs(a - b) <= rtol * abs(b)


def _private(ed: Editor, v: Value) -> bool:
    return ed.n_uses(v) == 1


def product_factors(ed: Editor, v: Value, root: bool = True) -> tuple[float, list[Value], list]:
    """``v`` as (constant coefficient, other factors, nodes consumed) through single-reader Mul, Div by a
    constant and Pow by a small integer constant; the product of the factors times the coefficient is v."""
    n = v.producer
    if v.data is not None and _scalar(v) is not None:
        return _scalar(v), [], []
    if n is None or n.domain != "" or (not root and not _private(ed, v)):
        return 1.0, [v], []
    if n.op_type == "Mul" and len(n.inputs) == 2:
        c1, f1, n1 = product_factors(ed, n.inputs[0], False)
        c2, f2, n2 = product_factors(ed, n.inputs[1], False)
        return c1 * c2, f1 + f2, [n] + n1 + n2
    if n.op_type == "Div" and len(n.inputs) == 2 and _scalar(n.inputs[1]) not in (None, 0.0):
        c1, f1, n1 = product_factors(ed, n.inputs[0], False)
        return c1 / _scalar(n.inputs[1]), f1, [n] + n1
    if n.op_type == "Pow" and _scalar(n.inputs[1]) in (2.0, 3.0):
        k = int(_scalar(n.inputs[1]))
        return 1.0, [n.inputs[0]] * k, [n]
    return 1.0, [v], []


def _sum_with_one(ed: Editor, v: Value, inner_op: str) -> tuple[Value, list] | None:
    """``v = Add(inner_op(t), 1)`` (either order; a two-input Sum too): returns (t, nodes)."""
    n = v.producer
    if n is None or n.op_type not in ("Add", "Sum") or len(n.inputs) != 2 or n.domain != "" or not _private(ed, v):
        return None
    for a, b in (n.inputs, n.inputs[::-1]):
        if _close(_scalar(b), 1.0, 1e-6) and a.producer is not None and a.producer.op_type == inner_op \
                and _private(ed, a):
            return a.producer.inputs[0], [n, a.producer]
    return None


def _float_dtype(v: Value) -> bool:
    dt = dtype_of(v)
    return dt is not None and dt.is_float


# ---- Gelu -------------------------------------------------------------------------------------------------
def _find_gelu(ed: Editor, node) -> Match | None:
    c, factors, nodes = product_factors(ed, node.outputs[0])
    if not _close(c, 0.5) or len(factors) != 2:
        return None
    for x, rest in (factors, factors[::-1]):
        if not _float_dtype(x):
            continue
        erf = _sum_with_one(ed, rest, "Erf")
        if erf is not None:
            c2, f2, n2 = product_factors(ed, erf[0], False)
            if f2 == [x] and _close(c2, 1 / math.sqrt(2.0)):
                return Match(node, {"x": x, "approximate": "none"}, nodes + erf[1] + n2)
        tanh = _sum_with_one(ed, rest, "Tanh")
        if tanh is not None:
            m = _tanh_argument(ed, tanh[0], x)
            if m is not None:
                return Match(node, {"x": x, "approximate": "tanh"}, nodes + tanh[1] + m)
    return None


def _tanh_argument(ed: Editor, t: Value, x: Value) -> list | None:
    """``t = sqrt(2/pi) * (x + 0.044715 * x^3)``: the nodes it consumes, or None."""
    c, factors, nodes = product_factors(ed, t, False)
    if not _close(c, math.sqrt(2.0 / math.pi)) or len(factors) != 1:
        return None
    s = factors[0].producer
    if s is None or s.op_type not in ("Add", "Sum") or len(s.inputs) != 2 or not _private(ed, factors[0]):
        return None
    for a, b in (s.inputs, s.inputs[::-1]):
        if a is x:
            c3, f3, n3 = product_factors(ed, b, False)
            if _close(c3, 0.044715) and len(f3) == 3 and all(f is x for f in f3):
                return nodes + [s] + n3
    return None


def _build_gelu(ed: Editor, m: Match):
    return ed.op("Gelu", m["x"], approximate=m.values["approximate"], name=m.root.name)


# ---- LayerNormalization ---------------------------------------------------------------------------------
_KEEP = lambda a: a.get("keepdims", 1) == 1  # noqa: E731
_MEAN = P("ReduceMean", P.any("x"), P.const("axes"), attrs=_KEEP)
_D = P("Sub", P.any("x"), _MEAN, name="d")
_SQ_POW = P("Pow", P.any("d"), P.const(None, all_equal(2.0)))
_SQ_MUL = P("Mul", P.any("d"), P.any("d"))


def _layernorm_pattern(square: P, reciprocal: bool = False) -> P:
    var = P("ReduceMean", square, P.const("axes2"), attrs=_KEEP)
    std = P("Sqrt", P("Add", var, P.const("eps", lambda a: a.size == 1)))
    return P("Mul", _D, P("Reciprocal", std)) if reciprocal else P("Div", _D, std)


def _trailing_axis(axes: np.ndarray, rank: int) -> int | None:
    ax = sorted(int(a) + rank if a < 0 else int(a) for a in axes.reshape(-1))
    return ax[0] if ax and ax == list(range(ax[0], rank)) else None


def _build_layernorm(ed: Editor, m: Match):
    x = m["x"]
    s = static_shape(x)
    if s is None or not _float_dtype(x):
        return None
    axis = _trailing_axis(m.const("axes"), len(s))
    if axis is None or _trailing_axis(m.const("axes2"), len(s)) != axis:
        return None
    norm = s[axis:]
    if not all(isinstance(d, int) for d in norm):
        return None
    dt = dtype_of(x).np
    scale, bias = ed.const(np.ones(norm, dt), "ln_scale"), ed.const(np.zeros(norm, dt), "ln_bias")
    eps = float(m.const("eps").reshape(-1)[0])
    return ed.op("LayerNormalization", x, scale, bias, axis=axis, epsilon=eps, name=m.root.name)


def _build_layernorm_affine(ed: Editor, m: Match):
    ln = m.node("y")
    c = m.const("c")
    s = static_shape(ln.outputs[0])
    if s is None or static_shape(m.root.outputs[0]) != s or len(ln.inputs) < 3 or ln.inputs[2] is None:
        return None
    scale, bias = ln.inputs[1].data, ln.inputs[2].data
    axis = ln.attrs["axis"] % len(s)
    norm = s[axis:]
    if scale is None or bias is None or c.ndim > len(s) or c.dtype != scale.dtype:
        return None
    lead = (1,) * (len(s) - c.ndim) + c.shape
    if any(d != 1 for d in lead[:axis]):
        return None  # c varies along an axis LayerNorm does not normalize over
    c = c.reshape(lead[axis:])
    if m.root.op_type == "Mul":
        scale, bias = np.broadcast_to(scale * c, norm), np.broadcast_to(bias * c, norm)
    else:
        bias = np.broadcast_to(bias + c, norm)
    ins = [ln.inputs[0], ed.const(np.ascontiguousarray(scale), "ln_scale"),
           ed.const(np.ascontiguousarray(bias), "ln_bias")]
    return ed.node("LayerNormalization", ins, dict(ln.attrs), name=ln.name).outputs[0]


# ---- Softmax ----------------------------------------------------------------------------------------------
def _softmax_pattern(stable: bool) -> P:
    arg = P("Sub", P.any("x"), P("ReduceMax", P.any("x"), P.const("axes2"), attrs=_KEEP)) if stable else P.any("x")
    return P("Div", P("Exp", arg, name="e"), P("ReduceSum", P.any("e"), P.const("axes"), attrs=_KEEP))


def _build_softmax(ed: Editor, m: Match):
    x = m["x"]
    s = static_shape(x)
    axes = m.const("axes").reshape(-1)
    if s is None or axes.size != 1 or not _float_dtype(x):
        return None
    axis = int(axes[0]) % len(s)
    if m.get("axes2") is not None:
        ax2 = m.const("axes2").reshape(-1)
        if ax2.size != 1 or int(ax2[0]) % len(s) != axis:
            return None
    return ed.op("Softmax", x, axis=axis, name=m.root.name)


# ---- Attention --------------------------------------------------------------------------------------------
def _find_attention(ed: Editor, node) -> Match | None:
    probs, v = node.inputs
    sm = probs.producer
    rank = len(static_shape(v) or ())
    if sm is None or sm.op_type != "Softmax" or rank not in (3, 4) or sm.attrs.get(LEGACY_COERCE_2D) \
            or sm.attrs.get("axis", -1) % rank != rank - 1 or not _private(ed, probs):
        return None
    nodes = [node, sm]
    scores, mask = sm.inputs[0], None
    n = scores.producer
    if n is not None and n.op_type == "Add" and _private(ed, scores):
        for a, b in (n.inputs, n.inputs[::-1]):
            if a.producer is not None and a.producer.op_type in ("Div", "Mul", "MatMul") and \
                    static_shape(a) == static_shape(scores):
                nodes.append(n)
                scores, mask = a, b
                break
    n = scores.producer
    scale = 1.0
    if n is not None and n.op_type in ("Div", "Mul") and _private(ed, scores):
        c = _scalar(n.inputs[1])
        if c is None or c == 0.0:
            return None
        scale = 1.0 / c if n.op_type == "Div" else c
        nodes.append(n)
        scores = n.inputs[0]
    qk = scores.producer
    if qk is None or qk.op_type != "MatMul" or not _private(ed, scores):
        return None
    nodes.append(qk)
    q, kt = qk.inputs
    tr = kt.producer
    swap = list(range(rank - 2)) + [rank - 1, rank - 2]
    k = None
    if tr is not None and tr.op_type == "Transpose" and tr.attrs.get("perm") is not None and \
            list(tr.attrs["perm"]) == swap:
        k = tr.inputs[0]
        if _private(ed, kt):
            nodes.append(tr)
    sq, sk, sv = static_shape(q), static_shape(k) if k is not None else None, static_shape(v)
    if sq is None or len(sq) != rank or (sk is not None and len(sk) != rank) or not _float_dtype(q):
        return None
    if sk is not None and (sq[:-2] != sk[:-2] or sq[-1] != sk[-1]) or sq[:-2] != sv[:-2]:
        return None  # batch/head dims that broadcast: the Attention op does not
    return Match(node, {"q": q, "k": k, "kt": kt, "v": v, "mask": mask, "scale": scale}, nodes)


def _build_attention(ed: Editor, m: Match):
    q, k, v, mask = m["q"], m.get("k"), m["v"], m.get("mask")
    rank = len(static_shape(q))
    if k is None:
        swap = list(range(rank - 2)) + [rank - 1, rank - 2]
        k = ed.op("Transpose", m["kt"], perm=swap)
        if static_shape(k) is None or static_shape(k)[:-2] != static_shape(q)[:-2] or \
                static_shape(k)[-1] != static_shape(q)[-1]:
            return None
    attrs = {"scale": float(m.values["scale"])}
    if rank == 3:
        attrs.update(q_num_heads=1, kv_num_heads=1)
        if mask is not None and len(static_shape(mask) or ()) == 3:
            mask = ed.op("Unsqueeze", mask, ed.const(np.array([1], np.int64), "axes"))
    if mask is not None and (not _float_dtype(mask) or dtype_of(mask) != dtype_of(q)
                             or len(static_shape(mask) or ()) < 2):
        return None  # the Attention op reads a mask's last two axes
    ins = [q, k, v] + ([mask] if mask is not None else [])
    return ed.node("Attention", ins, attrs, name=m.root.name).outputs[0]


RULES = [
    Rule("gelu", _build_gelu, find=_find_gelu, ops=("Mul",)),
    Rule("layernorm", _build_layernorm, _layernorm_pattern(_SQ_POW)),
    Rule("layernorm", _build_layernorm, _layernorm_pattern(_SQ_MUL)),
    Rule("layernorm", _build_layernorm, _layernorm_pattern(_SQ_POW, reciprocal=True)),
    Rule("layernorm", _build_layernorm, _layernorm_pattern(_SQ_MUL, reciprocal=True)),
    Rule("layernorm_scale", _build_layernorm_affine,
         P("Mul", P("LayerNormalization", any_inputs=True, name="y"), P.const("c"))),
    Rule("layernorm_bias", _build_layernorm_affine,
         P("Add", P("LayerNormalization", any_inputs=True, name="y"), P.const("c"))),
    Rule("softmax", _build_softmax, _softmax_pattern(stable=True)),
    Rule("softmax", _build_softmax, _softmax_pattern(stable=False)),
    Rule("attention", _build_attention, find=_find_attention, ops=("MatMul",)),
]

TABLE = rule_table(RULES)


@register_pass("recognize_patterns")
def recognize_patterns(graph: Graph, applied: dict | None = None) -> bool:
    return apply_rules(graph, TABLE, applied=applied)
