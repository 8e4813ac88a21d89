"""The compiler driver: takes an imported graph through its stages and returns a Plan.

Stages, each printable with ``graphc show MODEL --stage NAME``:

- ``imported``: the graph as imported, with input shapes fixed (``input_shapes``), symbols bound
  (``sets``) and types inferred;
- ``simplified``: ``passes.pipeline.simplify`` at the level (folding, DCE, CSE, algebra, BN folding...);
- ``fused``: ``passes.fusion.fuse`` groups ops into ``graphc.FusedGroup`` nodes;
- ``planned``: nodes in a memory-friendly schedule and a buffer assignment from liveness.

Levels: ``-O0`` plans memory only, ``-O1`` simplifies too, ``-O2`` (the default) also lays constant Gemm
weights out for the product and fuses.

Weights are held once: a folded or re-laid-out constant replaces its source in the graph being compiled,
and ``consume=True`` compiles the caller's graph itself instead of a copy, so that a source the plan no
longer reads is released as soon as it is replaced (with a copy, the caller's graph keeps every source).
"""
from __future__ import annotations

import dataclasses
import time
import weakref
from typing import Mapping, Sequence

from .errors import GraphcError
from .ir import DType, Graph, TensorType
from .plan import Plan, continue_symbols

STAGES = ("imported", "simplified", "fused", "planned")
LEVELS = (0, 1, 2)


def compile(graph: Graph, level: int = 2, input_shapes: Mapping[str, Sequence[int]] | None = None,
            sets: Mapping[str, int] | None = None, until: str = "planned", source: str = "",
            consume: bool = False) -> Plan:
    """Optimize a copy of ``graph`` into a Plan (``graph`` itself is left as it was).

    ``until`` stops after a stage (see STAGES): the plan then holds the graph as that stage left it.
    ``consume``: optimize ``graph`` itself, which becomes the plan's graph (for a caller that has no other
    use for it: the weights the plan no longer reads are released while compiling).
    """
    from .passes.bind import bind_symbols, set_input_shapes
    from .passes.infer_shapes import infer_shapes

    if level not in LEVELS:
        raise GraphcError(f"optimization level must be one of {', '.join(map(str, LEVELS))}, got {level}")
    if until not in STAGES:
        raise GraphcError(f"unknown stage '{until}': the stages are {', '.join(STAGES)}")
    stop = STAGES.index(until)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    g = graph if consume else graph.copy()
    if input_shapes:
        set_input_shapes(g, input_shapes)
    if sets:
        bind_symbols(g, sets)
    infer_shapes(g)
    seconds["imported"] = time.perf_counter() - t0
    plan = Plan(g, level, source=source, stage_seconds=seconds,
                options={"input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
                         "sets": dict(sets or {})})
    if stop >= 1 and level >= 1:
        from .passes.pipeline import simplify

        t0 = time.perf_counter()
        report = simplify(g, level)
        plan.passes = [dataclasses.asdict(r) for r in report.records]
        _release_replaced(g)
        seconds["simplified"] = time.perf_counter() - t0
    if stop >= 2 and level >= 2:
        from .passes.fusion import fuse

        t0 = time.perf_counter()
        lay_out_weights(g)
        plan.fusion = fuse(g)
        _release_replaced(g)
        seconds["fused"] = time.perf_counter() - t0
    if stop >= 3:
        t0 = time.perf_counter()
        g.nodes, plan.memory = plan_schedule(g)
        seconds["planned"] = time.perf_counter() - t0
    return plan


#: A graph whose constants hold at least this many bytes after a pass has what the pass replaced freed at
#: once (every light CNN has more once its weights are folded: squeezenet 4.9 MB, the smallest).
RELEASE_MIN_BYTES = 1 << 20


def _release_replaced(g: Graph) -> None:
    """Free what the passes replaced now, not at the interpreter's next cycle collection: a removed node and
    its outputs refer to each other (``Value.producer``), so the constants it read (the weights folding
    replaced) live on until the cycles are collected, beside their replacements and the run's buffers. Then
    give the freed heap back to the system (glibc keeps it otherwise: the folded weights, mostly under its
    mmap threshold, leave it fragmented)."""
    import ctypes
    import gc

    # only a graph with weights worth freeing pays for a full cycle collection (whose cost grows with every
    # object the process holds, not with this graph: a process holding many small plans paid minutes)
    if sum(getattr(v.data, "nbytes", 0) for v in g.constants.values()) < RELEASE_MIN_BYTES:
        return
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


#: Gemm weights of at least this many bytes are laid out by the compiler (a smaller copy is not worth a
#: rewrite of the graph the backends see).
LAYOUT_MIN_BYTES = 1 << 20


