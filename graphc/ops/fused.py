"""The ``graphc``-domain ``FusedGroup`` op: a group of ops that fusion made into one node.

The node's ``body`` attribute is a self-contained Graph (the group's ops): the body's inputs are the
node's inputs in order, its outputs the node's outputs. ``kind`` names the group's pattern (the most
constraining kind among its ops, e.g. ``out_fusable`` for a Conv with its epilogue), so a backend can
pick a kernel template without re-deriving it. ``eval`` runs the body on the reference interpreter;
backends with generated kernels replace it.
"""
from __future__ import annotations

from ..errors import ExecutionError, node_label
from ..ir import Graph
from .interpret import run_graph
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register

FAMILY = "fused"
DOMAIN = "graphc"


def _body(node) -> Graph:
    return node.attrs["body"]


def _fused_infer(ctx: InferContext) -> list:
    body = _body(ctx.node)
    if len(body.inputs) != ctx.n_inputs:
        ctx.fail(f"its body takes {len(body.inputs)} inputs, the node gives {ctx.n_inputs}")
    if ctx.infer_graph is not None:
        for i, v in enumerate(body.inputs):
            t = ctx.type(i)
            if t is not None:
                v.type = t
        ctx.infer_graph(body)
    return [v.type for v in body.outputs]


def _fused_eval(node, *inputs, outer=None):
    body = _body(node)
    if len(inputs) != len(body.inputs):
        raise ExecutionError(f"{node_label(node)}: its body takes {len(body.inputs)} inputs, got {len(inputs)}")
    return tuple(run_graph(body, dict(zip(body.inputs, inputs)), outer))


register(OpDef("FusedGroup", eval=_fused_eval, infer=_fused_infer, domain=DOMAIN, kind=Kind.OPAQUE,
               attrs={"body": Attr("graph", REQUIRED), "kind": Attr("string", "")},
               inputs=(0, 2**31), outputs=(1, 2**31), family=FAMILY,
               doc="FusedGroup(inputs...) -> outputs...: runs its body graph, the ops fusion grouped into one kernel."))
