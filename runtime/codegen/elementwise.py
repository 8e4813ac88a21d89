"""The grid-stride loop kernel: elementwise, broadcast and injective groups, one thread per output element.

Outputs of one shape share one loop (each value computed once per element). Where every operand is
float32 and either of the output's shape or a single element, the loop runs over float4 vectors: each
thread loads 16 bytes per operand and computes four elements (arena offsets are 64-byte aligned).
"""
from __future__ import annotations

from graphc.ir import DType

from . import expressions, injective  # noqa: F401  (fill OP_EMITTERS)
from .dialect import current, grid_stride_loop
from .kernel import (Coords, Emitter, Kernel, KernelGroup, NameSource, Param, c_identifier, ctype, dtype_of,
                      index_type, literal, numel, prelude, shape_of, store_expr)
from .kernel import HELPERS
from .expressions import ELEMENTWISE_OPS
from .launch import DeviceProps, elementwise_launch

VECTOR = 4
HELPERS["lane"] = "__device__ __forceinline__ float& gc_lane(float4& v, int l) { return (&v.x)[l]; }"


def kernel_params(group: KernelGroup) -> tuple[list[Param], dict, dict, set]:
    """The parameters of a group's kernel, with the emitter's ``loads`` and ``literals`` and the dtypes used."""
    params: list[Param] = []
    loads: dict[int, tuple[str, DType]] = {}
    literals: dict[int, str] = {}
    dtypes: set[DType] = set()
    for i, v in enumerate(group.inputs):
        dt = dtype_of(v)
        dtypes.add(dt)
        params.append(Param("input", i, f"in{i}", dt, restrict=id(v) not in group.aliased))
        loads[id(v)] = (f"in{i}", dt)
    for i, v in enumerate(group.constants):
        dt = dtype_of(v)
        dtypes.add(dt)
        if v.data.size == 1:
            literals[id(v)] = literal(v.data.reshape(-1)[0].item(), dt)
        else:
            params.append(Param("constant", i, f"k{i}", dt))
            loads[id(v)] = (f"k{i}", dt)
    for i, v in enumerate(group.outputs):
        dt = dtype_of(v)
        dtypes.add(dt)
        params.append(Param("output", i, f"out{i}", dt, restrict=id(v) not in group.aliased))
    for n in group.nodes:  # a half type used only inside the group still needs its header
        dtypes.update(dtype_of(v) for v in n.outputs if v is not None)
    return params, loads, literals, dtypes


def param_list(params: list[Param]) -> str:
    parts = []
    for p in params:
        if p.role == "scalar":  # passed by value
            parts.append(f"const {ctype(p.dtype)} {p.name}")
            continue
        const = "" if p.role == "output" else "const "
        parts.append(f"{const}{ctype(p.dtype)}* {'__restrict__ ' if p.restrict else ''}{p.name}")
    return ", ".join(parts)


def header(group: KernelGroup, what: str) -> str:
    ops = " + ".join(n.op_type for n in group.nodes)
    return f"// graphc kernel '{group.name}': {ops}\n// {what}"


#: The C dialect loops over rows, then along the last dim, when the last dim has at least this many elements.
ROW_LOOP_MIN = 4


def _row_loop(group, shape, outs, loads, literals, names, it):
    """The C dialect's loop: this thread's share of the rows (all dims but the last), each row's coordinates
    computed once, then a plain loop along the last dim (``j``) that the compiler vectorizes: no division per
    element, same-shape operands read at ``i = r * L + j``."""
    L = shape[-1]
    rows = numel(shape[:-1])
    outer = Emitter(loads, literals, it, indent="        ", names=names)
    oc = Coords(shape[:-1], linear="r")
    dims = [oc.dim(outer, d) for d in range(len(shape) - 1)] + ["j"]
    em = Emitter(loads, literals, it, indent="            ", names=names)
    coords = Coords(shape, dims=dims, linear="i")
    _store_lines(em, group, outs, coords, lambda k, val: f"out{k}[i] = {val};")
    lines = [grid_stride_loop(it, rows, "r"), *outer.lines,
             f"        for ({it} j = 0; j < {L}; ++j) {{", f"            const {it} i = r * {L} + j;",
             *em.lines, "        }", "    }"]
    return lines, outer.helpers | em.helpers


