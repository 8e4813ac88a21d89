"""CUDA C for the scans CumSum and CumProd: one thread per line along the axis, combining its elements in
order (the NumPy reference's sequential order, so float sums round the same way), ``exclusive`` writing
the running result before each element is combined, ``reverse`` walking the line from its end.

Lines are independent, so a tensor of many short lines (the usual case: a cumulative sum over the last
axis of a batch) fills the device; one very long line runs on one thread.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import Node

from .codegen import CodegenUnsupported, KernelGroup, Param, cctype, dtype_of, literal, load_expr, numel, round_to, \
    shape_of, store_expr
from .codegen_copy import kernel_from
from .lowering import LowerContext, Step, register_lowering


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

__all__: list[str] = []
