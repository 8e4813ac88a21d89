"""Lowerings of the reduce family's scans, losses and TopK (the Reduce* ops are row kernels: rows.py).

- CumSum and CumProd: one thread per line along the axis, combining its elements in order (the NumPy
  reference's sequential order, so float sums round the same way), ``exclusive`` writing the running result
  before each element is combined, ``reverse`` walking the line from its end. Lines are independent, so many
  short lines fill the device; one very long line runs on one thread;
- NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: with reduction "none" one output element per
  thread; with "sum" or "mean" ONE block sums the per-element losses (and, for "mean", their weights), each
  thread striding over the elements, then a tree in shared memory, so the order of the additions depends only
  on the block size. A target out of range gives a NaN loss (a kernel cannot raise). SoftmaxCrossEntropyLoss
  writes its log-probabilities (a row kernel) to its second output, or to scratch memory when the graph does
  not use it, then runs the NegativeLogLikelihoodLoss kernel on it;
- TopK gives a thread each input element, which counts the elements of its line that come before it (greater,
  or equal at a lower index, as NumPy's stable sort orders them; NaN counts as the largest value): an element
  of rank r < k is written to output position r. O(length^2) work per line, cheap for the short axes TopK
  usually sees.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node, Value

from ..elementwise import param_list
from ..kernel import (
    CodegenUnsupported,
    Kernel,
    KernelGroup,
    Param,
    cctype,
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
from ..lowering import LowerContext, Step, register_lowering
from ..steps import FLOAT_TYPES, decode, float_type, kernel_from, loop_step


def _scan(node: Node, ctx: LowerContext) -> list[Step]:
    x, axis_v = node.inputs[:2]
    out = node.outputs[0]
    if axis_v.data is None:
        raise CodegenUnsupported(node, f"its axis (input 1, '{axis_v.name}') is computed at run time; the CUDA "
                                       f"backend needs it constant")
    shape, dt = shape_of(out), dtype_of(out)
    rank = max(len(shape), 1)
    axis = int(np.asarray(axis_v.data).reshape(-1)[0]) % rank
    full = shape if shape else (1,)
    length, inner = full[axis], numel(full[axis + 1:])
    lines = numel(full) // max(length, 1) if length else 0
    ct = cctype(dt)
    prod = node.op_type == "CumProd"
    combine = "acc * v" if prod else "acc + v"
    exclusive, reverse = bool(node.attrs.get("exclusive", 0)), bool(node.attrs.get("reverse", 0))
    k = f"({length - 1} - s)" if reverse else "s"
    body = [f"const long long base = (i / {inner}) * {length * inner} + i % {inner};" if inner > 1 else
            f"const long long base = (long long)i * {length};",
            f"{ct} acc = {literal(1 if prod else 0, dt)};",
            f"for (int s = 0; s < {length}; ++s) {{",
            f"    const long long at = base + (long long){k} * {inner};",
            f"    const {ct} v = {load_expr('in0[at]', dt)};"]
    if exclusive:
        body += [f"    out0[at] = {store_expr('acc', dt)};", f"    acc = {round_to(combine, dt)};"]
    else:
        body += [f"    acc = {round_to(combine, dt)};", f"    out0[at] = {store_expr('acc', dt)};"]
    body.append("}")
    group = KernelGroup(node.name, [node], [x], [out])
    params = [Param("input", 0, "in0", dtype_of(x)), Param("output", 0, "out0", dt)]
    what = (f"{node.op_type} axis={axis}{' exclusive' if exclusive else ''}{' reverse' if reverse else ''} of "
            f"{dt}{list(shape)}: {lines} lines of {length}, one thread each")
    return [Step(kernel_from(ctx, group, params, body, lines, what), [x, out], node)]

for _op in ("CumSum", "CumProd"):
    register_lowering(_op, _scan)

#: Threads of the one block that sums a loss (a power of two; fewer where the device allows fewer).
LOSS_BLOCK = 256


def _axis(node: Node, rank: int, default: int = -1) -> int:
    axis = int(node.attrs.get("axis", default))
    if not -max(rank, 1) <= axis < max(rank, 1):
        raise CodegenUnsupported(node, f"axis {axis} is out of range for rank {rank}")
    return axis % max(rank, 1)


def _lines(shape, axis: int) -> tuple[int, int, int]:
    """(lines, length, inner): the lines along ``axis`` of ``shape``, each ``length`` elements ``inner`` apart."""
    full = tuple(shape) if shape else (1,)
    length, inner = full[axis], numel(full[axis + 1:])
    return (numel(full) // length if length else 0), length, inner


def _at(k: str, inner: int) -> str:
    return f"base + {k}" if inner == 1 else f"base + {k} * {inner}"

# ---- NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss -----------------------------------------------
def _loss_terms(node: Node, dt: DType, classes: int, inner: int, weighted: bool) -> list[str]:
    """Lines computing ``loss`` and ``w`` (the element's weight) of loss element ``e`` (index (n, d...))."""
    c = cctype(dt)
    ignore = node.attrs.get("ignore_index")
    keep = f"t != {literal(int(ignore), DType.int64)}" if ignore is not None else "true"
    picked = load_expr(f"logp[(e / {inner}) * {classes * inner} + cls * {inner} + e % {inner}]", dt)
    weight = load_expr("weight[cls]", dt) if weighted else literal(1, dt)
    return ["const long long t = (long long)target[e];",
            f"const bool keep = {keep};  // ignore_index",
            "const long long cls = keep ? t : 0;",
            f"{c} loss, w;",
            f"if (cls < 0 || cls >= {classes}) {{  // a target out of range",
            f"    loss = {literal(float('nan'), dt)};",
            f"    w = {literal(float('nan'), dt)};",
            "} else {",
            f"    w = keep ? {weight} : {literal(0, dt)};",
            f"    loss = {round_to(f'-({picked}) * w', dt)};",
            "}"]


def _nll_steps(node: Node, ctx: LowerContext, logp: Value, target: Value, weight: Value | None,
               out: Value, what: str) -> list[Step]:
    dt = float_type(node, logp, FLOAT_TYPES)
    tt = dtype_of(target)
    if tt not in (DType.int32, DType.int64):
        raise CodegenUnsupported(node, f"target of type {tt} (int32 or int64 expected)")
    shape = shape_of(logp)
    if len(shape) < 2:
        raise CodegenUnsupported(node, f"input of rank {len(shape)} (expected (N, C, d...))")
    classes, inner = shape[1], numel(shape[2:])
    n = shape[0] * inner
    reduction = node.attrs.get("reduction", "mean")
    ins = [("logp", logp, dt), ("target", target, tt)] + ([("weight", weight, dt)] if weight is not None else [])
    terms = _loss_terms(node, dt, classes, inner, weight is not None)
    about = (f"{what} reduction={reduction} of {dt}{list(shape)}"
             + (f", ignore_index={node.attrs['ignore_index']}" if node.attrs.get("ignore_index") is not None else ""))
    if reduction == "none":
        body = [f"        const {index_type(n)} e = i;"] + [f"        {line}" for line in terms]
        body.append(f"        out[e] = {store_expr('loss', dt)};")
        return [loop_step(ctx, node, "loss", ins, [("out", out, dt)], n, body, about + ": one thread per element",
                          index_type(n))]
    if reduction not in ("sum", "mean"):
        raise CodegenUnsupported(node, f"reduction '{reduction}'")
    return [_one_block_sum(ctx, node, ins, out, dt, n, terms, reduction == "mean", about)]


def _one_block_sum(ctx: LowerContext, node: Node, ins, out: Value, dt: DType, n: int, terms: list[str],
                   mean: bool, about: str) -> Step:
    """ONE block sums ``loss`` (and ``w``) over the ``n`` elements: each thread a strided share, then a tree."""
    block = 1
    while block * 2 <= min(LOSS_BLOCK, ctx.props.max_threads_per_block):
        block *= 2
    c = cctype(dt)
    name = ctx.unique_name(f"{node.name or node.op_type}_loss")
    params = [Param("input", k, p, t) for k, (p, _, t) in enumerate(ins)] + [Param("output", 0, "out", dt)]
    result = "s_loss[0] / s_w[0]" if mean else "s_loss[0]"
    it = index_type(n)
    src = [f"// graphc kernel '{name}': {node.op_type} '{node.name}'",
           f"// {about}: one block of {block} threads sums the {n} element losses"
           + (" and their weights" if mean else ""),
           prelude(set(), {dt}), "",
           f'extern "C" __global__ void {name}({param_list(params)})', "{",
           f"    __shared__ {c} s_loss[{block}];",
           f"    __shared__ {c} s_w[{block}];",
           f"    {c} loss_sum = {literal(0, dt)}, w_sum = {literal(0, dt)};",
           f"    for ({it} e = threadIdx.x; e < {n}; e += blockDim.x) {{",
           *[f"        {line}" for line in terms],
           "        loss_sum += loss;",
           "        w_sum += w;",
           "    }",
           "    s_loss[threadIdx.x] = loss_sum;",
           "    s_w[threadIdx.x] = w_sum;",
           "    __syncthreads();",
           f"    for (int half = {block // 2}; half > 0; half >>= 1) {{",
           "        if (threadIdx.x < half) {",
           "            s_loss[threadIdx.x] += s_loss[threadIdx.x + half];",
           "            s_w[threadIdx.x] += s_w[threadIdx.x + half];",
           "        }",
           "        __syncthreads();",
           "    }",
           f"    if (threadIdx.x == 0) out[0] = {store_expr(result, dt)};  // mean: 0 / 0 (all ignored) is NaN",
           "}", ""]
    group = KernelGroup(name, [node], [v for _, v, _ in ins], [out])
    kernel = Kernel(name, "\n".join(src), params, 1, block, group, max(n, 1))
    return ctx.kernel_step(group, node, kernel)


def _nll(node: Node, ctx: LowerContext) -> list[Step]:
    x, target = node.inputs[:2]
    weight = node.inputs[2] if len(node.inputs) > 2 else None
    return _nll_steps(node, ctx, x, target, weight, node.outputs[0], "NegativeLogLikelihoodLoss")


def _softmax_cross_entropy(node: Node, ctx: LowerContext) -> list[Step]:
    scores, labels = node.inputs[:2]
    weight = node.inputs[2] if len(node.inputs) > 2 else None
    dt = float_type(node, scores, FLOAT_TYPES)
    shape = shape_of(scores)
    if len(shape) < 2:
        raise CodegenUnsupported(node, f"scores of rank {len(shape)} (expected (N, C, d...))")
    logp = node.outputs[1] if len(node.outputs) > 1 and node.outputs[1] is not None else \
        ctx.scratch(ctx.unique_name(f"{node.name}_log_prob"), dt, shape)
    # the LogSoftmax row kernel over the classes (codegen_reduce.py), writing logp: a node of its own that the
    # graph does not hold (outputs set after construction, so that logp keeps its producer)
    log_softmax = Node("LogSoftmax", [scores], [], {"axis": 1}, name=f"{node.name or node.op_type}_log_softmax")
    log_softmax.outputs = [logp]
    first = ctx.kernel_step(KernelGroup(log_softmax.name, [log_softmax], [scores], [logp]), node)
    return [first] + _nll_steps(node, ctx, logp, labels, weight, node.outputs[0], "SoftmaxCrossEntropyLoss")

# ---- TopK -------------------------------------------------------------------------------------------
def _topk(node: Node, ctx: LowerContext) -> list[Step]:
    x, values = node.inputs[0], node.outputs[0]
    indices = node.outputs[1] if len(node.outputs) > 1 else None
    dt = dtype_of(x)
    if dt in (DType.bool,):
        raise CodegenUnsupported(node, f"TopK on {dt}")
    shape = shape_of(x)
    axis = _axis(node, len(shape))
    k = shape_of(values)[axis] if shape else 1
    _, length, inner = _lines(shape, axis)
    largest = bool(node.attrs.get("largest", 1))
    n = numel(shape) if shape else 1
    it = index_type(n)
    c = cctype(dt)
    nan = dt.is_float
    # j comes before a: its value is ahead (larger for largest, smaller otherwise; NaN is the largest), or the
    # values are tied and j is the lower index
    ahead, behind = ("xj_gt", "xa_gt") if largest else ("xa_gt", "xj_gt")
    xa, xj = load_expr("x[" + _at("a", inner) + "]", dt), load_expr("x[" + _at("j", inner) + "]", dt)
    body = decode("i", [("outer", n // max(length * inner, 1)), ("a", length), ("in", inner)], it)
    body += [f"        const {it} base = outer * {length * inner} + in;",
             f"        const {c} xa = {xa};",
             "        int rank = 0;",
             f"        for (int j = 0; j < {length} && rank < {k}; ++j) {{",
             f"            const {c} xj = {xj};",
             "            const bool xj_gt = " + ("(xj != xj && xa == xa) || xj > xa;" if nan else "xj > xa;"),
             "            const bool xa_gt = " + ("(xa != xa && xj == xj) || xa > xj;" if nan else "xa > xj;"),
             f"            if ({ahead} || (!{behind} && j < a)) ++rank;",
             "        }",
             f"        if (rank < {k}) {{",
             f"            const {it} to = outer * {k * inner} + ({it})rank * {inner} + in;",
             "            values[to] = x[i];"]
    outs = [("values", values, dt)]
    if indices is not None:
        body.append("            indices[to] = (long long)a;")
        outs.append(("indices", indices, DType.int64))
    body.append("        }")
    what = (f"TopK k={k} {'largest' if largest else 'smallest'} along axis {axis} of {dt}{list(shape)}: one thread "
            f"per element, its rank among the {length} of its line")
    return [loop_step(ctx, node, "topk", [("x", x, dt)], outs, n if k else 0, body, what, it)]

register_lowering("NegativeLogLikelihoodLoss", _nll)

register_lowering("SoftmaxCrossEntropyLoss", _softmax_cross_entropy)

register_lowering("TopK", _topk)


__all__ = ['LOSS_BLOCK']
