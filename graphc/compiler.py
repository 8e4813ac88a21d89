"""The compiler driver: takes an imported graph through its stages and returns a Plan.

Stages, each printable with ``graphc show MODEL --stage NAME``:

- ``imported``: the graph as imported, with input shapes fixed (``input_shapes``), symbols bound
  (``sets``) and types inferred;
- ``simplified``: ``passes.pipeline.simplify`` at the level (folding, DCE, CSE, algebra, BN folding...);
- ``fused``: ``passes.fusion.fuse`` groups ops into ``graphc.FusedGroup`` nodes;
- ``planned``: nodes in a memory-friendly schedule and a buffer assignment from liveness.

Levels: ``-O0`` plans memory only, ``-O1`` simplifies too, ``-O2`` (the default) also fuses.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Sequence

from .errors import GraphcError
from .ir import Graph, TensorType
from .plan import Plan

STAGES = ("imported", "simplified", "fused", "planned")
LEVELS = (0, 1, 2)


def compile(graph: Graph, level: int = 2, input_shapes: Mapping[str, Sequence[int]] | None = None,
            sets: Mapping[str, int] | None = None, until: str = "planned", source: str = "") -> Plan:
    """Optimize a copy of ``graph`` into a Plan (``graph`` itself is left as it was).

    ``until`` stops after a stage (see STAGES): the plan then holds the graph as that stage left it.
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
    g = graph.copy()
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
        seconds["simplified"] = time.perf_counter() - t0
    if stop >= 2 and level >= 2:
        from .passes.fusion import fuse

        t0 = time.perf_counter()
        plan.fusion = fuse(g)
        seconds["fused"] = time.perf_counter() - t0
    if stop >= 3:
        t0 = time.perf_counter()
        g.nodes, plan.memory = plan_schedule(g)
        seconds["planned"] = time.perf_counter() - t0
    return plan


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


__all__ = ["LEVELS", "STAGES", "compile", "plan_schedule"]
