"""CUDA C for ops whose values come from output coordinates and static shapes: Trilu (a triangle of its
input, zero elsewhere), Range (start + i * delta), Shape and Size (the bound shape, written as literals).

Each is a code emitter (``OP_EMITTERS``) lowered as a lone node to one grid-stride loop kernel, as
ConstantOfShape is (codegen_fill.py). Shapes are static once the plan's dims are bound, so Shape and Size
read nothing at run time; Trilu's ``k`` and Range's start and delta are read from device memory when a
run computes them (at -O0 nothing folds them into constants), their output sizes being static anyway.
"""
from __future__ import annotations

from graphc.ir import DType, Node

from .codegen import OP_EMITTERS, CodegenUnsupported, Coords, Emitter, KernelGroup, cctype, dtype_of, literal, shape_of
from .codegen_elementwise import generate_loop
from .lowering import LowerContext, Step, _args, register_lowering


def _scalar(em: Emitter, node: Node, i: int) -> str:
    """Input ``i`` (one element) as an expression: a literal when constant, else a load of element 0."""
    v = node.inputs[i]
    return em.value(v, Coords(shape_of(v), linear="0"))


def _trilu(em: Emitter, node: Node, coords: Coords) -> str:
    x, out = node.inputs[0], node.outputs[0]
    dims = coords.dims(em)
    k = "0LL" if len(node.inputs) < 2 or node.inputs[1] is None else f"(long long)({_scalar(em, node, 1)})"
    upper = bool(node.attrs.get("upper", 1))
    diff = f"(long long)({dims[-1]}) - (long long)({dims[-2]})"
    keep = em.temp("t", "bool", f"{diff} {'>=' if upper else '<='} {k}",
                   f"Trilu '{node.name}' {'upper' if upper else 'lower'}")
    dt = dtype_of(out)
    return em.temp("v", cctype(dt), f"{keep} ? {em.value(x, coords)} : {literal(0, dt)}")


def _range(em: Emitter, node: Node, coords: Coords) -> str:
    dt = dtype_of(node.outputs[0])
    i = coords.linear(em)
    start, delta = _scalar(em, node, 0), _scalar(em, node, 2)
    if dt.is_float:  # as the NumPy reference: start + i * delta in the work type (float32, or float64)
        work = "double" if dt == DType.float64 else "float"
        expr = f"({work})({start}) + ({work})({i}) * ({work})({delta})"
    else:
        expr = f"(long long)({start}) + (long long)({i}) * (long long)({delta})"
    return em.temp("v", cctype(dt), f"({cctype(dt)})({expr})", f"Range '{node.name}'")


def _shape_values(node: Node) -> list[int]:
    shape = list(shape_of(node.inputs[0]))
    if node.op_type == "Size":
        n = 1
        for d in shape:
            n *= d
        return [n]
    r = len(shape)
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    start = max(0, min(r, start + r if start < 0 else start))
    end = r if end is None else max(0, min(r, end + r if end < 0 else end))
    return shape[start:end]


def _shape(em: Emitter, node: Node, coords: Coords) -> str:
    vals = _shape_values(node)
    if len(vals) <= 1:
        return literal(vals[0] if vals else 0, DType.int64)
    i = coords.linear(em)
    expr = literal(vals[-1], DType.int64)
    for j in range(len(vals) - 2, -1, -1):
        expr = f"({i}) == {j} ? {literal(vals[j], DType.int64)} : ({expr})"
    return em.temp("v", "long long", expr, f"{node.op_type} '{node.name}' = {vals}")


OP_EMITTERS.update({"Trilu": _trilu, "Range": _range, "Shape": _shape, "Size": _shape})


def _loop(node: Node, ctx: LowerContext) -> list[Step]:
    """One grid-stride loop kernel for the node alone (its emitter computes every output element)."""
    group = KernelGroup.of_node(node)
    if node.op_type in ("Shape", "Size"):
        group.inputs = []  # the shape is static: nothing to read
    elif node.op_type == "Range":
        group.inputs = [v for v in group.inputs if v is not node.inputs[1]]  # the limit only sizes the output
    elif node.op_type == "Trilu" and len(shape_of(node.inputs[0])) < 2:
        raise CodegenUnsupported(node, f"input of rank {len(shape_of(node.inputs[0]))}: Trilu needs rank >= 2")
    group.name = ctx.unique_name(group.name)
    kernel = generate_loop(group, ctx.props)
    return [Step(kernel, _args(kernel, group.inputs, group.outputs, group.constants), node)]


for _op in ("Trilu", "Range", "Shape", "Size"):
    register_lowering(_op, _loop)

__all__: list[str] = []
