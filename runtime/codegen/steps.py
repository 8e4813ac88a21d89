"""What the op families' lowerings share: a one-loop kernel as a step, a copy, index decoding.

- ``loop_step``: a kernel of one grid-stride loop over ``n`` work items whose body a lowering writes, with its
  parameters (inputs, outputs, scalars) and the step that launches it; ``kernel_from`` the same from a group;
- ``decode``: a linear index split into named coordinates (in the C dialect by rows, so that the innermost
  coordinate is the loop's own counter and no element pays a division);
- ``copy_step``: a copy of one value into another (a ``view_of`` step where the memory plan gave both one
  offset: the executor then launches nothing);
- ``float_type``, ``FLOAT_TYPES``: the element types a lowering accepts; ``spatial_offset``: a row-major
  offset from coordinates;
- ``tap_bounds``, ``row_window``: the taps of an undilated window inside the image, and the C dialect's loops
  over one output row's window (the conv family's depthwise and MaxPool row kernels).
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from graphc.ir import DType, Node, Value

from .dialect import current, grid_stride_loop
from .elementwise import header, param_list
from .kernel import CodegenUnsupported, Kernel, KernelGroup, Param, dtype_of, index_type, numel, prelude, shape_of
from .launch import elementwise_launch
from .libcall import GEMM_DTYPES
from .lowering import LowerContext, Step

#: The floating-point element types most lowerings accept.
FLOAT_TYPES = (DType.float16, DType.bfloat16, DType.float32, DType.float64)

# ---- hand-written grid-stride kernels (shared with codegen_pool) ------------------------------------
def decode(index: str, dims: list[tuple[str, int]], it: str, indent: str = "        ") -> list[str]:
    """Lines naming the coordinates ``dims`` [(name, size)...] (row-major, last fastest) of linear ``index``.

    C dialect, decoding the loop's ``i`` with a last dim of 4 or more: the coordinates come from ``gc_r`` (the
    row) and ``gc_j`` (the place along it), which ``_work_loop`` defines, so no division is left per element."""
    L = dims[-1][1] if dims else 0
    if current().row_loops and index == "i" and L >= ROW_MIN:
        lines = decode("gc_r", dims[:-1], it, indent) if len(dims) > 1 else []
        return lines + [f"{indent}const {it} {dims[-1][0]} = gc_j;  // gc_row {L}"]
    lines, stride = [], 1
    for k in range(len(dims) - 1, -1, -1):
        name, size = dims[k]
        expr = index if stride == 1 else f"{index} / {stride}"
        if k > 0 and size != 1:
            expr = f"({expr}) % {size}" if stride != 1 else f"{expr} % {size}"
        elif k > 0:
            expr = "0"
        lines.append(f"{indent}const {it} {name} = {expr};")
        stride *= size
    return lines[::-1]


def loop_step(ctx: LowerContext, node: Node, what: str, ins: list[tuple[str, Value, DType]],
              outs: list[tuple[str, Value, DType]], n: int, body: list[str], comment: str, it: str,
              helpers: set[str] | frozenset = frozenset(), scalars: list[Param] = ()) -> Step:
    """A step launching a generated kernel named after ``node`` + ``what``: a grid-stride loop over ``n``
    items (index ``i``) running ``body``. ``ins``/``outs``: (parameter name, value, element type);
    ``scalars``: parameters passed by value after them (role "scalar")."""
    name = ctx.unique_name(f"{node.name or node.op_type}_{what}")
    params = [Param("input", k, p, dt) for k, (p, _, dt) in enumerate(ins)]
    params += [Param("output", k, p, dt) for k, (p, _, dt) in enumerate(outs)]
    params += list(scalars)
    dtypes = {dt for _, _, dt in ins + outs}
    src = [f"// graphc kernel '{name}': {node.op_type} '{node.name}'", f"// {comment}", prelude(set(helpers), dtypes),
           "", f'extern "C" __global__ void {name}({param_list(params)})', "{",
           *_work_loop(it, n, body), "}", ""]
    grid, block = elementwise_launch(n, ctx.props)
    group = KernelGroup(name, [node], [v for _, v, _ in ins], [v for _, v, _ in outs])
    return ctx.kernel_step(group, node, Kernel(name, "\n".join(src), params, grid, block, group, n))


def _work_loop(it: str, n: int, body: list[str]) -> list[str]:
    """The loop over ``n`` items (index ``i``) around ``body``. When the body decoded ``i`` by rows of ``L``
    (``decode`` in the C dialect), the loop runs over this thread's rows and along each (``gc_r``, ``gc_j``,
    ``i = gc_r * L + gc_j``); where ``n`` is no whole number of rows, ``gc_r`` and ``gc_j`` come from ``i``."""
    L = next((int(m.group(1)) for line in body for m in [_ROW_MARK.search(line)] if m), None)
    if L is None:
        return [grid_stride_loop(it, n), *body, "    }"]
    if n % L:
        return [grid_stride_loop(it, n), f"        const {it} gc_r = i / {L}, gc_j = i % {L};", *body, "    }"]
    return [grid_stride_loop(it, n // L, "gc_r"), f"        for ({it} gc_j = 0; gc_j < {L}; ++gc_j) {{",
            f"        const {it} i = gc_r * {L} + gc_j;", *body, "        }", "    }"]

#: ``decode``'s mark on the last coordinate of ``i`` decoded by rows (C dialect).
_ROW_MARK = re.compile(r"// gc_row (\d+)$")

#: The C dialect decodes ``i`` by rows when the last dim has at least this many elements.
ROW_MIN = 4


def float_type(node: Node, v: Value, allowed=GEMM_DTYPES) -> DType:
    dt = dtype_of(v)
    if dt not in allowed:
        raise CodegenUnsupported(node, f"{node.op_type} on {dt} (the CUDA backend runs it on "
                                       f"{', '.join(str(d) for d in allowed)})")
    return dt


def constant_input(node: Node, i: int, what: str) -> np.ndarray:
    """Input ``i`` of ``node`` (its ``what``, for the message) as a flat array: it must be a constant."""
    v = node.inputs[i] if i < len(node.inputs) else None
    if v is None or v.data is None:
        raise CodegenUnsupported(node, f"its {what} (input {i}{', ' + repr(v.name) if v is not None else ''}) is "
                                       f"computed at run time; generated kernels need it constant")
    return np.asarray(v.data).reshape(-1)


def spatial_offset(coords: list[str], shape: list[int]) -> str:
    """Row-major linear offset of per-dim C expressions in ``shape``."""
    terms, stride = [], 1
    for c, s in zip(reversed(coords), reversed(shape)):
        terms.append(c if stride == 1 else f"{c} * {stride}")
        stride *= s
    return " + ".join(reversed(terms)) if terms else "0"


def tap_bounds(lo: str, hi: str, o: str, stride: int, pad: int, size: int, kernel: int, indent: str) -> list[str]:
    """C lines naming ``[lo, hi)``, the taps of an undilated window (``kernel`` taps, ``stride``) at output
    coordinate ``o`` that lie inside an input dim of ``size`` padded by ``pad`` before it."""
    at = f"{o} * {stride}"
    return [f"{indent}const int {lo} = {pad} - {at} > 0 ? {pad} - {at} : 0;",
            f"{indent}const int {hi} = {size + pad} - {at} < {kernel} ? {size + pad} - {at} : {kernel};"]


def row_window(spatial, kernel, outs, strides, pads, elem: str, per_tap: list[str],
               inner: Callable[[str], list[str]]) -> list[str]:
    """The loops of the C dialect's row kernels (2-D, undilated windows: the depthwise convolution, MaxPool) over
    the window of output row ``oh`` of the image at ``xm`` (elements of C type ``elem``): for each tap (kh, kw)
    inside the image, ``per_tap`` lines, then ``inner(at)``: lines looping ``ow`` from ``lo`` to ``hi``, the
    outputs whose input ``at`` (a C expression) is inside too, the loop the compiler vectorizes."""
    (H, W), (KH, KW), (_, OW), (sh, sw), (ph, pw) = spatial, kernel, outs, strides, pads
    ind = "                "
    return [*tap_bounds("kh0", "kh1", "oh", sh, ph, H, KH, "        "),
            "        for (int kh = kh0; kh < kh1; ++kh) {",
            f"            const {elem}* xr = xm + (oh * {sh} - {ph} + kh) * {W};",
            f"            for (int kw = 0; kw < {KW}; ++kw) {{",
            *[ind + line for line in per_tap],
            f"{ind}const int lo = {pw} - kw > 0 ? ({pw} - kw + {sw - 1}) / {sw} : 0;",
            f"{ind}const int last = {W - 1 + pw} - kw;  // the last input column, relative",
            f"{ind}const int hi = last < 0 ? 0 : (last / {sw} + 1 < {OW} ? last / {sw} + 1 : {OW});",
            *[ind + line for line in inner(f"xr[ow * {sw} + kw - {pw}]")],
            "            }",
            "        }"]


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


__all__ = ['FLOAT_TYPES', 'ROW_MIN', 'constant_input', 'copy_step', 'decode', 'float_type', 'kernel_from', 'loop_step',
           'row_window', 'spatial_offset', 'tap_bounds']
