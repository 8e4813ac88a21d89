"""The compiled CPU backend: the generated kernels of the CUDA lowering rendered as C++ (``device.py``),
compiled by the host's compiler, run by the same executor as the CUDA backend over one host arena, on
graphc's own thread pool. Matrix products call the BLAS NumPy carries from C (one-thread calls on pieces the
pool shares); an op without a kernel runs through the reference interpreter on the arena's bytes
(``lowering.HostCall``), so every graph of static tensor shapes runs.

Values that are not tensors (a classifier's ZipMap of class scores, a sequence) cannot live in an arena. When
they are only made at the end of the graph (every node that makes or reads one is followed only by such nodes:
``host_tail``), the tensors they come from are computed by the compiled plan and those last nodes run through
the interpreter after it (``_HostTail``). An If decided by a small input (a sample rate, a mode flag) is
compiled once per value fed, the If replaced by the branch it takes (``_ByValue``). ``CpuBackend.prepare``
falls back to the NumPy interpreter, with one warning naming why, when no C++ compiler is found or when the
plan cannot be laid out in an arena (values that are not tensors of known shape anywhere else, or sizes that
depend on the data).
"""
from __future__ import annotations

import threading
import warnings
from typing import Mapping

import numpy as np

from graphc.errors import GraphcError, GraphcWarning

from .device import HostDevice, available, compiler, host_props

_DEVICE = None
_LOCK = threading.Lock()


def default_host_device() -> HostDevice:
    """One host device per process (its compiled kernels loaded once), shared by every executable."""
    global _DEVICE
    with _LOCK:
        if _DEVICE is None:
            _DEVICE = HostDevice()
        return _DEVICE


class CpuBackend:
    """``prepare(graph_or_plan) -> executable``: compiled C++ kernels on this machine's CPU."""

    name = "cpu"
    #: one plan per fed shape (kernels are generated for static shapes), as the CUDA backend
    specialize_shapes = True

    @staticmethod
    def variable_store(values: Mapping[str, np.ndarray]):
        """A Session's variables: host buffers outside the arenas, updated in place by the plans."""
        from ..cuda.state import DeviceState

        return DeviceState(dict(values), device_factory=default_host_device)

    @staticmethod
    def prepare(graph, device=None, debug: bool | None = None, check_memory: bool | None = None,
                memory_limit=None, state=None, variables=(), assigns=None, **_):
        """``graph``: a Graph (compiled here at -O2) or a Plan. Falls back to the NumPy interpreter (one
        warning saying why) when no C++ compiler is found or the plan has values an arena cannot hold."""
        from graphc.compiler import branching_inputs
        from graphc.compiler import compile as compile_graph
        from graphc.ir import TensorType
        from graphc.plan import Plan

        if device is None and state is None and not available():
            return _fallback(graph, "no C++ compiler (g++, clang++ or $GRAPHC_CXX) was found", memory_limit)
        plan = graph if isinstance(graph, Plan) else compile_graph(graph)
        deciding = branching_inputs(plan.graph) if state is None else []
        if deciding:
            return _ByValue(plan, deciding, lambda p: CpuBackend.prepare(p, device=device, debug=debug,
                                                                        check_memory=check_memory,
                                                                        memory_limit=memory_limit))
        other = next((v for v in plan.graph.values() if not isinstance(v.type, TensorType)), None)
        if other is not None and state is None:
            split = host_tail(plan)
            if split is not None:
                head = CpuBackend.prepare(split[0], device=device, debug=debug, check_memory=check_memory,
                                          memory_limit=memory_limit)
                return _HostTail(head, plan, split)
            return _fallback(plan, f"value '{other.name}' is a {other.type}, not a tensor an arena can hold",
                             memory_limit)
        graph = plan
        if device is None:
            device = state.device if state is not None else default_host_device()
        try:
            return _cpu_executable()(graph, device=device, debug=debug if check_memory is None else
                                     (debug or check_memory), state=state, variables=variables, assigns=assigns)
        except GraphcError as e:
            if state is not None:
                raise
            return _fallback(graph, str(e).splitlines()[0], memory_limit)


