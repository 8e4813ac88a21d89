"""Builds the fast form of a static-shaped graph: one closure per step over preallocated buffers.

``Program(graph, memory, slots)`` is made once at prepare time. It allocates one arena of the memory
plan's peak size and gives every planned activation its view at the planned offset (the *template*
slot list); each run starts from a copy of that list, so the hot loop is ``for step in steps:
step(env)`` with no allocation, no dict lookup and no attribute lookup. Each step comes from a fast
kernel (the kernels package: registry.py and its families) writing with ``out=`` into its buffer, or, for ops without
one, from the op's reference ``eval`` whose fresh result replaces the slot for that run.

Graph outputs are not arena views (a later run would overwrite what the caller holds): they get new
arrays at the start of every run, and kernels write into those.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir import Graph, Node
from graphc.ops.interpret import check_before_eval, eval_node

from .kernels import kernel_for
from .kernels.common import static_tensor


@dataclass
class StepContext:
    """What a kernel factory may know about its node at prepare time.

    ``ins``/``outs``: slot indices (-1: absent); ``in_types``/``out_types``: static tensor types or None;
    ``consts``: each input's constant array (None when computed or fed at run time); ``template``:
    the buffer each slot starts a run with (arena views; None for feeds and fallback results).
    """

    node: Node
    ins: list[int]
    outs: list[int]
    in_types: list
    out_types: list
    consts: list
    program: "Program"
    extra: dict = field(default_factory=dict)

    @property
    def op_type(self) -> str:
        return self.node.op_type

    def buffer(self, slot: int):
        return self.program.template[slot] if slot >= 0 else None

    def aliases(self, i: int, out: int = 0) -> bool:
        """True when output ``out``'s buffer shares bytes with input ``i``'s (the plan ran them in place)."""
        a, b = self.buffer(self.outs[out]), self.buffer(self.ins[i])
        return a is not None and b is not None and np.shares_memory(a, b)

    def aliases_any(self) -> bool:
        return any(self.aliases(i, k) for k in range(len(self.outs)) for i in range(len(self.ins))
                   if self.ins[i] >= 0 and self.outs[k] >= 0)

    def may_view(self, i: int) -> bool:
        """True when output 0 may be a view of input ``i``'s bytes for the rest of the run: the input is
        no arena view (fed, constant, computed by ``eval``) or the plan keeps its bytes for the output, and
        the output is not returned to the caller."""
        o = self.outs[0]
        if o in self.program.output_slots:
            return False
        src = self.buffer(self.ins[i])
        return src is None or self.program.same_storage(self.ins[i], o)


class Program:
    """The steps of one static-shaped graph over an arena laid out by ``memory`` (a MemoryPlan)."""

    def __init__(self, graph: Graph, memory, values: list, steps: list, const_slots, output_slots,
                 value_sized: set[int], memory_limit: int):
        self.graph = graph
        self.memory = memory
        self.values = values
        self.output_slots = set(output_slots)
        n = len(values)
        self.template: list[Any] = [None] * n
        self._slot_of = {id(v): s for s, v in enumerate(values)}
        offsets = memory.offsets
        # 64-byte aligned arena (numpy itself only guarantees 16)
        raw = np.empty(max(memory.peak_bytes, 1) + 64, np.uint8)
        start = (-raw.ctypes.data) % 64
        self.arena = raw[start:start + max(memory.peak_bytes, 1)]
        self._root: dict[str, str] = {}
        for s, v in enumerate(values):
            t = static_tensor(v)
            if t is None or v.name not in offsets or s in self.output_slots:
                continue
            off, size = offsets[v.name], memory.sizes[v.name]
            self.template[s] = self.arena[off:off + size].view(t.dtype.np).reshape(tuple(t.shape))
        for s, data in const_slots:
            self.template[s] = data
        #: (slot, shape, dtype) of graph outputs a kernel writes: new arrays each run
        self.fresh: list[tuple[int, tuple, np.dtype]] = []
        consts = {s: data for s, data in const_slots}
        self.steps: list = []
        self.nodes: list[Node] = []
        self.kinds: list[str] = []  # "kernel" or "eval", per step (for tests and profiles)
        for i, (node, op, ins, outs, frees, caps) in enumerate(steps):
            fn = None
            if (caps is None or not caps[0]) and i not in value_sized:
                ctx = StepContext(node, ins, outs,
                                  [static_tensor(node.inputs[k]) if ins[k] >= 0 else None for k in range(len(ins))],
                                  [static_tensor(v) for v in node.outputs],
                                  [consts.get(s) if s >= 0 else None for s in ins], self)
                if all(t is not None for t, s in zip(ctx.out_types, outs) if s >= 0) and all(
                        self.template[s] is not None or s in self.output_slots for s in outs if s >= 0):
                    fn = kernel_for(ctx)
            self.kinds.append("eval" if fn is None else "kernel")
            if fn is None:
                fn = _eval_step(node, op, ins, outs, caps, memory_limit if i in value_sized else 0)
                if any(s >= 0 and self.template[s] is not None and s not in consts for s in ins):
                    fn = _unaliased(fn, [s for s in outs if s >= 0], self.arena)
            else:
                for s, v in zip(outs, node.outputs):
                    if s in self.output_slots:
                        t = static_tensor(v)
                        self.fresh.append((s, tuple(t.shape), t.dtype.np))
            # Slots that hold run-time results (not arena views) are dropped after their last reader.
            drop = [s for s in frees if self.template[s] is None]
            if drop:
                fn = _then_drop(fn, drop)
            self.steps.append(fn)
            self.nodes.append(node)

    @property
    def written_outputs(self) -> set[int]:
        """Output slots that kernels write into a buffer given at the start of the run."""
        return {s for s, _, _ in self.fresh}

    def same_storage(self, a: int, b: int) -> bool:
        """True when the memory plan keeps slots a and b in one storage class (b written over a)."""
        mem = self.memory
        na, nb = self.values[a].name, self.values[b].name

        def root(n: str) -> str:
            while n in mem.inplace:
                n = mem.inplace[n]
            return n

        return na in mem.offsets and nb in mem.offsets and root(na) == root(nb)

    def new_env(self) -> list:
        env = self.template.copy()
        for s, shape, dtype in self.fresh:
            env[s] = np.empty(shape, dtype)
        return env


def _eval_step(node, op, ins, outs, caps, limit: int, bindings=None):
    """A step that calls the op's reference ``eval`` (nodes without a fast kernel)."""
    if caps is not None:
        cap_values, cap_slots = caps

        def step(env):
            outer = {v: env[s] for v, s in zip(cap_values, cap_slots)}
            results = eval_node(node, [env[s] if s >= 0 else None for s in ins], op, outer)
            for s, x in zip(outs, results):
                if s >= 0:
                    env[s] = x
    elif limit:
        def step(env):
            args = [env[s] if s >= 0 else None for s in ins]
            check_before_eval(node, op, args, limit, {})
            results = eval_node(node, args, op)
            for s, x in zip(outs, results):
                if s >= 0:
                    env[s] = x
    elif len(outs) == 1:
        o = outs[0]

        def step(env):
            env[o] = eval_node(node, [env[s] if s >= 0 else None for s in ins], op)[0]
    else:
        def step(env):
            results = eval_node(node, [env[s] if s >= 0 else None for s in ins], op)
            for s, x in zip(outs, results):
                if s >= 0:
                    env[s] = x
    return step


def _unaliased(fn, outs, arena):
    """``fn`` whose results never view the arena: an ``eval`` may return a view of an input (Identity,
    Reshape...), and the input's bytes are reused once it dies, so such a result is copied."""
    def step(env):
        fn(env)
        for s in outs:
            x = env[s]
            if isinstance(x, np.ndarray) and x.base is not None and np.may_share_memory(x, arena):
                env[s] = x.copy()

    return step


def _then_drop(fn, slots):
    def step(env):
        fn(env)
        for s in slots:
            env[s] = None

    return step


__all__ = ["Program", "StepContext", "static_tensor"]
