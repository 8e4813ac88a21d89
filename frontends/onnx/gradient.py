"""ONNX's ``Gradient`` operator (domain ``ai.onnx.preview.training``), computed by graphc's own autodiff.

A ``Gradient(xs..., zs...)`` node names, by attribute, the values ``xs`` it differentiates with respect
to and the value ``y`` it differentiates (``zs`` are further inputs held constant); its outputs are dy/dx
for each x, each of x's shape. The importer replaces every such node by the gradient nodes
``graphc.autodiff.gradients`` builds from the graph's own ops, so the result is an ordinary graph: it is
simplified, fused, planned and run like any other, on every backend. An x that y does not depend on gets
zeros (the operator's definition: the derivative of y with respect to it is 0).
"""
from __future__ import annotations

from graphc.autodiff import gradients
from graphc.errors import GradientError, ModelLoadError, node_label
from graphc.ir import Graph, Node, Value

DOMAIN = "ai.onnx.preview.training"


def _is_gradient(node: Node) -> bool:
    return node.domain == DOMAIN and node.op_type == "Gradient"


def expand_gradients(graph: Graph) -> int:
    """Replace every Gradient node of ``graph`` by the nodes computing its outputs; returns how many."""
    count = 0
    for node in [n for n in graph.nodes if _is_gradient(n)]:
        _expand(graph, node)
        count += 1
    for node in graph.nodes:
        for sub in node.subgraphs():
            if any(_is_gradient(n) for n in sub.nodes):
                raise ModelLoadError(f"{node_label(node)}: a Gradient node inside a subgraph is not supported "
                                     f"(graphc differentiates the main graph)")
    return count


def _expand(graph: Graph, node: Node) -> None:
    xs_names = list(node.attrs.get("xs") or [])
    y_name = node.attrs.get("y")
    if not xs_names or not y_name:
        raise ModelLoadError(f"{node_label(node)}: Gradient needs the attributes xs (the names to differentiate "
                             f"with respect to) and y (the name to differentiate)")
    if len(node.outputs) != len(xs_names):
        raise ModelLoadError(f"{node_label(node)}: Gradient has {len(node.outputs)} outputs for {len(xs_names)} xs; "
                             f"expected one output per x")
    by_name = {v.name: v for v in node.inputs if v is not None}
    xs: list[Value] = []
    for name in xs_names:
        if name not in by_name:
            raise ModelLoadError(f"{node_label(node)}: xs names '{name}', which is not one of the node's inputs "
                                 f"({', '.join(sorted(by_name)) or 'none'})")
        xs.append(by_name[name])
    try:
        y = graph.value(y_name)
    except KeyError:
        raise ModelLoadError(f"{node_label(node)}: y names '{y_name}', which no value of the graph has") from None
    graph.nodes.remove(node)  # the forward sweep must not see the node being expanded
    try:
        grads = gradients(graph, [y], xs, unconnected="zero")
    except GradientError as e:
        raise ModelLoadError(f"{node_label(node)}: {e}") from None
    mapping = {id(out): g for out, g in zip(node.outputs, grads) if out is not None}
    for n in graph.nodes:
        n.inputs = [mapping.get(id(v), v) if v is not None else None for v in n.inputs]
    graph.outputs = [mapping.get(id(v), v) if v is not None else None for v in graph.outputs]
    for out, g in zip(node.outputs, grads):  # the gradient takes the output's name (feeds/fetches by name)
        if out is not None and g is not None and g.producer is not None and g.name != out.name:
            g.name = out.name


__all__ = ["expand_gradients"]
