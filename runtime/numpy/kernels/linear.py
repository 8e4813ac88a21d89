"""Matrix products and convolution as single nodes, and as the heads of fused groups: ``HEAD_RUNNERS`` maps
Gemm, MatMul and Conv to ``runner(node, in_types, out_type, consts) -> run(args, out)`` or None."""
from __future__ import annotations

import numpy as np

from .common import FLOAT_TYPES
from .conv import conv_runner
from .registry import register


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


@register("Gemm", "MatMul", "Conv")
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


__all__ = ["HEAD_RUNNERS", "conv_head_runner", "gemm_runner", "matmul_runner"]
