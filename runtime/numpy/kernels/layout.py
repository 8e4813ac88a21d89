"""Kernels that move or reinterpret data: views (Reshape, Flatten, Squeeze, Unsqueeze, Identity), Concat,
Transpose and Split."""
from __future__ import annotations

import numpy as np

from graphc.ops.common import np_axis

from .registry import register


@register("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
def _view_kernel(ctx):
    """Reshape/Flatten/Squeeze/Unsqueeze/Identity: a view of the input where that is safe, else a copy."""
    if ctx.out_types[0] is None or ctx.in_types[0] is None:
        return None
    shape = tuple(ctx.out_types[0].shape)
    i0, o = ctx.ins[0], ctx.outs[0]
    if ctx.may_view(0):
        return lambda env: env.__setitem__(o, env[i0].reshape(shape))
    return lambda env: np.copyto(env[o], env[i0].reshape(shape))


@register("Concat")
def _concat_kernel(ctx):
    if ctx.aliases_any() or any(t is None for t in ctx.in_types):
        return None
    axis = np_axis(ctx.node.attrs["axis"], len(ctx.out_types[0].shape))
    ins, o = list(ctx.ins), ctx.outs[0]
    return lambda env: np.concatenate([env[i] for i in ins], axis=axis, out=env[o])


@register("Transpose")
def _transpose_kernel(ctx):
    if ctx.aliases_any():
        return None
    perm = ctx.node.attrs.get("perm")
    perm = tuple(perm) if perm is not None else tuple(reversed(range(len(ctx.in_types[0].shape))))
    i0, o = ctx.ins[0], ctx.outs[0]
    return lambda env: np.copyto(env[o], env[i0].transpose(perm))


@register("Split")
def _split_kernel(ctx):
    """Split with sizes known at prepare time: one copy per output."""
    xt = ctx.in_types[0]
    if xt is None or ctx.aliases_any() or any(t is None for t, s in zip(ctx.out_types, ctx.outs) if s >= 0):
        return None
    axis = np_axis(ctx.node.attrs.get("axis", 0), len(xt.shape))
    parts, start = [], 0
    for t, s in zip(ctx.out_types, ctx.outs):
        n = t.shape[axis]
        if s >= 0:
            parts.append((s, (slice(None),) * axis + (slice(start, start + n),)))
        start += n
    if start != xt.shape[axis]:
        return None
    i0 = ctx.ins[0]

    def step(env):
        x = env[i0]
        for s, index in parts:
            np.copyto(env[s], x[index])

    return step
