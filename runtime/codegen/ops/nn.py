"""Lowerings of the nn family's Attention (ONNX opset 23/24) and RotaryEmbedding.

Attention: two batched GEMMs around one generated row kernel.

For query heads ``h`` of ``Hq`` and key/value heads ``h // g`` (``g = Hq / Hkv``, grouped-query attention):

1. ``S[b, h] = scale * Q[b, h] @ K[b, h // g]^T`` into a scores buffer (B, Hq, Sq, T) in the plan's shared
   workspace: cuBLAS GEMMs reading Q and K where they are (3-D inputs (B, S, H*D) by a row stride of
   ``H*D`` and a head offset of ``D``; K as the transposed operand), no transposing copy;
2. one row kernel over the B*Hq*Sq rows of T scores: softcap, the additive or boolean mask (broadcast,
   a short last axis padded with "masked"), the causal/window frontier (offset by the past length or by
   ``nonpad_kv_seqlen``), then a stable softmax written in place over the scores (a row with no key left
   gives zeros); it also writes ``qk_matmul_output`` when the graph reads it (any of the four modes);
3. ``Y[b, h] = P[b, h] @ V[b, h // g]`` into the output, again in its own layout.

The GEMMs of all (batch, head) pairs are grouped into as few strided-batched calls as their offsets allow;
under GQA, the ``g`` query heads sharing a key head are multiplied as one taller matrix where their rows
are evenly spaced (4-D inputs; 3-D inputs with one query). ``past_key``/``past_value`` are concatenated
with K/V into ``present_key``/``present_value`` (an output, or scratch when the graph does not read them)
by a copy kernel, and the GEMMs read the present buffers. Element types: the GEMM's (float16, bfloat16,
float32, float64); softmax arithmetic in float32 (float64 for float64 inputs or ``softmax_precision``). For
the half types each step rounds to the input type as the NumPy reference does: Q and K are each multiplied by
sqrt(scale) and rounded (two elementwise copies; the GEMM's alpha is then 1), and the softmax rounds its steps.

RotaryEmbedding: one thread per output element, rotating its pair of the rotary dims by the cached
cos/sin of its position (interleaved or split halves), the other dims copied.
"""
from __future__ import annotations

from graphc.ir import DType, Node, Value

from ..dialect import grid_stride_loop
from ..elementwise import param_list
from ..kernel import (
    CodegenUnsupported,
    Kernel,
    KernelGroup,
    Param,
    cctype,
    compute_dtype,
    dtype_of,
    index_type,
    literal,
    load_expr,
    numel,
    prelude,
    round_to,
    shape_of,
    store_expr,
)
from ..launch import reduction_launch
from ..libcall import Gemm
from ..lowering import LowerContext, Step, register_lowering
from ..steps import FLOAT_TYPES, decode, float_type, loop_step


