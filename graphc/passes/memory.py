"""Memory planning: a schedule, liveness over it, and an arena layout in which values share memory.

``schedule(graph)`` orders nodes depth first from the outputs, so each value is computed close to its
first use. ``plan_memory(graph)`` then takes the nodes in that order and:

1. gives each activation (a node output with a static shape) a lifetime: from the step that writes it
   to the last step that reads it (graph outputs live to the end);
2. lets an op write its output over an input that dies at that op (in place) where the op allows it:
   elementwise and broadcast ops whose output has the input's type, ops that only reinterpret the
   same bytes (Reshape, Flatten, Squeeze, Unsqueeze, Identity) and fused groups made only of elementwise
   and broadcast ops. A value and the value written over it form one storage class;
3. lays the storage classes out in one arena, largest first, each at the lowest-waste offset that no
   class alive at the same time occupies ("greedy by size").

The result, ``MemoryPlan``, maps value names to byte offsets and reports the arena size (the peak
activation bytes) next to the naive total (every activation in a buffer of its own).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..ir import Graph, Node, TensorType, Value
from ..ops.interpret import node_captures
from ..ops.registry import Kind, lookup

#: Byte alignment of every offset in the arena (a cache line; also what SIMD loads like).
ALIGNMENT = 64


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def value_bytes(v: Value) -> int | None:
    """Bytes a tensor value occupies, or None when its size is not known ahead of time."""
    t = v.type
    if not isinstance(t, TensorType) or not t.is_static or t.dtype is None or t.dtype.np.kind == "O":
        return None
    return int(t.numel) * t.dtype.itemsize


@dataclass
class MemoryPlan:
    """Where each planned value lives in the arena, and what that saves.

    ``offsets``/``sizes``: value name -> byte offset / bytes; ``lifetimes``: value name -> (first step, last
    step) over ``schedule`` (the node names in order; step ``len(schedule)`` stands for "returned");
    ``inplace``: value name -> the input it overwrites. ``unplanned`` lists values whose size is known only
    at run time (allocated then). ``peak_bytes`` is the arena size, ``naive_bytes`` the sum of all planned
    values, ``live_peak_bytes`` the most bytes alive at one step (a lower bound for any layout).
    """

    schedule: list[str] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    lifetimes: dict[str, tuple[int, int]] = field(default_factory=dict)
    inplace: dict[str, str] = field(default_factory=dict)
    unplanned: list[str] = field(default_factory=list)
    peak_bytes: int = 0
    naive_bytes: int = 0
    live_peak_bytes: int = 0
    alignment: int = ALIGNMENT
    seconds: float = field(default=0.0, compare=False)

    @property
    def saving(self) -> float:
        """Naive total over peak (how many times less memory the arena needs)."""
        return self.naive_bytes / self.peak_bytes if self.peak_bytes else 1.0

    def summary(self) -> str:
        mib = 1 << 20
        s = (f"memory: peak {self.peak_bytes / mib:.2f} MiB of activations in one arena vs {self.naive_bytes / mib:.2f} "
             f"MiB without reuse ({self.saving:.1f}x less); {len(self.offsets)} values, {len(self.inplace)} in place")
        if self.unplanned:
            s += f", {len(self.unplanned)} sized at run time"
        return s

    def overlapping(self, a: str, b: str) -> bool:
        """True when values a and b occupy some of the same bytes."""
        oa, ob = self.offsets[a], self.offsets[b]
        return oa < ob + self.sizes[b] and ob < oa + self.sizes[a]

    def to_dict(self) -> dict:
        return {"schedule": self.schedule, "offsets": self.offsets, "sizes": self.sizes,
                "lifetimes": {k: list(v) for k, v in self.lifetimes.items()}, "inplace": self.inplace,
                "unplanned": self.unplanned, "peak_bytes": self.peak_bytes, "naive_bytes": self.naive_bytes,
                "live_peak_bytes": self.live_peak_bytes, "alignment": self.alignment}

    @staticmethod
    def from_dict(d: dict) -> "MemoryPlan":
        return MemoryPlan(list(d["schedule"]), {k: int(v) for k, v in d["offsets"].items()},
                          {k: int(v) for k, v in d["sizes"].items()},
                          {k: (int(v[0]), int(v[1])) for k, v in d["lifetimes"].items()}, dict(d["inplace"]),
                          list(d["unplanned"]), int(d["peak_bytes"]), int(d["naive_bytes"]),
                          int(d["live_peak_bytes"]), int(d.get("alignment", ALIGNMENT)))


# ---- schedule ---------------------------------------------------------------------------------
def _reads(node: Node) -> list[Value]:
    reads = [v for v in node.inputs if v is not None]
    if node.subgraphs():
        reads += node_captures(node)
    return reads


def schedule(graph: Graph) -> list[Node]:
    """The nodes in a memory-friendly topological order: depth first from the outputs, inputs in order.

    Each node comes right after the last of its inputs, so a weight built at run time or a branch of a
    residual block is computed just before it is used rather than long before. Nodes that no output
    needs keep their relative order at the end.
    """
    members = {id(n) for n in graph.nodes}
    order: list[Node] = []
    done: set[int] = set()
    roots = [v.producer for v in graph.outputs if v is not None and v.producer is not None] + list(graph.nodes)
    for root in roots:
        if id(root) in done or id(root) not in members:
            continue
        stack = [(root, iter(_reads(root)))]
        done.add(id(root))
        while stack:
            node, it = stack[-1]
            for v in it:
                p = v.producer
                if p is not None and id(p) in members and id(p) not in done:
                    done.add(id(p))
                    stack.append((p, iter(_reads(p))))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


# ---- in place ---------------------------------------------------------------------------------
def _same_layout(a: Value, b: Value) -> bool:
    return (isinstance(a.type, TensorType) and isinstance(b.type, TensorType) and a.type.dtype == b.type.dtype
            and a.type.shape is not None and b.type.shape is not None and tuple(a.type.shape) == tuple(b.type.shape))


def _elementwise_body(node: Node) -> bool:
    """A fused group whose every op is elementwise/broadcast with the group's output shape, so output
    element j reads only element j of an input of that shape."""
    body = node.attrs.get("body")
    if not isinstance(body, Graph) or len(body.outputs) != 1:
        return False
    shape = body.outputs[0].type.shape if isinstance(body.outputs[0].type, TensorType) else None
    for n in body.nodes:
        op = lookup(n.domain, n.op_type)
        if op is None or op.kind > Kind.BROADCAST or len(n.outputs) != 1 or shape is None:
            return False
        t = n.outputs[0].type
        if not isinstance(t, TensorType) or t.shape is None or tuple(t.shape) != tuple(shape):
            return False
    return True


def _repeated_in_body(node: Node) -> set[int]:
    """Positions of a fused group's inputs that some op of its body reads twice or more (``Sum(x, x)``)."""
    body = node.attrs.get("body")
    if not isinstance(body, Graph):
        return set()
    position = {id(v): k for k, v in enumerate(body.inputs)}
    repeated: set[int] = set()
    for n in body.nodes:
        seen: set[int] = set()
        for v in n.inputs:
            if v is not None and id(v) in position:
                if id(v) in seen:
                    repeated.add(position[id(v)])
                seen.add(id(v))
    return repeated


