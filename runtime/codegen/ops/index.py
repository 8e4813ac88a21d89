"""Lowerings of the index family's scatters and GatherND.

ScatterElements, its alias Scatter, and ScatterND: a copy of the data into the output, then one thread per
update element combining it into the output at the place its index names. Reductions: ``none`` stores (with
duplicate indices some write wins, which one is unspecified, as ONNX says), ``add`` uses ``atomicAdd``,
``mul``/``max``/``min`` a compare-and-swap loop. Float atomics make a sum over duplicate indices depend on the
order the threads arrive in: results agree with NumPy's ``add.at`` to rounding, not bit for bit, and may
differ between two runs. An index outside the data (after wrapping a negative one once) is an error for
NumPy; a kernel cannot raise, so such an update is skipped.

GatherND gives a thread each output element, which reads its index tuple and copies one data element; an
index out of range is clamped into its dim. Gather and GatherElements are injective (injective.py).
"""
from __future__ import annotations

from graphc.ir import DType, Node

from ..kernel import CodegenUnsupported, KernelGroup, Param, contiguous_strides, ctype, dtype_of, numel, shape_of
from ..lowering import LowerContext, Step, register_lowering
from ..steps import copy_step, kernel_from, loop_step

#: The bit-pattern type each element type is compare-and-swapped as, with the casts to and from it.
_CAS = {
    DType.float32: ("unsigned int", "__float_as_uint({})", "__uint_as_float({})"),
    DType.float64: ("unsigned long long", "(unsigned long long)__double_as_longlong({})",
                    "__longlong_as_double((long long)({}))"),
    DType.int32: ("unsigned int", "(unsigned int)({})", "(int)({})"),
    DType.uint32: ("unsigned int", "{}", "{}"),
    DType.int64: ("unsigned long long", "(unsigned long long)({})", "(long long)({})"),
    DType.uint64: ("unsigned long long", "{}", "{}"),
}


def _combine(red: str, dt: DType) -> str:
    """The combined value of ``cur`` (in the output) and ``v`` (the update), NaN-propagating as NumPy."""
    nan = dt.is_float
    if red == "mul":
        return "cur * v"
    if red == "max":
        return "(cur != cur || cur > v) ? cur : v" if nan else "cur > v ? cur : v"
    if red == "min":
        return "(cur != cur || cur < v) ? cur : v" if nan else "cur < v ? cur : v"
    raise ValueError(red)


def combine_helper(node: Node, red: str, dt: DType) -> tuple[str, str]:
    """(helper function name, its source) that combines an update into ``*p`` for reduction ``red``."""
    t = ctype(dt)
    name = f"gc_scatter_{red}"
    if red == "none":
        return name, f"__device__ __forceinline__ void {name}({t}* p, {t} v) {{ *p = v; }}"
    if dt not in _CAS:
        raise CodegenUnsupported(node, f"reduction '{red}' on {dt} has no atomic kernel yet (float32, float64 and "
                                       f"32/64-bit integers do)")
    if red == "add":
        if dt == DType.int64:
            call = "atomicAdd((unsigned long long*)p, (unsigned long long)v)"
        else:
            call = "atomicAdd(p, v)"
        return name, f"__device__ __forceinline__ void {name}({t}* p, {t} v) {{ {call}; }}"
    bits, to_bits, from_bits = _CAS[dt]
    src = "\n".join([
        f"__device__ __forceinline__ void {name}({t}* p, {t} v) {{",
        f"    {bits}* a = ({bits}*)p;",
        f"    {bits} old = *a, assumed;",
        "    do {",
        "        assumed = old;",
        f"        const {t} cur = {from_bits.format('assumed')};",
        f"        const {t} next = {_combine(red, dt)};",
        f"        old = atomicCAS(a, assumed, {to_bits.format('next')});",
        "    } while (old != assumed);",
        "}"])
    return name, src


def _index_lines(var: str, raw: str, dim: int) -> list[str]:
    return [f"long long {var} = (long long)({raw});", f"if ({var} < 0) {var} += {dim};",
            f"if ({var} < 0 || {var} >= {dim}) continue;  // out of range: skipped (NumPy raises)"]


