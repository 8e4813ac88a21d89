"""Constant folding: nodes whose inputs are all known before running become constants.

A node folds when every input is a constant (or a value shape inference computed ahead of time, such as
``Shape`` of a static tensor), it is deterministic and has no subgraph. Its ops' own ``eval`` computes the
result, so folding agrees with execution by construction.

Folding must not inflate the model: an output larger than ``max(inputs, FOLD_FLOOR)`` elements stays a node
(an ``Expand`` or ``Tile`` of a small constant is cheaper to keep), unless the value is *needed* folded: it
feeds (possibly through other foldable nodes) a weight input of Conv/Gemm/MatMul/BatchNormalization and the
like, where later passes (BatchNorm folding, weight pre-shaping) need arrays. That is how the light CNNs'
``ConstantOfShape`` weights become constants.

A folded value keeps its Value object and name: graph outputs stay where they are.
"""
from __future__ import annotations

import numpy as np

from ..errors import GraphcError
from ..ir import DType, Graph, TensorType
from ..ops.interpret import eval_node, node_captures
from ..ops.registry import has_fact, lookup
from .dce import has_effects, remove_dead
from .infer_shapes import infer_shapes
from .manager import register_pass

#: Outputs up to this many elements fold whatever their inputs' size.
FOLD_FLOOR = 4096


def _foldable_op(node) -> bool:
    return (not has_fact(node, "nondeterministic") and not node.subgraphs() and not has_effects(node)
            and lookup(node.domain, node.op_type) is not None)


def _array(x):
    """A NumPy scalar (what NumPy returns for an op on 0-d arrays, ``np.logical_not`` of one) as a 0-d array."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def _size(x) -> int:
    return int(x.size) if isinstance(x, np.ndarray) else 0


def _fits(v, x) -> bool:
    """The array can stand for the value: an array of the value's element type and rank."""
    if not isinstance(x, np.ndarray) or x.dtype == object:
        return False
    t = v.type
    if isinstance(t, TensorType):
        if t.dtype is not None and _dtype(x) != t.dtype:
            return False
        if t.shape is not None and (len(t.shape) != x.ndim or any(
                isinstance(d, int) and d != n for d, n in zip(t.shape, x.shape))):
            return False
    return True


@register_pass("fold_constants")
def fold_constants(graph: Graph, floor: int = FOLD_FLOOR) -> bool:
    """Fold constant nodes into constants in place; True when any node folded."""
    known = infer_shapes(graph)
    const = {id(v) for v in graph.constants.values()}

    def available(v) -> bool:
        return v is None or id(v) in const or id(v) in known

    # forward: which nodes could fold; backward: which of their outputs some weight input needs
    candidates = []
    for node in graph.nodes:
        known_outs = node.outputs and all(v is None or id(v) in known for v in node.outputs)
        if _foldable_op(node) and (known_outs or all(available(v) for v in node.inputs)):
            candidates.append(node)
            const.update(id(v) for v in node.outputs if v is not None)
    cand_ids = {id(n) for n in candidates}
    needed: set[int] = set()
    for node in reversed(graph.nodes):
        # inputs that hold weights (OpDef.weight_inputs): values feeding them are worth folding at any size
        op = lookup(node.domain, node.op_type) if node.domain == "" else None
        weights = op.weight_inputs if op is not None else ()
        pass_through = id(node) in cand_ids and any(id(v) in needed for v in node.outputs if v is not None)
        for i, v in enumerate(node.inputs):
            if v is not None and (i in weights or pass_through):
                needed.add(id(v))

    values: dict[int, np.ndarray] = {id(v): v.data for v in graph.constants.values()}
    folded = set()
    for node in candidates:
        if all(v is None or id(v) in known for v in node.outputs):  # e.g. Shape of a static tensor
            outs = [_array(known.get(id(v))) if v is not None else None for v in node.outputs]
            if all(v is None or _fits(v, x) for v, x in zip(node.outputs, outs)):
                for v, x in zip(node.outputs, outs):
                    if v is not None:
                        values[id(v)] = x
                folded.add(id(node))
            continue
        args = []
        for v in node.inputs:
            args.append(None if v is None else values.get(id(v), v.data if v.data is not None else known.get(id(v))))
        if any(v is not None and a is None for v, a in zip(node.inputs, args)):
            continue  # an input that was not folded after all (too large)
        in_size = sum(_size(a) for a in args)
        try:
            outs = [_array(x) for x in eval_node(node, args)]
        except GraphcError:
            continue  # let the run report it, with the real feeds
        ok = True
        for v, x in zip(node.outputs, outs):
            if v is None:
                continue
            if not isinstance(x, np.ndarray) or x.dtype == object:
                ok = False
            elif _size(x) > max(in_size, floor) and id(v) not in needed:
                ok = False
            elif not _fits(v, x):
                ok = False  # eval disagrees with inference: keep the node so the run shows it
        if not ok:
            continue
        for v, x in zip(node.outputs, outs):
            if v is not None:
                values[id(v)] = x
        folded.add(id(node))
    if not folded:
        return False
    # Turn folded outputs that anything still reads into constants (keeping the Value and its name).
    readers = {id(v) for n in graph.nodes if id(n) not in folded for v in n.inputs if v is not None}
    readers |= {id(v) for v in graph.outputs}
    for n in graph.nodes:
        if id(n) not in folded and n.subgraphs():
            readers |= {id(v) for v in node_captures(n)}
    for node in graph.nodes:
        if id(node) not in folded:
            continue
        for v in node.outputs:
            if v is None or id(v) not in readers:
                continue
            x = values[id(v)]
            v.data = np.ascontiguousarray(x) if not x.flags.c_contiguous else x
            v.type = TensorType(DType.from_np(x.dtype), x.shape)
            v.producer = None
            graph.constants[v.name] = v
    graph.nodes = [n for n in graph.nodes if id(n) not in folded]
    remove_dead(graph)
    return True


def _dtype(x: np.ndarray) -> DType | None:
    try:
        return DType.from_np(x.dtype)
    except TypeError:
        return None