def inplace_candidates(node: Node) -> list[int]:
    """Indices of the inputs ``node`` may overwrite with its (single) output.

    An input qualifies only if no other operand of the node is the same value: a kernel that writes its
    output before it has read every operand (the variadic Sum/Max/Min fold writes ``out = x0 + x1`` and
    then adds ``x2``) would otherwise read what it just wrote (``Sum(y, y, y)`` gave 4y). Within a fused
    group the same holds for each op of the body. That no later step reads the input is the planner's
    check (the input must die at this step)."""
    outs = [v for v in node.outputs if v is not None]
    if len(outs) != 1:
        return []
    out = outs[0]
    op = lookup(node.domain, node.op_type)
    if op is None:
        return []
    if op.view and not node.domain:  # the output is the input's bytes reinterpreted: it may alias them
        return [0] if node.inputs and node.inputs[0] is not None else []
    elementwise = op.kind <= Kind.BROADCAST or (node.op_type == "FusedGroup" and _elementwise_body(node))
    if not elementwise:
        return []
    reads = [id(v) for v in _reads(node)]
    repeated = _repeated_in_body(node) if node.op_type == "FusedGroup" else set()
    return [i for i, v in enumerate(node.inputs) if v is not None and _same_layout(v, out)
            and reads.count(id(v)) == 1 and i not in repeated]


