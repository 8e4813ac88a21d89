"""Kernels for ``graphc.FusedGroup`` nodes: a group runs as one step without materialising its inner values.

Three forms, tried in order, each checked against the group's body at prepare time:

- head + epilogue: a Conv/Gemm/MatMul whose result flows through a chain of elementwise ops (Relu,
  the residual Add, a bias, Gelu...). The head writes the group's output buffer, and each epilogue op
  then runs in place on it, its other operands being group inputs or constants.
- elementwise: every op is elementwise with the group's output shape. The body runs on cache-sized
  chunks of the output (about ``CHUNK_ELEMENTS`` values along its outermost non-unit axis), its inner
  values living in a few chunk-sized scratch buffers reused as they die; only the last op writes the
  output. Big groups split their chunks into contiguous runs over ``threads.get_num_threads()`` threads
  (NumPy's loops release the GIL), each thread with its own scratch buffers. (numexpr was measured for
  this and lost: its float32 transcendental functions run several times slower than NumPy's vectorised
  loops.)
- layout: only Reshape/Transpose/Squeeze/Unsqueeze/Flatten/Identity: one copy of the composed view.

Any other body runs as a nested executable (its own fast steps and buffers), copying its outputs
into the group's buffers.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphc.ir import Graph
from graphc.ops import has_fact

from ..threads import get_num_threads
from .common import static_tensor
from .elementwise import elementwise_apply
from .linear import HEAD_RUNNERS
from .registry import nested_executable, register

#: Elements per chunk for elementwise groups (float32: 256 KiB per buffer, a few buffers fit in L2).
CHUNK_ELEMENTS = 65536

#: Elementwise groups with at least this many output elements split their chunks over
#: ``threads.get_num_threads()`` threads (read each step); smaller ones run on the calling thread.
PARALLEL_MIN_ELEMENTS = 1 << 19

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


class _Body:
    """The body's values sorted into group inputs, constants and inner values, with reader counts."""

    def __init__(self, ctx):
        self.body: Graph = ctx.node.attrs["body"]
        self.source: dict[int, tuple] = {}  # id(value) -> ("input", parent input index) | ("const", array)
        for k, v in enumerate(self.body.inputs):
            self.source[id(v)] = ("input", k)
        for v in self.body.constants.values():
            self.source[id(v)] = ("const", v.data)
        self.readers: dict[int, int] = {}
        for n in self.body.nodes:
            for v in n.inputs:
                if v is not None:
                    self.readers[id(v)] = self.readers.get(id(v), 0) + 1
        for v in self.body.outputs:
            self.readers[id(v)] = self.readers.get(id(v), 0) + 1

    def const_of(self, v, ctx):
        """The array of a value known at prepare time (a body constant or a constant group input)."""
        src = self.source.get(id(v))
        if src is None:
            return None
        return src[1] if src[0] == "const" else ctx.consts[src[1]]

    def outer(self, v) -> bool:
        return id(v) in self.source


@register("FusedGroup", domain="graphc")
def fused_kernel(ctx):
    """The step of a FusedGroup node (see the module docstring), or None to interpret its body."""
    body = ctx.node.attrs.get("body")
    if not isinstance(body, Graph) or body.captures or len(body.outputs) != len(ctx.outs) or not body.nodes:
        return None
    info = _Body(ctx)
    for build in (_head_epilogue, _elementwise, _layout):
        step = build(ctx, info)
        if step is not None:
            return step
    return _nested(ctx)


def _arg_getter(info: _Body, ctx, v, cur=None):
    """(parent slot, constant) for a body value read by an op: one of them is set (slot -1: constant)."""
    kind, what = info.source[id(v)]
    if kind == "const":
        return -1, what
    return ctx.ins[what], None


