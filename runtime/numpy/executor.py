"""Executes a graph in topological order on NumPy, freeing each intermediate after its last use.

``prepare`` turns the graph into a flat list of steps over numbered slots once; ``run`` then checks
the feeds and walks the steps. Slots (rather than a dict keyed by name) keep the hot loop free of
lookups, and leave room for a memory plan to assign preallocated buffers to slots later.
"""
from __future__ import annotations

from time import perf_counter
from typing import Any, Mapping, Sequence

from graphc.errors import GraphcError, UnsupportedOpError, node_label
from graphc.ir import Graph, TensorType, Value
from graphc.limits import VALUE_SIZED_OPS, check_before_eval, check_graph, check_type, input_bindings
from graphc.limits import memory_limit as _memory_limit
from graphc.ops import lookup
from graphc.ops.interpret import eval_node, node_captures, outer_values

from ..feeds import normalize_feeds


class NumpyExecutable:
    """A graph made ready to run: ``run(feeds) -> list of outputs`` (in the graph's output order)."""

    def __init__(self, graph: Graph, memory_limit: int | str | None = None, check_memory: bool | None = None):
        #: A graphc.plan.Plan runs its graph; with ``check_memory`` (default: GRAPHC_CHECK_MEMORY) every run
        #: keeps its values at the plan's arena offsets and checks them (runtime/numpy/memcheck.py).
        self.plan = None
        if not isinstance(graph, Graph):
            self.plan, graph = graph, graph.graph
        from .memcheck import check_memory_from_env

        self.check_memory = self.plan is not None and (check_memory_from_env() if check_memory is None
                                                       else check_memory)
        self.graph = graph
        #: Profiling hook: ``fn(node, start, end)`` (perf_counter seconds) after each step; None = off.
        self.step_timer = None
        #: The memory budget in bytes for one tensor (graphc/limits.py); 0 = unchecked.
        self.memory_limit = _memory_limit(memory_limit)
        check_graph(graph, self.memory_limit)
        missing: dict = {}
        slot: dict[int, int] = {}
        self._values: list[Value] = []

        def slot_of(v: Value) -> int:
            if id(v) not in slot:
                slot[id(v)] = len(self._values)
                self._values.append(v)
            return slot[id(v)]

        self._input_slots = [slot_of(v) for v in graph.inputs]
        self._const_slots = [(slot_of(v), v.data) for v in graph.constants.values()]
        # Values captured from an enclosing graph are fed like inputs (used when a body is prepared).
        # Nested bodies may read values from further out than this graph's own captures list.
        self._captures = list({id(v): v for v in list(graph.captures) + outer_values(graph)}.values())
        self._capture_slots = [slot_of(v) for v in self._captures]
        steps = []
        # For nodes with subgraphs (If, Loop, Scan): the enclosing values their bodies read, and their slots.
        self._outer: dict[int, tuple[list[Value], list[int]]] = {}
        for node in graph.nodes:
            op = lookup(node.domain, node.op_type)
            if op is None:
                missing.setdefault((node.domain, node.op_type, node.opset or 0), []).append(node.name)
            ins = [slot_of(v) if v is not None else -1 for v in node.inputs]
            outs = [slot_of(v) if v is not None else -1 for v in node.outputs]
            if node.subgraphs():
                caps = node_captures(node)
                self._outer[len(steps)] = (caps, [slot_of(v) for v in caps])
            steps.append((node, op, ins, outs))
        if missing:
            raise UnsupportedOpError(missing, where=f"graph '{graph.name}'")
        self._output_slots = [slot_of(v) for v in graph.outputs]
        # Free a slot after its last reader, unless it is an output or a constant.
        keep = set(self._output_slots) | {s for s, _ in self._const_slots}
        last_use: dict[int, int] = {}
        for i, (_, _, ins, _) in enumerate(steps):
            for s in ins + (self._outer[i][1] if i in self._outer else []):  # a body's captures are reads too
                if s >= 0:
                    last_use[s] = i
        frees: list[list[int]] = [[] for _ in steps]
        for s, i in last_use.items():
            if s not in keep:
                frees[i].append(s)
        for i, (_, _, _, outs) in enumerate(steps):  # outputs nobody reads die at once
            for s in outs:
                if s >= 0 and s not in last_use and s not in keep:
                    frees[i].append(s)
        self._steps = [(node, op, ins, outs, frees[i], self._outer.get(i))
                       for i, (node, op, ins, outs) in enumerate(steps)]
        self._n_slots = len(self._values)
        # Steps whose output sizes are not fixed ahead of time: checked against the budget when run.
        self._dynamic = {i for i, (node, _, _, _) in enumerate(steps)
                         if any(v is not None and not (isinstance(v.type, TensorType) and v.type.is_static)
                                for v in node.outputs)}
        # Of those, the ones whose sizes depend on input values: re-inferred from the inputs as they run.
        self._value_sized = {i for i in self._dynamic if steps[i][0].op_type in VALUE_SIZED_OPS}
        self._checked_bindings: set[tuple] = set()  # symbol bindings already checked against the budget

    def run(self, feeds: Mapping[str, Any] | Sequence[Any], outer: Mapping[Value, Any] | None = None) -> list:
        checked = normalize_feeds(self.graph, feeds)
        env: list[Any] = [None] * self._n_slots
        for s, data in self._const_slots:
            env[s] = data
        for v, s in zip(self.graph.inputs, self._input_slots):
            env[s] = checked[v]
        for v, s in zip(self._captures, self._capture_slots):
            if outer is not None and v in outer:
                env[s] = outer[v]
            elif v.data is not None:
                env[s] = v.data
            else:
                raise GraphcError(f"graph '{self.graph.name}' uses '{v.name}' of an enclosing graph; "
                                  f"run it from there")
        limit = self.memory_limit if self._dynamic else 0
        bindings = input_bindings(self.graph, checked) if limit else {}
        key = tuple(sorted(bindings.items()))
        if limit and key not in self._checked_bindings:  # sizes the feeds fix: refused before anything runs
            for i in self._dynamic:
                node = self._steps[i][0]
                for v in node.outputs:
                    if v is not None:
                        check_type(f"{node_label(node)}: output '{v.name}'", v.type, limit, bindings)
            if len(self._checked_bindings) < 256:
                self._checked_bindings.add(key)
        evaluate = eval_node if self.step_timer is None else _timed(self.step_timer)
        arena = self._arena(checked) if self.check_memory else None
        for i, (node, op, ins, outs, frees, caps) in enumerate(self._steps):
            outer_env = None if caps is None else {v: env[s] for v, s in zip(*caps)}
            args = [env[s] if s >= 0 else None for s in ins]
            if limit and i in self._value_sized:
                check_before_eval(node, op, args, limit, bindings)
            results = evaluate(node, args, op, outer_env)
            for s, x in zip(outs, results):
                if s >= 0:
                    env[s] = x
            if arena is not None:
                arena.store(node, outs, results, env, frees)
                arena.free(frees)
            for s in frees:
                env[s] = None
        return [env[s] for s in self._output_slots]

    def _arena(self, checked):
        """The arena for one checked run, laid out by the plan's memory plan for the fed sizes."""
        from .memcheck import ArenaRun

        memory = self.plan.memory_for(input_bindings(self.graph, checked))
        return None if memory is None else ArenaRun(memory, self._values)


def _timed(step_timer):
    """``eval_node`` that reports each step's start and end to ``step_timer`` (graphc/profile.py)."""
    def evaluate(node, args, op, outer_env):
        start = perf_counter()
        results = eval_node(node, args, op, outer_env)
        step_timer(node, start, perf_counter())
        return results

    return evaluate


class NumpyBackend:
    """``prepare(graph) -> NumpyExecutable``: the interface every runtime backend shares."""

    name = "numpy"

    @staticmethod
    def prepare(graph: Graph, memory_limit: int | str | None = None,
                check_memory: bool | None = None) -> NumpyExecutable:
        """``graph``: a Graph or a graphc.plan.Plan (``check_memory``: see NumpyExecutable)."""
        return NumpyExecutable(graph, memory_limit, check_memory)
