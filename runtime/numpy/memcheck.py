"""Runs a Plan with its buffer assignment for real, to check it: every planned value lives in one arena.

Each result is copied to its planned offset and later steps read it from there, so a layout that lets two
values alive at the same time share bytes corrupts a value and changes the outputs. Before that happens,
each store is checked against the values the executor still holds (its own liveness, independent of the
planner's): sharing bytes with one of them is an error naming both values, unless the plan writes the
output in place over an input that dies at this very step. Turned on by
``prepare(plan, check_memory=True)`` or ``GRAPHC_CHECK_MEMORY=1``.
"""
from __future__ import annotations

import os

import numpy as np

from graphc.errors import ExecutionError, node_label
from graphc.ir import Value

ENV_VAR = "GRAPHC_CHECK_MEMORY"


def check_memory_from_env() -> bool:
    return os.environ.get(ENV_VAR, "") not in ("", "0")


class ArenaRun:
    """One run's arena: ``store`` after each step, ``free`` for the slots the step releases."""

    def __init__(self, memory, values: list[Value]):
        self.memory = memory
        self.arena = np.zeros(max(memory.peak_bytes, 1), dtype=np.uint8)
        self.names = [v.name for v in values]
        self.where = {s: (memory.offsets[v.name], memory.sizes[v.name]) for s, v in enumerate(values)
                      if v.name in memory.offsets}
        self.live: dict[int, tuple[int, int]] = {}  # slot -> the bytes it occupies now
        self.stored = 0

    def store(self, node, out_slots: list[int], results: list, env: list, dying: list[int]) -> None:
        for s, x in zip(out_slots, results):
            if s < 0 or s not in self.where or not isinstance(x, np.ndarray):
                continue
            name = self.names[s]
            off, size = self.where[s]
            if x.nbytes != size:
                raise ExecutionError(f"memory plan: {node_label(node)} wrote '{name}' as {x.dtype}{list(x.shape)} "
                                     f"({x.nbytes} bytes), but the plan reserved {size} bytes for it")
            for t, (o2, s2) in self.live.items():
                if o2 < off + size and off < o2 + s2 and t != s:
                    if self.memory.inplace.get(name) == self.names[t] and t in dying:
                        continue
                    raise ExecutionError(
                        f"memory plan conflict at {node_label(node)}: its output '{name}' is placed at arena bytes "
                        f"{off}..{off + size}, where '{self.names[t]}' ({o2}..{o2 + s2}) is still alive "
                        f"(read by a later step)")
            view = self.arena[off:off + size].view(x.dtype).reshape(x.shape)
            np.copyto(view, x)
            env[s] = view
            self.live[s] = (off, size)
            self.stored += 1

    def free(self, slots: list[int]) -> None:
        for s in slots:
            self.live.pop(s, None)
