"""Common-subexpression elimination: one node per (op, inputs, attributes), one constant per small array.

Two nodes with the same op, domain, attributes and the very same input values compute the same thing
(random ops and nodes with subgraphs excepted); the later one's readers move to the earlier one. Small
constants (up to ``CONST_LIMIT`` elements) with equal dtype, shape and bytes are merged first, so that
nodes reading equal axes or scalars made separately also meet. A graph output keeps its name: when both
values are graph outputs (or the duplicate is a graph output and its twin cannot take the name), the
duplicate stays.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Value
from ..ops.registry import has_fact
from .dce import has_effects
from .manager import register_pass
from .rewrite import Editor

#: Constants up to this many elements are merged by content.
CONST_LIMIT = 64


def _attr_key(a):
    if isinstance(a, np.ndarray):
        return ("array", a.dtype.str, a.shape, a.tobytes() if a.dtype != object else repr(a.tolist()))
    if isinstance(a, (list, tuple)):
        return tuple(_attr_key(x) for x in a)
    if isinstance(a, float) and a != a:
        return ("nan",)
    return a


def _node_key(node):
    try:
        attrs = tuple(sorted((k, _attr_key(a)) for k, a in node.attrs.items()))
        hash(attrs)
    except TypeError:
        return None
    return (node.domain, node.op_type, tuple(id(v) if v is not None else None for v in node.inputs),
            len(node.outputs), attrs)


@register_pass("eliminate_common_subexpressions")
def eliminate_common_subexpressions(graph: Graph) -> bool:
    ed = Editor(graph)
    changed = False
    first_const: dict[tuple, Value] = {}
    for v in list(graph.constants.values()):
        d = v.data
        if d is None or d.size > CONST_LIMIT or d.dtype == object:
            continue
        key = (d.dtype.str, d.shape, d.tobytes())
        twin = first_const.get(key)
        if twin is None:
            first_const[key] = v
        elif ed.can_replace(v, twin) and not ed.is_output(v):
            ed.replace(v, twin)
            changed = True
    seen: dict[tuple, object] = {}
    for node in graph.nodes:
        if has_fact(node, "nondeterministic") or node.subgraphs() or has_effects(node):
            continue
        key = _node_key(node)
        if key is None:
            continue
        twin = seen.get(key)
        if twin is None:
            seen[key] = node
            continue
        pairs = [(o, t) for o, t in zip(node.outputs, twin.outputs) if o is not None]
        if any(t is None for _, t in pairs) or not all(ed.can_replace(o, t) for o, t in pairs):
            continue
        for o, t in pairs:
            ed.replace(o, t)
        changed = True
    if changed:
        ed.finish()
    return changed
