"""Lowerings of the conv family's Conv, ConvTranspose and Col2Im: generated index kernels around GEMM calls.

Conv of X (N, C, *S) with W (M, C/G, *K), G groups, into Y (N, M, *O), P = prod(O) output positions:

- 1x1 at stride 1 without padding: Y[n] = W @ X[n] per group, a GEMM reading X as it is;
- depthwise (one input channel per group): a direct kernel, one thread per output element summing its taps; in
  the C dialect (2-D, undilated, rows of 16 outputs or more) one output row per work item, each tap a loop along
  the row that the compiler vectorizes;
- otherwise im2col: a kernel writes the columns col[n][c, k][p] (the input element tap ``k`` of output ``p``
  sees, 0 in the padding) into the plan's shared workspace, and one GEMM per group (or per batch item,
  whichever is fewer, the other batched) multiplies W_g (M/G x C/G*K) by the group's rows. The workspace
  holds a chunk of the batch at a time, so that a large batch does not need a huge buffer;
- in the C dialect (``kernel_gemm``), 2-D float32/float64, 1x1 included (see BAND_MIN): by bands of output
  rows, one work item per band, which writes the band's columns into its thread's scratch buffer in panels of
  256 bytes of columns and multiplies them there (``gc_panel_gemm``: runtime/cpu's AVX-512 micro-kernel, or
  the BLAS per panel), while they are in the core's cache.

A constant bias is split off (``split_conv``) into the generated epilogue kernel that also runs a following Relu
or residual Add; a bias computed at run time is written into Y first (a broadcast kernel) and the GEMMs
accumulate onto it (beta = 1); the depthwise kernel adds its own. ConvTranspose is the adjoint: a GEMM per group
makes col[n][m, k][i] = W_g^T X[n] (the contribution of input position ``i`` through tap ``k``), then a col2im
kernel gathers, for each output element, the contributions that land on it (no atomics, deterministic) and
adds the bias. Col2Im is that gathering kernel alone, reading the columns as given (block_shape must be
constant; the static output shape gives image_shape). Any number of spatial dims; the GEMM's element types
(float16, bfloat16, float32, float64).
"""
from __future__ import annotations

from graphc.ir import DType, Node, TensorType, Value
from graphc.ops.conv import convtranspose_pads, geometry

from ..dialect import current
from ..kernel import (
    CodegenUnsupported,
    cctype,
    ctype,
    dtype_of,
    index_type,
    literal,
    load_expr,
    numel,
    shape_of,
    store_expr,
)
from ..libcall import Gemm
from ..lowering import LowerContext, Step, register_lowering
from ..steps import ROW_MIN, constant_input, decode, float_type, loop_step, row_window, spatial_offset

#: Most bytes of im2col/col2im columns made at once; a larger batch is processed in chunks (one item at least).
WORKSPACE_LIMIT = 128 << 20


def _bias_step(ctx, node, b: Value, y: Value, dt: DType) -> Step:
    """Y[n, m, ...] = b[m]: the GEMMs then accumulate onto it."""
    shape = shape_of(y)
    m, p = shape[1], numel(shape[2:])
    it = index_type(numel(shape))
    body = [f"        y[i] = b[(i / {p}) % {m}];  // channel (i / {p}) % {m}"]
    return loop_step(ctx, node, "bias", [("b", b, dt)], [("y", y, dt)], numel(shape), body,
                     f"the bias broadcast over {list(shape)}, which the GEMMs then add to", it)


