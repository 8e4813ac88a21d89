"""The CUDA executor: a Plan lowered to generated kernels, run over one device arena with prepared launches.

``prepare`` does all the work once: compile the graph into a Plan when given a Graph, lower it to
kernels (``MissingKernelError`` lists every op without one), lay out the arena from the memory plan,
allocate it, upload the constants, compile or load every kernel (on-disk cache) and resolve each launch
to its pointers. ``run`` then copies the feeds in, calls the prepared launches and copies the fetches
out: no allocation, no compilation, no host-device traffic besides feeds and fetches. A plan with
symbolic dims is prepared once per binding of them (cached). Given a ``DeviceState`` (a Session's
variables on the device), variable inputs are read from their buffers there and the values ``Assign``
computed are copied into them on the device after the fetches: neither crosses to the host.

Debug mode (``debug=True`` or ``GRAPHC_CUDA_DEBUG=1``) fills every value's bytes with 0xFF (a NaN for
floats) after its last reader, and synchronizes after each launch: a memory plan that let two live
values share bytes then shows NaN in the outputs instead of a plausible wrong number.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from graphc.errors import ExecutionError
from graphc.ir import Graph, TensorType, Value
from graphc.limits import input_bindings

from ..feeds import normalize_feeds
from .arena import frees_after, layout_arena
from ..codegen.launch import fit_block
from ..codegen.lowering import lower
from .state import DeviceState, default_device

DEBUG_ENV = "GRAPHC_CUDA_DEBUG"


def _free(device, ptr: int) -> None:
    free = getattr(device, "free", None)
    if free is not None:
        free(ptr)


class ArenaPool:
    """The arenas one device holds: at most ``limit`` at once. A Session fed many shapes prepares a plan per
    shape, and an executable with symbolic dims one per binding; the least recently run of them gives its
    arena back (``_Prepared.release``) and allocates it again, constants uploaded, when it runs next."""

    def __init__(self, limit: int):
        self.limit = limit
        self._resident: "weakref.WeakValueDictionary[int, _Prepared]" = weakref.WeakValueDictionary()
        self._order: list[int] = []  # ids of resident plans, least recently run first

    def admit(self, prepared: "_Prepared") -> None:
        """``prepared`` is about to allocate its arena: release the least recently run ones beyond the limit."""
        self._order = [k for k in self._order if k in self._resident and k != id(prepared)]
        while len(self._order) >= self.limit:
            old = self._resident.get(self._order.pop(0))
            if old is not None:
                old.release()
        self._resident[id(prepared)] = prepared
        self._order.append(id(prepared))

    def touch(self, prepared: "_Prepared") -> None:
        k = id(prepared)
        if self._order and self._order[-1] != k and k in self._order:
            self._order.remove(k)
            self._order.append(k)

    @property
    def resident(self) -> int:
        return sum(1 for k in self._order if k in self._resident and self._resident[k].base is not None)


#: How many arenas (prepared plans) one device keeps allocated at once.
MAX_RESIDENT_ARENAS = 8
_POOLS: "weakref.WeakKeyDictionary[Any, ArenaPool]" = weakref.WeakKeyDictionary()


def arena_pool(device) -> ArenaPool:
    """The device's ArenaPool (made on first use; a device object that takes no weak reference gets its own)."""
    try:
        if device not in _POOLS:
            _POOLS[device] = ArenaPool(MAX_RESIDENT_ARENAS)
        return _POOLS[device]
    except TypeError:
        return ArenaPool(MAX_RESIDENT_ARENAS)