def _scatter(node: Node, ctx: LowerContext) -> list[Step]:
    data, idx, upd = node.inputs[:3]
    out = node.outputs[0]
    dt = dtype_of(out)
    it_dt = dtype_of(idx)
    if it_dt not in (DType.int32, DType.int64):
        raise CodegenUnsupported(node, f"indices of type {it_dt}: int32 and int64 are read")
    red = node.attrs.get("reduction", "none")
    if red not in ("none", "add", "mul", "max", "min"):
        raise CodegenUnsupported(node, f"reduction '{red}'")
    helper, helper_src = combine_helper(node, red, dt)
    shape, ushape = shape_of(out), shape_of(upd)
    strides = contiguous_strides(shape)
    n = numel(ushape)
    body: list[str] = []
    if node.op_type in ("ScatterElements", "Scatter"):
        axis = node.attrs.get("axis", 0) % len(shape)
        body += _index_lines("g", "idx[i]", shape[axis])
        terms, ustrides = [], contiguous_strides(ushape)
        for d, (size, s) in enumerate(zip(ushape, ustrides)):
            c = "g" if d == axis else (f"(i / {s})" if s > 1 else "i") + (f" % {size}" if d > 0 else "")
            if d != axis and size == 1:
                continue
            terms.append(c if strides[d] == 1 else f"({c}) * {strides[d]}")
        body.append(f"const long long o = {' + '.join(terms) or '0'};")
        what = f"ScatterElements axis={axis} reduction={red}"
    else:  # ScatterND: indices [..., k] address the first k dims; each names a slice of the rest
        k = shape_of(idx)[-1]
        inner = numel(shape[k:])
        body += [f"const long long j = i / {inner};" if inner > 1 else "const long long j = i;",
                 f"const long long r = i % {inner};" if inner > 1 else "const long long r = 0;",
                 "long long o = r;"]
        for d in range(k):
            body += _index_lines(f"g{d}", f"idx[j * {k} + {d}]", shape[d])
            body.append(f"o += g{d} * {strides[d]};")
        what = f"ScatterND k={k} reduction={red}"
    body.append(f"{helper}(&out0[o], upd[i]);")
    group = KernelGroup(f"{node.name}_scatter", [node], [idx, upd], [out])
    params = [Param("input", 0, "idx", it_dt), Param("input", 1, "upd", dt), Param("output", 0, "out0", dt)]
    kernel = kernel_from(ctx, group, params, body, n, f"{what}: {n} updates into {dt}{list(shape)}", helper_src)
    return [copy_step(ctx, node, data, out, "data"), Step(kernel, [idx, upd, out], node)]

for _op in ("ScatterElements", "Scatter", "ScatterND"):
    register_lowering(_op, _scatter)

# ---- GatherND ---------------------------------------------------------------------------------------
def _gather_nd(node: Node, ctx: LowerContext) -> list[Step]:
    data, idx, out = node.inputs[0], node.inputs[1], node.outputs[0]
    dt, xt = dtype_of(data), dtype_of(idx)
    ds, qs = shape_of(data), shape_of(idx)
    b = int(node.attrs.get("batch_dims", 0))
    if not qs or b >= min(len(ds), len(qs)):
        raise CodegenUnsupported(node, f"indices of shape {list(qs)} with batch_dims {b}")
    k = qs[-1]
    if b + k > len(ds):
        raise CodegenUnsupported(node, f"indices of depth {k} into data of rank {len(ds)} after {b} batch dims")
    tuples = numel(qs[:-1])  # index tuples
    batches = numel(ds[:b])
    per_batch = tuples // batches if batches else 0
    slice_len = numel(ds[b + k:])
    n = numel(shape_of(out))
    it = "long long"
    body = [f"        const {it} q = i / {slice_len};  // the index tuple",
            f"        const {it} batch = q / {max(per_batch, 1)};",
            f"        {it} at = batch * {numel(ds[b:])} + i % {slice_len};  // + the indexed dims below"]
    for j in range(k):
        dim = ds[b + j]
        body += [f"        {it} c{j} = (long long)idx[q * {k} + {j}];",
                 f"        c{j} = c{j} < 0 ? c{j} + {dim} : c{j};  // negative: from the end",
                 f"        c{j} = c{j} < 0 ? 0 : (c{j} >= {dim} ? {dim - 1} : c{j});  // out of range: clamped",
                 f"        at += c{j} * {numel(ds[b + j + 1:])};"]
    body.append("        out[i] = data[at];")
    what = (f"GatherND batch_dims={b} of {dt}{list(ds)} by indices {list(qs)}: one thread per output element, "
            f"slices of {slice_len}")
    return [loop_step(ctx, node, "gathernd", [("data", data, dt), ("idx", idx, xt)], [("out", out, dt)], n, body,
                      what, it)]

register_lowering("GatherND", _gather_nd)


__all__ = ['combine_helper']