def _group_gemms(ctx, node, dt, *, groups, items, m, n, k, a: Value, b: Value, c: Value, a_group, b_group, b_item,
                 c_group, c_item, b_base=0, c_base=0, beta=0.0, trans_a=False, lda=0) -> list[Step]:
    """One GEMM per group batched over ``items``, or one per item batched over the groups (fewer calls).
    ``*_group``/``*_item``: elements between the operands of consecutive groups/items; ``*_base``: of item 0."""
    steps = []
    if groups <= items:
        for g in range(groups):
            call = Gemm(m, n, k, dt, trans_a=trans_a, lda=lda, batch=items, stride_a=0, stride_b=b_item,
                        stride_c=c_item, offset_a=g * a_group, offset_b=b_base + g * b_group,
                        offset_c=c_base + g * c_group, beta=beta)
            steps.append(ctx.call_step(call, [a, b, c], node))
    else:
        for j in range(items):
            call = Gemm(m, n, k, dt, trans_a=trans_a, lda=lda, batch=groups, stride_a=a_group, stride_b=b_group,
                        stride_c=c_group, offset_b=b_base + j * b_item, offset_c=c_base + j * c_item, beta=beta)
            steps.append(ctx.call_step(call, [a, b, c], node))
    return steps


def _chunks(n: int, per_item_bytes: int) -> list[tuple[int, int]]:
    """(first item, items) chunks of a batch of ``n`` whose columns fit the workspace limit."""
    size = max(1, min(n, WORKSPACE_LIMIT // max(per_item_bytes, 1)))
    return [(s, min(size, n - s)) for s in range(0, n, size)]

# ---- Conv ----------------------------------------------------------------------------------------
def _conv_operands(node: Node):
    """(X, W, B or None, Y, their element type) of a Conv or ConvTranspose; one float type for all."""
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    dt = float_type(node, x)
    if dtype_of(w) != dt or (b is not None and dtype_of(b) != dt):
        raise CodegenUnsupported(node, "X, W and B of different element types")
    return x, w, b, node.outputs[0], dt


def lower_conv(node: Node, ctx: LowerContext) -> list[Step]:
    x, w, b, y, dt = _conv_operands(node)
    xs, ws, ys = shape_of(x), shape_of(w), shape_of(y)
    N, C, spatial = xs[0], xs[1], list(xs[2:])
    M, kernel = ws[0], list(ws[2:])
    G = node.attrs["group"]
    outs, strides, dils, pb, pe = geometry(node, spatial, kernel)
    if list(ys) != [N, M] + outs:
        raise CodegenUnsupported(node, f"output shape {list(ys)} differs from the geometry's {[N, M] + outs}")
    if numel(ys) == 0:
        return []
    Cg, Mg = C // G, M // G
    if Cg == 1:
        if current().row_loops and len(kernel) == 2 and dils == [1, 1] and outs[-1] >= DEPTHWISE_ROW_MIN:
            return [_depthwise_rows(ctx, node, x, w, b, y, dt, spatial, kernel, outs, strides, pb)]
        return [_depthwise(ctx, node, x, w, b, y, dt, spatial, kernel, outs, strides, dils, pb)]
    steps = [_bias_step(ctx, node, b, y, dt)] if b is not None else []
    beta = 1.0 if b is not None else 0.0
    K, P = numel(kernel), numel(outs)
    rows = (_band_rows(C * K, M // G, outs, dt, ctx.props.multiprocessors)
            if current().kernel_gemm and len(kernel) == 2 and (K > 1 or BAND_1X1) else 0)
    if rows:
        return steps + [_conv_bands(ctx, node, x, w, y, dt, G, spatial, kernel, outs, strides, dils, pb, rows,
                                    beta)]
    if K == 1 and all(s == 1 for s in strides) and not any(pb) and not any(pe):
        # 1x1: Y[n, g] (Mg x P) = W_g (Mg x Cg) @ X[n, g] (Cg x P), X read in place
        return steps + _group_gemms(ctx, node, dt, groups=G, items=N, m=Mg, n=P, k=Cg, a=w, b=x, c=y,
                                    a_group=Mg * Cg, b_group=Cg * P, b_item=C * P, c_group=Mg * P, c_item=M * P,
                                    beta=beta)
    per_item = C * K * P
    for n0, nb in _chunks(N, per_item * dt.itemsize):
        col = ctx.workspace(nb * per_item * dt.itemsize)
        steps.append(_im2col(ctx, node, x, col, dt, n0, nb, C, spatial, kernel, outs, strides, dils, pb))
        steps += _group_gemms(ctx, node, dt, groups=G, items=nb, m=Mg, n=P, k=Cg * K, a=w, b=col, c=y,
                              a_group=Mg * Cg * K, b_group=Cg * K * P, b_item=per_item, c_group=Mg * P,
                              c_item=M * P, c_base=n0 * M * P, beta=beta)
    return steps


#: The C dialect's 2-D convolutions of float32/float64 work by bands of output rows (``_conv_bands``): each
#: band's columns are made and multiplied while they are in the core's cache, by runtime/cpu's micro-kernel on
#: AVX-512 hosts (OpenBLAS's sgemm reaches 73-145 GF/s on these shapes at one thread, the micro-kernel 126-181 on
#: its panels). With several threads only when one batch item's columns take BAND_MIN bytes or more: a small
#: convolution has too few bands to share, and goes to im2col + the GEMM cut in pieces. A band holds at least
#: BAND_BYTES of columns and BAND_COLUMNS output places (a GEMM wide enough), and at least as many bytes as the
#: weights, which every band reads again; with several threads, BAND_PER_THREAD bands per thread at least, where
#: the image has the rows. 1x1 convolutions too (BAND_1X1): their "columns" are X's rows, copied into panels.
BAND_MIN = 2 << 20
BAND_BYTES = 512 << 10
BAND_COLUMNS = 256
BAND_PER_THREAD = 2
BAND_1X1 = True


def _band_rows(ck: int, m: int, outs: list[int], dt: DType, threads: int) -> int:
    """Output rows per band of a 2-D convolution whose columns have ``ck`` rows and whose weights ``m`` rows (per
    group), for ``threads`` threads; 0: no bands (small columns on several threads, or another element type)."""
    if dt not in (DType.float32, DType.float64):
        return 0
    row = ck * outs[1] * dt.itemsize
    if threads > 1 and row * outs[0] < BAND_MIN:
        return 0
    rows = max(-(-BAND_COLUMNS // outs[1]), -(-max(BAND_BYTES, m * ck * dt.itemsize) // row))
    if threads > 1:
        rows = min(rows, -(-outs[0] // (BAND_PER_THREAD * threads)))
    return max(1, min(rows, outs[0]))


def _conv_bands(ctx, node, x, w, y, dt, G, spatial, kernel, outs, strides, dils, pb, rows, beta) -> Step:
    """C dialect (``kernel_gemm``), 2-D: one work item per band of ``rows`` output rows of one batch item. It
    writes the band's im2col columns into its thread's scratch buffer (``gc_scratch``) in panels of ``W``
    columns (panel p: the k = c * KH * KW + kh * KW + kw rows of columns [p * W, p * W + W), zeros past the
    band's end), then multiplies each group's weights by them into Y (``gc_panel_gemm``: runtime/cpu's AVX-512
    micro-kernel reads the panels as they are, elsewhere the BLAS per panel). The columns never leave the
    core's cache, and the threads work on separate bands. Each column row is copied as ``_im2col_rows``' is:
    the places inside the image are a range found once per tap."""
    N, C, (H, W) = shape_of(x)[0], shape_of(x)[1], spatial
    M, (KH, KW), (OH, OW) = shape_of(y)[1], kernel, outs
    (sh, sw), (dh, dw), (ph, pw) = strides, dils, pb
    Cg, Mg, K, P = C // G, M // G, KH * KW, OH * OW
    CK = C * K
    PW = 256 // dt.itemsize  # panel width: GC_PANEL of runtime/cpu's shim
    bands = -(-OH // rows)
    panels = -(-(rows * OW) // PW)
    T, zero = ctype(dt), store_expr(literal(0, dt), dt)
    it = index_type(max(numel(shape_of(x)), numel(shape_of(y)), N * bands, panels * CK * PW))
    body = [f"        const {it} b = i / {bands}, band = i % {bands};",
            f"        const int oh0 = (int)band * {rows}, oh1 = oh0 + {rows} < {OH} ? oh0 + {rows} : {OH};",
            f"        const int np_ = (oh1 - oh0) * {OW};  // the band's output places: its columns",
            f"        {T}* col = ({T}*)gc_scratch(sizeof({T}) * {panels * CK * PW});",
            f"        const {T}* xb = x + b * {C * H * W};",
            f"        for (int c = 0; c < {C}; ++c)",
            f"        for (int kh = 0; kh < {KH}; ++kh)",
            f"        for (int kw = 0; kw < {KW}; ++kw) {{",
            f"            {T}* row = col + ((c * {KH} + kh) * {KW} + kw) * {PW};  // this k's row of panel 0",
            f"            const int shift = kw * {dw} - {pw};  // place ow reads column ow * {sw} + shift",
            f"            int j0 = shift >= 0 ? 0 : (-shift + {sw - 1}) / {sw};",
            f"            int j1 = shift > {W - 1} ? 0 : ({W - 1} - shift) / {sw} + 1;",
            f"            if (j0 > {OW}) j0 = {OW};",
            f"            if (j1 > {OW}) j1 = {OW};",
            "            if (j1 < j0) j1 = j0;",
            "            for (int oh = oh0; oh < oh1; ++oh) {",
            f"                const int s = oh * {sh} - {ph} + kh * {dh};",
            f"                const bool in = s >= 0 && s < {H};",
            f"                const {T}* src = xb + (c * {H} + (in ? s : 0)) * {W} + shift;",
            f"                for (int o = 0; o < {OW};) {{  // the run of places in one panel",
            f"                    const int j = (oh - oh0) * {OW} + o, lane = j % {PW};",
            f"                    const int len = {PW} - lane < {OW} - o ? {PW} - lane : {OW} - o;",
            f"                    {T}* d = row + (j / {PW}) * {CK * PW} + lane - o;  // d[ow], ow in [o, o + len)",
            "                    const int a = in ? (j0 > o ? j0 : o) : o + len;  // [a, e): inside the image",
            "                    const int e = in ? (j1 < o + len ? j1 : o + len) : o + len;",
            f"                    for (int ow = o; ow < a; ++ow) d[ow] = {zero};",
            f"                    for (int ow = a; ow < e; ++ow) d[ow] = src[ow * {sw}];",
            f"                    for (int ow = e > a ? e : a; ow < o + len; ++ow) d[ow] = {zero};",
            "                    o += len;",
            "                }",
            "            }",
            f"            for (int j = np_; j % {PW}; ++j)  // the last panel's tail",
            f"                row[(j / {PW}) * {CK * PW} + j % {PW}] = {zero};",
            "        }",
            f"        for (int g = 0; g < {G}; ++g)",
            (f"            gc_panel_gemm<{T}>({Mg}, np_, {Cg * K}, w + g * {Mg * Cg * K}, {Cg * K}, "
             f"col + g * {Cg * K * PW}, {CK * PW}, ({T}){beta}, y + (b * {M} + g * {Mg}) * {P} + oh0 * {OW}, {P});")]
    return loop_step(ctx, node, "bands", [("x", x, dt), ("w", w, dt)], [("y", y, dt)], N * bands, body,
                     f"convolution by bands of {rows} output rows: each band's im2col columns (kernel {kernel}, "
                     f"strides {strides}, dilations {dils}, pads {pb}) made in this thread's scratch buffer in "
                     f"panels of {PW} columns, then multiplied by the weights of each of {G} group(s) on this "
                     f"thread", it)


def _window_lines(outs, strides, dils, pb, spatial, it, ind="        ") -> tuple[list[str], str]:
    """Input coordinates ``s<d>`` of tap ``k<d>`` at output ``o<d>``, and the condition that all lie inside."""
    lines, inside = [], []
    for d in range(len(outs)):
        lines.append(f"{ind}const {it} s{d} = o{d} * {strides[d]} - {pb[d]} + k{d} * {dils[d]};")
        inside.append(f"s{d} >= 0 && s{d} < {spatial[d]}")
    return lines, " && ".join(inside)


def _im2col(ctx, node, x, col, dt, n0, nb, C, spatial, kernel, outs, strides, dils, pb) -> Step:
    nd = len(kernel)
    S = numel(spatial)
    total = nb * C * numel(kernel) * numel(outs)
    it = index_type(max(total, (n0 + nb) * C * S))
    dims = [("b", nb), ("c", C)] + [(f"k{d}", kernel[d]) for d in range(nd)] + [(f"o{d}", outs[d]) for d in range(nd)]
    if current().row_loops and outs[-1] >= ROW_MIN:
        return _im2col_rows(ctx, node, x, col, dt, n0, nb, C, spatial, kernel, outs, strides, dils, pb, dims, it)
    body = decode("i", dims, it)
    win, inside = _window_lines(outs, strides, dils, pb, spatial, it)
    body += win
    src = f"x[({n0 if n0 else ''}{' + ' if n0 else ''}b) * {C * S} + c * {S} + {spatial_offset([f's{d}' for d in range(nd)], spatial)}]"
    body.append(f"        col[i] = {inside} ? {src} : {store_expr(literal(0, dt), dt)};  // copied as stored")
    what = f"items {n0}..{n0 + nb - 1}" if (n0, nb) != (0, shape_of(x)[0]) else "the whole batch"
    return loop_step(ctx, node, "im2col", [("x", x, dt)], [("col", col, dt)], total, body,
                     f"im2col columns col[b][c, k{list(kernel)}][o{list(outs)}] of {what} (0 in the padding)", it)


def _im2col_rows(ctx, node, x, col, dt, n0, nb, C, spatial, kernel, outs, strides, dils, pb, dims, it) -> Step:
    """im2col in the C dialect, a row of columns at a time (one output row of one tap): the row's places inside
    the image are a range, found once, so the copy between its zero ends has no test per element (and, at
    stride 1, is a contiguous copy the compiler vectorizes)."""
    nd, S, L = len(kernel), numel(spatial), outs[-1]
    W, st, dl, p = spatial[-1], strides[-1], dils[-1], pb[-1]
    zero = store_expr(literal(0, dt), dt)
    rows = nb * C * numel(kernel) * numel(outs[:-1])
    body = [f"        const {it} r = i;"] + decode("r", dims[:-1], it)
    win, inside = _window_lines(outs[:-1], strides[:-1], dils[:-1], pb[:-1], spatial[:-1], it)
    body += win
    body.append(f"        auto* dst = col + ({it})r * {L};")
    outer = (f"        if (!({inside})) {{ for (int j = 0; j < {L}; ++j) dst[j] = {zero}; continue; }}" if inside
             else None)
    if outer:
        body.append(outer)
    row = spatial_offset([f"s{d}" for d in range(nd - 1)] + ["0"], spatial)
    body += [f"        const auto* src = x + ({n0 if n0 else ''}{' + ' if n0 else ''}b) * {C * S} + c * {S} + {row};",
             f"        const int sh = k{nd - 1} * {dl} - {p};  // place j reads src[j * {st} + sh]",
             f"        int j0 = sh >= 0 ? 0 : (-sh + {st - 1}) / {st};",
             f"        int j1 = sh > {W - 1} ? 0 : ({W - 1} - sh) / {st} + 1;",
             f"        if (j0 > {L}) j0 = {L};",
             f"        if (j1 > {L}) j1 = {L};",
             "        if (j1 < j0) j1 = j0;",
             f"        for (int j = 0; j < j0; ++j) dst[j] = {zero};",
             f"        for (int j = j0; j < j1; ++j) dst[j] = src[j * {st} + sh];  // copied as stored",
             f"        for (int j = j1; j < {L}; ++j) dst[j] = {zero};"]
    what = f"items {n0}..{n0 + nb - 1}" if (n0, nb) != (0, shape_of(x)[0]) else "the whole batch"
    return loop_step(ctx, node, "im2col", [("x", x, dt)], [("col", col, dt)], rows, body,
                     f"im2col columns col[b][c, k{list(kernel)}][o{list(outs)}] of {what} (0 in the padding), by "
                     f"rows of {L}", it)


def _depthwise(ctx, node, x, w, b, y, dt, spatial, kernel, outs, strides, dils, pb) -> Step:
    """One thread per output element: the sum over its taps of x[n, m / mult, window] * w[m, 0, k]."""
    N, M = shape_of(y)[:2]
    C = shape_of(x)[1]
    mult = M // C
    nd = len(kernel)
    S, K = numel(spatial), numel(kernel)
    it = index_type(max(numel(shape_of(y)), numel(shape_of(x))))
    acc_t = cctype(dt)
    body = decode("i", [("n", N), ("m", M)] + [(f"o{d}", outs[d]) for d in range(nd)], it)
    chan = "m" if mult == 1 else f"m / {mult}"
    body.append(f"        const {it} base = (n * {C} + {chan}) * {S};")
    body.append(f"        {acc_t} acc = {load_expr('b[m]', dt) if b is not None else literal(0, dt)};")
    ind = "        "
    for d in range(nd):
        body.append(f"{ind}for (int k{d} = 0; k{d} < {kernel[d]}; ++k{d}) {{")
        ind += "    "
        body.append(f"{ind}const {it} s{d} = o{d} * {strides[d]} - {pb[d]} + k{d} * {dils[d]};")
        body.append(f"{ind}if (s{d} < 0 || s{d} >= {spatial[d]}) continue;")
    xi = f"x[base + {spatial_offset([f's{d}' for d in range(nd)], spatial)}]"
    wi = f"w[m * {K} + {spatial_offset([f'k{d}' for d in range(nd)], kernel)}]"
    body.append(f"{ind}acc += {load_expr(xi, dt)} * {load_expr(wi, dt)};")
    for d in range(nd):
        ind = ind[:-4]
        body.append(f"{ind}}}")
    body.append(f"        y[i] = {store_expr('acc', dt)};")
    ins = [("x", x, dt), ("w", w, dt)] + ([("b", b, dt)] if b is not None else [])
    return loop_step(ctx, node, "depthwise", ins, [("y", y, dt)], numel(shape_of(y)), body,
                     f"depthwise convolution (multiplier {mult}), kernel {kernel}, strides {strides}, dilations "
                     f"{dils}, pads {pb}: one thread per output element", it)

#: The C dialect's depthwise kernel works by output rows from this width on (efficientnet_b0's 3x3 layers, 64
#: wide: 0.47 -> 0.20 ms; shufflenet's, 28 and 14 wide: 3.1 -> 2.7 ms in all); on narrower rows the loop per tap
#: costs more than it saves (5x5 on rows of 8: 0.15 -> 0.28 ms), and the kernel per output element stays.
DEPTHWISE_ROW_MIN = 16


def _depthwise_rows(ctx, node, x, w, b, y, dt, spatial, kernel, outs, strides, pb) -> Step:
    """C dialect, 2-D, undilated: one work item per output row (n, m, oh), accumulated in a local row: for each
    tap (kh, kw) inside the image, one loop along the row over the outputs whose input is inside too (the
    compiler vectorizes it), instead of a loop over the taps per output element."""
    N, M = shape_of(y)[:2]
    C = shape_of(x)[1]
    mult = M // C
    (H, W), (KH, KW), (OH, OW) = spatial, kernel, outs
    it = index_type(max(numel(shape_of(y)), numel(shape_of(x))))
    acc_t = cctype(dt)
    chan = "m" if mult == 1 else f"m / {mult}"
    body = decode("i", [("n", N), ("m", M), ("oh", OH)], it)
    body += [f"        const {ctype(dt)}* xm = x + (n * {C} + {chan}) * {H * W};",
             f"        {acc_t} acc[{OW}];",
             f"        for (int ow = 0; ow < {OW}; ++ow) acc[ow] = {load_expr('b[m]', dt) if b is not None else literal(0, dt)};",
             *row_window(spatial, kernel, outs, strides, pb, ctype(dt),
                         [f"const {acc_t} wv = {load_expr(f'w[m * {KH * KW} + kh * {KW} + kw]', dt)};"],
                         lambda at: [f"for (int ow = lo; ow < hi; ++ow) acc[ow] += {load_expr(at, dt)} * wv;"]),
             f"        for (int ow = 0; ow < {OW}; ++ow) y[i * {OW} + ow] = {store_expr('acc[ow]', dt)};"]
    ins = [("x", x, dt), ("w", w, dt)] + ([("b", b, dt)] if b is not None else [])
    return loop_step(ctx, node, "depthwise", ins, [("y", y, dt)], N * M * OH, body,
                     f"depthwise convolution (multiplier {mult}), kernel {kernel}, strides {strides}, pads {pb}: "
                     f"one output row per work item", it)


# ---- ConvTranspose -------------------------------------------------------------------------------
def lower_conv_transpose(node: Node, ctx: LowerContext) -> list[Step]:
    x, w, b, y, dt = _conv_operands(node)
    xs, ws, ys = shape_of(x), shape_of(w), shape_of(y)
    N, C, ins = xs[0], xs[1], list(xs[2:])
    Mg, kernel = ws[1], list(ws[2:])
    G = node.attrs["group"]
    M, Cg = Mg * G, C // G
    outs, begins, strides, dils = convtranspose_pads(node, ins, kernel)
    if list(ys) != [N, M] + outs:
        raise CodegenUnsupported(node, f"output shape {list(ys)} differs from the geometry's {[N, M] + outs}")
    if numel(ys) == 0:
        return []
    K, P = numel(kernel), numel(ins)
    per_item = M * K * P
    steps = []
    for n0, nb in _chunks(N, per_item * dt.itemsize):
        col = ctx.workspace(nb * per_item * dt.itemsize)
        # col[b, g] (Mg*K x P) = W_g^T (W_g stored Cg x Mg*K) @ X[n0 + b, g] (Cg x P)
        steps += _group_gemms(ctx, node, dt, groups=G, items=nb, m=Mg * K, n=P, k=Cg, a=w, b=x, c=col,
                              a_group=Cg * Mg * K, b_group=Cg * P, b_item=C * P, c_group=Mg * K * P, c_item=per_item,
                              b_base=n0 * C * P, trans_a=True, lda=Mg * K)
        steps.append(_col2im(ctx, node, col, b, y, dt, n0, nb, M, ins, kernel, outs, begins, strides, dils))
    return steps


def _col2im(ctx, node, col, b, y, dt, n0, nb, M, ins, kernel, outs, begins, strides, dils) -> Step:
    """Each output element gathers the column entries (input position i, tap k) with i*s + k*d == o + begin."""
    nd = len(kernel)
    K, P, O = numel(kernel), numel(ins), numel(outs)
    total = nb * M * O
    it = index_type(max(total + n0 * M * O, nb * M * K * P))
    acc_t = cctype(dt)
    body = decode("i", [("b", nb), ("m", M)] + [(f"o{d}", outs[d]) for d in range(nd)], it)
    body.append(f"        {acc_t} acc = {load_expr('bias[m]', dt) if b is not None else literal(0, dt)};")
    ind = "        "
    for d in range(nd):
        body.append(f"{ind}for (int k{d} = 0; k{d} < {kernel[d]}; ++k{d}) {{")
        ind += "    "
        body.append(f"{ind}const {it} t{d} = o{d} + {begins[d]} - k{d} * {dils[d]};")
        cond = f"t{d} < 0 || t{d} >= {(ins[d] - 1) * strides[d] + 1}"
        if strides[d] > 1:
            cond += f" || t{d} % {strides[d]} != 0"
        body.append(f"{ind}if ({cond}) continue;")
    ks = spatial_offset([f"k{d}" for d in range(nd)], kernel)
    ii = spatial_offset([f"t{d}" if strides[d] == 1 else f"(t{d} / {strides[d]})" for d in range(nd)], ins)
    body.append(f"{ind}acc += {load_expr(f'col[((b * {M} + m) * {K} + {ks}) * {P} + {ii}]', dt)};")
    for d in range(nd):
        ind = ind[:-4]
        body.append(f"{ind}}}")
    off = f"{n0 * M * O} + " if n0 else ""
    body.append(f"        y[{off}i] = {store_expr('acc', dt)};")
    ins_ = [("col", col, dt)] + ([("bias", b, dt)] if b is not None else [])
    return loop_step(ctx, node, "col2im", ins_, [("y", y, dt)], total, body,
                     f"col2im by gathering: output items {n0}..{n0 + nb - 1}, kernel {kernel}, strides {strides}, "
                     f"dilations {dils}, output offset {begins}; each element sums the columns that land on it", it)


def split_conv(node: Node) -> tuple[Node, list[Node], Value] | None:
    """A Conv with a constant bias computed by GEMMs as ``t = Conv(X, W)`` and ``t + B`` (B as (M, 1, ...)) in the
    epilogue kernel (lowering.SPLITS), which a following Relu or residual Add joins: no pass of its own.
    None for a depthwise Conv (its direct kernel adds the bias) or a bias computed at run time."""
    b = node.inputs[2] if len(node.inputs) > 2 else None
    if b is None or b.data is None or shape_of(node.inputs[1])[1] == 1:
        return None
    y = node.outputs[0]
    rank = len(shape_of(y))
    t = Value(f"{y.name}_conv", y.type)
    core = Node("Conv", list(node.inputs[:2]), [t], dict(node.attrs), name=node.name)
    bias = Value(f"{b.name}_per_channel", TensorType(dtype_of(b), (b.data.size,) + (1,) * (rank - 2)),
                 data=b.data.reshape((b.data.size,) + (1,) * (rank - 2)))
    out = Value(y.name, y.type)
    return core, [Node("Add", [t, bias], [out], name=f"{node.name}_bias")], out

register_lowering("Conv", lower_conv, split=split_conv)

register_lowering("ConvTranspose", lower_conv_transpose)



def _col2im_op(node: Node, ctx: LowerContext) -> list[Step]:
    """Col2Im(X (N, C*K, L), image_shape, block_shape): the columns of an im2col, summed back into the image."""
    x, y = node.inputs[0], node.outputs[0]
    dt = float_type(node, y)
    xs, ys = shape_of(x), shape_of(y)
    image = list(ys[2:])  # the static output shape fixes image_shape; block_shape must be known
    block = [int(v) for v in constant_input(node, 2, "block_shape")]
    nd = len(image)
    if len(block) != nd:
        raise CodegenUnsupported(node, f"block_shape {block} has {len(block)} dims, the image {nd}")
    strides = list(node.attrs.get("strides") or [1] * nd)
    dils = list(node.attrs.get("dilations") or [1] * nd)
    pads = list(node.attrs.get("pads") or [0] * (2 * nd))
    K = numel(block)
    blocks = [(i + pads[d] + pads[nd + d] - (k - 1) * dl - 1) // s + 1
              for d, (i, k, dl, s) in enumerate(zip(image, block, dils, strides))]
    if len(xs) != 3 or xs[1] % K or numel(blocks) != xs[2] or list(ys) != [xs[0], xs[1] // K] + image:
        raise CodegenUnsupported(node, f"input {list(xs)} and output {list(ys)} do not match image {image}, "
                                       f"block {block} ({blocks} blocks)")
    if numel(ys) == 0:
        return []
    return [_col2im(ctx, node, x, None, y, dt, 0, xs[0], xs[1] // K, blocks, block, image, pads[:nd], strides,
                    dils)]

register_lowering("Col2Im", _col2im_op)


__all__ = ['WORKSPACE_LIMIT', 'lower_conv', 'lower_conv_transpose', 'split_conv']
