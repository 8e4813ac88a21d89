"""Inlining an If whose condition is known: the branch it takes replaces it in the enclosing graph.

A condition is known once it is a constant: folded from constants, or from an input the compiler was given
a value for (``graphc.compiler.specialize_inputs``: a model that branches on a scalar such as a sample rate
is compiled for the value it is fed). The branch's nodes and constants move into the graph (their values
renamed where a name is taken), and one Identity per output hands the branch's result to the If's output
value, which keeps its name (algebraic simplification removes the Identity where it can). Then the branch is
optimized, fused and compiled with the rest, where the If would have been run node by node.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .manager import register_pass


def _taken(node: Node) -> bool | None:
    """Which branch an If takes (True: then), or None while its condition is not a one-element constant."""
    if node.op_type != "If" or node.domain or not node.inputs or node.inputs[0] is None:
        return None
    cond = node.inputs[0].data
    if cond is None or np.size(cond) != 1:
        return None
    return bool(np.asarray(cond).reshape(()))


def _inline(graph: Graph, node: Node, branch: Graph) -> list[Node]:
    for v in list(branch.constants.values()):
        v.name = graph.unique_name(v.name)
        graph.constants[v.name] = v
    nodes = []
    for n in branch.nodes:
        for v in n.outputs:
            if v is not None:
                v.name = graph.unique_name(v.name)
        n.name = graph.unique_node_name(n.name or n.op_type)
        nodes.append(n)
    for inner, out in zip(branch.outputs, node.outputs):
        if out is not None:
            nodes.append(Node("Identity", [inner], [out], name=graph.unique_node_name(f"{node.name or 'If'}_out")))
    return nodes


@register_pass("inline_known_branches")
def inline_known_branches(graph: Graph) -> bool:
    """Replace each If of the graph whose condition is a constant by the branch it takes; True when any was."""
    out, changed = [], False
    for node in graph.nodes:
        taken = _taken(node)
        if taken is None:
            out.append(node)
            continue
        out += _inline(graph, node, node.attrs["then_branch" if taken else "else_branch"])
        changed = True
    if changed:
        graph.nodes = out
    return changed


__all__ = ["inline_known_branches"]
