"""Symbolic dim arithmetic and partly known values for the shape-computing ops' inference.

Shape, index and resize operators share these: products and quotients of dims with symbols, inputs read
as known ints or as partly known tuples (``InferContext.sym``), and the run-time error of a node.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import ExecutionError, node_label
from ..ir.dims import dim_from_factors, product_of
from .registry import InferContext

#: Longest partly known value that inference tracks (shapes, not data).
SYM_LIMIT = 64


def dim_factors_of(dims) -> tuple[int, Counter]:
    """A product of dims as (product of the known ones, multiset of symbols); ``3*N`` counts as 3 and N."""
    return product_of(dims)


def product_dim(ctx: InferContext, dims):
    """The product of dims as one dim: an int, the symbol itself when it is the only factor, else ``4*N``."""
    n, syms = dim_factors_of(dims)
    return dim_from_factors(n, syms)


def quotient_dim(ctx: InferContext, total, part):
    """prod(total) / prod(part) as one dim, cancelling shared symbols; fails on a known remainder."""
    nt, st = dim_factors_of(total)
    np_, sp = dim_factors_of(part)
    if any(sp[k] > st[k] for k in sp):
        return ctx.fresh()
    rest = st - sp
    if np_ == 0:
        return ctx.fresh()
    if nt % np_:
        if rest:
            return ctx.fresh()
        ctx.fail(f"cannot infer the -1 dim: {nt} elements do not divide into parts of {np_}")
    return dim_from_factors(nt // np_, rest)


def fmt_shape(shape) -> str:
    """A shape for messages: [2,N,3], or [...] when the rank is unknown."""
    return "[...]" if shape is None else "[" + ",".join(map(str, shape)) + "]"


def const_ints(ctx: InferContext, i: int) -> list[int] | None:
    """Input i as a list of ints when known ahead of time."""
    c = ctx.const(i)
    if c is None:
        return None
    return [int(x) for x in np.asarray(c).reshape(-1)]


def input_length(ctx: InferContext, i: int) -> int | None:
    """Number of entries of a rank-0/1 input when its shape is static."""
    s = ctx.shape(i)
    if s is None or len(s) > 1:
        return None
    if len(s) == 0:
        return 1
    return s[0] if isinstance(s[0], int) else None


def sym_or_unknown(ctx: InferContext, i: int) -> tuple | None:
    """ctx.sym(i), else a tuple of None as long as the input when only its length is known."""
    s = ctx.sym(i)
    if s is not None:
        return s
    n = input_length(ctx, i)
    return None if n is None or n > SYM_LIMIT else (None,) * n


def small_sym(ctx: InferContext, i: int) -> tuple | None:
    """Like sym_or_unknown, for inputs that may be data rather than shapes: only short ones are read."""
    n = input_length(ctx, i)
    return None if n is None or n > SYM_LIMIT else sym_or_unknown(ctx, i)


def record_sym(ctx: InferContext, k: int, dims) -> None:
    """``ctx.set_sym`` for a short value of which at least one entry is known."""
    if dims is not None and len(dims) <= SYM_LIMIT and any(d is not None for d in dims):
        ctx.set_sym(k, dims)


def as_dim(ctx: InferContext, d):
    """An entry of a partly known value used as a dim (None becomes a fresh symbol)."""
    return ctx.fresh() if d is None else d


def merge_dim(ctx: InferContext, a, b, what: str):
    """Two dims that must agree: fail when both are known and differ; return the better-known one."""
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            ctx.fail(f"{what}: {a} vs {b}")
        return a
    if isinstance(a, int):
        return a
    return b


def raise_at(node, msg):
    """Raise ExecutionError for ``node`` at run time (its label, then ``msg``)."""
    raise ExecutionError(f"{node_label(node)}: {msg}")
