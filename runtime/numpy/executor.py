"""Executes a graph in topological order on NumPy.

``prepare`` turns the graph into a flat list of steps over numbered slots once; ``run`` then checks
the feeds and walks the steps. When every activation's shape is known (a Plan, a static graph, or a
plan with symbolic dims once a run binds them), the steps are the fast ones of program.py: kernels
writing into one preallocated arena laid out by the memory plan. Otherwise (and with
``check_memory``) each step calls its op's reference ``eval`` and intermediates are freed after
their last use.

``run`` may be called from several threads at once. A fast program's arena and its kernels' scratch
buffers serve one run at a time, so each run takes a program from a pool of idle ones and puts it back
when done; a run that finds the pool empty builds another (same steps, its own arena). The pool thus
holds as many programs as there were runs in flight at once, and a single-threaded caller only ever
uses the first. The ``eval`` path keeps its values in a list per run and shares nothing.
"""
from __future__ import annotations

import os
from time import perf_counter
from typing import Any, Mapping, Sequence

import numpy as np

from graphc.errors import ExecutionError, GraphcError, UnsupportedOpError, node_label
from graphc.ir import Graph, TensorType, Value
from graphc.compiler import memory_for
from graphc.limits import check_graph, check_type, input_bindings
from graphc.limits import memory_limit as _memory_limit
from graphc.ops import has_fact, lookup
from graphc.ops.interpret import check_before_eval, eval_node, node_captures, outer_values

from ..feeds import normalize_feeds
from .program import Program, static_tensor
from .threads import apply_env

#: GRAPHC_FAST_KERNELS=0 runs every step with its op's reference ``eval`` (for comparisons and bisecting).
FAST_ENV_VAR = "GRAPHC_FAST_KERNELS"


class NumpyExecutable:
    """A graph made ready to run: ``run(feeds) -> list of outputs`` (in the graph's output order)."""

    def __init__(self, graph: Graph, memory_limit: int | str | None = None, check_memory: bool | None = None,
                 fast: bool | None = None):
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
        self._value_sized = {i for i in self._dynamic if has_fact(steps[i][0], "value_sized")}
        self._checked_bindings: set[tuple] = set()  # symbol bindings already checked against the budget
        apply_env()
        self.fast = (os.environ.get(FAST_ENV_VAR, "1") != "0") if fast is None else fast
        #: The fast steps (program.py), or None when this graph runs on ``eval``.
        self.program: Program | None = None
        #: Programs no run is using now (``program`` and any built for concurrent runs): see ``_take``.
        self._idle: list[Program] = []
        self._memory = None
        self._bound: dict[tuple, "NumpyExecutable"] = {}  # a symbolic plan's executables per binding
        if self.fast and not self.check_memory and not self._captures:
            memory = self._static_memory()
            if memory is not None:
                self._memory = memory
                self.program = self._new_program()
                self._idle.append(self.program)

    def _new_program(self) -> Program:
        return Program(self.graph, self._memory, self._values, self._steps, self._const_slots,
                       self._output_slots, self._value_sized, self.memory_limit)

    def _take(self) -> Program:
        """An idle program for one run (a new one when every program is in a run now); give it back with
        ``self._idle.append``. ``list.pop``/``append`` are atomic, so no lock is taken on the hot path."""
        try:
            return self._idle.pop()
        except IndexError:
            return self._new_program()

    def _static_memory(self):
        """The memory plan when every input and planned value has a static shape, else None."""
        graph = self.graph
        if not all(static_tensor(v) is not None for v in graph.inputs):
            return None
        if self.plan is not None:
            return self.plan.memory
        from graphc.passes.memory import plan_memory

        return plan_memory(graph)

    def _bound_executable(self, checked) -> "NumpyExecutable | None":
        """For a plan with symbolic dims: the fast executable of the plan bound to the fed sizes (cached)."""
        bindings = input_bindings(self.graph, checked)
        key = tuple(sorted(bindings.items()))
        exe = self._bound.get(key)
        if exe is None:
            if len(self._bound) >= 16:
                return None
            from graphc.compiler import bind

            exe = self._bound[key] = NumpyExecutable(bind(self.plan, bindings), self.memory_limit, False, True)
        return exe if exe.program is not None else None

    def run_into(self, args: list, outs: list) -> None:
        """Run the fast steps on input arrays (in input order, unchecked) writing the outputs into ``outs``
        (used for fused group bodies: the caller owns the output buffers)."""
        prog = self._take()
        try:
            env = prog.template.copy()
            for s, x in zip(self._input_slots, args):
                env[s] = x
            written = prog.written_outputs
            for s, x in zip(self._output_slots, outs):
                if s in written:
                    env[s] = x
            for step in prog.steps:
                step(env)
        finally:
            self._idle.append(prog)
        for s, x in zip(self._output_slots, outs):
            if env[s] is not x:  # an input passed through, or a new array from an op run by eval
                np.copyto(x, env[s])

    def run(self, feeds: Mapping[str, Any] | Sequence[Any], outer: Mapping[Value, Any] | None = None) -> list:
        checked = normalize_feeds(self.graph, feeds)
        if self.fast and self.program is None and self.plan is not None and self.plan.symbols and outer is None \
                and not self.check_memory and self.step_timer is None:
            exe = self._bound_executable(checked)
            if exe is not None:  # the feeds are checked already; the bound graph's inputs match by position
                return exe._run_fast(dict(zip(exe.graph.inputs, (checked[v] for v in self.graph.inputs))))
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
        if self.program is not None and outer is None:
            return self._run_fast(checked)
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

    def _run_fast(self, checked) -> list:
        prog = self._take()
        try:
            return self._run_program(prog, checked)
        finally:
            self._idle.append(prog)

    def _run_program(self, prog: Program, checked) -> list:
        env = prog.new_env()
        for v, s in zip(self.graph.inputs, self._input_slots):
            env[s] = checked[v]
        timer = self.step_timer
        i = -1
        try:
            with np.errstate(all="ignore"):
                if timer is None:
                    for i, step in enumerate(prog.steps):
                        step(env)
                else:
                    for i, (step, node) in enumerate(zip(prog.steps, prog.nodes)):
                        start = perf_counter()
                        step(env)
                        timer(node, start, perf_counter())
        except GraphcError:
            raise
        except Exception as e:
            node = prog.nodes[i]
            raise ExecutionError(f"{node_label(node)} failed: {type(e).__name__}: {e}") from e
        return [env[s] for s in self._output_slots]

    def _arena(self, checked):
        """The arena for one checked run, laid out by the plan's memory plan for the fed sizes."""
        from .memcheck import ArenaRun

        memory = memory_for(self.plan, input_bindings(self.graph, checked))
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
                check_memory: bool | None = None, fast: bool | None = None) -> NumpyExecutable:
        """``graph``: a Graph or a graphc.plan.Plan (``check_memory``, ``fast``: see NumpyExecutable)."""
        return NumpyExecutable(graph, memory_limit, check_memory, fast)
