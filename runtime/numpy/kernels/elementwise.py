"""Elementwise kernels: ``ELEMENTWISE`` maps an op type to ``build(node, dtype) -> apply(out, *inputs)``
or None (not handled for that node).

``apply`` may be called with ``out`` being one of the inputs (the memory plan runs elementwise ops in
place): every ``apply`` reads its inputs before, or in the same ufunc call as, its first write to
``out``. A single elementwise node runs as one ``apply``; fused groups (fused.py) chain them on
cache-sized chunks.
"""
from __future__ import annotations

import math

import numpy as np

from .common import FLOAT_TYPES, NATIVE_TYPES, Scratch
from .registry import register


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


# A single Identity node is a view (layout.py); in fused chains it is the copy above.
register(*(op for op in ELEMENTWISE if op != "Identity"))(_elementwise_kernel)

__all__ = ["ELEMENTWISE", "elementwise_apply"]
