"""Algebraic simplification: a table of rewrite rules that remove work without changing results.

Identity and inference-mode Dropout go; Cast to the type a value already has, Reshape/Expand to the shape it
already has, and transposes by the identity permutation go; chains of Reshape/Flatten/Squeeze/Unsqueeze
become one Reshape, chains of Transpose one Transpose; ``x*1``, ``x/1``, ``x+0``, ``x-0`` become ``x`` when the
constant does not broadcast ``x`` to a larger shape or change its type.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Value
from ..ops.registry import has_fact, ops_with
from .manager import register_pass
from .rewrite import Editor, Match, P, Rule, all_equal, apply_rules, dtype_of, rule_table, static_shape


def _keeps_type(out: Value, x: Value) -> bool:
    """``out`` has exactly ``x``'s dtype and (fully known) shape, so ``x`` can stand for it."""
    so, sx = static_shape(out), static_shape(x)
    return (so is not None and so == sx and dtype_of(out) is not None and dtype_of(out) == dtype_of(x))


def _same_as(name: str):
    def build(ed: Editor, m: Match):
        x = m[name]
        return x if _keeps_type(m.root.outputs[0], x) else None

    return build


# ---- Dropout in inference mode ---------------------------------------------------------------------
def _find_dropout(ed: Editor, node) -> Match | None:
    x = node.inputs[0]
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is not None and (training.data is None or bool(np.asarray(training.data).reshape(-1)[0])):
        return None
    return Match(node, {"x": x}, [node])


def _build_dropout(ed: Editor, m: Match):
    return [m["x"], None]  # the mask output must have no reader (checked by the engine)


# ---- Cast to the same type -----------------------------------------------------------------------------
def _build_cast(ed: Editor, m: Match):
    x, out = m["x"], m.root.outputs[0]
    return x if dtype_of(x) is not None and dtype_of(x) == dtype_of(out) else None


# ---- Reshape-like chains -----------------------------------------------------------------------------
#: The reshape-like ops (OpDef.reshape): Reshape, Flatten, Squeeze, Unsqueeze.
RESHAPES = ops_with("reshape")


def _find_reshape_chain(ed: Editor, node) -> Match | None:
    """The longest chain of reshape-like nodes ending at ``node`` whose inner links have one reader each."""
    chain = [node]
    x = node.inputs[0]
    while x is not None and x.producer is not None and has_fact(x.producer, "reshape") and \
            x.producer.domain == "" and ed.n_uses(x) == 1:
        chain.append(x.producer)
        x = x.producer.inputs[0]
    return Match(node, {"x": x}, chain)


def _reshape_target(x_shape: tuple, out_shape: tuple) -> list[int] | None:
    """A Reshape target (allowzero=0) for ``out_shape``: ints, 0 to copy an equal symbolic dim, one -1."""
    target, neg = [], 0
    for k, d in enumerate(out_shape):
        if isinstance(d, int):
            if d == 0:
                return None  # would read as "copy"; such shapes are rare enough to leave alone
            target.append(d)
        elif k < len(x_shape) and x_shape[k] == d:
            target.append(0)
        else:
            neg += 1
            target.append(-1)
    return target if neg <= 1 else None


def _build_reshape_chain(ed: Editor, m: Match):
    x, out = m["x"], m.root.outputs[0]
    if _keeps_type(out, x):
        return x
    if len(m.nodes) < 2 and m.root.op_type != "Reshape":
        return None
    so, sx = static_shape(out), static_shape(x)
    if so is None or sx is None or any(d is None for d in so):
        return None
    target = _reshape_target(sx, so)
    if target is None:
        return None
    if len(m.nodes) < 2:  # a lone Reshape: only worth rewriting when its target is computed in the graph
        shape_in = m.root.inputs[1]
        if shape_in.data is not None:
            return None
    return ed.op("Reshape", x, ed.const(np.array(target, np.int64), "shape"), name=m.root.name)


# ---- Transpose -----------------------------------------------------------------------------------------
def _perm(node, rank: int | None) -> list[int] | None:
    p = node.attrs.get("perm")
    if p is None:
        return None if rank is None else list(range(rank))[::-1]
    return [int(a) for a in p]


def _find_transpose(ed: Editor, node) -> Match | None:
    x = node.inputs[0]
    chain = [node]
    while x is not None and x.producer is not None and x.producer.op_type == "Transpose" and \
            x.producer.domain == "" and ed.n_uses(x) == 1:
        chain.append(x.producer)
        x = x.producer.inputs[0]
    return Match(node, {"x": x}, chain)


def _build_transpose(ed: Editor, m: Match):
    x = m["x"]
    sx = static_shape(x)
    rank = None if sx is None else len(sx)
    perm = list(range(rank)) if rank is not None else None
    for node in reversed(m.nodes):  # from the first transpose applied to the last
        p = _perm(node, rank)
        if p is None:
            return None
        perm = p if perm is None else [perm[i] for i in p]
    if perm == sorted(perm):
        return x if dtype_of(x) == dtype_of(m.root.outputs[0]) else None
    if len(m.nodes) < 2:
        return None
    return ed.op("Transpose", x, perm=perm, name=m.root.name)


# ---- x*1, x+0 ------------------------------------------------------------------------------------------
ONE, ZERO = all_equal(1.0), all_equal(0.0)

RULES = [
    Rule("identity", _same_as("x"), P("Identity", P.any("x"))),
    Rule("dropout_inference", _build_dropout, find=_find_dropout, ops=("Dropout",)),
    Rule("cast_to_same_type", _build_cast, P("Cast", P.any("x"))),
    Rule("castlike_to_same_type", _build_cast, P("CastLike", P.any("x"), P.any("like"))),
    Rule("reshape_chain", _build_reshape_chain, find=_find_reshape_chain, ops=RESHAPES),
    Rule("expand_to_same_shape", _same_as("x"), P("Expand", P.any("x"), P.any("shape"))),
    Rule("transpose_chain", _build_transpose, find=_find_transpose, ops=("Transpose",)),
    Rule("mul_by_one", _same_as("x"), P("Mul", P.any("x"), P.const("c", ONE))),
    Rule("div_by_one", _same_as("x"), P("Div", P.any("x"), P.const("c", ONE))),
    Rule("add_zero", _same_as("x"), P("Add", P.any("x"), P.const("c", ZERO))),
    Rule("sub_zero", _same_as("x"), P("Sub", P.any("x"), P.const("c", ZERO))),
    Rule("pow_one", _same_as("x"), P("Pow", P.any("x"), P.const("c", ONE))),
    Rule("concat_of_one", _same_as("x"), P("Concat", P.any("x"))),
]

TABLE = rule_table(RULES)


@register_pass("simplify_algebra")
def simplify_algebra(graph: Graph, applied: dict | None = None) -> bool:
    return apply_rules(graph, TABLE, applied=applied)
