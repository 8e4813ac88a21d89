"""The table of fast NumPy kernels: op type -> ``factory(ctx) -> step`` or None.

``ctx`` is a ``program.StepContext`` and ``step(env)`` reads its inputs from the slot list ``env`` and
writes its output buffer (or, for ops that only reinterpret bytes, puts a view in the output slot). The
kernel modules of this package register their factories here by family (``@register("Softmax")``);
the package's ``__init__`` imports every family, and the program asks ``kernel_for(ctx)``.

A factory returns None when the node is outside what its kernel handles (a dtype, an attribute,
an input computed at run time where a constant is needed): the executor then calls the op's
reference ``eval`` for that node, so every fast kernel is an optimisation of an existing ``eval``
and must agree with it (tests/runtime check each kernel against its ``eval``).

This module imports nothing of the runtime: the families sit above it, the program and the executor
above them. The one service a kernel needs from above, an executable of its own for a fused group's body
(fused.py), comes through ``set_nested_executable``, which runtime/numpy/__init__.py calls with the
executor's class.
"""
from __future__ import annotations

from typing import Callable

#: (domain, op type) -> kernel factory. The default domain is ""; ``graphc``-domain ops (FusedGroup) have
#: kernels too, other domains none.
KERNELS: dict[tuple[str, str], Callable] = {}

_nested: list[Callable] = []  # the executable class for nested bodies, once set


def register(*op_types: str, domain: str = ""):
    """Decorator: ``factory`` is the kernel of each of ``op_types`` in ``domain`` (one kernel per op)."""
    def add(factory):
        for op in op_types:
            key = (domain, op)
            if key in KERNELS:
                raise ValueError(f"numpy kernel for {domain or 'ai.onnx'}::{op}: registered twice "
                                 f"({KERNELS[key].__module__}.{KERNELS[key].__name__} and "
                                 f"{factory.__module__}.{factory.__name__})")
            KERNELS[key] = factory
        return factory

    return add


def kernel_for(ctx):
    """The step function for ``ctx``'s node, or None to use the op's ``eval``."""
    factory = KERNELS.get((ctx.node.domain or "", ctx.node.op_type))
    return None if factory is None else factory(ctx)


def set_nested_executable(factory: Callable) -> None:
    """Set what prepares a graph as an executable of its own (``factory(graph)``, with ``program`` and
    ``run_into``): the NumPy executor's class."""
    _nested[:] = [factory]


def nested_executable(graph):
    """An executable of its own for ``graph`` (a fused group's body), made by the factory set above."""
    if not _nested:
        raise RuntimeError("graphc.runtime.numpy.kernels: no nested executable set (import graphc.runtime.numpy)")
    return _nested[0](graph)


__all__ = ["KERNELS", "kernel_for", "nested_executable", "register", "set_nested_executable"]