# ---- planning ---------------------------------------------------------------------------------
def plan_memory(graph: Graph, nodes: list[Node] | None = None, inplace: bool = True) -> MemoryPlan:
    """Plan the activations of ``graph`` run in the order ``nodes`` (default: ``graph.nodes``)."""
    t0 = time.perf_counter()
    nodes = list(graph.nodes) if nodes is None else nodes
    end = len(nodes)
    plan = MemoryPlan(schedule=[n.name for n in nodes])
    outputs = {id(v) for v in graph.outputs if v is not None}
    # Liveness: each value produced by a node, from its step to its last reader.
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    values: dict[int, Value] = {}
    for step, node in enumerate(nodes):
        for v in _reads(node):
            if id(v) in first:
                last[id(v)] = step
        for v in node.outputs:
            if v is None:
                continue
            size = value_bytes(v)
            if size is None:
                plan.unplanned.append(v.name)
                continue
            values[id(v)] = v
            first[id(v)] = step
            last[id(v)] = end if id(v) in outputs else step
            plan.sizes[v.name] = size
    for k in outputs:
        if k in last:
            last[k] = end
    # In place: an output joins the storage class of an input that dies at its step.
    cls: dict[int, int] = {k: k for k in values}  # value id -> class representative
    if inplace:
        for step, node in enumerate(nodes):
            outs = [v for v in node.outputs if v is not None and id(v) in values]
            if len(outs) != 1:
                continue
            out = outs[0]
            for i in inplace_candidates(node):
                x = node.inputs[i]
                if (id(x) in values and last[id(x)] == step and id(x) not in outputs
                        and plan.sizes[x.name] == plan.sizes[out.name]):
                    cls[id(out)] = cls[id(x)]
                    plan.inplace[out.name] = x.name
                    break
    classes: dict[int, list[int]] = {}
    for k in values:
        classes.setdefault(cls[k], []).append(k)
    spans = []
    for rep, ks in classes.items():
        t_start = min(first[k] for k in ks)
        t_end = max(last[k] for k in ks)
        size = _align(max(plan.sizes[values[k].name] for k in ks))
        spans.append((size, t_start, t_end, rep, ks))
    # Greedy by size: biggest first, each at the smallest gap that fits among those alive meanwhile.
    spans.sort(key=lambda s: (-s[0], s[1]))
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
    arena = 0
    for size, t_start, t_end, rep, ks in spans:
        busy = sorted((o, s) for o, s, a, b in placed if a <= t_end and t_start <= b)
        best, best_gap, cursor = None, None, 0
        for o, s in busy:
            gap = o - cursor
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, o + s)
        offset = cursor if best is None else best
        placed.append((offset, size, t_start, t_end))
        arena = max(arena, offset + size)
        for k in ks:
            plan.offsets[values[k].name] = offset
            plan.lifetimes[values[k].name] = (first[k], last[k])
    plan.peak_bytes = arena
    plan.naive_bytes = sum(_align(s) for s in plan.sizes.values())
    live = [0] * (end + 1)
    for size, t_start, t_end, _, _ in spans:
        for t in range(t_start, t_end + 1):
            live[t] += size
    plan.live_peak_bytes = max(live) if live else 0
    plan.seconds = time.perf_counter() - t0
    return plan


def check_plan(plan: MemoryPlan) -> list[str]:
    """Every pair of values alive at the same step that share bytes without being in place (empty: sound)."""
    problems = []
    names = sorted(plan.offsets, key=lambda n: plan.offsets[n])
    for i, a in enumerate(names):
        a0, a1 = plan.lifetimes[a]
        for b in names[i + 1:]:
            if plan.offsets[b] >= plan.offsets[a] + plan.sizes[a]:
                break
            b0, b1 = plan.lifetimes[b]
            if a0 <= b1 and b0 <= a1 and plan.overlapping(a, b) and not _chained(plan, a, b):
                problems.append(f"'{a}' (steps {a0}-{a1}) and '{b}' (steps {b0}-{b1}) share bytes while both alive")
    return problems


def _chained(plan: MemoryPlan, a: str, b: str) -> bool:
    """True when a and b are one storage class (one written over the other, directly or down a chain)."""
    def root(n: str) -> str:
        while n in plan.inplace:
            n = plan.inplace[n]
        return n

    return root(a) == root(b)


__all__ = ["ALIGNMENT", "MemoryPlan", "check_plan", "inplace_candidates", "plan_memory", "schedule",
           "value_bytes"]