_CPU_EXECUTABLE = None


def _cpu_executable():
    """CudaExecutable on the host, with a per-binding fallback: a binding of the plan's symbolic dims whose
    kernels cannot be generated (a size that depends on the data even once the inputs are bound, a control-flow
    op whose branches differ in shape) runs on the NumPy interpreter instead, with one warning naming why."""
    global _CPU_EXECUTABLE
    if _CPU_EXECUTABLE is None:
        from ..cuda.executor import CudaExecutable

        class CpuExecutable(CudaExecutable):
            def prepared(self, bindings=None):
                try:
                    return super().prepared(bindings)
                except GraphcError as e:
                    if self.resident["state"] is not None:  # variables live in the arena: nothing to fall back to
                        raise
                    key = tuple(sorted((bindings or {}).items())) if self.plan.symbols else ()
                    self._prepared[key] = _InterpretedBinding(self.plan, key, str(e).splitlines()[0])
                    return self._prepared[key]

        _CPU_EXECUTABLE = CpuExecutable
    return _CPU_EXECUTABLE


class _InterpretedBinding:
    """One binding of a plan run by the NumPy interpreter (``prepared``'s stand-in: ``graph`` and ``run``)."""

    def __init__(self, plan, key: tuple, why: str):
        from graphc.compiler import bind

        from ..numpy import NumpyBackend

        bound = bind(plan, dict(key)) if key else plan
        self.graph = bound.graph
        self.exe = NumpyBackend.prepare(bound)
        where = f" (inputs bound as {dict(key)})" if key else ""
        warnings.warn(f"the CPU backend runs this graph on the NumPy interpreter{where}: {why}", GraphcWarning,
                      stacklevel=5)

    def run(self, checked: dict) -> list:
        return self.exe.run({v.name: x for v, x in checked.items()})


def host_tail(plan):
    """(head plan, tail nodes, outputs) where the values of ``plan`` that are not tensors are all made and read
    by nodes at the end of the graph (the *tail*: the nodes that make such a value, and everything that reads
    what a tail node makes), none with a subgraph. The head plan (a copy of the graph without the tail) computes
    the graph's tensor outputs and what the tail reads; ``outputs`` are the copy's values for the graph's
    outputs. None where the graph cannot be split so (a graph input that is not a tensor, a node with a
    subgraph in the tail)."""
    from graphc.compiler import compile as compile_graph
    from graphc.ir import TensorType

    g = plan.graph
    if any(not isinstance(v.type, TensorType) for v in g.inputs):
        return None
    made_by_tail: set[int] = set()
    tail: list[int] = []
    for k, n in enumerate(g.nodes):
        outs = [v for v in n.outputs if v is not None]
        if any(id(v) in made_by_tail for v in n.inputs if v is not None) or \
                any(not isinstance(v.type, TensorType) for v in outs):
            if n.subgraphs():
                return None
            tail.append(k)
            made_by_tail.update(id(v) for v in outs)
    if not tail or len(tail) == len(g.nodes):
        return None  # nothing to split off, or nothing left to compile
    head = g.copy()
    tail_nodes = [head.nodes[k] for k in tail]
    in_tail = set(tail)
    head.nodes = [n for k, n in enumerate(head.nodes) if k not in in_tail]
    tensor_only = [n for n in tail_nodes if all(isinstance(v.type, TensorType) for v in n.outputs if v is not None)]
    if tensor_only:  # tensor ops the compiled plan could have run: say so
        warnings.warn(f"the CPU backend runs the last {len(tail_nodes)} node(s) of the graph on the NumPy "
                      f"interpreter (from '{tail_nodes[0].name}', {tail_nodes[0].op_type}): they read values that "
                      f"are not tensors", GraphcWarning, stacklevel=4)
    outputs = list(head.outputs)
    tail_outs = {id(v) for n in tail_nodes for v in n.outputs if v is not None}
    inputs = {id(v) for v in head.inputs}
    wanted: list = []
    for v in [v for n in tail_nodes for v in n.inputs if v is not None] + outputs:
        if id(v) not in tail_outs and v.data is None and id(v) not in inputs and all(v is not w for w in wanted):
            wanted.append(v)
    head.outputs = wanted
    head_plan = compile_graph(head, level=0, consume=True)
    head_plan.level = plan.level
    return head_plan, tail_nodes, outputs


