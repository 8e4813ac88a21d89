"""Dead-code elimination: drops nodes whose outputs nothing reads, and constants no node reads.

A value counts as read when a node takes it as an input, a subgraph body of a node reads it, or it is
a graph output. Graph outputs are never removed, nor nodes with effects (variable updates).
"""
from __future__ import annotations

from ..ir import Graph
from ..ops.interpret import node_captures
from ..ops.registry import has_fact
from .manager import register_pass


def has_effects(node) -> bool:
    """Whether the node acts beyond its outputs (``OpDef.effectful``: a variable update the Session applies
    after the run): never removed, merged or folded, whether or not anything reads its result."""
    return has_fact(node, "effectful")


def remove_dead(graph: Graph) -> bool:
    """Remove unread nodes (in one backward walk) and unread constants; True when anything went."""
    live = {id(v) for v in graph.outputs if v is not None}
    keep = []
    for node in reversed(graph.nodes):
        if has_effects(node) or any(v is not None and id(v) in live for v in node.outputs):
            keep.append(node)
            live.update(id(v) for v in node.inputs if v is not None)
            if node.subgraphs():
                live.update(id(v) for v in node_captures(node))
    removed = len(keep) != len(graph.nodes)
    if removed:
        keep.reverse()
        graph.nodes = keep
    dead_consts = [k for k, v in graph.constants.items() if id(v) not in live]
    for k in dead_consts:
        del graph.constants[k]
    return removed or bool(dead_consts)


@register_pass("eliminate_dead_code")
def eliminate_dead_code(graph: Graph) -> bool:
    return remove_dead(graph)
