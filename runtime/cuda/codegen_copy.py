"""CUDA C for ops that move elements without computing on them: Split (all outputs in one kernel), the
``graphc.Assign`` of a variable update (a copy of the new value), and the plain copy other lowerings start
with (a scatter's output begins as a copy of its data).

Each is a grid-stride loop over the elements it reads. A copy whose source and destination the memory
plan put at one offset is a ``view_of`` step: the executor then launches nothing.
"""
from __future__ import annotations

from graphc.ir import Node, Value

from .codegen import (CodegenUnsupported, Kernel, KernelGroup, Param, dtype_of, grid_stride_loop, index_type, numel,
                      prelude, shape_of)
from .codegen_elementwise import header, param_list
from .launch import elementwise_launch
from .lowering import LowerContext, Step, register_lowering


def _loop(it: str, n: int, body: list[str]) -> list[str]:
    return [grid_stride_loop(it, n)] + [f"        {line}" for line in body] + ["    }"]


def kernel_from(ctx: LowerContext, group: KernelGroup, params: list[Param], body: list[str], n: int, what: str,
                helpers: str = "") -> Kernel:
    """A grid-stride kernel over ``n`` items: ``body`` (lines using ``i``) inside the loop, named uniquely
    within the plan. ``params`` index ``group``'s inputs and outputs."""
    group.name = ctx.unique_name(group.name)
    dtypes = {p.dtype for p in params}
    src = [header(group, what), prelude(set(), dtypes)]
    if helpers:
        src.append(helpers)
    src += ["", f'extern "C" __global__ void {group.name}({param_list(params)})', "{"]
    src += _loop(index_type(n), n, body) + ["}", ""]
    grid, block = elementwise_launch(n, ctx.props)
    return Kernel(group.name, "\n".join(src), params, grid, block, group, n)


def copy_step(ctx: LowerContext, node: Node, src: Value, dst: Value, what: str = "copy") -> Step:
    """A step copying ``src`` into ``dst`` (same type); nothing is launched when they share their bytes."""
    dt = dtype_of(dst)
    if dtype_of(src) != dt or shape_of(src) != shape_of(dst):
        raise CodegenUnsupported(node, f"cannot copy '{src.name}' ({src.type}) into '{dst.name}' ({dst.type})")
    n = numel(shape_of(dst))
    group = KernelGroup(f"{node.name}_{what}", [node], [src], [dst])
    params = [Param("input", 0, "in0", dt), Param("output", 0, "out0", dt)]
    kernel = kernel_from(ctx, group, params, ["out0[i] = in0[i];"], n, f"{what}: {dt}{list(shape_of(dst))}")
    return Step(kernel, [src, dst], node, view_of=(src, dst))


def _assign(node: Node, ctx: LowerContext) -> list[Step]:
    """``graphc.Assign(variable, new)``: the output is the new value (the Session stores it afterwards)."""
    return [copy_step(ctx, node, node.inputs[1], node.outputs[0], "assign")]


def _split(node: Node, ctx: LowerContext) -> list[Step]:
    """Split along an axis: one thread per input element writes it to the output whose range holds it."""
    x = node.inputs[0]
    shape = shape_of(x)
    dt = dtype_of(x)
    axis = node.attrs.get("axis", 0) % len(shape)
    dim, post = shape[axis], numel(shape[axis + 1:])
    outs = [v for v in node.outputs if v is not None]
    n = numel(shape)
    it = index_type(n)
    body = [f"const {it} o = i / {dim * post};",
            f"const {it} r = i - o * {dim * post};",
            f"const {it} a = r / {post};" if post > 1 else f"const {it} a = r;",
            f"const {it} p = r - a * {post};" if post > 1 else f"const {it} p = 0;"]
    params = [Param("input", 0, "in0", dt)]
    start, first = 0, True
    for v in node.outputs:
        if v is None:
            continue
        size = shape_of(v)[axis]
        k = outs.index(v)
        params.append(Param("output", k, f"out{k}", dt))
        if size == 0:
            continue
        cond = f"a < {start + size}"
        at = f"o * {size * post} + (a - {start}) * {post} + p"
        body.append(f"{'if' if first else 'else if'} ({cond}) out{k}[{at}] = in0[i];")
        start += size
        first = False
    if start != dim:
        raise CodegenUnsupported(node, f"its outputs cover {start} of the {dim} entries of dim {axis}")
    group = KernelGroup(node.name, [node], [x], outs)
    kernel = kernel_from(ctx, group, params, body, n, f"Split axis={axis} of {dt}{list(shape)} into {len(outs)}")
    args = [x] + outs
    return [Step(kernel, args, node)]


register_lowering("Split", _split)
register_lowering("graphc.Assign", _assign)

__all__ = ["copy_step", "kernel_from"]