class _ByValue:
    """A plan with Ifs decided by small inputs (``graphc.compiler.branching_inputs``: a sample rate, a mode
    flag): one executable per value of them, compiled for it (``specialize_inputs``: the If replaced by the
    branch it takes, which then runs as generated kernels rather than node by node). ``specialized`` maps each
    value seen (a tuple, one entry per such input) to its executable; other attributes are the last one's."""

    #: values kept compiled; beyond them each new value replaces the oldest
    LIMIT = 16

    def __init__(self, plan, deciding: list, prepare):
        self.plan, self.deciding, self._prepare = plan, deciding, prepare
        self.graph = plan.graph
        self.specialized: dict[tuple, object] = {}
        self._last = None

    def __getattr__(self, name):
        if self._last is None:
            raise AttributeError(f"{name!r}: nothing has run yet (one executable per value of "
                                 f"{', '.join(v.name for v in self.deciding)})")
        return getattr(self._last, name)

    def run(self, feeds) -> list:
        from graphc.compiler import specialize_inputs

        from ..feeds import normalize_feeds

        checked = normalize_feeds(self.graph, feeds)
        key = tuple(np.asarray(checked[v]).reshape(-1)[0].item() for v in self.deciding)
        exe = self.specialized.get(key)
        if exe is None:
            if len(self.specialized) >= self.LIMIT:
                del self.specialized[next(iter(self.specialized))]
            exe = self.specialized[key] = self._prepare(
                specialize_inputs(self.plan, {v.name: checked[v] for v in self.deciding}))
        self._last = exe
        fixed = {id(v) for v in self.deciding}
        return exe.run({v.name: x for v, x in checked.items() if id(v) not in fixed and x is not None})


class _HostTail:
    """A plan whose last nodes make values an arena cannot hold: the compiled ``head`` computes the tensors,
    then the ``tail`` nodes run through the interpreter on them (``host_tail``). Other attributes (``device``,
    ``prepared``) are the head executable's."""

    def __init__(self, head, plan, split):
        self.head, self.plan = head, plan
        head_plan, self.tail, self.outputs = split
        self.graph = head_plan.graph  # its inputs are the graph's; its outputs what the head computes

    def __getattr__(self, name):
        return getattr(self.head, name)

    def run(self, feeds) -> list:
        from graphc.ops.interpret import eval_node

        from ..feeds import normalize_feeds

        checked = normalize_feeds(self.graph, feeds)
        env = {id(v): x for v, x in checked.items()}
        computed = self.head.run({v.name: x for v, x in checked.items() if x is not None})
        env.update({id(v): x for v, x in zip(self.graph.outputs, computed)})
        for node in self.tail:
            args = [None if v is None else v.data if v.data is not None else env[id(v)] for v in node.inputs]
            for v, x in zip(node.outputs, eval_node(node, args)):
                if v is not None:
                    env[id(v)] = x
        return [v.data if v.data is not None else env[id(v)] for v in self.outputs]


def _fallback(graph, why: str, memory_limit):
    from ..numpy import NumpyBackend

    warnings.warn(f"the CPU backend runs this graph on the NumPy interpreter: {why}", GraphcWarning, stacklevel=3)
    return NumpyBackend.prepare(graph, memory_limit=memory_limit)


__all__ = ["CpuBackend", "HostDevice", "available", "compiler", "default_host_device", "host_props"]
