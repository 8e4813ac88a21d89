"""CUDA lowerings of less common ops: the training optimizers, Einsum, CenterCropPad and Col2Im.

- Momentum, Adagrad and Adam (``ai.onnx.preview.training``): one elementwise kernel per optimized tensor,
  reading the learning rate R and the update count T from device memory (they change every step), the
  step's scalar factor computed in double by each thread, the update in the tensor's compute type.
- Einsum: a (batched) matrix product whose operands are laid out as a GEMM reads them (batch labels first,
  then the row/column/summed groups in either order) is one strided-batched ``libcall.Gemm``; any other
  equation (a transpose, a trace, a diagonal, a sum, three operands) is a generated direct-sum kernel, one
  thread per output element looping over the summed labels in order (deterministic).
- CenterCropPad: an index kernel, each output element reading the input element it is centred on, or 0
  (the static input and output shapes fix the offsets, so the target shape may be an input at run time).
- Col2Im: the gathering col2im kernel of ConvTranspose (``codegen_conv``), reading the columns as given
  (block_shape must be constant; the static output shape gives image_shape).

All kernels are grid-stride loops over their output elements; shapes and constant inputs must be static.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node
from graphc.ops.linalg import parse_einsum

from .codegen import (CodegenUnsupported, cctype, compute_dtype, dtype_of, index_type, literal, load_expr,
                      numel, shape_of, store_expr)
from .codegen_conv import _col2im, _spatial_offset, decode, float_type, loop_step
from .codegen_gemm import GEMM_DTYPES
from .libcall import Gemm
from .lowering import LowerContext, Step, register_lowering

TRAINING = "ai.onnx.preview.training"


# ---- optimizers ---------------------------------------------------------------------------------
def _const(node: Node, i: int, what: str) -> np.ndarray:
    v = node.inputs[i] if i < len(node.inputs) else None
    if v is None or v.data is None:
        raise CodegenUnsupported(node, f"its {what} (input {i}{', ' + repr(v.name) if v is not None else ''}) is "
                                       f"computed at run time; the CUDA backend needs it constant")
    return np.asarray(v.data).reshape(-1)


def _optimizer(groups: int, update):
    """A lowering for an optimizer taking R, T and ``groups`` groups of tensors: ``update(node, dt, lines)``
    appends the lines computing the new values from the loaded ``x``, ``g`` and state ``s1``, ``s2``... and
    ``lr`` (double), and returns the C expressions of the outputs (new x, new states)."""

    def lower(node: Node, ctx: LowerContext) -> list[Step]:
        r, t = node.inputs[:2]
        tensors = list(node.inputs[2:])
        if not tensors or len(tensors) % groups:
            raise CodegenUnsupported(node, f"takes R, T and {groups} groups of equally many tensors, got "
                                           f"{len(tensors)} tensors after R and T")
        k = len(tensors) // groups
        r_dt, t_dt = dtype_of(r), dtype_of(t)
        if t_dt != DType.int64 or not r_dt.is_float:
            raise CodegenUnsupported(node, f"R of {r_dt} and T of {t_dt} (expected a float and int64)")
        steps = []
        for j in range(k):
            ins = [tensors[g * k + j] for g in range(groups)]  # x, g, states
            outs = [node.outputs[g * k + j] if g * k + j < len(node.outputs) else None
                    for g in range(groups - 1)]  # new x, new states
            dt = float_type(node, ins[0])
            if any(dtype_of(v) != dt or shape_of(v) != shape_of(ins[0]) for v in ins + [o for o in outs if o]):
                raise CodegenUnsupported(node, f"tensor {j} and its gradient and state differ in type or shape")
            n = numel(shape_of(ins[0]))
            if n == 0 or all(o is None for o in outs):
                continue
            c = cctype(dt)
            names = ["x", "g"] + [f"s{s}" for s in range(1, groups - 1)]
            lines = ["const long long step = t[0];",
                     f"double lr = (double){load_expr('r[0]', r_dt)};"]
            lines += [f"const {c} {nm} = {load_expr(f'{nm}_in[i]', dt)};" for nm in names]
            lines.append(f"const {c} g_reg = {literal(node.attrs.get('norm_coefficient', 0.0), dt)} * x + g;")
            results = update(node, dt, lines)
            out_names = ["x_out"] + [f"s{s}_out" for s in range(1, groups - 1)]
            lines += [f"{nm}[i] = {store_expr(e, dt)};" for nm, e, o in zip(out_names, results, outs) if o is not None]
            in_params = [("r", r, r_dt), ("t", t, t_dt)] + [(f"{nm}_in", v, dt) for nm, v in zip(names, ins)]
            out_params = [(nm, o, dt) for nm, o in zip(out_names, outs) if o is not None]
            it = index_type(n)
            steps.append(loop_step(ctx, node, f"update{j}", in_params, out_params, n, ["        " + s for s in lines],
                                   f"{node.op_type} update of tensor {j}: {dt}{list(shape_of(ins[0]))}", it))
        return steps

    return lower


def _momentum(node: Node, dt: DType, lines: list[str]) -> list[str]:
    c, a = cctype(dt), node.attrs
    k = lambda x: literal(x, dt)  # noqa: E731
    lines += [f"const {c} beta = step > 0 ? {k(a['beta'])} : {k(1.0)};",
              f"const {c} v_new = {k(a['alpha'])} * s1 + beta * g_reg;"]
    direction = f"g_reg + {k(a['alpha'])} * v_new" if a["mode"] == "nesterov" else "v_new"
    if a["mode"] not in ("standard", "nesterov"):
        raise CodegenUnsupported(node, f"attribute 'mode' is {a['mode']!r}, expected 'standard' or 'nesterov'")
    return [f"x - ({c})lr * ({direction})", "v_new"]


def _adagrad(node: Node, dt: DType, lines: list[str]) -> list[str]:
    c, a = cctype(dt), node.attrs
    sqrt = "sqrtf" if compute_dtype(dt) == DType.float32 else "sqrt"
    lines += [f"lr = lr / (1.0 + (double)step * {literal(a.get('decay_factor', 0.0), DType.float64)});",
              f"const {c} h_new = s1 + g_reg * g_reg;"]
    return [f"x - ({c})lr * g_reg / ({sqrt}(h_new) + {literal(a.get('epsilon', 1e-6), dt)})", "h_new"]


def _adam(node: Node, dt: DType, lines: list[str]) -> list[str]:
    c, a = cctype(dt), node.attrs
    alpha, beta = float(a.get("alpha", 0.9)), float(a.get("beta", 0.999))
    d = lambda x: literal(x, DType.float64)  # noqa: E731
    k = lambda x: literal(x, dt)  # noqa: E731
    sqrt = "sqrtf" if compute_dtype(dt) == DType.float32 else "sqrt"
    lines += [f"if (step > 0) lr = lr * sqrt(1.0 - pow({d(beta)}, (double)step)) / (1.0 - pow({d(alpha)}, "
              f"(double)step));",
              f"const {c} v_new = {k(alpha)} * s1 + {k(1.0 - alpha)} * g_reg;",
              f"const {c} h_new = {k(beta)} * s2 + {k(1.0 - beta)} * g_reg * g_reg;",
              f"const {c} x_new = x - ({c})lr * v_new / ({sqrt}(h_new) + {k(a.get('epsilon', 1e-6))});"]
    post = float(a.get("norm_coefficient_post", 0.0))
    return [f"{k(1.0 - post)} * x_new" if post else "x_new", "v_new", "h_new"]


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
        at = _spatial_offset([var[ch] if d != 1 else "0" for ch, d in zip(t, s)], list(s))
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


# ---- CenterCropPad and Col2Im ---------------------------------------------------------------------
def _center_crop_pad(node: Node, ctx: LowerContext) -> list[Step]:
    x, y = node.inputs[0], node.outputs[0]
    xs, ys, dt = shape_of(x), shape_of(y), dtype_of(y)
    n = numel(ys)
    if n == 0:
        return []
    it = index_type(max(n, numel(xs)))
    body = decode("i", [(f"o{d}", ys[d]) for d in range(len(ys))], it)
    coords, conds = [], []
    for d, (a, b) in enumerate(zip(xs, ys)):
        shift = (a - b) // 2 if a > b else -((b - a) // 2)  # crop: skip the first rows; pad: leave them 0
        if shift == 0 and a == b:
            coords.append(f"o{d}")
            continue
        body.append(f"        const {it} s{d} = o{d} + ({shift});")
        coords.append(f"s{d}")
        if a < b:
            conds.append(f"s{d} >= 0 && s{d} < {a}")
    src = f"x[{_spatial_offset(coords, list(xs))}]" if xs else "x[0]"
    zero = store_expr(literal(0, dt), dt)
    body.append(f"        y[i] = {' && '.join(conds)} ? {src} : {zero};" if conds else f"        y[i] = {src};")
    return [loop_step(ctx, node, "center_crop_pad", [("x", x, dt)], [("y", y, dt)], n, body,
                      f"CenterCropPad of {dt}{list(xs)} to {list(ys)}: each output reads the input element it "
                      f"is centred on (0 in the padding)", it)]


def _col2im_op(node: Node, ctx: LowerContext) -> list[Step]:
    """Col2Im(X (N, C*K, L), image_shape, block_shape): the columns of an im2col, summed back into the image."""
    x, y = node.inputs[0], node.outputs[0]
    dt = float_type(node, y)
    xs, ys = shape_of(x), shape_of(y)
    image = list(ys[2:])  # the static output shape fixes image_shape; block_shape must be known
    block = [int(v) for v in _const(node, 2, "block_shape")]
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


register_lowering(f"{TRAINING}.Momentum", _optimizer(3, _momentum))
register_lowering(f"{TRAINING}.Adagrad", _optimizer(3, _adagrad))
register_lowering(f"{TRAINING}.Adam", _optimizer(4, _adam))
register_lowering("Einsum", _einsum)
register_lowering("CenterCropPad", _center_crop_pad)
register_lowering("Col2Im", _col2im_op)

__all__: list[str] = []
