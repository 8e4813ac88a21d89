"""Row kernels: reductions with their elementwise prologue, and the softmax, normalization and Hardmax ops.

A reduction's input is split into rows: the kept dims number the rows (one output element each), the
reduced dims number the elements of a row. Either a block reduces a row (threads stride along it, then
a tree in shared memory) or, for many short rows, a thread does. A kernel is a sequence of *passes*
over each row (each pass one reduction whose result every thread of the block then holds) and an
optional *write* loop: ReduceSum is one pass; ReduceLogSumExp two (max, then the sum of exp(x - max));
Softmax two passes and a write (exp(x - max) / sum); LayerNormalization two passes (mean, then variance)
and a write; RMSNormalization and LpNormalization one pass (the sum of squares, or of magnitudes) and a
write; Hardmax an argmax pass and a write. The prologue is recomputed by each pass from the group's
inputs, which is cheaper than writing it to memory and reading it back.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node, Value
from graphc.ops.reduce import LEGACY_COERCE_2D

from . import expressions, injective  # noqa: F401  (fill OP_EMITTERS)
from .expressions import ELEMENTWISE_OPS
from .kernel import (CodegenUnsupported, Coords, Emitter, Kernel, KernelGroup, NameSource, c_identifier, cctype,
                      compute_dtype, convert, dtype_of, index_type, literal, numel, prelude,
                      round_to, shape_of, store_expr)
from .dialect import grid_stride_loop
from .elementwise import header, kernel_params, param_list
from .launch import DeviceProps, _resident_blocks, reduction_launch, reduction_split

#: Reduce op -> (initial value kind, contribution of x, combine, finalize); see _reducer.
REDUCE_OPS = frozenset({"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin",
                        "GlobalAveragePool", "GlobalMaxPool"})
ROW_OPS = frozenset({"Softmax", "LogSoftmax", "LayerNormalization", "RMSNormalization", "LpNormalization",
                     "Hardmax"})


def _fn(name: str, dt: DType) -> str:
    return name + "f" if compute_dtype(dt) == DType.float32 else name


def lowest(dt: DType) -> str:
    if dt.is_float:
        return literal(float("-inf"), dt)
    return literal(np.iinfo(dt.np).min, dt)


def highest(dt: DType) -> str:
    if dt.is_float:
        return literal(float("inf"), dt)
    return literal(np.iinfo(dt.np).max, dt)


class _Pass:
    """One reduction over each row: ``acc = combine(acc, contrib(x))`` from ``init``; result in ``var``."""

    def __init__(self, var: str, acc_type: str, init: str, contrib, combine, helpers=()):
        self.var, self.acc_type, self.init = var, acc_type, init
        self.contrib, self.combine, self.helpers = contrib, combine, set(helpers)


class _RowKernel:
    """Builds a row kernel over ``shape`` with the ``reduced`` dims forming each row."""

    def __init__(self, group: KernelGroup, shape: tuple, reduced: list[int], props: DeviceProps, parts: int = 1):
        self.group, self.shape, self.reduced = group, shape, reduced
        self.kept = [d for d in range(len(shape)) if d not in reduced]
        self.rows = numel([shape[d] for d in self.kept])
        self.row_len = numel([shape[d] for d in reduced])
        self.strategy, self.grid, self.block = reduction_launch(self.rows, self.row_len, props)
        #: parts > 1: each row is split into that many chunks of ``chunk`` elements, one block each (the blocks
        #: are numbered ``blk = row * parts + part``); the kernel then leaves one partial result per block
        self.parts = parts
        self.chunk = -(-self.row_len // parts)
        if parts > 1:
            self.strategy = "block"
            self.grid = max(1, min(self.rows * parts, _resident_blocks(props, self.block)))
        # wide enough for the group's largest operand too (a prologue Slice or Gather may read a larger input)
        operands = [numel(shape_of(v)) for v in group.inputs + group.constants]
        # split: a part's end (part * chunk + chunk) may pass the row's length by up to a chunk
        self.it = index_type(max([numel(shape) * (2 if parts > 1 else 1), self.rows] + operands))
        self.params, self.loads, self.literals, self.dtypes = kernel_params(group)
        self.names = NameSource()
        self.helpers: set[str] = set()
        self.lines: list[str] = []
        self.row_dims = {}

    def _row_coords(self) -> None:
        kept_shape = [self.shape[d] for d in self.kept]
        em = Emitter(self.loads, self.literals, self.it, indent="        ", names=self.names)
        c = Coords(kept_shape, linear="row")
        for j, d in enumerate(self.kept):
            self.row_dims[d] = c.dim(em, j)
        self.lines += em.lines

    def _k_emitter(self, indent: str, k: str = "k") -> tuple[Emitter, Coords]:
        em = Emitter(self.loads, self.literals, self.it, indent=indent, names=self.names)
        red_shape = [self.shape[d] for d in self.reduced]
        kc = Coords(red_shape, linear=k)
        dims = [""] * len(self.shape)
        for d, name in self.row_dims.items():
            dims[d] = name
        for j, d in enumerate(self.reduced):
            dims[d] = kc.dim(em, j)
        return em, Coords(self.shape, dims=dims)

    def _k_loop(self, indent: str) -> str:
        if self.parts > 1:
            return (f"for ({self.it} k = part * {self.chunk} + threadIdx.x; k < k_end; k += blockDim.x) {{")
        if self.strategy == "block":
            return f"for ({self.it} k = threadIdx.x; k < {self.row_len}; k += blockDim.x) {{"
        return f"for ({self.it} k = 0; k < {self.row_len}; ++k) {{"

    def add_pass(self, p: _Pass, x: Value) -> None:
        """Reduce ``contrib(value of x)`` over each row into ``p.var`` (held by every thread after)."""
        ind = "        "
        self.helpers |= p.helpers
        em, coords = self._k_emitter(ind + "    ")
        xv = em.value(x, coords)
        em.line(f"acc = {p.combine('acc', p.contrib(xv))};")
        self.helpers |= em.helpers
        self.lines.append(f"{ind}{{ {p.acc_type} acc = {p.init};")
        self.lines += [f"{ind}{self._k_loop(ind)}"] + em.lines + [f"{ind}}}"]
        if self.strategy == "block":
            self.lines += [
                f"{ind}gc_partial_{p.var}[threadIdx.x] = acc;",
                f"{ind}__syncthreads();",
                f"{ind}for (int half = {self.block // 2}; half > 0; half >>= 1) {{",
                f"{ind}    if (threadIdx.x < half) gc_partial_{p.var}[threadIdx.x] = "
                f"{p.combine(f'gc_partial_{p.var}[threadIdx.x]', f'gc_partial_{p.var}[threadIdx.x + half]')};",
                f"{ind}    __syncthreads();",
                f"{ind}}}",
                f"{ind}acc = gc_partial_{p.var}[0];",
                f"{ind}__syncthreads();  // every thread has read the result: the buffer may be reused",
            ]
        self.lines += [f"{ind}{p.var} = acc; }}"]
        self.shared.append((p.acc_type, f"gc_partial_{p.var}"))
        self.declared.append((p.acc_type, p.var))

    def add_write(self, outputs: list[tuple[int, Value]], value_of) -> None:
        """A loop over each row writing ``value_of(em, coords)`` for each output of the row's shape."""
        ind = "        "
        em, coords = self._k_emitter(ind + "    ")
        for k, v in outputs:
            dt = dtype_of(v)
            val = value_of(em, coords, v)
            em.line(f"out{k}[{coords.linear(em)}] = {store_expr(val, dt)};")
        self.helpers |= em.helpers
        self.lines += [f"{ind}{self._k_loop(ind)}"] + em.lines + [f"{ind}}}"]

    def add_row_store(self, k: int, v: Value, expr: str, acc_dt: DType) -> None:
        """Write one value per row (the reduction's result) to output ``k``; split, one value per block (the
        accumulator as it is) to the partials."""
        dt = dtype_of(v)
        where = "blk" if self.parts > 1 else "row"
        store = f"out{k}[{where}] = {store_expr(convert(expr, acc_dt, dt), dt)};"
        ind = "        "
        self.lines.append(f"{ind}if (threadIdx.x == 0) {store}" if self.strategy == "block" else f"{ind}{store}")

    def build(self, what: str, body) -> Kernel:
        self.shared: list[tuple[str, str]] = []
        self.declared: list[tuple[str, str]] = []
        self._row_coords()
        body(self)
        name = c_identifier(self.group.name)
        decl = [f"        {t} {v};" for t, v in self.declared]
        if self.parts > 1:
            n = self.rows * self.parts
            loop = (f"    for ({self.it} blk = blockIdx.x; blk < {n}; blk += gridDim.x) {{\n"
                    f"        const {self.it} row = blk / {self.parts}, part = blk - row * {self.parts};\n"
                    f"        const {self.it} k_end = part * {self.chunk} + {self.chunk} < {self.row_len} ? "
                    f"part * {self.chunk} + {self.chunk} : {self.row_len};")
            shared = [f"    __shared__ {t} {v}[{self.block}];" for t, v in self.shared]
        elif self.strategy == "block":
            loop = f"    for ({self.it} row = blockIdx.x; row < {self.rows}; row += gridDim.x) {{"
            shared = [f"    __shared__ {t} {v}[{self.block}];" for t, v in self.shared]
        else:
            loop = grid_stride_loop(self.it, self.rows, "row")
            shared = []
        how = (f"each row split into {self.parts} blocks of {self.block} threads ({self.chunk} elements each), "
               f"one partial result per block" if self.parts > 1 else
               f"one block of {self.block} threads per row" if self.strategy == "block" else "one thread per row")
        src = [header(self.group, f"{what}: {self.rows} rows of {self.row_len} elements, {how}"),
               prelude(self.helpers, self.dtypes), "",
               f'extern "C" __global__ void {name}({param_list(self.params)})', "{", *shared, loop,
               *decl, *self.lines, "    }", "}", ""]
        return Kernel(name, "\n".join(src), self.params, self.grid, self.block, self.group,
                      self.rows * self.parts)


