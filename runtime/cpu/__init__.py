"""The compiled CPU backend: the generated kernels of the CUDA lowering rendered as C++ with OpenMP
(``device.py``), compiled by the host's compiler, run by the same executor as the CUDA backend over one host
arena. Matrix products call the BLAS NumPy carries from C (one-thread calls on pieces the OpenMP team shares); an op without a kernel runs through the reference interpreter on
the arena's bytes (``lowering.HostCall``), so every graph of static tensor shapes runs.

``CpuBackend.prepare`` falls back to the NumPy interpreter, with one warning naming why, when no C++ compiler
is found or when the plan cannot be laid out in an arena (values that are not tensors of known shape, such as
sequences, or sizes that depend on the data).
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
        from graphc.compiler import compile as compile_graph
        from graphc.ir import TensorType
        from graphc.plan import Plan

        from ..cuda.executor import CudaExecutable

        if device is None and state is None and not available():
            return _fallback(graph, "no C++ compiler (g++, clang++ or $GRAPHC_CXX) was found", memory_limit)
        plan = graph if isinstance(graph, Plan) else compile_graph(graph)
        other = next((v for v in plan.graph.values() if not isinstance(v.type, TensorType)), None)
        if other is not None and state is None:
            return _fallback(plan, f"value '{other.name}' is a {other.type}, not a tensor an arena can hold",
                             memory_limit)
        graph = plan
        if device is None:
            device = state.device if state is not None else default_host_device()
        try:
            return CudaExecutable(graph, device=device, debug=debug if check_memory is None else
                                  (debug or check_memory), state=state, variables=variables, assigns=assigns)
        except GraphcError as e:
            if state is not None:
                raise
            return _fallback(graph, str(e).splitlines()[0], memory_limit)


def _fallback(graph, why: str, memory_limit):
    from ..numpy import NumpyBackend

    warnings.warn(f"the CPU backend runs this graph on the NumPy interpreter: {why}", GraphcWarning, stacklevel=3)
    return NumpyBackend.prepare(graph, memory_limit=memory_limit)


__all__ = ["CpuBackend", "HostDevice", "available", "compiler", "default_host_device", "host_props"]
