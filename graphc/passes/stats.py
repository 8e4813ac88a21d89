"""Model statistics: which values are weights, and how many parameters a model holds."""
from __future__ import annotations

from ..ir import Graph, TensorType, Value
from ..ops.registry import has_fact


def weight_values(graph: Graph) -> list[Value]:
    """Values computed from constants alone that feed the rest of the graph (or are outputs).

    Initializers are weights, but so are values a model builds from constants (the onnx light models
    make every weight with ConstantOfShape); shape arguments consumed only inside that constant
    part (such as ConstantOfShape's shape) are not.
    """
    const = {id(v) for v in graph.constants.values()}
    const_nodes = set()
    for n in graph.nodes:
        if has_fact(n, "nondeterministic") or n.subgraphs():
            continue
        if all(v is None or id(v) in const for v in n.inputs):
            const_nodes.add(id(n))
            const.update(id(v) for v in n.outputs if v is not None)
    frontier: dict[int, Value] = {}
    for n in graph.nodes:
        if id(n) in const_nodes:
            continue
        for v in n.inputs:
            if v is not None and id(v) in const:
                frontier[id(v)] = v
    for v in graph.outputs:
        if id(v) in const:
            frontier[id(v)] = v
    return list(frontier.values())


def parameter_count(graph: Graph) -> int:
    """Elements in the weight values (those whose shape is known)."""
    total = 0
    for v in weight_values(graph):
        if v.data is not None:
            total += int(v.data.size)
        elif isinstance(v.type, TensorType) and v.type.is_static:
            total += v.type.numel
    return total