class _Layout:
    """Where element (b, h, row, col) of a per-head matrix lives: ``b*sb + h*sh + row*sr + col``."""

    def __init__(self, sb: int, sh: int, sr: int):
        self.sb, self.sh, self.sr = sb, sh, sr

    @staticmethod
    def of(shape, heads: int, rank: int) -> "_Layout":
        if rank == 4:  # (B, H, S, D)
            _, h, s, d = shape
            return _Layout(h * s * d, s * d, d)
        b, s, hd = shape  # (B, S, H*D)
        return _Layout(s * hd, hd // heads, hd)

    def folds(self, rows: int) -> bool:
        """Whether consecutive heads stack into one taller matrix with evenly spaced rows."""
        return rows == 1 or self.sh == rows * self.sr

    def folded_ld(self, rows: int) -> int:
        return self.sh if rows == 1 else self.sr


def _runs(items: list[tuple[int, ...]]) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    """Consecutive items (a tuple of operand offsets each) as strided runs: (first offsets, strides, count)."""
    runs = []
    for it in items:
        if runs:
            first, strides, count = runs[-1]
            last = tuple(f + (count - 1) * s for f, s in zip(first, strides))
            step = tuple(a - b for a, b in zip(it, last))
            if count == 1 and all(s >= 0 for s in step):
                runs[-1] = (first, step, 2)
                continue
            if count > 1 and step == strides:
                runs[-1] = (first, strides, count + 1)
                continue
        runs.append((it, (0,) * len(it), 1))
    return runs


def _batched_calls(outer: int, inner: int, offsets, make) -> list[Gemm]:
    """GEMM calls over all (i < outer, j < inner) items, batched along whichever order gives fewer calls.
    ``offsets(i, j)`` -> (offset_a, offset_b, offset_c); ``make(offsets, strides, batch)`` -> Gemm."""
    orders = ([offsets(i, j) for i in range(outer) for j in range(inner)],
              [offsets(i, j) for j in range(inner) for i in range(outer)])
    runs = min((_runs(items) for items in orders), key=len)
    return [make(first, strides if count > 1 else (0, 0, 0), count) for first, strides, count in runs]


def _present(ctx: LowerContext, node: Node, which: str, past: Value | None, cur: Value, out: Value | None,
             rank: int, hkv: int, dt: DType) -> tuple[Value | None, list[Step]]:
    """present = concat(past, cur) along the sequence (B, Hkv, P + S, D), written when the graph reads it or
    when there is a past (the GEMMs then read it); returns (the present buffer or None, steps)."""
    if past is None and out is None:
        return None, []
    cs = shape_of(cur)
    b, s, d = (cs[0], cs[2], cs[3]) if rank == 4 else (cs[0], cs[1], cs[2] // hkv)
    p = shape_of(past)[2] if past is not None else 0
    if past is not None and tuple(shape_of(past)) != (b, hkv, p, d):
        raise CodegenUnsupported(node, f"past_{which} of shape {list(shape_of(past))}, expected (batch {b}, "
                                       f"{hkv} heads, past length, head size {d})")
    t = p + s
    dst = out if out is not None else ctx.scratch(ctx.unique_name(f"{node.name}_present_{which}"), dt, (b, hkv, t, d))
    total = b * hkv * t * d
    it = index_type(total)
    body = decode("i", [("b", b), ("h", hkv), ("t", t), ("d", d)], it)
    src = (f"cur[((b * {hkv} + h) * {s} + (t - {p})) * {d} + d]" if rank == 4 else
           f"cur[(b * {s} + (t - {p})) * {hkv * d} + h * {d} + d]")
    if past is not None:
        body.append(f"        out[i] = t < {p} ? past[((b * {hkv} + h) * {p} + t) * {d} + d] : {src};")
        ins = [("past", past, dt), ("cur", cur, dt)]
    else:
        body.append(f"        out[i] = {src};")
        ins = [("cur", cur, dt)]
    what = f"past_{which} {[b, hkv, p, d]} and " if past is not None else ""
    step = loop_step(ctx, node, f"present_{which}", ins, [("out", dst, dt)], total, body,
                     f"present_{which} {[b, hkv, t, d]}: {what}the new {which}s ({'3-D' if rank == 3 else '4-D'})", it)
    return dst, [step]


def _scaled(ctx: LowerContext, node: Node, which: str, x: Value, root: float, dt: DType) -> tuple[Value, Step]:
    """A scratch copy of ``x`` times ``root``, rounded to ``dt``, and the step writing it."""
    n = numel(shape_of(x))
    out = ctx.scratch(ctx.unique_name(f"{node.name}_{which}_scaled"), dt, shape_of(x))
    prod = f"{load_expr('x[i]', dt)} * {literal(root, dt)}"
    body = [f"        y[i] = {store_expr(prod, dt)};"]
    return out, loop_step(ctx, node, f"scale_{which}", [("x", x, dt)], [("y", out, dt)], n, body,
                          f"{which.upper()} times sqrt(scale) = {root}, rounded to {dt}", index_type(n))


def lower_attention(node: Node, ctx: LowerContext) -> list[Step]:
    ins = list(node.inputs) + [None] * (7 - len(node.inputs))
    q, k, v, mask, past_k, past_v, nonpad = ins[:7]
    outs = list(node.outputs) + [None] * (4 - len(node.outputs))
    y, present_k_out, present_v_out, qk_out = outs
    a = node.attrs
    dt = float_type(node, q)
    for name, x in (("K", k), ("V", v), ("past_key", past_k), ("past_value", past_v)):
        if x is not None and dtype_of(x) != dt:
            raise CodegenUnsupported(node, f"{name} of {dtype_of(x)} with Q of {dt}")
    if (past_k is None) != (past_v is None):
        raise CodegenUnsupported(node, "past_key without past_value (or the other way round)")
    qs, ks, vs = shape_of(q), shape_of(k), shape_of(v)
    rank = len(qs)
    if rank not in (3, 4) or len(ks) != rank or len(vs) != rank:
        raise CodegenUnsupported(node, f"Q, K, V of ranks {len(qs)}, {len(ks)}, {len(vs)} (3 or 4 each)")
    if rank == 4:
        B, Hq, Sq, Dk = qs
        Hkv, Skv, Dv = ks[1], ks[2], vs[3]
    else:
        Hq, Hkv = a.get("q_num_heads"), a.get("kv_num_heads")
        if not Hq or not Hkv:
            raise CodegenUnsupported(node, "3-D Q, K, V without the q_num_heads and kv_num_heads attributes")
        B, Sq, Dk = qs[0], qs[1], qs[2] // Hq
        Skv, Dv = ks[1], vs[2] // Hkv
    if Hq % Hkv:
        raise CodegenUnsupported(node, f"{Hq} query heads are not a multiple of {Hkv} key/value heads")
    g = Hq // Hkv
    prec = a.get("softmax_precision")
    acc_dt = DType.float64 if dt == DType.float64 or (prec is not None and DType(prec) == DType.float64) \
        else DType.float32
    steps: list[Step] = []
    pk, st = _present(ctx, node, "key", past_k, k, present_k_out, rank, Hkv, dt)
    steps += st
    pv, st = _present(ctx, node, "value", past_v, v, present_v_out, rank, Hkv, dt)
    steps += st
    P = shape_of(past_k)[2] if past_k is not None else 0
    T = P + Skv
    if B * Hq * Sq == 0:
        return steps
    if T == 0:
        raise CodegenUnsupported(node, "attention over zero keys")
    # operands where they live: the GEMMs read the present buffers when there is a past
    lq = _Layout.of(qs, Hq, rank)
    lk = _Layout(Hkv * T * Dk, T * Dk, Dk) if past_k is not None else _Layout.of(ks, Hkv, rank)
    lv = _Layout(Hkv * T * Dv, T * Dv, Dv) if past_v is not None else _Layout.of(vs, Hkv, rank)
    kk, vv = (pk, pv) if past_k is not None else (k, v)
    ly = _Layout.of(shape_of(y), Hq, rank)
    ls = _Layout(Hq * Sq * T, Sq * T, T)
    scale = a.get("scale")
    scale = float(scale) if scale is not None else 1.0 / float(Dk) ** 0.5
    alpha = scale
    if compute_dtype(dt) != dt:  # half types: Q and K each times sqrt(scale), rounded, as the reference does
        root = float(dt.np.type(scale ** 0.5))
        (q, sq_step), (kk, sk_step) = _scaled(ctx, node, "q", q, root, dt), _scaled(ctx, node, "k", kk, root, dt)
        steps += [sq_step, sk_step]
        alpha = 1.0
    scores = ctx.workspace(B * Hq * Sq * T * dt.itemsize)

    # 1. S = scale * Q @ K^T
    fold = g > 1 and lq.folds(Sq)
    rows, heads = (g * Sq, Hkv) if fold else (Sq, Hq)
    lda = lq.folded_ld(Sq) if fold and Sq == 1 else lq.sr
    qh = g * lq.sh if fold else lq.sh
    sh = g * ls.sh if fold else ls.sh

    def qk_offsets(b, h):
        kh = h if fold else h // g
        return b * lq.sb + h * qh, b * lk.sb + kh * lk.sh, b * ls.sb + h * sh

    def qk_call(off, strides, batch):
        return Gemm(rows, T, Dk, dt, trans_b=True, lda=lda, ldb=lk.sr, ldc=T, batch=batch, stride_a=strides[0],
                    stride_b=strides[1], stride_c=strides[2], offset_a=off[0], offset_b=off[1], offset_c=off[2],
                    alpha=alpha)

    steps += [ctx.call_step(c, [q, kk, scores], node) for c in _batched_calls(B, heads, qk_offsets, qk_call)]
    # 2. softcap, mask, frontier and softmax over each row, in place
    steps.append(_softmax_step(ctx, node, scores, mask, nonpad, qk_out, dt, acc_dt, B, Hq, Sq, T, P))
    # 3. Y = P @ V
    fold = g > 1 and ly.folds(Sq)
    rows, heads = (g * Sq, Hkv) if fold else (Sq, Hq)
    ldc = ly.folded_ld(Sq) if fold and Sq == 1 else ly.sr
    yh = g * ly.sh if fold else ly.sh
    sh = g * ls.sh if fold else ls.sh

    def pv_offsets(b, h):
        kh = h if fold else h // g
        return b * ls.sb + h * sh, b * lv.sb + kh * lv.sh, b * ly.sb + h * yh

    def pv_call(off, strides, batch):
        return Gemm(rows, Dv, T, dt, lda=T, ldb=lv.sr, ldc=ldc, batch=batch, stride_a=strides[0],
                    stride_b=strides[1], stride_c=strides[2], offset_a=off[0], offset_b=off[1], offset_c=off[2])

    steps += [ctx.call_step(c, [scores, vv, y], node) for c in _batched_calls(B, heads, pv_offsets, pv_call)]
    return steps


def _softmax_step(ctx, node, scores, mask, nonpad, qk_out, dt, acc_dt, B, Hq, Sq, T, P) -> Step:
    """The row kernel: scores (scaled by the GEMM) -> probabilities, in place; qk_matmul_output if read."""
    a = node.attrs
    acc = cctype(acc_dt)
    f = "f" if acc_dt == DType.float32 else ""
    # half inputs: each step rounds its result to the input type, as the NumPy reference computes in it (the
    # softmax too, unless softmax_precision names a wider type)
    half = compute_dtype(dt) != dt
    wide = a.get("softmax_precision") is not None and DType(a["softmax_precision"]) != dt

    def r(expr: str, softmax: bool = False) -> str:
        return round_to(expr, dt) if half and not (softmax and wide) else expr
    neg_inf = literal(float("-inf"), acc_dt)
    rows = B * Hq * Sq
    it = index_type(max(rows * T, 1))
    strategy, grid, block = reduction_launch(rows, T, ctx.props)
    params = [Param("output", 0, "s", dt)]
    group_ins, group_outs = [], [scores]
    lines = []  # per element j of the row: the score ``x`` (masked: -inf), and ``capped`` for the qk output
    need = set()
    cap = float(a.get("softcap", 0.0) or 0.0)
    lines.append(f"const {acc} raw = (({acc}){load_expr('s[base + j]', dt)});")
    if cap > 0:
        c = literal(cap, acc_dt)
        lines.append(f"const {acc} capped = {r(f'{c} * ' + r(f'tanh{f}(' + r(f'raw / {c}') + ')'))};")
    else:
        lines.append(f"const {acc} capped = raw;")
    lines.append(f"{acc} bias = {literal(0, acc_dt)};")
    lines.append("bool ok = true;")
    if mask is not None:
        mdt = dtype_of(mask)
        ms = tuple(shape_of(mask))
        if len(ms) > 4 or len(ms) < 1:
            raise CodegenUnsupported(node, f"attn_mask of rank {len(ms)}")
        m4 = (1,) * (4 - len(ms)) + ms
        if m4[3] > T or any(d not in (1, full) for d, full in zip(m4[:3], (B, Hq, Sq))):
            raise CodegenUnsupported(node, f"attn_mask of shape {list(ms)} does not broadcast to {[B, Hq, Sq, T]}")
        if mdt != DType.bool and mdt != dt:
            raise CodegenUnsupported(node, f"attn_mask of {mdt} with Q of {dt}")
        params.append(Param("input", 0, "mask", mdt))
        group_ins.append(mask)
        terms, stride = [], m4[3]
        for name, d in (("i", 2), ("h", 1), ("b", 0)):
            if m4[d] != 1:
                need.add(name)
                terms.append(f"{name} * {stride}" if stride != 1 else name)
            stride *= m4[d]
        moff = " + ".join(reversed(terms)) if terms else "0"
        lines.append(f"const {it} moff = {moff};")
        inside = f"j < {m4[3]}" if m4[3] < T else "true"
        if mdt == DType.bool:
            lines.append(f"ok = {inside} && mask[moff + j];" if inside != "true" else "ok = mask[moff + j];")
        else:
            load = f"(({acc}){load_expr('mask[moff + j]', mdt)})"
            lines.append(f"if ({inside}) bias = {load}; else ok = false;" if inside != "true" else f"bias = {load};")
    causal, left, right = a.get("is_causal", 0), a.get("left_window_size", -1), a.get("right_window_size", -1)
    if nonpad is not None:
        if dtype_of(nonpad) not in (DType.int64, DType.int32) or numel(shape_of(nonpad)) != B:
            raise CodegenUnsupported(node, f"nonpad_kv_seqlen of {dtype_of(nonpad)}{list(shape_of(nonpad))}")
        params.append(Param("input", len(group_ins), "nonpad", dtype_of(nonpad)))
        group_ins.append(nonpad)
        need.add("b")
        lines.append("ok = ok && j < (long long)nonpad[b];")
    if causal or left >= 0 or right >= 0:
        need.add("i")
        off = f"(long long){P}" if nonpad is None or P else "((long long)nonpad[b] - " + str(Sq) + ")"
        lines.append(f"const long long diff = (long long)i + {off} - (long long)j;")
        if causal:
            lines.append("ok = ok && diff >= 0;")
        if left >= 0:
            lines.append(f"ok = ok && diff <= {left};")
        if right >= 0:
            lines.append(f"ok = ok && -diff <= {right};")
    lines.append(f"const {acc} x = ok ? {r('capped + bias') if mask is not None else 'capped'} : {neg_inf};")
    mode = a.get("qk_matmul_output_mode", 0)
    if qk_out is not None:
        if mode not in (0, 1, 2, 3):
            raise CodegenUnsupported(node, f"qk_matmul_output_mode {mode}")
        if tuple(shape_of(qk_out)) != (B, Hq, Sq, T):
            raise CodegenUnsupported(node, f"qk_matmul_output of shape {list(shape_of(qk_out))}")
        params.append(Param("output", 1, "qk", dt))
        group_outs.append(qk_out)
    coords = []
    if "b" in need:
        coords.append(f"const {it} b = row / {Hq * Sq};")
    if "h" in need:
        coords.append(f"const {it} h = (row / {Sq}) % {Hq};")
    if "i" in need:
        coords.append(f"const {it} i = row % {Sq};")

    def elem(ind: str) -> list[str]:
        return [ind + ln for ln in lines]

    def loop(ind: str, body: list[str]) -> list[str]:
        head = (f"for ({it} j = threadIdx.x; j < {T}; j += blockDim.x) {{" if strategy == "block" else
                f"for ({it} j = 0; j < {T}; ++j) {{")
        return [ind + head] + elem(ind + "    ") + [ind + "    " + b for b in body] + [ind + "}"]

    def reduce(ind: str, var: str, op: str) -> list[str]:
        if strategy != "block":
            return []
        comb = {"max": "(gc_red[threadIdx.x + half] > gc_red[threadIdx.x] ? gc_red[threadIdx.x + half] : "
                       "gc_red[threadIdx.x])", "sum": "gc_red[threadIdx.x] + gc_red[threadIdx.x + half]"}[op]
        return [f"{ind}gc_red[threadIdx.x] = {var};", f"{ind}__syncthreads();",
                f"{ind}for (int half = {block // 2}; half > 0; half >>= 1) {{",
                f"{ind}    if (threadIdx.x < half) gc_red[threadIdx.x] = {comb};", f"{ind}    __syncthreads();",
                f"{ind}}}", f"{ind}{var} = gc_red[0];",
                f"{ind}__syncthreads();  // every thread has read the result: the buffer may be reused"]

    ind = "        "
    body = coords + [f"const {it} base = row * {T};", f"{acc} mx = {neg_inf};"]
    body = [ind + ln for ln in body]
    body += loop(ind, ["if (x > mx) mx = x;"]) + reduce(ind, "mx", "max")
    body += [f"{ind}{acc} sum = {literal(0, acc_dt)};"]
    e = r(f"exp{f}({r('x - mx', True)})", True)
    body += loop(ind, [f"if (mx != {neg_inf}) sum += {e};"]) + reduce(ind, "sum", "sum")
    body.append(f"{ind}sum = {r('sum', True)};")
    write = [f"const {acc} p = mx == {neg_inf} ? {literal(0, acc_dt)} : {r(f'{e} / sum', True)};"]
    if qk_out is not None:
        val = {0: "capped", 1: "capped", 2: "x", 3: "p"}[mode]
        write.append(f"qk[base + j] = {store_expr(f'(({cctype(dt)}){val})', dt)};")
    write.append(f"s[base + j] = {store_expr(f'(({cctype(dt)})p)', dt)};")
    body += loop(ind, write)
    name = ctx.unique_name(f"{node.name or 'Attention'}_softmax")
    dtypes = {dt, acc_dt} | {p.dtype for p in params}
    if strategy == "block":
        head = [f"    __shared__ {acc} gc_red[{block}];",
                f"    for ({it} row = blockIdx.x; row < {rows}; row += gridDim.x) {{"]
    else:
        head = [grid_stride_loop(it, rows, "row")]
    how = f"one block of {block} threads per row" if strategy == "block" else "one thread per row"
    what = ", ".join(w for w in (f"softcap {cap}" if cap > 0 else "", "mask" if mask is not None else "",
                                 "causal" if causal else "", "window" if left >= 0 or right >= 0 else "",
                                 "nonpad_kv_seqlen" if nonpad is not None else "") if w)
    src = [f"// graphc kernel '{name}': Attention '{node.name}'",
           f"// scores -> softmax in place ({what or 'no mask'}): {rows} rows of {T} keys, {how}",
           prelude(set(), dtypes), "", f'extern "C" __global__ void {name}({param_list(params)})', "{",
           *head, *body, "    }", "}", ""]
    group = KernelGroup(name, [node], group_ins, group_outs)
    return ctx.kernel_step(group, node, Kernel(name, "\n".join(src), params, grid, block, group, rows))

register_lowering("Attention", lower_attention)

# ---- RotaryEmbedding -----------------------------------------------------------------------------
def lower_rotary(node: Node, ctx: LowerContext) -> list[Step]:
    x, cos, sin = node.inputs[:3]
    pos = node.inputs[3] if len(node.inputs) > 3 else None
    y = node.outputs[0]
    xs, dt = shape_of(x), dtype_of(x)
    if dt not in FLOAT_TYPES or dtype_of(cos) != dt or dtype_of(sin) != dt:
        raise CodegenUnsupported(node, f"RotaryEmbedding of {dt} with {dtype_of(cos)} caches")
    if len(xs) == 4:  # (batch, heads, seq, head size), in memory order
        batch, heads, seq, d = xs
        dims = [("b", batch), ("h", heads), ("s", seq), ("j", d)]
    else:  # (batch, seq, heads * head size)
        heads = int(node.attrs.get("num_heads") or 0)
        if len(xs) != 3 or not heads:
            raise CodegenUnsupported(node, f"input of shape {list(xs)} (num_heads {heads})")
        batch, seq, d = xs[0], xs[1], xs[2] // heads
        dims = [("b", batch), ("s", seq), ("h", heads), ("j", d)]
    rd = int(node.attrs.get("rotary_embedding_dim") or 0) or d
    half = rd // 2
    if shape_of(cos)[-1] != half or shape_of(sin)[-1] != half:
        raise CodegenUnsupported(node, f"cos/sin caches must have last dim {half}")
    it = index_type(numel(xs))
    c = cctype(dt)
    body = decode("i", dims, it)
    if rd < d:
        body.append(f"        if (j >= {rd}) {{ y[i] = x[i]; continue; }}  // past the rotated part")
    if node.attrs.get("interleaved", 0):
        body += ["        const int p = j / 2;  // pairs (x[2p], x[2p + 1])",
                 "        const bool first = j % 2 == 0;",
                 "        const long long i1 = first ? (long long)i : (long long)i - 1;",
                 "        const long long i2 = i1 + 1;"]
    else:
        body += [f"        const int p = j % {half};  // pairs (x[p], x[p + {half}])",
                 f"        const bool first = j < {half};",
                 f"        const long long i1 = first ? (long long)i : (long long)i - {half};",
                 f"        const long long i2 = i1 + {half};"]
    row = f"(long long)pos[b * {seq} + s]" if pos is not None else f"((long long)b * {seq} + s)"
    body += [f"        const long long at = {row} * {half} + p;",
             f"        const {c} co = {load_expr('cos_cache[at]', dt)}, si = {load_expr('sin_cache[at]', dt)};",
             f"        const {c} x1 = {load_expr('x[i1]', dt)}, x2 = {load_expr('x[i2]', dt)};",
             f"        const {c} u = {round_to('(first ? co : si) * x1', dt)};",
             f"        const {c} v = {round_to('(first ? si : co) * x2', dt)};",
             f"        y[i] = {store_expr('first ? u - v : u + v', dt)};"]
    ins = [("x", x, dt), ("cos_cache", cos, dt), ("sin_cache", sin, dt)]
    if pos is not None:
        ins.append(("pos", pos, dtype_of(pos)))
    return [loop_step(ctx, node, "rotary", ins, [("y", y, dt)], numel(xs), body,
                      f"RotaryEmbedding {'interleaved' if node.attrs.get('interleaved', 0) else 'halves'} over "
                      f"{rd} of {d} of {dt}{list(xs)}", it)]

register_lowering("RotaryEmbedding", lower_rotary)


__all__ = ['lower_attention', 'lower_rotary']
