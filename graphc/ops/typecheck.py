"""Checks a node's recorded output types against what its OpDef infers (used by ``Graph.verify``)."""
from __future__ import annotations

from ..errors import GraphcError, ShapeError, node_label
from ..ir import Node
from .registry import InferContext, lookup, types_conflict


class _NoGraph:
    """Stands in for the graph during a check: fresh symbols only need to be distinct."""

    _n = 0

    def fresh_symbol(self, prefix: str = "unk") -> str:
        _NoGraph._n += 1
        return f"{prefix}__check{_NoGraph._n}"


def check_node_types(node: Node) -> None:
    op = lookup(node.domain, node.op_type)
    if op is None or op.infer is None:
        return
    try:
        inferred = op.infer(InferContext(node, _NoGraph()))
    except GraphcError:
        raise
    except Exception:  # an infer rule that cannot handle partial information: nothing to compare
        return
    for v, t in zip(node.outputs, inferred):
        if v is None:
            continue
        why = types_conflict(v.type, t)
        if why:
            raise ShapeError(f"{node_label(node)}: output '{v.name}' is recorded as {v.type} "
                             f"but its inputs give {t} ({why})")
