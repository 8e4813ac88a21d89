"""Folds inference BatchNormalization and per-channel affine ops into the weights around them.

- ``BatchNormalization(Conv(x, W, b))`` becomes ``Conv(x, W*a, (b-mean)*a + bias)`` with
  ``a = scale / sqrt(var + eps)``; the same for Gemm (scaling B along N, folding into C) and for a 2-D
  ``MatMul(x, W)`` (which gains an Add of the shift).
- ``Mul(BN(x), c)`` and ``Add(BN(x), c)`` with a per-channel constant ``c`` fold into the BN's scale and bias;
  ``Mul(Conv(..), c)`` and ``Add(Conv(..), c)`` fold into the Conv's weight and bias.
- A BN left over (after a concatenation, say, as in a pre-activation block: BN -> Relu -> Conv) becomes
  ``Add(Mul(x, a), shift)`` with per-channel constants: two elementwise ops that fuse with what follows (the
  Relu), where the BN itself was a node of its own. Only for float32 and float64 inputs (a half type would
  round between the two ops).
Only when the BN parameters (and weights) are constants, the BN is in inference mode, and the inner node's
output has no other reader (the rewrite engine checks the last).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from .manager import register_pass
from .rewrite import Editor, Match, P, Rule, apply_rules, rule_table, static_shape


def _bn_params(ed: Editor, bn) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, shift) with BN(x) = x*a + shift per channel, in float64; None unless foldable."""
    if bn.attrs.get("training_mode", 0):
        return None
    params = [v.data if v is not None else None for v in bn.inputs[1:5]]
    if any(p is None or p.ndim != 1 or p.dtype.kind != "f" for p in params):
        return None
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    if len({p.shape for p in (scale, bias, mean, var)}) != 1:
        return None
    a = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return a, bias - mean * a


def _channel_vector(c: np.ndarray, rank: int, channels) -> np.ndarray | None:
    """A constant that broadcasts along axis 1 only (shape like [C,1,1] or [1,C,1,1]), as a float64 [C] vector."""
    if c.dtype.kind != "f" or c.ndim > rank or rank < 2 or not isinstance(channels, int):
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for k, d in enumerate(shape) if k != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))


def _out_rank_channels(v):
    s = static_shape(v)
    if s is None or len(s) < 2:
        return None, None
    return len(s), s[1]


