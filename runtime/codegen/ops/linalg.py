"""Lowerings of the linalg family: MatMul and Gemm as library GEMM calls, and Einsum.

A MatMul becomes one strided-batched GEMM where the operands' batch dims allow it (a broadcast operand
gets stride 0), else a few calls at offsets (``matmul_calls``); a batch over an operand that stays the
same (x @ W) is folded into the rows of one plain GEMM. A Gemm becomes one GEMM with ``alpha`` and its
transposes; its ``beta * C`` term is split off (``split_gemm``) into the generated epilogue kernel that
also runs the activation or residual add fused after it, so C is never copied into the output first.
Matrices are float16, bfloat16 (accumulated in float32), float32 or float64; integer products have no
library routine and are reported missing. The device runs the call (cuBLAS on a GPU, the BLAS NumPy
loaded on the host). On a host whose compiler builds runtime/cpu's AVX-512 micro-kernel, a float32 product by
a constant matrix is a generated kernel instead, on the matrix packed into panels once (``_packed_product``).

Einsum: a (batched) matrix product whose operands are laid out as a GEMM reads them (batch labels first,
then the row/column/summed groups in either order) is one strided-batched GEMM call; any other equation
(a transpose, a trace, a diagonal, a sum, three operands) is a generated direct-sum kernel, one thread per
output element looping over the summed labels in order (deterministic).
"""
from __future__ import annotations

import itertools

import numpy as np

from graphc.ir import DType, Node, TensorType, Value
from graphc.ops.linalg import parse_einsum

from ..dialect import current
from ..kernel import (
    CodegenUnsupported,
    cctype,
    contiguous_strides,
    dtype_of,
    index_type,
    literal,
    load_expr,
    numel,
    shape_of,
    store_expr,
)
from ..libcall import GEMM_DTYPES, Gemm
from ..lowering import LowerContext, Step, register_lowering
from ..steps import decode, loop_step, spatial_offset

#: The most calls one MatMul may issue for a batch broadcast no single strided call expresses.
MAX_CALLS = 1024


def _check_dtype(node: Node, dt: DType) -> None:
    if dt not in GEMM_DTYPES:
        raise CodegenUnsupported(node, f"{node.op_type} of {dt}: cuBLAS multiplies float16, bfloat16, float32 and "
                                       f"float64 matrices; integer matrix products have no CUDA kernel yet")


def _uniform_stride(strides: list[int], dims: list[int], shape) -> int | None:
    """The one stride ``s`` with ``strides[d] == s * (elements of shape[e] for e after d in dims)`` for every
    ``d`` in ``dims`` (what a flattened batch index needs), or None."""
    s = strides[dims[-1]]
    step = 1
    for d in reversed(dims):
        if strides[d] != s * step:
            return None
        step *= shape[d]
    return s


def matmul_calls(shape_a, shape_b, dtype: DType = DType.float32) -> list[Gemm]:
    """The GEMM calls computing ``numpy.matmul`` of operands of these shapes into a contiguous output
    (pointers: A, B, the output). 1-D operands are promoted as NumPy does; batch dims broadcast."""
    a = (1,) + tuple(shape_a) if len(shape_a) == 1 else tuple(shape_a)
    b = tuple(shape_b) + (1,) if len(shape_b) == 1 else tuple(shape_b)
    m, k, n = a[-2], a[-1], b[-1]
    rank = max(len(a), len(b)) - 2
    ba = (1,) * (rank - len(a) + 2) + a[:-2]
    bb = (1,) * (rank - len(b) + 2) + b[:-2]
    bo = tuple(np.broadcast_shapes(ba, bb))
    if m * n * numel(bo) == 0:
        return []
    sa = [s * m * k if d != 1 else 0 for s, d in zip(contiguous_strides(ba), ba)]
    sb = [s * k * n if d != 1 else 0 for s, d in zip(contiguous_strides(bb), bb)]
    sc = [s * m * n for s in contiguous_strides(bo)]
    dims = [d for d in range(rank) if bo[d] != 1]
    # the fewest calls: the longest run of inner batch dims every operand steps through uniformly
    for p in range(len(dims) + 1):
        inner, outer = dims[p:], dims[:p]
        if not inner:
            strides = (0, 0, 0)
            break
        strides = tuple(_uniform_stride(s, inner, bo) for s in (sa, sb, sc))
        if None not in strides:
            break
    count = numel([bo[d] for d in outer])
    if count > MAX_CALLS:
        raise CodegenUnsupported(None, f"MatMul of shapes {list(shape_a)} and {list(shape_b)} would need {count} "
                                       f"GEMM calls (its batch broadcast fits no strided call)")
    batch = numel([bo[d] for d in inner])
    calls = []
    for index in itertools.product(*(range(bo[d]) for d in outer)):
        offs = [sum(i * s[d] for i, d in zip(index, outer)) for s in (sa, sb, sc)]
        rows, nb = m, batch
        if batch > 1 and strides[1] == 0 and strides[0] == m * k and strides[2] == m * n:
            rows, nb = m * batch, 1  # x @ W with W shared by the batch: one GEMM over all rows
        calls.append(Gemm(rows, n, k, dtype, batch=nb, stride_a=strides[0] if nb > 1 else 0,
                          stride_b=strides[1] if nb > 1 else 0, stride_c=strides[2] if nb > 1 else 0,
                          offset_a=offs[0], offset_b=offs[1], offset_c=offs[2]))
    return calls