def _vectorizable(group: KernelGroup, shape: tuple) -> bool:
    if not current().vector_loads:  # float4 is CUDA's; a C compiler vectorizes the scalar loop itself
        return False
    n = numel(shape)
    if n < VECTOR or n % VECTOR or any(node.op_type not in ELEMENTWISE_OPS or node.op_type == "Identity"
                                       for node in group.nodes):
        return False
    for v in group.inputs + group.outputs + group.constants:  # a full-size constant is loaded as a vector too
        full = shape_of(v) == shape
        if not (full or numel(shape_of(v)) == 1) or (full and dtype_of(v) != DType.float32):
            return False
    return all(numel(shape_of(v)) == 1 or shape_of(v) == shape for v in group.constants)


def generate_loop(group: KernelGroup, props: DeviceProps) -> Kernel:
    """A grid-stride kernel computing every output of ``group`` element by element."""
    params, loads, literals, dtypes = kernel_params(group)
    name = c_identifier(group.name)
    names = NameSource()
    helpers: set[str] = set()
    by_shape: dict[tuple, list[int]] = {}
    for k, v in enumerate(group.outputs):
        by_shape.setdefault(shape_of(v), []).append(k)
    body: list[str] = []
    total = 0
    for shape, outs in by_shape.items():
        n = numel(shape)
        total = max(total, n)
        if n == 0:
            continue
        if len(by_shape) == 1 and _vectorizable(group, shape):
            lines, used = _vector_loop(group, shape, outs, loads, literals, names)
        else:
            lines, used = _scalar_loop(group, shape, outs, loads, literals, names)
        body += lines
        helpers |= used
    described = ", ".join(f"{dtype_of(group.outputs[k])}{list(s)}" for s, ks in by_shape.items() for k in ks)
    src = [header(group, f"elementwise loop over {described}"), prelude(helpers, dtypes), "",
           f'extern "C" __global__ void {name}({param_list(params)})', "{"] + body + ["}", ""]
    vec = len(by_shape) == 1 and total and _vectorizable(group, next(iter(by_shape)))
    grid, block = elementwise_launch(total // VECTOR if vec else total, props)
    return Kernel(name, "\n".join(src), params, grid, block, group, total)


def _store_lines(em: Emitter, group: KernelGroup, outs: list[int], coords: Coords, target) -> None:
    for k in outs:
        v = group.outputs[k]
        dt = dtype_of(v)
        val = em.value(v, coords)
        em.line(target(k, store_expr(val, dt)))


def loop_index_type(group: KernelGroup, n: int) -> str:
    """The index type of a loop over ``n`` elements that reads ``group``'s operands: wide enough for the largest
    of them too (an injective op such as Slice or Gather indexes its input, which may be far larger than the
    output)."""
    return index_type(max([n] + [numel(shape_of(v)) for v in group.inputs + group.constants]))


def _scalar_loop(group, shape, outs, loads, literals, names):
    n = numel(shape)
    it = loop_index_type(group, n)
    if current().row_loops and len(shape) >= 2 and shape[-1] >= ROW_LOOP_MIN:
        return _row_loop(group, shape, outs, loads, literals, names, it)
    em = Emitter(loads, literals, it, indent="        ", names=names)
    coords = Coords(shape, linear="i")
    _store_lines(em, group, outs, coords, lambda k, val: f"out{k}[i] = {val};")
    lines = [grid_stride_loop(it, n)]
    return lines + em.lines + ["    }"], em.helpers


def _vector_loop(group, shape, outs, loads, literals, names):
    n = numel(shape) // VECTOR
    it = loop_index_type(group, numel(shape))
    coords = Coords(shape, linear="lane")  # never loaded through: every operand is whole (a lane) or one element
    vec_loads, overrides, pre = {}, {}, []
    for v in group.inputs + [c for c in group.constants if id(c) in loads]:
        if shape_of(v) == shape:
            ptr, _ = loads[id(v)]
            pre.append(f"        float4 {ptr}_4 = reinterpret_cast<const float4*>({ptr})[i];")
            overrides[(id(v), coords.key)] = f"gc_lane({ptr}_4, l)"
        else:
            vec_loads[id(v)] = loads[id(v)]
    em = Emitter({**loads, **vec_loads}, literals, it, indent="            ", names=names, overrides=overrides)
    em.helpers.add("lane")
    _store_lines(em, group, outs, coords, lambda k, val: f"gc_lane(out{k}_4, l) = {val};")
    lines = [grid_stride_loop(it, n),
             *pre,
             *[f"        float4 out{k}_4;" for k in outs],
             "#pragma unroll",
             f"        for (int l = 0; l < {VECTOR}; ++l) {{"]
    lines += em.lines + ["        }"]
    lines += [f"        reinterpret_cast<float4*>(out{k})[i] = out{k}_4;" for k in outs]
    return lines + ["    }"], em.helpers


__all__ = ["generate_loop", "kernel_params", "loop_index_type", "param_list", "header"]