# ---- head + epilogue ----------------------------------------------------------------------------
def _head_epilogue(ctx, info: _Body):
    body = info.body
    head = body.nodes[0]
    if head.domain or head.op_type not in HEAD_RUNNERS or len(body.outputs) != 1 or ctx.aliases_any():
        return None
    out_t = ctx.out_types[0]
    if out_t is None or any(v is not None and not info.outer(v) for v in head.inputs):
        return None
    head_in_types = [static_tensor(v) for v in head.inputs]
    head_out = head.outputs[0]
    ht = static_tensor(head_out)
    if ht is None or tuple(ht.shape) != tuple(out_t.shape) or ht.dtype != out_t.dtype:
        return None
    run_head = HEAD_RUNNERS[head.op_type](head, head_in_types, ht,
                                          [None if v is None else info.const_of(v, ctx) for v in head.inputs])
    if run_head is None:
        return None
    head_args = [(-1, None) if v is None else _arg_getter(info, ctx, v) for v in head.inputs]
    dtype = out_t.dtype.np
    epilogue = []
    cur = head_out
    for n in body.nodes[1:]:
        t = static_tensor(n.outputs[0]) if len(n.outputs) == 1 else None
        if t is None or tuple(t.shape) != tuple(out_t.shape) or t.dtype != out_t.dtype:
            return None
        if info.readers.get(id(cur), 0) != 1 or sum(v is cur for v in n.inputs) != 1:
            return None
        if any(v is not None and v is not cur and not info.outer(v) for v in n.inputs):
            return None
        apply = elementwise_apply(n, dtype)
        if apply is None:
            return None
        epilogue.append((apply, [None if v is cur else ((-1, None) if v is None else _arg_getter(info, ctx, v))
                                 for v in n.inputs]))
        cur = n.outputs[0]
    if cur is not body.outputs[0]:
        return None
    o = ctx.outs[0]

    def fetch(env, spec):
        slot, const = spec
        return const if slot < 0 else env[slot]

    def step(env):
        out = env[o]
        run_head([fetch(env, a) for a in head_args], out)
        for apply, specs in epilogue:
            apply(out, *[out if s is None else fetch(env, s) for s in specs])

    return step


