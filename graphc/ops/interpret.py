"""The reference interpreter: runs a graph node by node with each OpDef's ``eval``.

Control-flow ops use it to run their bodies, and constant folding uses it on constant subgraphs.
The NumPy runtime builds its faster executor on the same ``eval_node`` call.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ExecutionError, GraphcError, node_label
from ..ir import Graph, Node, Value
from .registry import get_opdef


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype}{list(x.shape)}"
    if x is None:
        return "None"
    if isinstance(x, list):
        return f"sequence of {len(x)}"
    return type(x).__name__


def eval_node(node: Node, inputs: list, opdef=None) -> list:
    """Evaluate one node on concrete inputs; returns one entry per declared output."""
    op = opdef or get_opdef(node)
    try:
        result = op.eval(node, *inputs)
    except GraphcError:
        raise
    except Exception as e:
        shown = ", ".join(_describe(x) for x in inputs)
        raise ExecutionError(f"{node_label(node)} failed on inputs ({shown}): {type(e).__name__}: {e}") from e
    if not isinstance(result, tuple):
        result = (result,)
    if len(result) < len(node.outputs):
        result = tuple(result) + (None,) * (len(node.outputs) - len(result))
    return list(result[: len(node.outputs)])


def run_graph(graph: Graph, feeds: dict[Value, Any], outer: dict[Value, Any] | None = None) -> list:
    """Run ``graph`` with values for its inputs (keyed by Value); ``outer`` holds enclosing-scope values."""
    env: dict[Value, Any] = dict(outer) if outer else {}
    for v in graph.constants.values():
        env[v] = v.data
    env.update(feeds)
    for node in graph.nodes:
        args = [env[v] if v is not None else None for v in node.inputs]
        outs = eval_node(node, args)
        for v, x in zip(node.outputs, outs):
            if v is not None:
                env[v] = x
    return [env[v] for v in graph.outputs]