def lay_out_weights(graph: Graph, min_bytes: int = LAYOUT_MIN_BYTES) -> int:
    """Give each Gemm that reads a constant 2-D ``B`` of at least ``min_bytes`` with ``transB=1`` that ``B``
    transposed (C-contiguous) and ``transB=0``: the backends then multiply by the weights as the graph holds
    them (the NumPy backend would otherwise keep a transposed copy beside them for the whole run). The
    transposed constant replaces its source, which goes when nothing else reads it. Returns how many Gemms
    changed."""
    import numpy as np

    from .ops.interpret import node_captures
    from .passes.dce import remove_dead

    reads: dict[int, int] = {}  # how many times each value is read (a subgraph's captures count as reads)
    for node in graph.nodes:
        for v in node.inputs:
            if v is not None:
                reads[id(v)] = reads.get(id(v), 0) + 1
        if node.subgraphs():
            reads.update({id(v): 2 for v in node_captures(node)})
    reads.update({id(v): 2 for v in graph.outputs if v is not None})
    changed = 0
    for node in graph.nodes:
        b = node.inputs[1] if node.op_type == "Gemm" and node.domain == "" and len(node.inputs) > 1 else None
        if b is None or not node.attrs.get("transB", 0) or graph.constants.get(b.name) is not b \
                or b.data is None or np.ndim(b.data) != 2 or np.asarray(b.data).nbytes < min_bytes:
            continue
        node.inputs[1] = graph.add_constant(np.ascontiguousarray(np.asarray(b.data).T), b.name)
        node.attrs["transB"] = 0
        if reads.get(id(b)) == 1:
            del graph.constants[b.name]  # at once: the two copies of a large weight are not held together long
        changed += 1
    if changed:
        remove_dead(graph)  # the sources no node reads now
    return changed


def plan_schedule(graph: Graph):
    """(node order, memory plan) with the smaller peak of two orders: the graph's own and a depth-first
    one from the outputs. The memory plan is None while shapes are symbolic (planned per binding)."""
    from .passes.memory import plan_memory, schedule

    dfs = schedule(graph)
    static = all(isinstance(v.type, TensorType) and v.type.is_static for v in graph.inputs)
    if not static:
        return dfs, None
    best = min(((plan_memory(graph, order), order) for order in (dfs, list(graph.nodes))),
               key=lambda po: po[0].peak_bytes)
    return best[1], best[0]


#: Each plan's bound copies, per binding (see ``bind``); an entry goes with its plan.
_BOUND: "weakref.WeakKeyDictionary[Plan, dict[tuple, Plan]]" = weakref.WeakKeyDictionary()


def bind(plan: Plan, sizes: Mapping[str, int]) -> Plan:
    """``plan`` with symbolic dims bound (a copy, shapes re-inferred, memory planned); cached per plan.

    What the sizes make constant folds (``Shape`` and the arithmetic on it, the Reshape targets, Slice
    bounds and ConstantOfShape shapes computed from it: constant folding and dead-code elimination, the
    new constants moved into the fused groups that read them), so that a backend generating kernels for
    static shapes sees constants, and an If whose condition folded is replaced by the branch it takes (its
    nodes as they are, unfused); nothing else is re-optimized: the other nodes keep their order.
    """
    from .passes.bind import bind_symbols
    from .passes.memory import plan_memory

    fixed = plan.options.get("sets") or {}
    sizes = {k: int(v) for k, v in sizes.items() if fixed.get(k) != int(v)}  # bound when compiled: fine
    unknown = [k for k in sizes if k not in plan.symbols]
    if unknown:
        raise GraphcError(f"cannot set {', '.join(unknown)}: the plan's inputs have no such symbolic dim "
                          f"(open symbols: {', '.join(plan.symbols) or 'none'}; bound when compiled: "
                          f"{', '.join(f'{k}={v}' for k, v in fixed.items()) or 'none'})")
    if not sizes:
        return plan
    key = tuple(sorted(sizes.items()))
    cache = _BOUND.setdefault(plan, {})
    if key not in cache:
        g = plan.graph.copy()
        continue_symbols(g)
        bind_symbols(g, sizes)
        _fold_bound(g)
        mem = plan_memory(g)
        cache[key] = Plan(g, plan.level, mem, plan.fusion, plan.passes, dict(plan.stage_seconds), plan.source,
                          dict(plan.options, sets=dict(plan.options.get("sets") or {}, **sizes)),
                          plan.graphc_version)
    return cache[key]


def _fold_bound(g: Graph) -> None:
    """Fold what the bound sizes made constant (see ``bind``), then re-infer the types."""
    from .passes.branches import inline_known_branches
    from .passes.fold import fold_constants
    from .passes.infer_shapes import infer_shapes

    for _ in range(len(g.nodes) + 1):  # a round folds whole chains; another only after a group's output folded
        if not (fold_constants(g) | _fold_groups(g) | inline_known_branches(g)):
            break
    infer_shapes(g)