# ---- elementwise on chunks -----------------------------------------------------------------------
def _elementwise(ctx, info: _Body):
    body = info.body
    if len(body.outputs) != 1 or body.outputs[0] is not body.nodes[-1].outputs[0]:
        return None
    out_t = ctx.out_types[0]
    if out_t is None:
        return None
    shape, dtype = tuple(out_t.shape), out_t.dtype.np
    applies = []
    for n in body.nodes:
        t = static_tensor(n.outputs[0]) if len(n.outputs) == 1 else None
        if t is None or tuple(t.shape) != shape or t.dtype != out_t.dtype:
            return None
        if any(v is not None and static_tensor(v) is None for v in n.inputs):
            return None
        apply = elementwise_apply(n, dtype)
        if apply is None:
            return None
        applies.append(apply)
    rank = len(shape)
    axis = next((i for i, d in enumerate(shape) if d > 1), None)
    total = shape[axis] if axis is not None else 1
    inner = math.prod(shape[axis + 1:]) if axis is not None else 1
    rows = max(1, CHUNK_ELEMENTS // max(inner, 1))
    chunks = [(r, min(r + rows, total)) for r in range(0, total, rows)] if rows < total else [(0, total)]
    chunked = len(chunks) > 1

    def chunk_of(r0, r1, ndim):
        """Index of rows r0:r1 of the chunk axis in an operand of ``ndim`` dims (right-aligned)."""
        k = axis - (rank - ndim)
        return (slice(None),) * k + (slice(r0, r1),)

    # Inner values: scratch buffers of one chunk, reused once their last reader has run. The plan names
    # them by index; each worker thread gets its own set (see ``compile_for``).
    chunk_shape = shape if not chunked else shape[:axis] + (rows,) + shape[axis + 1:]
    n_buffers = 0
    free: list[int] = []
    where: dict[int, int] = {}  # id(inner value) -> buffer index
    left = dict(info.readers)
    plan = []  # per node: (apply, operand specs, destination buffer index or -1 for the output)
    for idx, n in enumerate(body.nodes):
        specs = []
        for v in n.inputs:
            if v is None:
                specs.append(("none", None))
            elif info.outer(v):
                kind, what = info.source[id(v)]
                t = static_tensor(v)
                sliced = chunked and len(t.shape) > rank - 1 - axis and \
                    t.shape[axis - (rank - len(t.shape))] == total
                if kind == "const":
                    specs.append(("const", what, sliced, len(t.shape)))
                else:
                    specs.append(("input", ctx.ins[what], sliced, len(t.shape)))
            else:
                specs.append(("inner", where[id(v)]))
        # Inputs read for the last time free their buffers (after this op reads them). The op may write
        # over such a buffer only if it reads that value once: a variadic fold such as Sum(y, y, y) writes
        # its first partial result before reading its last operand.
        after: list[int] = []
        for v in n.inputs:
            if v is not None and not info.outer(v):
                left[id(v)] -= 1
                if left[id(v)] == 0:
                    once = sum(u is v for u in n.inputs) == 1
                    (free if once else after).append(where[id(v)])
        if idx == len(body.nodes) - 1:
            dest = -1
        else:
            dest = free.pop() if free else n_buffers
            if dest == n_buffers:
                n_buffers += 1
            where[id(n.outputs[0])] = dest
            if left.get(id(n.outputs[0]), 0) == 0:
                free.append(dest)
        free.extend(after)
        plan.append((applies[idx], specs, dest))
    o = ctx.outs[0]

    def compile_for(part):
        """Per chunk of ``part`` (a list of (r0, r1)): (output index, ops), on a fresh set of scratch buffers."""
        buffers = [np.empty(chunk_shape, dtype) for _ in range(n_buffers)]
        views = {}  # scratch-buffer views per distinct chunk length (the last chunk may be shorter)
        compiled = []
        for r0, r1 in part:
            if r1 - r0 not in views:
                views[r1 - r0] = [b[chunk_of(0, r1 - r0, rank)] if chunked else b for b in buffers]
            bufs = views[r1 - r0]
            ops = []
            for apply, specs, dest in plan:
                getters = []
                for s in specs:
                    kind = s[0]
                    if kind == "none":
                        getters.append((0, None))
                    elif kind == "const":
                        getters.append((0, s[1][chunk_of(r0, r1, s[3])] if s[2] else s[1]))
                    elif kind == "inner":
                        getters.append((0, bufs[s[1]]))
                    else:
                        getters.append((1, (s[1], chunk_of(r0, r1, s[3]) if s[2] else None)))
                ops.append((apply, getters, None if dest < 0 else bufs[dest]))
            compiled.append((chunk_of(r0, r1, rank) if chunked else None, ops))
        return compiled

    def run_part(env, compiled):
        out_full = env[o]
        for out_index, ops in compiled:
            out = out_full if out_index is None else out_full[out_index]
            for apply, getters, dest in ops:
                args = []
                for dynamic, g in getters:
                    if dynamic:
                        slot, index = g
                        x = env[slot]
                        args.append(x if index is None else x[index])
                    else:
                        args.append(g)
                apply(out if dest is None else dest, *args)

    single = compile_for(chunks)
    if len(chunks) < 2 or math.prod(shape) < PARALLEL_MIN_ELEMENTS:

        def step(env):
            run_part(env, single)

        return step

    # Big enough to split: contiguous runs of chunks, one per thread, each on its own scratch buffers.
    # The same ops run on the same chunks as on one thread, so results are bitwise identical.
    parts_by_count: dict[int, list] = {1: [single]}

    def step(env):
        n = min(get_num_threads() or 1, len(chunks))
        parts = parts_by_count.get(n)
        if parts is None:
            bounds = [len(chunks) * k // n for k in range(n + 1)]
            parts = parts_by_count[n] = [compile_for(chunks[a:b]) for a, b in zip(bounds, bounds[1:])]
        if len(parts) == 1:
            run_part(env, parts[0])
            return
        pool = _pool(len(parts) - 1)
        futures = [pool.submit(run_part, env, p) for p in parts[1:]]
        try:
            run_part(env, parts[0])
        finally:
            for f in futures:
                f.result()

    return step


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process-wide pool for elementwise chunks, with at least ``workers`` threads."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < workers:  # a smaller old pool's threads end once it is collected
            _POOL, _POOL_SIZE = ThreadPoolExecutor(workers, thread_name_prefix="graphc-elementwise"), workers
        return _POOL


# ---- layout --------------------------------------------------------------------------------------
def _layout(ctx, info: _Body):
    body = info.body
    if (len(body.outputs) != 1 or ctx.aliases_any() or ctx.out_types[0] is None
            or any(n.domain or not has_fact(n, "layout") for n in body.nodes)):
        return None
    chain = []
    cur = None
    for n in body.nodes:
        src = n.inputs[0]
        if cur is None:
            if not info.outer(src) or info.source[id(src)][0] != "input":
                return None
            first = ctx.ins[info.source[id(src)][1]]
        elif src is not cur or info.readers.get(id(cur), 0) != 1:
            return None
        t = static_tensor(n.outputs[0])
        if t is None:
            return None
        if n.op_type == "Transpose":
            perm = n.attrs.get("perm")
            chain.append(("T", tuple(perm) if perm is not None else None))
        else:
            chain.append(("R", tuple(t.shape)))
        cur = n.outputs[0]
    if cur is not body.outputs[0]:
        return None
    o = ctx.outs[0]

    def step(env):
        v = env[first]
        for kind, arg in chain:
            v = v.transpose(arg) if kind == "T" else v.reshape(arg)
        np.copyto(env[o], v)

    return step


# ---- anything else: a nested executable ----------------------------------------------------------
def _nested(ctx):
    if ctx.aliases_any() or any(t is None for t in ctx.out_types):
        return None
    try:
        exe = nested_executable(ctx.node.attrs["body"])
    except Exception:  # a body the executor cannot take as a graph of its own: interpret the group
        return None
    if exe.program is None:
        return None
    ins, outs = list(ctx.ins), list(ctx.outs)
    run = exe.run_into

    def step(env):
        run([env[i] if i >= 0 else None for i in ins], [env[s] for s in outs])

    return step


__all__ = ["CHUNK_ELEMENTS", "fused_kernel"]
