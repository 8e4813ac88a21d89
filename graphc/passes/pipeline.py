"""The simplification pipeline: ``simplify(graph, level)`` runs the portable passes to a fixed point.

Level 0 does nothing; levels 1 and 2 run shape inference, constant folding, the inlining of If branches
whose conditions are known, algebraic simplification, BatchNorm folding, pattern recognition (Gelu,
LayerNorm, Softmax, attention), common-subexpression and dead-code elimination, repeating the list until no pass changes the graph. The graph is changed in place;
its inputs, and its outputs' names and order, stay as they were.
"""
from __future__ import annotations

from ..ir import Graph
from .bnfold import fold_batchnorm
from .branches import inline_known_branches
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import fold_constants
from .infer_shapes import infer_shapes
from .manager import PassManager, PassReport, register_pass
from .patterns import recognize_patterns
from .simplify import simplify_algebra


@register_pass("infer_shapes")
def infer_shapes_pass(graph: Graph) -> bool:
    """Shape inference as a pass: True when some value's type became more precise."""
    before = [v.type for v in graph.values()]
    infer_shapes(graph)
    return any(a != v.type for a, v in zip(before, graph.values()))


#: The passes of ``simplify``, in order.
SIMPLIFY_PASSES = (infer_shapes_pass, eliminate_dead_code, fold_constants, inline_known_branches, simplify_algebra,
                   fold_batchnorm, recognize_patterns, eliminate_common_subexpressions)


def simplify(graph: Graph, level: int = 2, verify: bool | None = None) -> PassReport:
    """Simplify ``graph`` in place at optimization ``level`` (0, 1 or 2); returns what each pass did.

    ``verify`` (default: the GRAPHC_VERIFY environment variable) checks the graph after every pass.
    """
    if level not in (0, 1, 2):
        from ..errors import GraphcError

        raise GraphcError(f"optimization level must be 0, 1 or 2, got {level}")
    if level == 0:
        return PassReport()
    return PassManager(SIMPLIFY_PASSES, verify=verify, fixed_point=True).run(graph)