# ---- reductions -------------------------------------------------------------------------------
def _axes(node: Node, rank: int) -> list[int]:
    if node.op_type in ("ArgMax", "ArgMin"):
        return [node.attrs["axis"] % rank]
    if node.op_type.startswith("Global"):
        return list(range(2, rank))
    v = node.inputs[1] if len(node.inputs) > 1 else None
    if v is not None and v.data is None:
        raise CodegenUnsupported(node, "its axes are computed at run time; the CUDA backend needs them constant")
    axes = [] if v is None else [int(a) % rank for a in np.asarray(v.data).reshape(-1)]
    if not axes:
        return [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(set(axes))


def _reduction_parts(group: KernelGroup):
    """(root, x, shape, dtype, reduced dims) of a reduction group, checked."""
    root = group.nodes[-1]
    out = root.outputs[0]
    if len(group.outputs) != 1 or group.outputs[0] is not out:
        raise CodegenUnsupported(root, "a value of the reduction's prologue also leaves the group")
    x = root.inputs[0]
    shape = shape_of(x)
    dt = dtype_of(x)
    if dt == DType.bool:
        raise CodegenUnsupported(root, f"{root.op_type} of bool")
    return root, x, shape, dt, _axes(root, len(shape))


def split_partials(group: KernelGroup, props: DeviceProps) -> tuple[int, int, DType] | None:
    """(rows, parts, dtype of the partial results) when the group is a reduction whose rows are split across
    blocks (``reduction_split``), else None: it then runs as two kernels, ``generate_reduction(group, props,
    partial)`` leaving ``rows x parts`` partial results and ``generate_split_final`` combining each row's."""
    root = group.nodes[-1] if group.nodes else None
    # one-pass reductions only: ReduceLogSumExp's two passes and the arg reductions' (value, index) pairs stay
    if root is None or root.op_type not in REDUCE_OPS or root.op_type in ("ReduceLogSumExp", "ArgMax", "ArgMin") \
            or not all(n.op_type in ELEMENTWISE_OPS for n in group.nodes[:-1]):
        return None
    try:
        _, _, shape, dt, reduced = _reduction_parts(group)
    except CodegenUnsupported:
        return None
    rows = numel([shape[d] for d in range(len(shape)) if d not in reduced])
    parts = reduction_split(rows, numel([shape[d] for d in reduced]), props)
    return (rows, parts, compute_dtype(dt)) if parts > 1 else None


def _reducer(op: str, acc: str, acc_dt: DType, K: int) -> tuple[_Pass, str]:
    """The pass of a one-pass reduction ``op`` (into ``r``) and the C expression of its result from ``r``."""
    def sum_pass(contrib=lambda x: x):
        return _Pass("r", acc, literal(0, acc_dt), contrib, lambda a, b: f"{a} + {b}")

    if op in ("ReduceMax", "GlobalMaxPool"):
        p = _Pass("r", acc, lowest(acc_dt), lambda v: v, lambda a, b: f"gc_max({a}, {b})", {"max"})
    elif op == "ReduceMin":
        p = _Pass("r", acc, highest(acc_dt), lambda v: v, lambda a, b: f"gc_min({a}, {b})", {"min"})
    elif op == "ReduceProd":
        p = _Pass("r", acc, literal(1, acc_dt), lambda v: v, lambda a, b: f"{a} * {b}")
    elif op == "ReduceL1":
        p = sum_pass((lambda v: f"{_fn('fabs', acc_dt)}({v})") if acc_dt.is_float else
                     (lambda v: f"({v} < 0 ? -{v} : {v})"))
    elif op in ("ReduceL2", "ReduceSumSquare"):
        p = sum_pass(lambda v: f"{v} * {v}")
    else:
        p = sum_pass()
    final = {"ReduceMean": f"r / {literal(K, acc_dt)}", "GlobalAveragePool": f"r / {literal(K, acc_dt)}",
             "ReduceLogSum": f"{_fn('log', acc_dt)}(r)"}.get(op, "r")
    if op == "ReduceL2":
        final = f"{_fn('sqrt', acc_dt)}(r)" if acc_dt.is_float else "sqrt((double)r)"
    return p, final


def generate_reduction(group: KernelGroup, props: DeviceProps, partial: Value | None = None) -> Kernel:
    """A reduction (the group's last node) with the group's other nodes as its elementwise prologue.

    ``partial`` (a ``rows x parts`` value, ``split_partials``): each row is split into ``parts`` blocks and
    the kernel writes each block's partial result (the accumulator, before any final step) there instead."""
    root, x, shape, dt, reduced = _reduction_parts(group)
    out = root.outputs[0]
    parts = 1
    if partial is not None:
        parts = shape_of(partial)[1]
        group = KernelGroup(group.name, group.nodes, group.inputs, [partial], group.constants, group.kind,
                            group.aliased)
    rk = _RowKernel(group, shape, reduced, props, parts)
    acc_dt = compute_dtype(dt)
    acc = cctype(dt)
    op = root.op_type
    K = rk.row_len

    def body(rk: _RowKernel):
        if op in ("ArgMax", "ArgMin"):
            _arg_pass(rk, x, acc, acc_dt, ">" if op == "ArgMax" else "<", bool(root.attrs.get("select_last_index", 0)))
            rk.add_row_store(0, root.outputs[0], "(bj < 0 ? 0 : bj)", DType.int64)
            return
        if op == "ReduceLogSumExp":
            rk.add_pass(_Pass("m", acc, lowest(acc_dt), lambda v: v, lambda a, b: f"gc_max({a}, {b})", {"max"}), x)
            rk.lines.append(f"        const {acc} shift = (m == {lowest(acc_dt)} || m == {highest(acc_dt)}) ? "
                            f"{literal(0, acc_dt)} : m;")
            rk.add_pass(_Pass("s", acc, literal(0, acc_dt), lambda v: f"{_fn('exp', acc_dt)}({v} - shift)",
                              lambda a, b: f"{a} + {b}"), x)
            rk.add_row_store(0, out, f"shift + {_fn('log', acc_dt)}(s)", acc_dt)
            return
        p, final = _reducer(op, acc, acc_dt, K)
        rk.add_pass(p, x)
        if partial is not None:
            rk.add_row_store(0, partial, "r", acc_dt)
        else:
            rk.add_row_store(0, out, final, acc_dt)

    what = f"{op} over axes {reduced} of {dt}{list(shape)}"
    return rk.build(what + (", partial results" if partial is not None else ""), body)


def generate_split_final(group: KernelGroup, props: DeviceProps, partial: Value, name: str) -> Kernel:
    """The second kernel of a split reduction (``split_partials``): combines each row's ``parts`` partial
    results in ``partial`` as the reduction combines elements, then writes the group's output. ``name``: the
    kernel's (unique) name."""
    root, x, shape, dt, reduced = _reduction_parts(group)
    rows, parts = shape_of(partial)
    acc_dt = compute_dtype(dt)
    acc = cctype(dt)
    K = numel([shape[d] for d in reduced])
    p, final = _reducer(root.op_type, acc, acc_dt, K)
    combine = _Pass("r", acc, p.init, lambda v: v, p.combine, p.helpers)  # partials are contributions already
    final_group = KernelGroup(name, [root], [partial], [root.outputs[0]])
    rk = _RowKernel(final_group, (rows, parts), [1], props)

    def body(rk: _RowKernel):
        rk.add_pass(combine, partial)
        rk.add_row_store(0, root.outputs[0], final, acc_dt)

    return rk.build(f"{root.op_type}: the {parts} partial results of each of {rows} rows combined", body)


def _arg_pass(rk: _RowKernel, x: Value, acc: str, acc_dt: DType, better: str, last: bool = False,
              nan_wins: bool = False) -> None:
    """Leaves ``bj`` (every thread of the row holds it): the index along the row of its best element, -1 for an
    empty row. Best: ``better`` (``>`` a maximum, ``<`` a minimum) than the others, of equals the first (or the
    ``last``); ``nan_wins``: a NaN is best of all. A (value, index) pair per thread, then a tree of pairs."""
    def beats(a, b):
        return f"((({a}) != ({a}) && ({b}) == ({b})) || {a} {better} {b})" if nan_wins else f"{a} {better} {b}"

    def ties(a, b):
        return f"({a} == {b} || (({a}) != ({a}) && ({b}) != ({b})))" if nan_wins else f"{a} == {b}"

    ind = "        "
    em, coords = rk._k_emitter(ind + "    ")
    xv = em.value(x, coords)
    take = f"bj < 0 || {beats(xv, 'bv')}" + (f" || {ties(xv, 'bv')}" if last else "")
    em.line(f"if ({take}) {{ bv = {xv}; bj = k; }}")
    rk.helpers |= em.helpers
    rk.lines += [f"{ind}{acc} bv = {lowest(acc_dt)}; long long bj = -1;", f"{ind}{rk._k_loop(ind)}"] + em.lines + [f"{ind}}}"]
    if rk.strategy == "block":
        a, b = "threadIdx.x", "threadIdx.x + half"
        va, vb, ja, jb = f"gc_v[{a}]", f"gc_v[{b}]", f"gc_j[{a}]", f"gc_j[{b}]"
        take = f"({jb} >= 0 && ({ja} < 0 || {beats(vb, va)} || ({ties(vb, va)} && {jb} {'>' if last else '<'} {ja})))"
        rk.lines += [
            f"{ind}gc_v[threadIdx.x] = bv; gc_j[threadIdx.x] = bj;",
            f"{ind}__syncthreads();",
            f"{ind}for (int half = {rk.block // 2}; half > 0; half >>= 1) {{",
            f"{ind}    if (threadIdx.x < half && {take}) {{ {va} = {vb}; {ja} = {jb}; }}",
            f"{ind}    __syncthreads();",
            f"{ind}}}",
            f"{ind}bj = gc_j[0];",
            f"{ind}__syncthreads();",
        ]
        rk.shared += [(acc, "gc_v"), ("long long", "gc_j")]


# ---- softmax and the normalizations ------------------------------------------------------------
def _softmax_axes(node: Node, rank: int) -> tuple[int, list[int]]:
    """(axis, the reduced dims) of Softmax, LogSoftmax or Hardmax: the one ``axis``, or before opset 13 every dim
    from ``axis`` on (the input flattened to 2-D there)."""
    axis = int(node.attrs.get("axis", -1)) % max(rank, 1)
    if not rank:
        return axis, []
    return axis, list(range(axis, rank)) if node.attrs.get(LEGACY_COERCE_2D) else [axis]


def generate_row_op(group: KernelGroup, props: DeviceProps) -> Kernel:
    """Softmax, LogSoftmax, LayerNormalization, RMSNormalization, LpNormalization or Hardmax (a lone node) as
    one reduce-then-map kernel."""
    node = group.nodes[0]
    x = node.inputs[0]
    shape = shape_of(x)
    dt = dtype_of(x)
    if not dt.is_float:
        raise CodegenUnsupported(node, f"{node.op_type} of {dt}")
    if node.op_type == "RMSNormalization":
        return _rms_normalization(group, node, props)
    if node.op_type == "LpNormalization":
        return _lp_normalization(group, node, props)
    if node.op_type == "Hardmax":
        return _hardmax(group, node, props)
    rank = len(shape)
    acc_dt = DType.float64 if dt == DType.float64 else DType.float32
    acc = cctype(acc_dt)
    if node.op_type in ("Softmax", "LogSoftmax"):
        axis, reduced = _softmax_axes(node, rank)
        rk = _RowKernel(group, shape, reduced, props)
        log = node.op_type == "LogSoftmax"

        def body(rk):
            rk.add_pass(_Pass("m", acc, lowest(acc_dt), lambda v: convert(v, dt, acc_dt),
                              lambda a, b: f"gc_max({a}, {b})", {"max"}), x)
            rk.add_pass(_Pass("s", acc, literal(0, acc_dt),
                              lambda v: f"{_fn('exp', acc_dt)}({convert(v, dt, acc_dt)} - m)", lambda a, b: f"{a} + {b}"), x)
            if log:
                rk.lines.append(f"        const {acc} log_s = {_fn('log', acc_dt)}(s);")

            def value(em, coords, v):
                xv = convert(em.value(x, coords), dt, acc_dt)
                expr = f"{xv} - m - log_s" if log else f"{_fn('exp', acc_dt)}({xv} - m) / s"
                return em.temp("v", acc, expr, f"{node.op_type} '{node.name}'")

            rk.add_write([(0, group.outputs[0])], value)

        return rk.build(f"{node.op_type} over axes {reduced} of {dt}{list(shape)}", body)
    # LayerNormalization
    axis = node.attrs["axis"] % rank
    if node.attrs.get("stash_type", 1) not in (1, 11):
        raise CodegenUnsupported(node, f"stash_type {node.attrs.get('stash_type')}")
    if dt == DType.float64 or node.attrs.get("stash_type", 1) == 11:
        acc_dt, acc = DType.float64, "double"
    scale = node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    outs = [(k, v) for k, v in enumerate(node.outputs) if v is not None]
    rk = _RowKernel(group, shape, list(range(axis, rank)), props)
    K = rk.row_len
    eps = literal(node.attrs["epsilon"], acc_dt)

    def param(em, coords, v):
        if v is None:
            return None
        return convert(em.value(v, coords.broadcast_to(shape_of(v))), dtype_of(v), acc_dt)

    def body(rk):
        rk.add_pass(_Pass("sum", acc, literal(0, acc_dt), lambda v: convert(v, dt, acc_dt), lambda a, b: f"{a} + {b}"), x)
        rk.lines.append(f"        const {acc} mean = sum / {literal(K, acc_dt)};")
        rk.add_pass(_Pass("sq", acc, literal(0, acc_dt),
                          lambda v: f"({convert(v, dt, acc_dt)} - mean) * ({convert(v, dt, acc_dt)} - mean)",
                          lambda a, b: f"{a} + {b}"), x)
        rk.lines.append(f"        const {acc} inv = {literal(1, acc_dt)} / {_fn('sqrt', acc_dt)}(sq / {literal(K, acc_dt)} + {eps});")

        def value(em, coords, v):
            xv = convert(em.value(x, coords), dt, acc_dt)
            # as the reference: the normalized value is rounded to X's type before the scale applies, and
            # with a half type each product and sum is rounded to it too (NumPy computes them in float16)
            norm = convert(round_to(convert(f"({xv} - mean) * inv", acc_dt, dt), dt), dt, acc_dt)
            expr = round_to(f"{norm} * {param(em, coords, scale)}", dt)
            b = param(em, coords, bias)
            if b is not None:
                expr = f"{expr} + {b}"
            return em.temp("v", acc, expr, f"LayerNormalization '{node.name}'")

        # the group's outputs are the node's present outputs, in order
        idx = {id(v): j for j, v in enumerate(group.outputs)}
        rk.add_write([(idx[id(outs[0][1])], outs[0][1])], value)
        for k, v in outs[1:]:
            rk.add_row_store(idx[id(v)], v, "mean" if k == 1 else "inv", acc_dt)

    return rk.build(f"LayerNormalization over axes {list(range(axis, rank))} of {dt}{list(shape)}", body)


def _rms_normalization(group: KernelGroup, node: Node, props: DeviceProps) -> Kernel:
    """y = round_to_x_type(x / sqrt(mean(x^2) + epsilon)) * scale over the dims from ``axis`` on, in scale's type.

    The statistic is computed in the stash type, never below x's own precision (float32 or float64); the
    normalized value is rounded to x's type before the scale (broadcast to x) applies, as the NumPy eval does."""
    x, scale, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xt, st, yt = dtype_of(x), dtype_of(scale), dtype_of(y)
    if not st.is_float:
        raise CodegenUnsupported(node, f"scale of type {st} (a float type expected)")
    stash = int(node.attrs.get("stash_type", 1))
    if stash not in (DType.float32.value, DType.float64.value):
        raise CodegenUnsupported(node, f"stash_type {stash} (the CUDA backend computes in float32 or float64)")
    acc_dt = DType.float64 if DType.float64 in (xt, DType(stash)) else DType.float32
    prod_dt = DType.float64 if DType.float64 in (xt, st) else DType.float32  # x * scale as NumPy promotes it
    acc = cctype(acc_dt)
    shape = shape_of(x)
    rank = len(shape)
    axis = node.attrs["axis"] % max(rank, 1)
    rk = _RowKernel(group, shape, list(range(axis, rank)), props)
    eps = literal(float(node.attrs["epsilon"]), acc_dt)

    def body(rk):
        square = lambda v: f"{convert(v, xt, acc_dt)} * {convert(v, xt, acc_dt)}"  # noqa: E731
        rk.add_pass(_Pass("ss", acc, literal(0, acc_dt), square, lambda a, b: f"{a} + {b}"), x)
        rk.lines.append(f"        const {acc} inv = {literal(1, acc_dt)} / "
                        f"{_fn('sqrt', acc_dt)}(ss / {literal(rk.row_len, acc_dt)} + {eps});")

        def value(em, coords, v):
            xv = convert(em.value(x, coords), xt, acc_dt)
            norm = em.temp("n", cctype(xt), round_to(convert(f"{xv} * inv", acc_dt, xt), xt),
                           "normalized, in x's type")
            s = em.value(scale, coords.broadcast_to(shape_of(scale)))
            expr = f"{convert(norm, xt, prod_dt)} * {convert(s, st, prod_dt)}"
            return em.temp("v", cctype(yt), convert(expr, prod_dt, yt), f"RMSNormalization '{node.name}'")

        rk.add_write([(0, y)], value)

    return rk.build(f"RMSNormalization over axes {list(range(axis, rank))} of {xt}{list(shape)}, statistic in "
                    f"{acc_dt}", body)


def _lp_normalization(group: KernelGroup, node: Node, props: DeviceProps) -> Kernel:
    """y = x / norm along ``axis``, the norm L1 (sum of |x|) or L2 (sqrt of the sum of squares) in x's compute
    type; a zero norm gives zeros, not NaN."""
    x = node.inputs[0]
    dt = dtype_of(x)
    p = int(node.attrs.get("p", 2))
    if p not in (1, 2):
        raise CodegenUnsupported(node, f"attribute p = {p} (LpNormalization takes 1 or 2)")
    acc_dt = compute_dtype(dt)
    acc = cctype(acc_dt)
    shape = shape_of(x)
    rank = len(shape)
    axis = node.attrs["axis"] % max(rank, 1)
    rk = _RowKernel(group, shape, [axis] if rank else [], props)
    zero = literal(0, acc_dt)

    def body(rk):
        term = (lambda v: f"{_fn('fabs', acc_dt)}({v})") if p == 1 else (lambda v: f"{v} * {v}")
        rk.add_pass(_Pass("nrm", acc, zero, term, lambda a, b: f"{a} + {b}"), x)
        rk.lines.append(f"        const {acc} norm = {_fn('sqrt', acc_dt)}(nrm);" if p == 2 else
                        f"        const {acc} norm = nrm;")

        def value(em, coords, v):
            expr = f"norm == {zero} ? {zero} : {em.value(x, coords)} / norm"
            return em.temp("v", acc, expr, f"LpNormalization '{node.name}' (a zero norm gives zeros, not NaN)")

        rk.add_write([(0, group.outputs[0])], value)

    return rk.build(f"L{p} normalization over axis {axis} of {dt}{list(shape)}", body)


def _hardmax(group: KernelGroup, node: Node, props: DeviceProps) -> Kernel:
    """y = 1 at the first maximum of each line along ``axis`` (a NaN is the maximum), 0 elsewhere; before opset 13
    a line is the whole row of x flattened to 2-D at ``axis``."""
    x = node.inputs[0]
    dt = dtype_of(x)
    shape = shape_of(x)
    rank = len(shape)
    _, reduced = _softmax_axes(node, rank)
    rk = _RowKernel(group, shape, reduced, props)
    acc_dt = compute_dtype(dt)
    acc = cctype(dt)

    def body(rk):
        _arg_pass(rk, x, acc, acc_dt, ">", nan_wins=True)

        def value(em, coords, v):
            return em.temp("v", acc, f"k == bj ? {literal(1, dt)} : {literal(0, dt)}", f"Hardmax '{node.name}'")

        rk.add_write([(0, group.outputs[0])], value)

    return rk.build(f"Hardmax over axes {reduced} of {dt}{list(shape)}", body)


__all__ = ["REDUCE_OPS", "ROW_OPS", "highest", "lowest", "generate_reduction", "generate_row_op", "generate_split_final",
           "split_partials"]
