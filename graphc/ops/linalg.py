"""Linear-algebra operators: MatMul, Gemm, Einsum, Det, MatMulInteger.

Matrix products run through numpy's BLAS-backed ``matmul``; float16/bfloat16 products are computed
in float32 (numpy has no fast half-precision kernel, and float32 accumulation is what runtimes do).
"""
from __future__ import annotations

import numpy as np

from ..ir import DType
from .common import broadcast_shapes, drop_attrs, tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "linalg"

_UPCAST = {np.dtype(np.float16), DType.bfloat16.np}


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dt = a.dtype
    if dt in _UPCAST:
        return np.asarray(np.matmul(a.astype(np.float32), b.astype(np.float32))).astype(dt)
    return np.asarray(np.matmul(a, b))  # (1-D @ 1-D gives a NumPy scalar: keep it an array)


def _same_dtype(ctx: InferContext, idx=(0, 1), names=("A", "B")):
    dts = [ctx.dtype(i) for i in idx]
    known = [d for d in dts if d is not None]
    if len(set(known)) > 1:
        shown = ", ".join(f"{n} is {d}" for n, d in zip(names, dts) if d is not None)
        ctx.fail(f"inputs must share one element type: {shown}")
    return known[0] if known else None


# ---- MatMul --------------------------------------------------------------------------------------
def matmul_shape(ctx: InferContext, a, b):
    """numpy.matmul's output shape over symbolic dims (1-D operands promoted and squeezed)."""
    if a is None or b is None:
        return None
    if len(a) == 0 or len(b) == 0:
        ctx.fail(f"MatMul operands must have rank >= 1, got shapes {list(a)} and {list(b)}")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    k1, k2 = a2[-1], b2[-2]
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        ctx.fail(f"inner dims differ: A of shape {list(a)} has {k1} columns, B of shape {list(b)} has {k2} rows")
    batch = broadcast_shapes(ctx, [a2[:-2], b2[:-2]])
    out = list(batch)
    if len(a) > 1:
        out.append(a2[-2])
    if len(b) > 1:
        out.append(b2[-1])
    return out


def _infer_matmul(ctx: InferContext) -> list:
    dtype = _same_dtype(ctx)
    return [tt(dtype, matmul_shape(ctx, ctx.shape(0), ctx.shape(1)))]


register(OpDef("MatMul", eval=lambda node, a, b: _matmul(a, b), infer=_infer_matmul, kind=Kind.OUT_FUSABLE,
               inputs=(2, 2), family=FAMILY, doc="numpy.matmul: batched matrix product with broadcasting."))


# ---- Gemm ----------------------------------------------------------------------------------------
def _gemm_eval(node, a, b, c=None):
    alpha, beta = node.attrs["alpha"], node.attrs["beta"]
    if node.attrs["transA"]:
        a = a.T
    if node.attrs["transB"]:
        b = b.T
    dt = a.dtype
    y = _matmul(a, b)
    if dt.kind in "iu":  # integer Gemm: scale in float, round back
        if alpha != 1.0:
            y = (y * alpha).astype(dt)
        if c is not None:
            y = (y + (c * beta if beta != 1.0 else c)).astype(dt)
        return y
    if alpha != 1.0:
        y *= dt.type(alpha)
    if c is not None:
        y += c * dt.type(beta) if beta != 1.0 else c
    return y


def _infer_gemm(ctx: InferContext) -> list:
    dtype = _same_dtype(ctx, (0, 1, 2), ("A", "B", "C"))
    a, b, c = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    for name, s in (("A", a), ("B", b)):
        if s is not None and len(s) != 2:
            ctx.fail(f"{name} must be a matrix (rank 2), got shape {list(s)}")
    m = k1 = k2 = n = None
    if a is not None:
        m, k1 = (a[1], a[0]) if ctx.attr("transA", 0) else (a[0], a[1])
    if b is not None:
        k2, n = (b[1], b[0]) if ctx.attr("transB", 0) else (b[0], b[1])
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        ctx.fail(f"inner dims differ: op(A) of shape {list(a)} (transA={ctx.attr('transA', 0)}) has {k1} columns, "
                 f"op(B) of shape {list(b)} (transB={ctx.attr('transB', 0)}) has {k2} rows")
    if c is not None:
        if len(c) > 2:
            ctx.fail(f"C must have rank <= 2 to broadcast to (M, N), got shape {list(c)}")
        for d, want in zip(reversed(c), (n, m)):
            if isinstance(d, int) and d != 1 and isinstance(want, int) and d != want:
                ctx.fail(f"C of shape {list(c)} does not broadcast to the output ({m}, {n})")
        # C can fill in dims A and B leave unknown
        cc = [1] * (2 - len(c)) + list(c)
        if m is None and cc[0] != 1:
            m = cc[0]
        if n is None and cc[1] != 1:
            n = cc[1]
    return [tt(dtype, [m if m is not None else ctx.fresh(), n if n is not None else ctx.fresh()])]


