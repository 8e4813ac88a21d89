"""CUDA lowering of Dropout in inference mode: the output is the input (a copy, or nothing where the memory plan
shares their bytes) and the optional mask is all true (ones for the legacy float mask).

Unoptimized plans (-O0) of exported CNNs keep their Dropout nodes (simplification removes them from -O1 on).
Training-mode Dropout with a nonzero ratio (a random mask) is not lowered here: it is reported missing, naming
the node.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import Node

from .codegen import CodegenUnsupported, KernelGroup, Param, dtype_of, literal, numel, shape_of, store_expr
from .codegen_copy import copy_step, kernel_from
from .lowering import LowerContext, Step, register_lowering


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

__all__ = ["lower_dropout"]
