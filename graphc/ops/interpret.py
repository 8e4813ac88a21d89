"""The reference interpreter: runs a graph node by node with each OpDef's ``eval``.

Control-flow ops use it to run their bodies, and constant folding uses it on constant subgraphs.
The NumPy runtime builds its faster executor on the same ``eval_node`` call, and checks the outputs of
nodes whose sizes depend on input values against the memory budget first (``check_before_eval``).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import ExecutionError, GraphcError, node_label
from ..ir import DType, Graph, Node, TensorType, Value
from ..limits import check_type
from .registry import InferContext, get_opdef


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype}{list(x.shape)}"
    if x is None:
        return "None"
    if isinstance(x, list):
        return f"sequence of {len(x)}"
    return type(x).__name__


def outer_values(graph: Graph) -> list[Value]:
    """The values that ``graph``'s nodes (and their subgraphs, at any depth) read but ``graph`` does not define.

    The importer lists such values in ``graph.captures`` at every level; this walk also covers graphs
    built by hand whose captures are incomplete.
    """
    defined = {id(v) for v in graph.inputs} | {id(v) for v in graph.constants.values()}
    found: dict[int, Value] = {id(v): v for v in graph.captures if id(v) not in defined}
    for node in graph.nodes:
        for v in node.inputs:
            if v is not None and id(v) not in defined:
                found.setdefault(id(v), v)
        for sub in node.subgraphs():
            for v in outer_values(sub):
                if id(v) not in defined:
                    found.setdefault(id(v), v)
        defined.update(id(v) for v in node.outputs if v is not None)
    for v in graph.outputs:  # a body may return an enclosing value unchanged
        if v is not None and id(v) not in defined:
            found.setdefault(id(v), v)
    return [v for k, v in found.items() if k not in defined]


def node_captures(node: Node) -> list[Value]:
    """The enclosing-scope values a node's subgraphs read (empty for a node without subgraphs)."""
    seen: dict[int, Value] = {}
    for sub in node.subgraphs():
        for v in outer_values(sub):
            seen.setdefault(id(v), v)
    return list(seen.values())


def eval_node(node: Node, inputs: list, opdef=None, outer: dict[Value, Any] | None = None) -> list:
    """Evaluate one node on concrete inputs; returns one entry per declared output.

    ``outer`` (for nodes with subgraphs: If, Loop, Scan...) maps each value of ``node_captures(node)``
    to its array; it reaches the op's ``eval`` as the keyword ``outer``.
    """
    op = opdef or get_opdef(node)
    try:
        result = op.eval(node, *inputs) if outer is None else op.eval(node, *inputs, outer=outer)
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
        outer_env = None
        if node.subgraphs():
            caps = node_captures(node)
            missing = [v.name for v in caps if v not in env and v.data is None]
            if missing:
                raise ExecutionError(f"{node_label(node)}: its subgraph reads {', '.join(missing)}, which the "
                                     f"enclosing graphs do not provide")
            outer_env = {v: env[v] if v in env else v.data for v in caps}
        outs = eval_node(node, args, outer=outer_env)
        for v, x in zip(node.outputs, outs):
            if v is not None:
                env[v] = x
    return [env[v] for v in graph.outputs]


def check_before_eval(node, opdef, args, limit: int, bindings: Mapping[str, int] | None = None) -> None:
    """Before running a node whose output shapes were not known ahead of time, infer them from the
    concrete inputs (their shapes, and the values of small ones) and refuse an output over ``limit``.

    This is what stops ``ConstantOfShape``/``Expand``/``Tile``/``Range``/``Resize`` fed a huge target at
    run time. Nodes with subgraphs and ops without an inference rule are left to their ``eval``.
    """
    if limit <= 0 or opdef.infer is None or node.subgraphs():
        return
    ins, known = [], {}
    for v, x in zip(node.inputs, args):
        if v is None:
            ins.append(None)
            continue
        t = v.type
        if isinstance(x, np.ndarray):
            try:
                t = TensorType(DType.string if x.dtype == object else DType.from_np(x.dtype), x.shape)
            except TypeError:
                pass
        w = Value(v.name, t)
        if isinstance(x, np.ndarray) and x.size <= 1024:
            known[id(w)] = x
        ins.append(w)
    probe = Node(node.op_type, ins, [Value(o.name) if o is not None else None for o in node.outputs],
                 dict(node.attrs), name=node.name, domain=node.domain, opset=node.opset)
    try:
        types = opdef.infer(InferContext(probe, Graph("probe"), known))
    except (GraphcError, ArithmeticError, LookupError, TypeError, ValueError):
        return  # the inputs break the op's rules: its eval reports that, naming the node
    for o, t in zip(node.outputs, types or []):
        if o is not None:
            check_type(f"{node_label(node)}: output '{o.name}'", t, limit, bindings)
