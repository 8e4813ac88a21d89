"""CUDA C for ops whose output is made from a shape or from indices rather than from data: ConstantOfShape
(a fill) and OneHot (``on`` where the axis coordinate equals the index, ``off`` elsewhere).

Both are code emitters (``OP_EMITTERS``) for the grid-stride loop kernel, so the value at any output
coordinate is an expression; each lone node is lowered to such a loop. The output shape is static once
the plan's dims are bound, so ConstantOfShape's shape input and OneHot's depth are not read at run time.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import Node

from .codegen import OP_EMITTERS, CodegenUnsupported, Coords, Emitter, KernelGroup, cctype, dtype_of, literal, shape_of
from .codegen_elementwise import generate_loop
from .lowering import LowerContext, Step, _args, register_lowering


def _constant_of_shape(em: Emitter, node: Node, coords: Coords) -> str:
    value = node.attrs.get("value")
    x = 0 if value is None else np.asarray(value).reshape(-1)[0].item()
    return literal(x, dtype_of(node.outputs[0]))


def _one_hot(em: Emitter, node: Node, coords: Coords) -> str:
    idx, _, values = node.inputs[:3]
    out = node.outputs[0]
    oshape = shape_of(out)
    axis = node.attrs.get("axis", -1) % len(oshape)
    depth = oshape[axis]
    dims = coords.dims(em)
    ishape = shape_of(idx)
    idims = dims[:axis] + dims[axis + 1:]
    raw = em.value(idx, Coords(ishape, dims=idims or None, linear=None if ishape else "0"))
    g = em.temp("h", "long long", f"(long long)({raw})", f"OneHot '{node.name}' index (truncated)")
    g = em.temp("h", "long long", f"{g} < 0 ? {g} + {depth} : {g}")
    off = em.value(values, Coords((2,), linear="0"))
    on = em.value(values, Coords((2,), linear="1"))
    return em.temp("v", cctype(dtype_of(out)), f"{g} == (long long)({dims[axis]}) ? {on} : {off}",
                   f"OneHot '{node.name}' axis={axis} depth={depth}")


OP_EMITTERS.update({"ConstantOfShape": _constant_of_shape, "OneHot": _one_hot})


def _loop(node: Node, ctx: LowerContext) -> list[Step]:
    """One grid-stride loop kernel for the node alone (its emitter computes every output element)."""
    if node.op_type == "OneHot" and shape_of(node.inputs[2]) != (2,):
        raise CodegenUnsupported(node, f"values must hold [off, on], got shape {list(shape_of(node.inputs[2]))}")
    group = KernelGroup.of_node(node)
    if node.op_type == "ConstantOfShape":
        group.inputs = []  # the shape is static: nothing to read
    group.name = ctx.unique_name(group.name)
    kernel = generate_loop(group, ctx.props)
    return [Step(kernel, _args(kernel, group.inputs, group.outputs, group.constants), node)]


for _op in ("ConstantOfShape", "OneHot"):
    register_lowering(_op, _loop)

__all__: list[str] = []