#: C target with the panel micro-kernel (``DeviceProps.panel_gemm``): a float32 product A @ W by a constant
#: matrix W of at most PACKED_MAX_BYTES, with PACKED_MIN_ROWS rows of A or more, is a generated kernel calling
#: ``gc_panel_gemm`` on W packed into panels of 64 columns once, at lowering (a constant of the plan), rather
#: than the BLAS, which packs W again at every call (the benchmark's mlp at one thread: 0.99 -> 0.72 ms). A
#: matrix-vector product (fewer rows) stays with the BLAS's gemv, and a large W is not held twice.
PACKED_MAX_BYTES = 16 << 20
PACKED_MIN_ROWS = 8
PANEL = 64


def _packed_product(node: Node, ctx: LowerContext, a: Value, w: Value, y: Value,
                    trans_b: bool) -> list[Step] | None:
    """Y (M x N) = A (M x K, any leading dims) @ op(W) for a constant float32 W, by the panel micro-kernel; None
    where it does not apply (see PACKED_MAX_BYTES)."""
    data = ctx.constant(w)
    if not (ctx.props.panel_gemm and current().kernel_gemm) or dtype_of(y) != DType.float32 or data is None:
        return None
    ws, sa = shape_of(w), shape_of(a)
    if len(ws) != 2 or dtype_of(a) != DType.float32 or dtype_of(w) != DType.float32 or len(sa) < 2:
        return None
    K, N = (ws[1], ws[0]) if trans_b else (ws[0], ws[1])
    M = numel(sa[:-1])
    if sa[-1] != K or M < PACKED_MIN_ROWS or N == 0 or K == 0 or numel(ws) * 4 > PACKED_MAX_BYTES:
        return None
    W = np.asarray(data, dtype=np.float32).reshape(ws)
    if trans_b:
        W = W.T
    panels = -(-N // PANEL)
    packed = np.zeros((panels, K, PANEL), np.float32)
    for p in range(panels):
        block = W[:, p * PANEL:(p + 1) * PANEL]
        packed[p, :, :block.shape[1]] = block
    pw = Value(f"{node.name or node.op_type}_panels", TensorType(DType.float32, (packed.size,)),
               data=packed.reshape(-1))
    threads = ctx.props.multiprocessors
    col_panels = panels if threads <= 1 else max(1, panels // (2 * threads))
    cols = col_panels * PANEL
    rows = M if M <= 384 else 192
    nq, nr = -(-N // cols), -(-M // rows)
    it = index_type(max(M * K, M * N, packed.size))
    body = [f"        const {it} m0 = (i / {nq}) * {rows}, n0 = (i % {nq}) * {cols};",
            f"        const {it} m = m0 + {rows} < {M} ? {rows} : {M} - m0;",
            f"        const {it} n = n0 + {cols} < {N} ? {cols} : {N} - n0;",
            f"        gc_panel_gemm<float>(m, n, {K}, a + m0 * {K}, {K}, w + (n0 / {PANEL}) * {K * PANEL}, "
            f"{K * PANEL}, 0.0f, y + m0 * {N} + n0, {N});"]
    return [loop_step(ctx, node, "packed", [("a", a, DType.float32), ("w", pw, DType.float32)],
                      [("y", y, DType.float32)], nr * nq, body,
                      f"({M} x {K}) @ a constant ({K} x {N}) packed in panels of {PANEL} columns, by blocks of "
                      f"{rows} rows and {cols} columns", it)]


def lower_matmul(node: Node, ctx: LowerContext) -> list[Step]:
    a, b = node.inputs[:2]
    y = node.outputs[0]
    dt = dtype_of(y)
    _check_dtype(node, dt)
    packed = _packed_product(node, ctx, a, b, y, False)
    if packed is not None:
        return packed
    try:
        calls = matmul_calls(shape_of(a), shape_of(b), dt)
    except CodegenUnsupported as e:
        raise CodegenUnsupported(node, e.why) from None
    return [ctx.call_step(c, [a, b, y], node) for c in calls]


def gemm_call(node: Node) -> Gemm:
    """ONNX Gemm's ``alpha * op(A) @ op(B)`` (no C: ``split_gemm`` moves it to the epilogue)."""
    ta, tb = bool(node.attrs.get("transA", 0)), bool(node.attrs.get("transB", 0))
    sa, sb = shape_of(node.inputs[0]), shape_of(node.inputs[1])
    m, k = (sa[1], sa[0]) if ta else sa
    n = sb[0] if tb else sb[1]
    return Gemm(m, n, k, dtype_of(node.outputs[0]), trans_a=ta, trans_b=tb, alpha=float(node.attrs.get("alpha", 1.0)))


def lower_gemm(node: Node, ctx: LowerContext) -> list[Step]:
    _check_dtype(node, dtype_of(node.outputs[0]))
    if _has_c(node):
        raise CodegenUnsupported(node, "Gemm's C term is added by an epilogue kernel (split_gemm), not by the call")
    g = gemm_call(node)
    if g.m * g.n == 0:
        return []
    if not g.trans_a and g.alpha == 1.0:
        packed = _packed_product(node, ctx, node.inputs[0], node.inputs[1], node.outputs[0], g.trans_b)
        if packed is not None:
            return packed
    return [ctx.call_step(g, [node.inputs[0], node.inputs[1], node.outputs[0]], node)]


def _has_c(node: Node) -> bool:
    return len(node.inputs) > 2 and node.inputs[2] is not None and float(node.attrs.get("beta", 1.0)) != 0.0


def split_gemm(node: Node) -> tuple[Node, list[Node], Value] | None:
    """A Gemm with a C term as ``t = alpha * op(A) @ op(B)`` (the call) and ``t + beta * C`` (elementwise
    nodes for the epilogue kernel); returns (call node, epilogue nodes, the value standing for the output),
    or None when there is no C term. New values only: the plan's graph is left as it is."""
    if not _has_c(node):
        return None
    y, c = node.outputs[0], node.inputs[2]
    dt = dtype_of(y)
    t = Value(f"{y.name}_product", y.type)
    attrs = {k: v for k, v in node.attrs.items() if k != "beta"}
    core = Node("Gemm", list(node.inputs[:2]), [t], attrs, name=node.name)
    nodes = []
    beta = float(node.attrs.get("beta", 1.0))
    if beta != 1.0:
        scaled = Value(f"{c.name}_times_beta", TensorType(dt, shape_of(c)))
        k = Value(f"{node.name}_beta", TensorType(dt, ()), data=np.array(beta, dtype=dt.np))
        nodes.append(Node("Mul", [c, k], [scaled], name=f"{node.name}_beta_C"))
        c = scaled
    out = Value(y.name, y.type)
    nodes.append(Node("Add", [t, c], [out], name=f"{node.name}_plus_C"))
    return core, nodes, out

register_lowering("MatMul", lower_matmul)

register_lowering("Gemm", lower_gemm, split=split_gemm)

# ---- Einsum -------------------------------------------------------------------------------------
def _einsum_gemm(node: Node, terms: list[list[str]], out: list[str], size: dict) -> Gemm | None:
    """The one GEMM computing a two-operand Einsum whose operands a GEMM reads as they are, or None."""
    if len(terms) != 2 or any(len(set(t)) != len(t) for t in terms + [out]):
        return None
    a, b = terms
    batch = [ch for ch in out if ch in a and ch in b]
    ms = [ch for ch in out if ch in a and ch not in b]
    ns = [ch for ch in out if ch in b and ch not in a]
    ks = [ch for ch in a if ch in b and ch not in out]
    if set(a) | set(b) != set(batch + ms + ns + ks) or out != batch + ms + ns:
        return None  # a label summed within one operand
    kb = [ch for ch in b if ch in ks]
    if a == batch + ms + ks:
        trans_a = False
    elif a == batch + ks + ms:
        trans_a = True
    else:
        return None
    if b == batch + kb + ns and kb == ks:
        trans_b = False
    elif b == batch + ns + ks:
        trans_b = True
    else:
        return None
    nb, m, n, k = (int(np.prod([size[ch] for ch in g], dtype=np.int64)) for g in (batch, ms, ns, ks))
    if m * n * k * nb == 0:
        return None
    many = nb > 1
    return Gemm(m, n, k, dtype_of(node.outputs[0]), trans_a=trans_a, trans_b=trans_b, batch=nb,
                stride_a=m * k if many else 0, stride_b=k * n if many else 0, stride_c=m * n if many else 0)


def _einsum(node: Node, ctx: LowerContext) -> list[Step]:
    xs = [v for v in node.inputs if v is not None]
    y = node.outputs[0]
    dt = dtype_of(y)
    if dt == DType.bool or any(dtype_of(v) != dt for v in xs):
        raise CodegenUnsupported(node, f"Einsum of {[str(dtype_of(v)) for v in xs]} into {dt}")
    shapes = [shape_of(v) for v in xs]
    try:
        terms, out = parse_einsum(node.attrs["equation"], [len(s) for s in shapes])
    except ValueError as e:
        raise CodegenUnsupported(node, str(e)) from None
    size: dict[str, int] = {}
    for t, s in zip(terms, shapes):
        for ch, d in zip(t, s):
            size[ch] = max(size.get(ch, 1), d)  # dims of 1 broadcast (ellipsis dims)
    broadcast = any(d != size[ch] for t, s in zip(terms, shapes) for ch, d in zip(t, s))
    if numel(shape_of(y)) == 0:
        return []
    if dt in GEMM_DTYPES and not broadcast:
        g = _einsum_gemm(node, terms, out, size)
        if g is not None:
            return [ctx.call_step(g, [xs[0], xs[1], y], node)]
    var = {ch: f"l_{ch}" for ch in size}  # C names: ellipsis labels are digits
    summed = [ch for ch in dict.fromkeys(ch for t in terms for ch in t) if ch not in out]
    n = numel(shape_of(y))
    inner = numel([size[ch] for ch in summed])
    it = index_type(max(n, max(numel(s) for s in shapes), 1) * 2)
    c = cctype(dt)
    body = decode("i", [(var[ch], size[ch]) for ch in out], it)
    body.append(f"        {c} acc = {literal(0, dt)};")
    ind = "        "
    for ch in summed:
        body.append(f"{ind}for ({it} {var[ch]} = 0; {var[ch]} < {size[ch]}; ++{var[ch]}) {{")
        ind += "    "
    factors = []
    for j, (t, s) in enumerate(zip(terms, shapes)):
        at = spatial_offset([var[ch] if d != 1 else "0" for ch, d in zip(t, s)], list(s))
        factors.append(load_expr(f"in{j}[{at}]", dt))
    body.append(f"{ind}acc += {' * '.join(factors)};")
    for _ in summed:
        ind = ind[:-4]
        body.append(f"{ind}}}")
    body.append(f"        y[i] = {store_expr(_acc_round('acc', dt), dt)};")
    ins = [(f"in{j}", v, dt) for j, v in enumerate(xs)]
    return [loop_step(ctx, node, "einsum", ins, [("y", y, dt)], n, body,
                      f"Einsum '{node.attrs['equation']}' of {[list(s) for s in shapes]}: each of the {n} outputs "
                      f"sums {inner} products over {''.join(summed) or 'nothing'} in order", it)]


def _acc_round(expr: str, dt: DType) -> str:
    """Integer sums narrower than int promote in C: cast the accumulator back (NumPy wraps)."""
    return f"(({cctype(dt)})({expr}))" if dt in (DType.int8, DType.int16, DType.uint8, DType.uint16) else expr

register_lowering("Einsum", _einsum)


__all__ = ['MAX_CALLS', 'gemm_call', 'lower_gemm', 'lower_matmul', 'matmul_calls', 'split_gemm']