def _fold_groups(g: Graph) -> bool:
    """In each fused group: constant inputs move into the body, as fusion does with the constants it sees
    (small ones, or any that is not floating point: a body's Reshape then reads its shape as a constant), the
    body folds, and an output that folded becomes a constant of ``g`` (a group left without one goes)."""
    from .passes.dce import remove_dead
    from .passes.fold import fold_constants
    from .passes.fusion import BODY_CONSTANT_LIMIT, FUSED_DOMAIN, FUSED_OP

    changed = False
    for node in g.nodes:
        if node.domain != FUSED_DOMAIN or node.op_type != FUSED_OP:
            continue
        body = node.attrs["body"]
        moved = False
        for v, b in zip(node.inputs, body.inputs):
            data = v.data if v is not None else None
            if data is not None and (data.size <= BODY_CONSTANT_LIMIT or data.dtype.kind not in "fc"):
                b.data, b.type = data, v.type  # the body's Value itself: its readers need no rewiring
                body.constants[b.name] = b
                moved = True
        if moved:
            kept = [(v, b) for v, b in zip(node.inputs, body.inputs) if b.data is None]
            node.inputs, body.inputs = [v for v, _ in kept], [b for _, b in kept]
        if not (fold_constants(body) or moved):
            continue
        changed = True
        for v, b in zip(node.outputs, body.outputs):
            if b.data is not None:
                v.data, v.type, v.producer = b.data, b.type, None
                g.constants[v.name] = v
        kept = [(v, b) for v, b in zip(node.outputs, body.outputs) if b.data is None]
        node.outputs, body.outputs = [v for v, _ in kept], [b for _, b in kept]
    if changed:
        g.nodes = [n for n in g.nodes if n.outputs]
        remove_dead(g)  # the constants no node reads now
    return changed


#: ``branching_inputs`` follows a condition back through at most this many nodes.
BRANCH_TRACE_LIMIT = 64


def branching_inputs(graph: Graph) -> list:
    """The inputs of ``graph`` that decide one of its Ifs: one-element integer or bool tensors from which an
    If's condition is computed, through nodes without subgraphs (fused groups aside) and constants only (a
    sample rate compared with 16000, a mode flag). A backend that generates kernels for static graphs compiles
    one plan per value of them (``specialize_inputs``), the If then replaced by the branch it takes."""
    inputs = {id(v): v for v in graph.inputs}
    found: dict[int, object] = {}
    for node in graph.nodes:
        if node.op_type != "If" or node.domain or not node.inputs or node.inputs[0] is None:
            continue
        reached, stack, seen, ok = {}, [node.inputs[0]], set(), True
        while stack and ok:
            v = stack.pop()
            if id(v) in seen or v.data is not None:
                continue
            seen.add(id(v))
            if id(v) in inputs:
                t = v.type
                ok = isinstance(t, TensorType) and (t.dtype is not None and t.dtype.is_int or t.dtype == DType.bool) \
                    and t.shape is not None and all(d == 1 for d in t.shape)
                reached[id(v)] = v
                continue
            p = v.producer
            ok = p is not None and len(seen) <= BRANCH_TRACE_LIMIT and (not p.subgraphs() or p.op_type == "FusedGroup")
            if ok:
                stack += [w for w in p.inputs if w is not None]
        if ok:
            found.update(reached)
    return [v for v in graph.inputs if id(v) in found]


def specialize_inputs(plan: Plan, values: Mapping[str, object]) -> Plan:
    """``plan`` compiled again (at its level) with the inputs named in ``values`` fixed to those values: they
    become constants and leave the graph's inputs, so what they decide folds (an If's condition: the branch
    it takes replaces it, ``passes/branches.py``)."""
    import numpy as np

    g = plan.graph.copy()
    by_name = {v.name: v for v in g.inputs}
    for name, x in values.items():
        v = by_name.get(name)
        if v is None or not isinstance(v.type, TensorType) or v.type.dtype is None or v.type.shape is None:
            raise GraphcError(f"cannot specialize input {name!r}: the plan has no such tensor input of known type")
        data = np.asarray(x, dtype=v.type.dtype.np)
        shape = tuple(d if isinstance(d, int) else 1 for d in v.type.shape)
        if data.ndim != len(shape) or data.size != int(np.prod(shape)):
            raise GraphcError(f"cannot specialize input {name!r} ({v.type}) to a value of shape {list(data.shape)}")
        v.data = data.reshape(shape)
        g.inputs.remove(v)
        g.constants[v.name] = v
    return compile(g, level=plan.level, consume=True)


def memory_for(plan: Plan, sizes: Mapping[str, int] | None = None):
    """The memory plan for one binding of the plan's symbolic dims (the plan's own when none are open)."""
    if not plan.symbols or not sizes:
        return plan.memory
    return bind(plan, sizes).memory


__all__ = ["LEVELS", "STAGES", "bind", "branching_inputs", "compile", "lay_out_weights", "memory_for", "plan_schedule", "specialize_inputs"]
