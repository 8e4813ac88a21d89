"""Lowerings of the norm family's inference ops: BatchNormalization, LRN and Dropout.

- BatchNormalization: one thread per output element, computing its channel's scale and shift from the four
  parameters (at -O1 and above the compiler has usually folded it into the convolution before it);
- LRN: one thread per output element, summing the squares of its channel window;
- Dropout in inference mode: the output is the input (a copy, or nothing where the memory plan shares their
  bytes) and the optional mask is all true (ones for the legacy float mask). Unoptimized plans (-O0) of
  exported CNNs keep their Dropout nodes (simplification removes them from -O1 on). Training-mode Dropout with
  a nonzero ratio (a random mask) is not lowered here: it is reported missing, naming the node.

Softmax, LayerNormalization, RMSNormalization, LpNormalization and the other row ops are row kernels (rows.py).
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node

from ..kernel import (
    CodegenUnsupported,
    KernelGroup,
    Param,
    cctype,
    dtype_of,
    index_type,
    literal,
    load_expr,
    numel,
    round_to,
    shape_of,
    store_expr,
)
from ..lowering import LowerContext, Step, register_lowering
from ..steps import FLOAT_TYPES, copy_step, decode, float_type, kernel_from, loop_step


# ---- LRN -----------------------------------------------------------------------------------------
def lower_lrn(node: Node, ctx: LowerContext) -> list[Step]:
    """y = x / (bias + alpha / size * sum of x^2 over channels [c - (size-1)/2, c + size/2]) ^ beta."""
    x, y = node.inputs[0], node.outputs[0]
    dt = float_type(node, x, FLOAT_TYPES)
    xs = shape_of(x)
    if len(xs) < 2:
        raise CodegenUnsupported(node, f"LRN of rank {len(xs)}")
    size = int(node.attrs["size"])
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    C, R = xs[1], numel(xs[2:])
    it = index_type(numel(xs))
    c = cctype(dt)
    f = "" if c == "double" else "f"
    body = decode("i", [("n", xs[0]), ("ch", C), ("r", R)], it)
    body += [f"        const {it} first = ch < {lo} ? 0 : ch - {lo};",
             f"        const {it} last = ch + {hi} < {C} ? ch + {hi} : {C - 1};",
             f"        {c} sq = {literal(0, dt)};",
             f"        for ({it} j = first; j <= last; ++j) {{",
             f"            const {c} v = {load_expr(f'x[(n * {C} + j) * {R} + r]', dt)};",
             "            sq += v * v;",
             "        }",
             f"        const {c} scale = {literal(node.attrs['bias'], dt)} + {literal(node.attrs['alpha'] / size, dt)} * sq;"]
    xi = load_expr("x[i]", dt)
    result = f"{xi} / pow{f}(scale, {literal(node.attrs['beta'], dt)})"
    body.append(f"        y[i] = {store_expr(result, dt)};")
    return [loop_step(ctx, node, "lrn", [("x", x, dt)], [("y", y, dt)], numel(xs), body,
                      f"local response normalization over {size} channels", it)]

# ---- BatchNormalization (inference) --------------------------------------------------------------
def lower_batchnorm(node: Node, ctx: LowerContext) -> list[Step]:
    """y = x * a + b per channel, a = scale / sqrt(var + eps) and b = bias - mean * a computed per element
    from the four parameters (they may be graph inputs; when constant, the compiler folds the BN away)."""
    if node.attrs["training_mode"] or any(v is not None for v in node.outputs[1:]):
        raise CodegenUnsupported(node, "BatchNormalization in training mode (batch statistics) has no CUDA kernel "
                                       "yet; the inference form does")
    x, y = node.inputs[0], node.outputs[0]
    dt = float_type(node, x, FLOAT_TYPES)
    xs = shape_of(x)
    if len(xs) < 2:
        raise CodegenUnsupported(node, f"BatchNormalization of rank {len(xs)}")
    params = node.inputs[1:5]
    pdts = [float_type(node, p, FLOAT_TYPES) for p in params]
    pshape = shape_of(params[0])
    for p in params:
        if shape_of(p) != pshape or tuple(xs[1:1 + len(pshape)]) != pshape:
            raise CodegenUnsupported(node, f"parameter '{p.name}' of shape {list(shape_of(p))} for X {list(xs)}")
    inner = numel(xs[1 + len(pshape):])
    it = index_type(numel(xs))
    work = DType.float64 if DType.float64 in [dt] + pdts else DType.float32
    w = cctype(work)
    f = "" if w == "double" else "f"
    at = "i" if inner == 1 else f"i / {inner}"
    body = [f"        const {it} p = ({at}) % {numel(pshape)};  // the channel's parameters"]
    names = ["scale", "bias", "mean", "var"]
    for name, pdt in zip(names, pdts):
        body.append(f"        const {w} {name} = ({w}){load_expr(f'{name}_[p]', pdt)};")
    c = cctype(dt)
    product = round_to(load_expr("x[i]", dt) + " * ax", dt)
    body += [f"        const {w} a = scale / sqrt{f}(var + {literal(node.attrs['epsilon'], work)});",
             f"        const {c} ax = {round_to(f'({c})a', dt)};",
             f"        const {c} bx = {round_to(f'({c})(bias - mean * a)', dt)};",
             f"        y[i] = {store_expr(product + ' + bx', dt)};"]
    ins = [("x", x, dt)] + [(f"{n}_", p, pdt) for n, p, pdt in zip(names, params, pdts)]
    return [loop_step(ctx, node, "batchnorm", ins, [("y", y, dt)], numel(xs), body,
                      f"inference batch normalization over {list(xs)}, parameters of shape {list(pshape)}", it)]

register_lowering("LRN", lower_lrn)

register_lowering("BatchNormalization", lower_batchnorm)


def _constant(node: Node, i: int, what: str):
    v = node.inputs[i] if len(node.inputs) > i else None
    if v is None:
        return None
    if v.data is None:
        raise CodegenUnsupported(node, f"its {what} (input {i}, '{v.name}') is computed at run time; the CUDA "
                                       f"backend runs Dropout only in inference mode, known when lowering")
    return np.asarray(v.data).reshape(-1)[0]


def lower_dropout(node: Node, ctx: LowerContext) -> list[Step]:
    training = _constant(node, 2, "training_mode")
    ratio = _constant(node, 1, "ratio")
    if training is not None and bool(training) and (ratio is None or float(ratio) != 0.0):
        raise CodegenUnsupported(node, "training-mode Dropout (a random mask) has no CUDA lowering yet; inference "
                                       "mode (training_mode absent or false, or ratio 0) has")
    x, y = node.inputs[0], node.outputs[0]
    steps = [copy_step(ctx, node, x, y, "dropout_identity")] if y is not None else []
    mask = node.outputs[1] if len(node.outputs) > 1 else None
    if mask is not None and numel(shape_of(mask)) > 0:
        dt = dtype_of(mask)
        one = store_expr(literal(1, dt), dt)
        group = KernelGroup(f"{node.name}_mask", [node], [], [mask])
        n = numel(shape_of(mask))
        kernel = kernel_from(ctx, group, [Param("output", 0, "out0", dt)], [f"out0[i] = {one};"], n,
                             f"Dropout's mask in inference mode: all kept, {dt}{list(shape_of(mask))}")
        steps.append(Step(kernel, [mask], node))
    return steps

register_lowering("Dropout", lower_dropout)


__all__ = ['lower_batchnorm', 'lower_dropout', 'lower_lrn']
