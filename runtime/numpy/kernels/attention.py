"""Attention (the ONNX op) as batched products and an in-place softmax."""
from __future__ import annotations

import math

import numpy as np

from .common import FLOAT_TYPES, only_first_output
from .registry import register


@register("Attention")
def _attention_kernel(ctx):
    """Attention on 4-D Q, K, V with as many K/V heads as Q heads, no cache, no soft cap, output Y only:
    one batched product for the scores, the mask (constant or fed) added, softmax in place, one product."""
    node, a = ctx.node, ctx.node.attrs
    ts = ctx.in_types
    if (len(ctx.ins) > 4 and any(s >= 0 for s in ctx.ins[4:])) or not only_first_output(ctx):
        return None
    if any(t is None or len(t.shape) != 4 for t in ts[:3]) or ts[0].dtype.np not in FLOAT_TYPES:
        return None
    if (a.get("softcap", 0.0) or a.get("left_window_size", -1) >= 0 or a.get("right_window_size", -1) >= 0
            or a.get("softmax_precision") not in (None, 0, ts[0].dtype.value)):
        return None
    dt = ts[0].dtype.np
    b, h, sq, dk = ts[0].shape
    if ts[1].shape[1] != h or ts[2].shape[1] != h or any(t.dtype.np != dt for t in ts[:3]):
        return None
    sk = ts[1].shape[2]
    scale = a.get("scale")
    scale = dt.type(1.0 / math.sqrt(dk) if scale is None else scale)
    mask_slot = ctx.ins[3] if len(ctx.ins) > 3 else -1
    bias = None  # constant additive bias (mask and causal frontier), or None
    fed_mask = False
    if mask_slot >= 0:
        mt, mc = ts[3], ctx.consts[3]
        if mt is None or mt.shape[-1] != sk:
            return None
        if mc is not None:
            bias = np.where(mc, dt.type(0), dt.type(-np.inf)) if mc.dtype == np.bool_ else mc.astype(dt)
        elif mt.dtype.np == dt:
            fed_mask = True
        else:
            return None
    if a.get("is_causal", 0):
        causal = np.where(np.arange(sq)[:, None] >= np.arange(sk)[None, :], dt.type(0), dt.type(-np.inf))
        if fed_mask:
            return None
        bias = causal if bias is None else bias + causal
    scores = np.empty((b, h, sq, sk), dt)
    qs = np.empty((b, h, sq, dk), dt)
    stat = np.empty((b, h, sq, 1), dt)
    neg_inf = dt.type(-np.inf)
    iq, ik, iv, o = ctx.ins[0], ctx.ins[1], ctx.ins[2], ctx.outs[0]

    def step(env):
        np.multiply(env[iq], scale, out=qs)
        np.matmul(qs, env[ik].swapaxes(-1, -2), out=scores)
        if bias is not None:
            np.add(scores, bias, out=scores)
        elif fed_mask:
            np.add(scores, env[mask_slot], out=scores)
        np.max(scores, axis=-1, keepdims=True, out=stat)
        np.copyto(stat, 0, where=stat == neg_inf)  # a row with no key to attend gives zeros, as eval does
        np.subtract(scores, stat, out=scores)
        np.exp(scores, out=scores)
        np.sum(scores, axis=-1, keepdims=True, out=stat)
        np.copyto(stat, 1, where=stat == 0)
        np.divide(scores, stat, out=scores)
        np.matmul(scores, env[iv], out=env[o])

    return step
