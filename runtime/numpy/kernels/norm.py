"""Normalizations: Softmax over the last axis, LayerNormalization and inference BatchNormalization."""
from __future__ import annotations

import math

import numpy as np

from graphc.ir import DType
from graphc.ops.common import np_axis

from .common import FLOAT_TYPES, only_first_output
from .registry import register


@register("Softmax")
def _softmax_kernel(ctx):
    """Softmax over the last axis (what the op's axis is normalised to) with a scratch for the row stats."""
    t = ctx.out_types[0]
    dt = t.dtype.np
    if dt not in FLOAT_TYPES or ctx.op_type != "Softmax" or len(t.shape) == 0:
        return None
    axis = np_axis(ctx.node.attrs.get("axis", -1), len(t.shape))
    if axis != len(t.shape) - 1:
        return None
    stat = np.empty(tuple(t.shape[:-1]) + (1,), dt)
    i0, o = ctx.ins[0], ctx.outs[0]
    neg_inf = dt.type(-np.inf)

    def step(env):
        x, out = env[i0], env[o]
        np.max(x, axis=-1, keepdims=True, out=stat)
        np.copyto(stat, 0, where=stat == neg_inf)  # an all -inf row gives zeros, as eval does
        np.subtract(x, stat, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=-1, keepdims=True, out=stat)
        np.copyto(stat, 1, where=stat == 0)
        np.divide(out, stat, out=out)

    return step


@register("LayerNormalization")
def _layernorm_kernel(ctx):
    """LayerNormalization over trailing axes, float32/64 stashed in their own type, Y only (no statistics)."""
    node, xt = ctx.node, ctx.in_types[0]
    if (xt is None or not only_first_output(ctx) or xt.dtype.np not in FLOAT_TYPES or len(xt.shape) == 0
            or np.promote_types(xt.dtype.np, _stash_dtype(node)) != xt.dtype.np
            or any(t is not None and t.dtype != xt.dtype for t in ctx.in_types[1:3])):
        return None
    shape = tuple(xt.shape)
    axis = np_axis(node.attrs.get("axis", -1), len(shape))
    rows, cols = math.prod(shape[:axis]), math.prod(shape[axis:])
    dt = xt.dtype.np
    eps = dt.type(node.attrs.get("epsilon", 1e-5))
    stat = np.empty((rows, 1), dt)
    sq = np.empty((rows, cols), dt)
    ins, o = list(ctx.ins) + [-1] * (3 - len(ctx.ins)), ctx.outs[0]
    i0, i1, i2 = ins[:3]

    def step(env):
        x, out = env[i0].reshape(rows, cols), env[o]
        o2 = out.reshape(rows, cols)
        np.mean(x, axis=1, keepdims=True, out=stat)
        np.subtract(x, stat, out=o2)
        np.multiply(o2, o2, out=sq)
        np.mean(sq, axis=1, keepdims=True, out=stat)
        np.add(stat, eps, out=stat)
        np.sqrt(stat, out=stat)
        np.divide(o2, stat, out=o2)
        np.multiply(out, env[i1], out=out)
        if i2 >= 0:
            np.add(out, env[i2], out=out)

    return step


def _stash_dtype(node):
    try:
        return DType(node.attrs.get("stash_type", 1)).np
    except ValueError:
        return np.dtype(np.float64)  # a bad code: let eval report it


@register("BatchNormalization")
def _batchnorm_kernel(ctx):
    """Inference BatchNormalization with constant statistics: one multiply and one add per element."""
    node = ctx.node
    dt = ctx.out_types[0].dtype.np
    if (dt not in FLOAT_TYPES or node.attrs.get("training_mode", 0) or len(ctx.outs) != 1
            or any(c is None for c in ctx.consts[1:5]) or len(ctx.in_types[0].shape) < 2):
        return None
    scale, bias, mean, var = (c.astype(np.float64) for c in ctx.consts[1:5])
    if scale.ndim != 1:
        return None
    a = scale / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
    b = bias - mean * a
    bshape = (-1,) + (1,) * (len(ctx.in_types[0].shape) - 2)
    a, b = a.astype(dt).reshape(bshape), b.astype(dt).reshape(bshape)
    i0, o = ctx.ins[0], ctx.outs[0]

    def step(env):
        out = env[o]
        np.multiply(env[i0], a, out=out)
        np.add(out, b, out=out)

    return step