class _Prepared:
    """One static-shaped plan on the device: arena, kernels and launches resolved to pointers."""

    def __init__(self, plan, device, debug: bool, state=None, variables=(), assigns=None, tf32: bool = False):
        t0 = time.perf_counter()
        self.plan = plan
        self.graph: Graph = plan.graph
        self.device = device
        # Inputs named in ``variables`` are read where ``state`` (runtime/cuda/state.py) keeps them, not from
        # the arena; the outputs of ``assigns`` (output index -> variable) are copied there after the run.
        self.external = {id(v): state.pointer(v.name) for v in self.graph.inputs if v.name in variables}
        self.lowered = lower(self.graph, device.props, tf32=tf32,
                             inplace=plan.memory.inplace if plan.memory is not None else None)
        steps = self.lowered.steps
        args = [a for s in steps for a in s.args]
        self.layout = layout_arena(self.graph, plan.memory, args, self.lowered.scratch, set(self.external))
        self.compile_seconds = 0.0
        t1 = time.perf_counter()
        if hasattr(device, "precompile"):  # all kernels of a plan built at once (parallel nvcc runs, one g++ run)
            device.precompile([s.kernel for s in steps if s.kernel is not None])
        loaded = {}
        self._steps: list[tuple[int, Any, Any]] = []  # (step index, launcher, step) of each launch
        for i, s in enumerate(steps):
            if s.call is not None:  # a library call (cuBLAS): the device runs it with the resolved pointers
                self._steps.append((i, device.call(s.call), s))
                continue
            if s.kernel.n_elements == 0:
                continue
            if s.kernel.source not in loaded:
                loaded[s.kernel.source] = device.load(s.kernel)
            self._steps.append((i, loaded[s.kernel.source], s))
        self.compile_seconds = time.perf_counter() - t1
        self.kernels = len(loaded)
        self.state = state
        self.assigns = dict(assigns or {})
        self.debug = debug
        self.base = None
        self._pool = arena_pool(device)
        self._acquire()
        self.prepare_seconds = time.perf_counter() - t0

    def _acquire(self) -> None:
        """Allocate the arena (again, after ``release``), upload the constants and resolve every launch."""
        dev, steps = self.device, self.lowered.steps
        self._pool.admit(self)
        self.base = dev.alloc(self.layout.size)
        for off, data in self.layout.constants:
            dev.htod(self.base + off, data)
        self.launches: list[tuple[Any, int, int, list[int]]] = []
        self.step_of_launch: list[int] = []
        for i, launcher, s in self._steps:
            if s.call is not None:
                self.launches.append((launcher, 0, 0, [self._ptr(a) for a in s.args]))
            elif s.view_of is not None and self._ptr(s.view_of[0]) == self._ptr(s.view_of[1]):
                continue  # a reshape the memory plan made in place: the bytes are already there
            else:
                block = fit_block(s.kernel, getattr(launcher, "max_threads", None),
                                  getattr(launcher, "registers", None), dev.props)
                self.launches.append((launcher, s.kernel.grid, block, [self._ptr(a) for a in s.args]))
            self.step_of_launch.append(i)
        batch = getattr(dev, "batch_launches", None)
        if batch is not None and not self.debug:  # consecutive kernels called from the device's own loop
            self.launches = batch(self.launches)
            self.step_of_launch = []
        self.inputs = [(self.base + self.layout.offset(v), v) for v in self.graph.inputs if id(v) not in self.external]
        self.outputs = []
        for v in self.graph.outputs:
            t = v.type
            self.outputs.append((self._ptr(v), t.dtype.np, tuple(t.shape)))
        state = self.state
        self.writes = [(k, name, state.pointer(name), self.outputs[k][0], state.nbytes(name))
                       for k, name in self.assigns.items()]
        self.fills: list[list[tuple[int, int]]] = []
        if self.debug and self.plan.memory is not None:
            node_index = {id(n): k for k, n in enumerate(self.graph.nodes)}
            per_node = frees_after(self.plan.memory, len(self.graph.nodes), {v.name for v in self.graph.outputs})
            # a node lowered to several launches (im2col + GEMM) frees its dead inputs after the last one
            last = {id(steps[i].node): k for k, i in enumerate(self.step_of_launch)}
            self.fills = [[(self.base + o, n) for o, n in per_node[node_index[id(steps[i].node)]]]
                          if id(steps[i].node) in node_index and last[id(steps[i].node)] == k else []
                          for k, i in enumerate(self.step_of_launch)]
        # the arena goes back to the device with this object (or when the pool releases it, see ArenaPool)
        self._finalizer = weakref.finalize(self, _free, dev, self.base)

    def release(self) -> None:
        """Free the arena (the pool evicts the least recently run plans); the next ``run`` allocates it again."""
        if self.base is not None:
            self._finalizer()
            self.base = None

    def _ptr(self, a) -> int:
        if isinstance(a, np.generic):  # a scalar parameter (codegen.Param role "scalar"): passed by value
            return a
        if id(a) in self.external:  # a variable in device memory outside the arena
            return self.external[id(a)]
        return self.base + self.layout.offset(a)

    def run(self, checked: Mapping[Value, Any]) -> list[np.ndarray]:
        dev = self.device
        if self.base is None:
            self._acquire()
        else:
            self._pool.touch(self)
        for ptr, v in self.inputs:
            x = np.ascontiguousarray(checked[v], dtype=v.type.dtype.np)
            dev.htod(ptr, x)
        for k, (launch, grid, block, ptrs) in enumerate(self.launches):
            launch(grid, block, ptrs)
            if self.debug:
                dev.synchronize()
                for ptr, n in self.fills[k] if self.fills else ():
                    dev.memset(ptr, 0xFF, n)
        kept = {k for k, *_ in self.writes}
        outs = []
        for k, (ptr, dtype, shape) in enumerate(self.outputs):
            if k in kept:
                outs.append(None)
                continue
            host = np.empty(shape, dtype=dtype)
            dev.dtoh(host, ptr)
            outs.append(host)
        # Variable updates stay on the device; after the fetches, which may read a variable as it was.
        for _, name, dst, src, nbytes in self.writes:
            if dst != src:
                dev.dtod(dst, src, nbytes)
            self.state.written(name)
        return outs