# ---- BN into the producer ------------------------------------------------------------------------------
def _build_conv_bn(ed: Editor, m: Match):
    bn, conv = m.root, m.node("y")
    ab = _bn_params(ed, bn)
    w = m.const("w")
    if ab is None or w.dtype.kind != "f" or w.shape[0] != ab[0].shape[0]:
        return None
    a, shift = ab
    b = conv.inputs[2].data if len(conv.inputs) > 2 and conv.inputs[2] is not None else np.zeros(w.shape[0])
    if b is None:
        return None
    w2 = (w.astype(np.float64) * a.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    b2 = (b.astype(np.float64) * a + shift).astype(w.dtype)
    return ed.node("Conv", [m["x"], ed.const(w2, f"{conv.name}_w"), ed.const(b2, f"{conv.name}_b")],
                   dict(conv.attrs), name=conv.name).outputs[0]


def _build_gemm_bn(ed: Editor, m: Match):
    bn, gemm = m.root, m.node("y")
    ab = _bn_params(ed, bn)
    bmat = m.const("b")
    if ab is None or bmat.ndim != 2 or bmat.dtype.kind != "f":
        return None
    a, shift = ab
    trans_b = gemm.attrs.get("transB", 0)
    n = bmat.shape[0] if trans_b else bmat.shape[1]
    if n != a.shape[0]:
        return None
    b2 = bmat.astype(np.float64) * (a[:, None] if trans_b else a[None, :])
    c = gemm.inputs[2].data if len(gemm.inputs) > 2 and gemm.inputs[2] is not None else np.zeros(())
    if c is None:
        return None
    c2 = (float(gemm.attrs.get("beta", 1.0)) * c.astype(np.float64)) * a + shift
    attrs = dict(gemm.attrs, beta=1.0)
    dt = bmat.dtype
    ins = [m["x"], ed.const(b2.astype(dt), f"{gemm.name}_B"), ed.const(c2.astype(dt), f"{gemm.name}_C")]
    return ed.node("Gemm", ins, attrs, name=gemm.name).outputs[0]


def _build_matmul_bn(ed: Editor, m: Match):
    bn = m.root
    ab = _bn_params(ed, bn)
    w = m.const("w")
    s = static_shape(m["y"])
    if ab is None or w.ndim != 2 or w.dtype.kind != "f" or s is None or len(s) != 2 or w.shape[1] != ab[0].shape[0]:
        return None
    a, shift = ab
    mm = ed.op("MatMul", m["x"], ed.const((w.astype(np.float64) * a[None, :]).astype(w.dtype), "w"),
               name=m.node("y").name)
    return ed.op("Add", mm, ed.const(shift.astype(w.dtype), "shift"), name=bn.name)


# ---- a BN left alone: an affine per channel ----------------------------------------------------------------
def _build_bn_affine(ed: Editor, m: Match):
    bn = m.root
    x = bn.inputs[0]
    ab = _bn_params(ed, bn)
    t = x.type
    shape = getattr(t, "shape", None)
    if ab is None or shape is None or len(shape) < 2 or t.dtype.np not in (np.float32, np.float64) \
            or sum(1 for v in bn.outputs if v is not None) != 1:
        return None
    out = next(v for v in bn.outputs if v is not None)
    for reader, _ in ed.readers(out):  # a Mul or Add by a constant after it folds into the BN itself first
        if reader.op_type in ("Mul", "Add") and any(v is not None and v is not out and v.data is not None
                                                    for v in reader.inputs):
            return None
    a, shift = ab
    per_channel = (-1,) + (1,) * (len(shape) - 2)
    mul = ed.op("Mul", x, ed.const(a.astype(t.dtype.np).reshape(per_channel), f"{bn.name}_a"))
    return ed.op("Add", mul, ed.const(shift.astype(t.dtype.np).reshape(per_channel), f"{bn.name}_shift"),
                 name=bn.name)


# ---- per-channel Mul/Add into BN or Conv -----------------------------------------------------------------
def _build_affine_into_bn(ed: Editor, m: Match):
    op, bn = m.root.op_type, m.node("y")
    rank, ch = _out_rank_channels(m.root.outputs[0])
    c = _channel_vector(m.const("c"), rank or 0, ch)
    if c is None or _bn_params(ed, bn) is None or static_shape(m["y"]) != static_shape(m.root.outputs[0]):
        return None
    scale, bias = (bn.inputs[k].data for k in (1, 2))
    if scale.shape != (ch,):
        return None
    dt = scale.dtype
    if op == "Mul":
        scale, bias = scale.astype(np.float64) * c, bias.astype(np.float64) * c
    else:
        scale, bias = scale.astype(np.float64), bias.astype(np.float64) + c
    ins = [bn.inputs[0], ed.const(scale.astype(dt), f"{bn.name}_scale"), ed.const(bias.astype(dt), f"{bn.name}_bias"),
           bn.inputs[3], bn.inputs[4]]
    return ed.node("BatchNormalization", ins, dict(bn.attrs), name=bn.name).outputs[0]


def _build_affine_into_conv(ed: Editor, m: Match):
    op, conv = m.root.op_type, m.node("y")
    rank, ch = _out_rank_channels(m.root.outputs[0])
    c = _channel_vector(m.const("c"), rank or 0, ch)
    w = m.const("w")
    if c is None or w.dtype.kind != "f" or w.shape[0] != ch or static_shape(m["y"]) != static_shape(m.root.outputs[0]):
        return None
    b = conv.inputs[2].data if len(conv.inputs) > 2 and conv.inputs[2] is not None else np.zeros(ch)
    if b is None:
        return None
    if op == "Mul":
        w2 = w.astype(np.float64) * c.reshape((-1,) + (1,) * (w.ndim - 1))
        b2 = b.astype(np.float64) * c
    else:
        w2, b2 = w, b.astype(np.float64) + c
    ins = [conv.inputs[0], ed.const(np.asarray(w2).astype(w.dtype), f"{conv.name}_w"),
           ed.const(b2.astype(w.dtype), f"{conv.name}_b")]
    return ed.node("Conv", ins, dict(conv.attrs), name=conv.name).outputs[0]


_CONST = P.const
_BN_PARAMS = (_CONST(), _CONST(), _CONST(), _CONST())
_CONV = P("Conv", P.any("x"), _CONST("w"), name="y")
_CONV_B = P("Conv", P.any("x"), _CONST("w"), _CONST("bias"), name="y")

RULES = [
    Rule("batchnorm_into_conv", _build_conv_bn, P("BatchNormalization", _CONV, *_BN_PARAMS)),
    Rule("batchnorm_into_conv", _build_conv_bn, P("BatchNormalization", _CONV_B, *_BN_PARAMS)),
    Rule("batchnorm_into_gemm", _build_gemm_bn,
         P("BatchNormalization", P("Gemm", P.any("x"), _CONST("b"), name="y"), *_BN_PARAMS)),
    Rule("batchnorm_into_gemm", _build_gemm_bn,
         P("BatchNormalization", P("Gemm", P.any("x"), _CONST("b"), _CONST(), name="y"), *_BN_PARAMS)),
    Rule("batchnorm_into_matmul", _build_matmul_bn,
         P("BatchNormalization", P("MatMul", P.any("x"), _CONST("w"), name="y"), *_BN_PARAMS)),
]


def _affine_rules(op: str) -> list[Rule]:
    """The rules folding ``op`` (Mul or Add) by a constant into a BatchNormalization or Conv before it."""
    return [
        Rule(f"{op.lower()}_into_batchnorm", _build_affine_into_bn,
             P(op, P("BatchNormalization", P.any("x"), *_BN_PARAMS, name="y"), _CONST("c"))),
        Rule(f"{op.lower()}_into_conv", _build_affine_into_conv, P(op, _CONV, _CONST("c"))),
        Rule(f"{op.lower()}_into_conv", _build_affine_into_conv, P(op, _CONV_B, _CONST("c"))),
    ]


RULES += _affine_rules("Mul") + _affine_rules("Add")
# last: a BN that no rule above folded (each is tried before it)
RULES.append(Rule("batchnorm_to_affine", _build_bn_affine, P("BatchNormalization", P.any("x"), *_BN_PARAMS)))

TABLE = rule_table(RULES)


@register_pass("fold_batchnorm")
def fold_batchnorm(graph: Graph, applied: dict | None = None) -> bool:
    return apply_rules(graph, TABLE, applied=applied)