register(OpDef("Gemm", eval=_gemm_eval, infer=_infer_gemm,
               attrs={"alpha": Attr("float", 1.0), "beta": Attr("float", 1.0), "transA": Attr("int", 0),
                      "transB": Attr("int", 0)},
               upgrades={7: drop_attrs("broadcast")}, kind=Kind.OUT_FUSABLE, inputs=(2, 3), family=FAMILY,
               doc="alpha * op(A) @ op(B) + beta * C, C broadcast to the output."))


# ---- Einsum --------------------------------------------------------------------------------------
def parse_einsum(equation: str, ranks: list[int]):
    """Terms of an einsum equation with '...' expanded to per-operand labels; returns (inputs, output).

    Ellipsis dims become labels '0', '1', ... (right-aligned across operands) so that every term is a
    list of single labels. Raises ValueError on a malformed equation.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation '{equation}' has {len(terms)} operand terms but {len(ranks)} inputs were given")
    n_ell = 0
    parsed = []
    for t, r in zip(terms, ranks):
        if t.count("...") > 1 or (t.replace("...", "").count(".")):
            raise ValueError(f"term '{t}' of '{equation}' has a malformed ellipsis")
        letters = t.replace("...", "")
        if not all(ch.isalpha() for ch in letters):
            raise ValueError(f"term '{t}' of '{equation}' may hold only letters and '...'")
        if "..." in t:
            k = r - len(letters)
            if k < 0:
                raise ValueError(f"term '{t}' names {len(letters)} dims but its input has rank {r}")
            n_ell = max(n_ell, k)
            pre, post = t.split("...")
            parsed.append((list(pre), k, list(post)))
        else:
            if len(letters) != r:
                raise ValueError(f"term '{t}' names {len(letters)} dims but its input has rank {r}")
            parsed.append((list(letters), None, []))
    ell = [str(i) for i in range(n_ell)]
    ins = []
    for pre, k, post in parsed:
        ins.append(pre + (ell[n_ell - k:] if k is not None else []) + post)
    if arrow:
        if rhs.count("...") > 1 or not all(ch.isalpha() for ch in rhs.replace("...", "")):
            raise ValueError(f"output term '{rhs}' of '{equation}' is malformed")
        pre, _, post = rhs.partition("...")
        out = list(pre) + (ell if "..." in rhs else []) + list(post)
        known = {ch for term in ins for ch in term}
        for ch in pre + post:
            if ch not in known:
                raise ValueError(f"output label '{ch}' of '{equation}' appears in no input term")
    else:
        counts: dict[str, int] = {}
        for term in ins:
            for ch in term:
                if ch.isalpha():
                    counts[ch] = counts.get(ch, 0) + 1
        out = ell + sorted(ch for ch, c in counts.items() if c == 1)
    return ins, out


def _einsum_eval(node, *xs):
    eq = node.attrs["equation"]
    dt = xs[0].dtype
    if dt in _UPCAST:
        return np.asarray(np.einsum(eq, *[x.astype(np.float32) for x in xs], optimize=True)).astype(dt)
    return np.asarray(np.einsum(eq, *xs, optimize=len(xs) > 2)).astype(dt, copy=False)


def _infer_einsum(ctx: InferContext) -> list:
    idx = tuple(range(ctx.n_inputs))
    dtype = _same_dtype(ctx, idx, [f"input {i}" for i in idx])
    shapes = [ctx.shape(i) for i in idx]
    if any(s is None for s in shapes):
        return [tt(dtype, None)]
    try:
        ins, out = parse_einsum(ctx.attr("equation"), [len(s) for s in shapes])
    except ValueError as e:
        ctx.fail(str(e))
    dims: dict[str, list] = {}
    for term, s in zip(ins, shapes):
        for ch, d in zip(term, s):
            dims.setdefault(ch, []).append(d)
    size = {}
    for ch, ds in dims.items():
        fixed = {d for d in ds if isinstance(d, int) and (d != 1 or not ch.isdigit())}
        if ch.isdigit():  # ellipsis dims broadcast
            fixed.discard(1)
        if len(fixed) > 1:
            ctx.fail(f"label '{ch}' of '{ctx.attr('equation')}' has different sizes: "
                     f"{', '.join(map(str, sorted(fixed)))}")
        if fixed:
            size[ch] = fixed.pop()
        else:
            syms = {d for d in ds if isinstance(d, str)}
            size[ch] = syms.pop() if len(syms) == 1 else (1 if not syms else ctx.fresh())
    return [tt(dtype, [size[ch] for ch in out])]


register(OpDef("Einsum", eval=_einsum_eval, infer=_infer_einsum, attrs={"equation": Attr("string", REQUIRED)},
               kind=Kind.OPAQUE, inputs=(1, 2**31), family=FAMILY, doc="Einstein summation."))


# ---- Det -----------------------------------------------------------------------------------------
def _det_eval(node, x):
    dt = x.dtype
    xf = x.astype(np.float32) if dt in _UPCAST else x
    return np.asarray(np.linalg.det(xf)).astype(dt, copy=False)


def _infer_det(ctx: InferContext) -> list:
    s = ctx.shape(0)
    if s is None:
        return [tt(ctx.dtype(0), None)]
    if len(s) < 2:
        ctx.fail(f"X must have rank >= 2 (*, M, M), got shape {list(s)}")
    if isinstance(s[-1], int) and isinstance(s[-2], int) and s[-1] != s[-2]:
        ctx.fail(f"the last two dims of X must be square, got shape {list(s)}")
    return [tt(ctx.dtype(0), s[:-2])]


register(OpDef("Det", eval=_det_eval, infer=_infer_det, kind=Kind.OPAQUE, inputs=(1, 1), family=FAMILY,
               doc="Determinant of each square matrix in the last two dims."))


# ---- MatMulInteger -------------------------------------------------------------------------------
def _matmul_integer_eval(node, a, b, a_zp=None, b_zp=None):
    # float64 products and sums of 8-bit values are exact (well below 2**53), and go through BLAS.
    af = a.astype(np.float64)
    bf = b.astype(np.float64)
    if a_zp is not None:
        zp = np.asarray(a_zp, dtype=np.float64)
        if zp.ndim == 1 and zp.size > 1:  # one zero point per row of A
            zp = zp.reshape(-1, 1)
        af -= zp
    if b_zp is not None:
        bf -= np.asarray(b_zp, dtype=np.float64)  # scalar or one per column of B
    return np.asarray(np.rint(np.matmul(af, bf))).astype(np.int32)


def _infer_matmul_integer(ctx: InferContext) -> list:
    for i, name in ((0, "A"), (1, "B")):
        dt = ctx.dtype(i)
        if dt is not None and dt not in (DType.int8, DType.uint8):
            ctx.fail(f"{name} must be int8 or uint8, got {dt}")
    for i, j, name in ((2, 0, "a_zero_point"), (3, 1, "b_zero_point")):
        if ctx.dtype(i) is not None and ctx.dtype(j) is not None and ctx.dtype(i) != ctx.dtype(j):
            ctx.fail(f"{name} must have the element type of its operand ({ctx.dtype(j)}), got {ctx.dtype(i)}")
    return [tt(DType.int32, matmul_shape(ctx, ctx.shape(0), ctx.shape(1)))]


register(OpDef("MatMulInteger", eval=_matmul_integer_eval, infer=_infer_matmul_integer, kind=Kind.OPAQUE,
               inputs=(2, 4), family=FAMILY, doc="Integer matmul of (A - a_zero_point) and (B - b_zero_point)."))


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext).
def _swap_last(ctx, v):
    r = ctx.rank(v)
    return ctx.op("Transpose", v, perm=list(range(r - 2)) + [r - 1, r - 2])


def _matmul_grad(ctx, node, dys):
    a, b = node.inputs
    g = dys[0]
    ra, rb = ctx.rank(a), ctx.rank(b)
    a2 = ctx.op("Unsqueeze", a, ctx.ints([0])) if ra == 1 else a  # [K] -> [1, K]
    b2 = ctx.op("Unsqueeze", b, ctx.ints([1])) if rb == 1 else b  # [K] -> [K, 1]
    if ra == 1 and rb == 1:
        g = ctx.op("Unsqueeze", g, ctx.ints([0, 1]))
    elif ra == 1:
        g = ctx.op("Unsqueeze", g, ctx.ints([-2]))
    elif rb == 1:
        g = ctx.op("Unsqueeze", g, ctx.ints([-1]))
    da = ctx.unbroadcast(ctx.op("MatMul", g, _swap_last(ctx, b2)), a2)
    db = ctx.unbroadcast(ctx.op("MatMul", _swap_last(ctx, a2), g), b2)
    return [ctx.reshape_like(da, a) if ra == 1 else da, ctx.reshape_like(db, b) if rb == 1 else db]


def _gemm_grad(ctx, node, dys):
    a, b = node.inputs[:2]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    g = dys[0]
    alpha, beta = node.attrs["alpha"], node.attrs["beta"]
    ta, tb = node.attrs["transA"], node.attrs["transB"]
    # op(A) @ op(B) = Y:  d op(A) = g op(B)^T,  d op(B) = op(A)^T g; transposed back where op transposes
    if ta:
        da = ctx.op("Gemm", b, g, alpha=alpha, transA=tb, transB=1)
    else:
        da = ctx.op("Gemm", g, b, alpha=alpha, transB=1 - tb)
    if tb:
        db = ctx.op("Gemm", g, a, alpha=alpha, transA=1, transB=ta)
    else:
        db = ctx.op("Gemm", a, g, alpha=alpha, transA=1 - ta)
    dc = None
    if c is not None:
        dc = ctx.unbroadcast(g if beta == 1.0 else ctx.op("Mul", g, ctx.scalar(beta, g)), c)
    return [da, db, dc][:len(node.inputs)]


def _einsum_grad(ctx, node, dys):
    """d operand i = einsum of the output gradient with the other operands, onto operand i's labels.

    Labels of operand i that appear nowhere else were summed away: the result is broadcast back over them.
    """
    xs = node.inputs
    terms, out = parse_einsum(node.attrs["equation"], [ctx.rank(x) for x in xs])
    used = {ch for t in terms for ch in t} | set(out)
    free = iter(ch for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if ch not in used)
    rename = {ch: next(free) for ch in sorted(used) if not ch.isalpha()}  # ellipsis dims get letters
    terms = ["".join(rename.get(ch, ch) for ch in t) for t in terms]
    out = "".join(rename.get(ch, ch) for ch in out)
    grads = []
    for i, (x, term) in enumerate(zip(xs, terms)):
        if len(set(term)) != len(term):
            from ..errors import GradientError, node_label

            raise GradientError(f"{node_label(node)}: no gradient for operand {i} ('{term}'), which repeats a label "
                                f"(a diagonal)")
        others = [t for j, t in enumerate(terms) if j != i]
        reached = "".join(ch for ch in term if ch in out or any(ch in t for t in others))
        eq = ",".join([out] + others) + "->" + reached
        d = ctx.op("Einsum", dys[0], *[x2 for j, x2 in enumerate(xs) if j != i], equation=eq)
        if reached != term:
            missing = [k for k, ch in enumerate(term) if ch not in reached]
            d = ctx.expand_like(ctx.op("Unsqueeze", d, ctx.ints(missing)), x)
        grads.append(d)
    return grads


set_grads({"MatMul": _matmul_grad, "Gemm": _gemm_grad, "Einsum": _einsum_grad},
          {"MatMulInteger": "it works on integers only"})
set_facts(weight_inputs={"Gemm": {0, 1, 2}, "MatMul": {0, 1}, "Einsum": {0, 1}})