class CudaExecutable:
    """A graph or Plan made ready on a CUDA device: ``run(feeds) -> list of outputs`` (NumPy arrays)."""

    def __init__(self, graph, device=None, debug: bool | None = None, level: int = 2, state=None, variables=(),
                 assigns=None, tf32: bool = False):
        from graphc.compiler import compile as compile_graph
        from graphc.plan import Plan

        self.plan = graph if isinstance(graph, Plan) else compile_graph(graph, level=level)
        self.graph = self.plan.graph
        if device is None:
            device = state.device if state is not None else default_device()
        self.device = device
        #: the variables ``state`` holds on the device (inputs not fed to run) and the outputs that update them
        self.resident = dict(state=state, variables=frozenset(variables), assigns=dict(assigns or {}))
        self.tf32 = tf32  # float32 GEMMs on TF32 tensor cores (off: exact float32)
        self._fed = SimpleNamespace(inputs=[v for v in self.graph.inputs if v.name not in self.resident["variables"]])
        self.debug = (os.environ.get(DEBUG_ENV, "") not in ("", "0")) if debug is None else debug
        self._prepared: dict[tuple, _Prepared] = {}
        #: A prepared plan runs over one device arena: concurrent ``run`` calls take turns.
        self._lock = threading.Lock()
        if not self.plan.symbols:
            self._prepared[()] = _Prepared(self.plan, self.device, self.debug, **self.resident, tf32=self.tf32)

    def prepared(self, bindings: Mapping[str, int] | None = None) -> _Prepared:
        """The prepared plan for one binding of the symbolic dims (built on first use)."""
        key = tuple(sorted((bindings or {}).items())) if self.plan.symbols else ()
        if key not in self._prepared:
            from graphc.compiler import bind

            self._prepared[key] = _Prepared(bind(self.plan, dict(key)), self.device, self.debug, **self.resident,
                                            tf32=self.tf32)
        return self._prepared[key]

    def run(self, feeds: Mapping[str, Any] | Sequence[Any]) -> list[np.ndarray]:
        """Safe from several threads at once: the calls take turns (one device arena per prepared plan)."""
        checked = normalize_feeds(self._fed, feeds)  # every input but the variables held on the device
        with self._lock:
            return self._run(checked)

    def _run(self, checked) -> list[np.ndarray]:
        prepared = self.prepared(input_bindings(self.graph, checked) if self.plan.symbols else None)
        if prepared.graph is not self.graph:  # bound copy: its input Values are its own
            checked = {b: checked[v] for v, b in zip(self.graph.inputs, prepared.graph.inputs) if v in checked}
        for v, x in checked.items():
            if not isinstance(x, np.ndarray) or not isinstance(v.type, TensorType):
                raise ExecutionError(f"the CUDA backend takes tensors only; input '{v.name}' got {type(x).__name__}")
        return prepared.run(checked)


class CudaBackend:
    """``prepare(graph_or_plan) -> CudaExecutable``: the interface every runtime backend shares."""

    name = "cuda"
    #: A Session compiles one plan per fed shape (kernels are generated for static shapes, and Shape ops
    #: then fold into constants) instead of one plan for symbolic dims.
    specialize_shapes = True

    @staticmethod
    def variable_store(values: Mapping[str, np.ndarray]) -> DeviceState:
        """The mapping a Session keeps its variables in: device buffers, host copies on demand."""
        return DeviceState(dict(values))

    @staticmethod
    def prepare(graph, device=None, debug: bool | None = None, check_memory: bool | None = None,
                memory_limit=None, state: DeviceState | None = None, variables=(), assigns=None,
                tf32: bool = False) -> CudaExecutable:
        """``graph``: a Graph (compiled here at -O2) or a graphc.plan.Plan; ``device``: default PyCUDA's.

        ``check_memory`` (as the NumPy backend's) turns on the debug mode; ``memory_limit`` is accepted for
        the shared interface (the arena's size is fixed by the memory plan). ``state``: variables held on the
        device (``variable_store``); the inputs named in ``variables`` are read there and not fed, and output
        ``k`` of ``assigns`` ({k: variable}) is written there on the device and returned as None. ``tf32``: let
        float32 matrix products (cuBLAS) use TF32 tensor cores, about 10 mantissa bits (off: exact float32).
        """
        return CudaExecutable(graph, device=device, debug=debug if check_memory is None else (debug or check_memory),
                              state=state, variables=variables, assigns=assigns, tf32=tf32)


__all__ = ["ArenaPool", "CudaBackend", "CudaExecutable", "MAX_RESIDENT_ARENAS", "arena_pool",
           "default_device"]
