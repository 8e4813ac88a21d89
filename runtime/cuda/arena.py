"""The device arena: one allocation per prepared plan, laid out from the plan's memory plan.

Regions, in order: the activations at the memory plan's offsets (values alive at the same step never
share bytes; a value written in place shares its input's), then the graph's inputs (the feeds are
copied there), then every constant a kernel reads (uploaded once at prepare), then scratch for values
the memory plan does not know (inside a fused group lowered op by op). Nothing is allocated while the
plan runs. ``frees_after`` gives, for the debug mode, the bytes each step leaves dead, so that the
executor can fill them with NaN and a wrong layout shows up as NaN in the outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphc.errors import GraphcError
from graphc.ir import Graph, Value
from graphc.passes.memory import value_bytes

#: Alignment of each region and of each value outside the activations (cudaMalloc's own is 256).
REGION_ALIGNMENT = 256


def _align(n: int, a: int = REGION_ALIGNMENT) -> int:
    return (n + a - 1) // a * a


@dataclass
class ArenaLayout:
    """Byte offsets of every value a run touches inside one allocation of ``size`` bytes."""

    size: int = 0
    offsets: dict[int, int] = field(default_factory=dict)  # id(Value) -> byte offset
    nbytes: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    constants: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (offset, data) uploaded at prepare
    activations: int = 0  # bytes of the activation region (the memory plan's peak)

    def offset(self, v) -> int:
        key = id(v)
        if key not in self.offsets:
            name = getattr(v, "name", "a constant")
            raise GraphcError(f"the CUDA arena has no place for '{name}': the memory plan did not size it "
                              f"(its shape is known only at run time)")
        return self.offsets[key]

    def region_of(self, v) -> str:
        off = self.offset(v)
        return "activations" if off < self.activations else "inputs/constants/scratch"


def layout_arena(graph: Graph, memory, args: list, scratch: list[Value] = (), elsewhere=frozenset()) -> ArenaLayout:
    """The layout for ``graph`` run with ``memory`` (a MemoryPlan), holding every value in ``args``
    (Values or constant arrays that kernels read or write) and ``scratch`` (values outside the plan).
    Graph inputs whose id is in ``elsewhere`` (a session's variables, kept in buffers of their own) get
    no place."""
    lay = ArenaLayout()
    by_name = {}
    for n in graph.nodes:
        for v in n.outputs:
            if v is not None:
                by_name[v.name] = v
    for name, off in memory.offsets.items():
        v = by_name.get(name)
        if v is not None:
            lay.offsets[id(v)] = off
            lay.nbytes[id(v)] = memory.sizes[name]
            lay.names[id(v)] = name
    cursor = _align(memory.peak_bytes)
    lay.activations = memory.peak_bytes

    def place(key: int, nbytes: int, name: str) -> int:
        nonlocal cursor
        off = cursor
        lay.offsets[key] = off
        lay.nbytes[key] = nbytes
        lay.names[key] = name
        cursor = _align(cursor + max(nbytes, 1))
        return off

    for v in graph.inputs:
        if id(v) in elsewhere:
            continue
        size = value_bytes(v)
        if size is None:
            raise GraphcError(f"input '{v.name}' has no static shape ({v.type}): bind its symbolic dims first")
        place(id(v), size, v.name)
    seen_data: dict[int, int] = {}
    for a in list(args) + list(graph.outputs):
        data = a.data if isinstance(a, Value) else a
        key = id(a)
        if key in lay.offsets or not isinstance(data, np.ndarray):
            continue
        if id(data) in seen_data:  # one array read by several kernels is uploaded once
            lay.offsets[key] = seen_data[id(data)]
            lay.nbytes[key] = data.nbytes
            continue
        off = place(key, data.nbytes, getattr(a, "name", "constant"))
        seen_data[id(data)] = off
        lay.constants.append((off, np.ascontiguousarray(data)))
    for v in scratch:
        if id(v) not in lay.offsets:
            size = value_bytes(v)
            if size is None:
                raise GraphcError(f"value '{v.name}' has no static shape ({v.type})")
            place(id(v), size, v.name)
    lay.size = cursor
    return lay


def frees_after(memory, steps: int, outputs: set[str]) -> list[list[tuple[int, int]]]:
    """For each step, the byte ranges (offset, bytes) of activations that die at it and that no value
    alive after it occupies (so filling them cannot clobber a live value, e.g. one written in place)."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(steps)]
    alive = [(memory.offsets[n], memory.sizes[n], *memory.lifetimes[n]) for n in memory.offsets]
    for name in memory.offsets:
        first, last = memory.lifetimes[name]
        if name in outputs or last >= steps:
            continue
        off, size = memory.offsets[name], memory.sizes[name]
        clash = any(o < off + size and off < o + s and a <= last < b for o, s, a, b in alive)
        if not clash:
            out[last].append((off, size))
    return out


__all__ = ["ArenaLayout", "REGION_ALIGNMENT", "frees_after", "layout_arena"]
