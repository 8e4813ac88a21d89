"""The graph users build with the DSL: ``gc.Graph()`` plus ``with g.as_default():``, and update ops.

``Graph`` is a ``graphc.ir.Graph`` that also remembers what the DSL needs while it builds: the
initial values of its variables, which of them are trainable, the update ops stateful layers add
(batch-norm running statistics), and the values shape inference learned ahead of time. There is no
hidden global graph: DSL functions use the innermost ``as_default()`` block, or the graph of their
tensor arguments.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np

from graphc.errors import GraphBuildError
from graphc.ir import Graph as IRGraph
from graphc.ir import Value

_local = threading.local()


def _stack() -> list["Graph"]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


#: The DSL's Tensor class, set by tensor.py where it is defined (this module sits below it and imports none of
#: it; the package imports both, so the class is there before any graph hands out tensors).
TENSOR_TYPE: list = []


class Graph(IRGraph):
    """A graphc IR graph that the DSL builds into (``with g.as_default(): ...``)."""

    def __init__(self, name: str = "main", seed: int = 0):
        super().__init__(name)
        #: Seeds every initializer that was not given its own seed (with the variable's index).
        self.seed = seed
        #: Initial value of each variable, by name (the Session copies them into its state).
        self.initial_values: dict[str, np.ndarray] = {}
        #: Names of the variables optimizers update by default, in creation order.
        self.trainable: list[str] = []
        #: Update ops that layers add in training mode (batch-norm running stats); ``minimize`` runs them.
        self.update_ops: list["Operation"] = []
        #: The file and line that created each placeholder and variable, by name (nodes carry their own).
        self.sources: dict[str, str] = {}
        #: Nodes whose gradient is not their op's rule (gc.stop_gradient, gc.custom_gradient): id(node) ->
        #: graphc.autodiff.GradOverride, passed to every gc.gradients of this graph.
        self.grad_overrides: dict = {}
        #: The run counter (a float64 scalar placeholder the Session feeds with its run number when nobody
        #: else does): dropout masks are functions of it, so each run draws a new, reproducible mask.
        self.run_counter = None
        #: How many seeded random draws the DSL has built (each gets its own seed from ``seed``).
        self.random_draws = 0
        #: Run-time checks of integer values (``check_range``): (value, low, high, message); the Session
        #: refuses a run where one is out of its range.
        self.range_checks: list[tuple[Value, int, int, str]] = []
        # What shape inference learned while building (see graphc.ops.infer.infer_node).
        self._known: dict = {}
        self._symbolic: dict = {}

    @contextlib.contextmanager
    def as_default(self) -> Iterator["Graph"]:
        """Make this graph the one DSL calls build into, for the duration of the ``with`` block."""
        _stack().append(self)
        try:
            yield self
        finally:
            _stack().pop()

    def check_range(self, t, low: int, high: int, message: str) -> None:
        """Ask every run that computes or feeds ``t`` to check that its values are in [low, high)."""
        self.range_checks.append((t.value, low, high, message))

    def next_seed(self) -> int:
        """A seed for the next random draw: a function of the graph's seed and how many draws came before
        (exact as the float ``seed`` attribute of a random op)."""
        self.random_draws += 1
        return int(np.random.SeedSequence([self.seed, self.random_draws]).generate_state(1)[0])

    def variable_tensors(self, trainable_only: bool = False) -> list:
        """The graph's variables as Tensors, in creation order."""
        names = self.trainable if trainable_only else list(self.variables)
        return [TENSOR_TYPE[0](self, self.variables[n]) for n in names]


def get_default_graph(required: bool = True) -> Graph | None:
    """The graph of the innermost ``as_default()`` block."""
    st = _stack()
    if st:
        return st[-1]
    if required:
        raise GraphBuildError("no default graph: build inside `with g.as_default():` (g = gc.Graph()), "
                              "or pass tensors of a graph")
    return None


class Operation:
    """Something to run for its effect: variable updates (``Assign`` nodes), possibly grouped.

    ``sess.run(op)`` executes the updates and returns None for it.
    """

    def __init__(self, graph: Graph, assigns: list[Value], name: str = "update", source: str | None = None):
        self.graph = graph
        self.assigns = list(assigns)
        self.name = name
        self.source = source

    def __repr__(self) -> str:
        return f"<Operation '{self.name}': {len(self.assigns)} variable update(s)>"


def group(*ops: Operation, name: str = "group") -> Operation:
    """One Operation that runs all the given ones."""
    if not ops:
        raise GraphBuildError("gc.group() needs at least one Operation")
    graphs = {id(o.graph) for o in ops}
    if len(graphs) > 1:
        raise GraphBuildError("gc.group(): the operations belong to different graphs")
    assigns: list[Value] = []
    for o in ops:
        if not isinstance(o, Operation):
            raise GraphBuildError(f"gc.group() takes Operations, got {type(o).__name__}")
        assigns.extend(a for a in o.assigns if a not in assigns)
    return Operation(ops[0].graph, assigns, name)
