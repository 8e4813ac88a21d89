"""Fast NumPy kernels for single operators: each writes into a preallocated output with ``out=``.

Two tables:

- ``ELEMENTWISE``: op type -> ``build(node, dtype) -> apply(out, *inputs)`` or None (not handled for
  that node). ``apply`` may be called with ``out`` being one of the inputs (the memory plan runs
  elementwise ops in place): every ``apply`` reads its inputs before, or in the same ufunc call as,
  its first write to ``out``. Fused groups (fused.py) chain these on cache-sized chunks.
- ``KERNELS``: op type -> ``factory(ctx) -> step`` or None, where ``ctx`` is a
  ``program.StepContext`` and ``step(env)`` reads its inputs from the slot list ``env`` and writes
  its output buffer (or, for ops that only reinterpret bytes, puts a view in the output slot).

A factory returns None when the node is outside what its kernel handles (a dtype, an attribute,
an input computed at run time where a constant is needed): the executor then calls the op's
reference ``eval`` for that node, so every fast kernel is an optimisation of an existing ``eval``
and must agree with it (tests/runtime check each kernel against its ``eval``).
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ops.common import np_axis

FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Types whose arithmetic NumPy does natively with the same results as the ops' ``eval``.
NATIVE_TYPES = FLOAT_TYPES + tuple(np.dtype(t) for t in (np.int32, np.int64))


class Scratch:
    """Temporary arrays reused across calls, one per (shape, dtype, tag)."""

    def __init__(self):
        self._arrays: dict = {}

    def get(self, shape, dtype, tag: int = 0) -> np.ndarray:
        key = (shape, dtype, tag)
        a = self._arrays.get(key)
        if a is None:
            a = self._arrays[key] = np.empty(shape, dtype)
        return a


# ---- elementwise -----------------------------------------------------------------------------------
def _ufunc1(ufunc, types=FLOAT_TYPES):
    def build(node, dtype):
        if dtype not in types:
            return None
        return lambda out, x: ufunc(x, out=out)

    return build


def _ufunc2(ufunc, types=NATIVE_TYPES):
    def build(node, dtype):
        if dtype not in types:
            return None
        return lambda out, a, b: ufunc(a, b, out=out)

    return build


def _fold(ufunc):
    """Variadic Sum/Max/Min: the first pair into ``out``, then the rest accumulated in place."""
    def build(node, dtype):
        if dtype not in NATIVE_TYPES:
            return None

        def apply(out, *xs):
            if len(xs) == 1:
                np.copyto(out, xs[0])
                return
            if len(xs) > 2:  # an input that out overwrites must be read by the first call
                xs = sorted(xs, key=lambda x: not np.may_share_memory(x, out))
            ufunc(xs[0], xs[1], out=out)
            for x in xs[2:]:
                ufunc(out, x, out=out)

        return apply

    return build


def _relu(node, dtype):
    if dtype not in NATIVE_TYPES:
        return None
    zero = dtype.type(0)
    return lambda out, x: np.maximum(x, zero, out=out)


def _sigmoid(node, dtype):
    """1 / (1 + e^-x): e^-x overflows to inf for very negative x, giving the limit 0 (errors are ignored)."""
    if dtype not in FLOAT_TYPES:
        return None
    one = dtype.type(1)

    def apply(out, x):
        np.negative(x, out=out)
        np.exp(out, out=out)
        np.add(out, one, out=out)
        np.reciprocal(out, out=out)

    return apply


def _reciprocal(node, dtype):
    return None if dtype not in FLOAT_TYPES else (lambda out, x: np.reciprocal(x, out=out))


def _div(node, dtype):  # integer Div truncates in ONNX; only floats here
    return None if dtype not in FLOAT_TYPES else (lambda out, a, b: np.divide(a, b, out=out))


def _leaky_relu(node, dtype):
    if dtype not in FLOAT_TYPES:
        return None
    alpha = dtype.type(node.attrs["alpha"])
    zero = dtype.type(0)
    scratch = Scratch()

    def apply(out, x):
        neg = scratch.get(out.shape, dtype)
        np.minimum(x, zero, out=neg)
        np.maximum(x, zero, out=out)
        np.multiply(neg, alpha, out=neg)
        np.add(out, neg, out=out)

    return apply


def _clip(node, dtype):
    if dtype not in NATIVE_TYPES:
        return None

    def apply(out, x, lo=None, hi=None):
        if lo is None and hi is None:
            np.copyto(out, x)
            return
        if lo is None:
            np.minimum(x, hi, out=out)
        elif hi is None:
            np.maximum(x, lo, out=out)
        else:
            np.maximum(x, lo, out=out)
            np.minimum(out, hi, out=out)

    return apply


def _erf_fast(dtype):
    """erf on whole arrays: graphc's own two Chebyshev fits (graphc.ops.elementwise.ERF32) evaluated with
    in-place Horner steps on their power-basis coefficients (in the fits' variable on [-1, 1], where that
    basis stays well conditioned). The fit below 2 runs on every element; the one from 2 to the cutoff
    only on the elements that need it, gathered (few in practice), so an erf costs about 30 passes."""
    from graphc.ops.elementwise import ERF32

    if dtype != np.float32:
        return None
    fit = ERF32
    cheb = np.polynomial.chebyshev
    small = [np.float32(c) for c in cheb.cheb2poly(fit.small.astype(np.float64))[::-1]]
    large = [np.float32(c) for c in cheb.cheb2poly(fit.large.astype(np.float64))[::-1]]
    two, cut, half, one = np.float32(2.0), np.float32(fit.cutoff), np.float32(0.5), np.float32(1.0)
    scale = np.float32(2.0 / (fit.cutoff - 2.0))
    scratch = Scratch()

    def horner(coefs, u, acc):
        np.multiply(u, coefs[0], out=acc)
        np.add(acc, coefs[1], out=acc)
        for c in coefs[2:]:
            np.multiply(acc, u, out=acc)
            np.add(acc, c, out=acc)
        return acc

    def apply(out, x):
        shape = out.shape
        a = scratch.get(shape, dtype, 1)
        s = scratch.get(shape, dtype, 2)
        u = scratch.get(shape, dtype, 3)
        r = scratch.get(shape, dtype, 4)
        far = scratch.get(shape, np.dtype(bool), 5)
        np.abs(x, out=a)
        # below 2: s p(s^2 / 2 - 1), s = min(|x|, 2); NaN stays NaN through every step
        np.minimum(a, two, out=s)
        np.multiply(s, s, out=u)
        np.multiply(u, half, out=u)
        np.subtract(u, one, out=u)
        horner(small, u, r)
        np.multiply(r, s, out=r)
        # from 2 on: 1 - e^{-m^2} q(t) / m with m = min(|x|, cutoff); 1 beyond the cutoff
        np.greater_equal(a, two, out=far)
        if far.any():
            idx = np.flatnonzero(far)
            m = np.minimum(a.reshape(-1)[idx], cut)
            t = (m - two) * scale - one
            q = horner(large, t, np.empty_like(t))
            q /= m
            q *= np.exp(-(m * m))
            np.subtract(one, q, out=q)
            r.reshape(-1)[idx] = q
        np.copysign(r, x, out=out)

    return apply


def _erf(node, dtype):
    return _erf_fast(dtype)


def _gelu(node, dtype):
    if dtype != np.float32 or node.attrs.get("approximate", "none") != "none":
        return None
    erf = _erf_fast(dtype)
    scratch = Scratch()
    inv_sqrt2, half, one = np.float32(1.0 / math.sqrt(2.0)), np.float32(0.5), np.float32(1.0)

    def apply(out, x):
        t = scratch.get(out.shape, dtype)
        np.multiply(x, inv_sqrt2, out=t)
        erf(t, t)
        np.add(t, one, out=t)
        np.multiply(t, x, out=out)
        np.multiply(out, half, out=out)

    return apply


ELEMENTWISE = {
    "Add": _ufunc2(np.add), "Sub": _ufunc2(np.subtract), "Mul": _ufunc2(np.multiply), "Div": _div,
    "Sum": _fold(np.add), "Max": _fold(np.maximum), "Min": _fold(np.minimum),
    "Relu": _relu, "Sigmoid": _sigmoid, "Reciprocal": _reciprocal, "LeakyRelu": _leaky_relu, "Clip": _clip,
    "Abs": _ufunc1(np.abs, NATIVE_TYPES), "Neg": _ufunc1(np.negative, NATIVE_TYPES),
    "Exp": _ufunc1(np.exp), "Log": _ufunc1(np.log), "Sqrt": _ufunc1(np.sqrt), "Tanh": _ufunc1(np.tanh),
    "Floor": _ufunc1(np.floor), "Ceil": _ufunc1(np.ceil), "Sin": _ufunc1(np.sin), "Cos": _ufunc1(np.cos),
    "Erf": _erf, "Gelu": _gelu, "Identity": lambda node, dtype: (lambda out, x: np.copyto(out, x)),
}


def elementwise_apply(node, dtype: np.dtype):
    """``apply(out, *inputs)`` for an elementwise node on ``dtype``, or None."""
    build = ELEMENTWISE.get(node.op_type) if not node.domain else None
    return None if build is None else build(node, np.dtype(dtype))


# ---- single-node kernels ---------------------------------------------------------------------------
def _elementwise_kernel(ctx):
    if len(ctx.outs) != 1 or ctx.out_types[0] is None:
        return None
    apply = elementwise_apply(ctx.node, ctx.out_types[0].dtype.np)
    if apply is None or any(t is not None and t.dtype.np != ctx.out_types[0].dtype.np for t in ctx.in_types):
        return None
    ins, o = ctx.ins, ctx.outs[0]
    if len(ins) == 1:
        i0 = ins[0]
        return lambda env: apply(env[o], env[i0])
    if len(ins) == 2 and min(ins) >= 0:
        i0, i1 = ins
        return lambda env: apply(env[o], env[i0], env[i1])
    return lambda env: apply(env[o], *[env[i] if i >= 0 else None for i in ins])


def _view_kernel(ctx):
    """Reshape/Flatten/Squeeze/Unsqueeze/Identity: a view of the input where that is safe, else a copy."""
    if ctx.out_types[0] is None or ctx.in_types[0] is None:
        return None
    shape = tuple(ctx.out_types[0].shape)
    i0, o = ctx.ins[0], ctx.outs[0]
    if ctx.may_view(0):
        return lambda env: env.__setitem__(o, env[i0].reshape(shape))
    return lambda env: np.copyto(env[o], env[i0].reshape(shape))


def gemm_runner(node, in_types, out_type, consts):
    """``run(args, out)`` for Gemm (args: A, B, optional C); a constant B is laid out for the product once."""
    dt = out_type.dtype.np
    if dt not in FLOAT_TYPES or any(t is None for t in in_types):
        return None
    ta, tb = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    alpha, beta = dt.type(node.attrs.get("alpha", 1.0)), dt.type(node.attrs.get("beta", 1.0))
    b_const = consts[1]
    bm = None if b_const is None else np.ascontiguousarray(b_const.T if tb else b_const)
    has_c = len(in_types) > 2 and beta != 0
    c_const = consts[2] if has_c else None
    if c_const is not None and beta != 1:
        c_const = (c_const * beta).astype(dt)

    def run(args, out):
        a = args[0]
        b = bm if bm is not None else (args[1].T if tb else args[1])
        np.matmul(a.T if ta else a, b, out=out)
        if alpha != 1:
            np.multiply(out, alpha, out=out)
        if has_c:
            c = c_const if c_const is not None else (args[2] if beta == 1 else args[2] * beta)
            np.add(out, c, out=out)

    return run


def matmul_runner(node, in_types, out_type, consts):
    """``run(args, out)`` for MatMul of operands with at least two dims."""
    if out_type.dtype.np not in FLOAT_TYPES or any(t is None or len(t.shape) < 2 for t in in_types):
        return None
    bc = consts[1]
    if bc is not None:
        return lambda args, out: np.matmul(args[0], bc, out=out)
    return lambda args, out: np.matmul(args[0], args[1], out=out)


def conv_head_runner(node, in_types, out_type, consts):
    """``run(args, out)`` for Conv (args: X, W, optional B)."""
    from .conv import conv_runner

    if any(t is None for t in in_types[:2]) or in_types[0].dtype != out_type.dtype:
        return None
    has_b = len(in_types) > 2 and in_types[2] is not None
    run = conv_runner(node, tuple(in_types[0].shape), tuple(in_types[1].shape), tuple(out_type.shape),
                      out_type.dtype.np, consts[1], consts[2] if has_b else None)
    if run is None:
        return None
    return lambda args, out: run(args[0], args[1], args[2] if has_b else None, out)


#: Ops that can head a fused group (their output then takes the group's elementwise epilogue in place).
HEAD_RUNNERS = {"Gemm": gemm_runner, "MatMul": matmul_runner, "Conv": conv_head_runner}


def _head_kernel(ctx):
    if ctx.aliases_any() or len(ctx.outs) != 1:
        return None
    run = HEAD_RUNNERS[ctx.op_type](ctx.node, ctx.in_types, ctx.out_types[0], ctx.consts)
    if run is None:
        return None
    ins, o = list(ctx.ins), ctx.outs[0]
    if len(ins) == 2:
        i0, i1 = ins
        return lambda env: run((env[i0], env[i1]), env[o])
    return lambda env: run([env[i] if i >= 0 else None for i in ins], env[o])


def _concat_kernel(ctx):
    if ctx.aliases_any() or any(t is None for t in ctx.in_types):
        return None
    axis = np_axis(ctx.node.attrs["axis"], len(ctx.out_types[0].shape))
    ins, o = list(ctx.ins), ctx.outs[0]
    return lambda env: np.concatenate([env[i] for i in ins], axis=axis, out=env[o])


def _transpose_kernel(ctx):
    if ctx.aliases_any():
        return None
    perm = ctx.node.attrs.get("perm")
    perm = tuple(perm) if perm is not None else tuple(reversed(range(len(ctx.in_types[0].shape))))
    i0, o = ctx.ins[0], ctx.outs[0]
    return lambda env: np.copyto(env[o], env[i0].transpose(perm))


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


def _only_first_output(ctx) -> bool:
    return ctx.outs[0] >= 0 and all(s < 0 for s in ctx.outs[1:])


def _layernorm_kernel(ctx):
    """LayerNormalization over trailing axes, float32/64 stashed in their own type, Y only (no statistics)."""
    node, xt = ctx.node, ctx.in_types[0]
    if (xt is None or not _only_first_output(ctx) or xt.dtype.np not in FLOAT_TYPES or len(xt.shape) == 0
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
    from graphc.ir import DType

    try:
        return DType(node.attrs.get("stash_type", 1)).np
    except ValueError:
        return np.dtype(np.float64)  # a bad code: let eval report it


def _attention_kernel(ctx):
    """Attention on 4-D Q, K, V with as many K/V heads as Q heads, no cache, no soft cap, output Y only:
    one batched product for the scores, the mask (constant or fed) added, softmax in place, one product."""
    node, a = ctx.node, ctx.node.attrs
    ts = ctx.in_types
    if (len(ctx.ins) > 4 and any(s >= 0 for s in ctx.ins[4:])) or not _only_first_output(ctx):
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


def _global_avgpool_kernel(ctx):
    t = ctx.in_types[0]
    if t.dtype.np not in FLOAT_TYPES or ctx.aliases_any():
        return None
    axes = tuple(range(2, len(t.shape)))
    i0, o = ctx.ins[0], ctx.outs[0]
    return lambda env: np.mean(env[i0], axis=axes, keepdims=True, out=env[o])


def _pool_kernel(ctx):
    from .conv import pool_kernel

    return pool_kernel(ctx)


def _fused_kernel(ctx):
    from .fused import fused_kernel

    return fused_kernel(ctx)


KERNELS = {name: _elementwise_kernel for name in ELEMENTWISE}
KERNELS.update({
    "Reshape": _view_kernel, "Flatten": _view_kernel, "Squeeze": _view_kernel, "Unsqueeze": _view_kernel,
    "Identity": _view_kernel, "Gemm": _head_kernel, "MatMul": _head_kernel, "Concat": _concat_kernel,
    "Transpose": _transpose_kernel, "Softmax": _softmax_kernel, "BatchNormalization": _batchnorm_kernel,
    "GlobalAveragePool": _global_avgpool_kernel, "MaxPool": _pool_kernel, "AveragePool": _pool_kernel,
    "Conv": _head_kernel, "LayerNormalization": _layernorm_kernel, "Attention": _attention_kernel,
    "Split": _split_kernel,
})
#: Kernels of the ``graphc`` domain.
GRAPHC_KERNELS = {"FusedGroup": _fused_kernel}


def kernel_for(ctx):
    """The step function for ``ctx``'s node, or None to use the op's ``eval``."""
    table = KERNELS if not ctx.node.domain else GRAPHC_KERNELS if ctx.node.domain == "graphc" else {}
    factory = table.get(ctx.node.op_type)
    return None if factory is None else factory(ctx)


__all__ = ["ELEMENTWISE", "FLOAT_TYPES", "GRAPHC_KERNELS", "HEAD_RUNNERS", "KERNELS", "Scratch", "elementwise_apply", "kernel_for"]
