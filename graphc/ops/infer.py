"""Type and shape inference, node by node (``infer_node``) and over a whole graph (``infer_shapes``), with
symbolic dims and small-value propagation: the op layer's service beside ``InferContext``, used by the
shape-inference pass, the DSL as it builds nodes, and the passes that rebuild types.

Each node's OpDef ``infer`` gives its output types. Values that are cheap to know before running
(constants, ``Shape`` of a static tensor, and small arithmetic on those) are propagated so that
``Reshape``/``Expand``/``Slice`` targets computed in the graph still give static shapes.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import GraphcWarning, GraphcError, ShapeError, node_label
from ..ir import DType, Graph, TensorType
from ..ir.dims import dim_factors
from ..ir.types import OptionalType, SequenceType
from ..limits import check_type
from ..limits import memory_limit as _memory_limit
from .interpret import eval_node
from .registry import InferContext, has_fact, lookup, types_conflict

#: Largest value (in elements) that inference computes ahead of time to learn shapes.
KNOWN_VALUE_LIMIT = 1024


def _merge(declared, inferred, keep=frozenset()):
    """Combine a declared type (from the model) with an inferred one, keeping the more precise dims.

    An inferred int wins; so does an inferred symbol traced to the graph inputs' symbols ``keep`` (one of
    them or a product such as ``4*batch``): it outranks an exporter's stale declaration such as a traced
    length. Any other inferred symbol was made up by inference, and a declared int, or a declared symbol
    traced to ``keep`` (``pos[:seq]`` declared ``[seq, 32]``), says more.
    """
    if declared is None:
        return inferred
    if inferred is None:
        return declared
    if not (isinstance(declared, TensorType) and isinstance(inferred, TensorType)):
        return inferred
    dtype = inferred.dtype or declared.dtype
    if inferred.shape is None:
        return TensorType(dtype, declared.shape)
    if declared.shape is None:
        return TensorType(dtype, inferred.shape)
    dims = tuple(i if isinstance(i, int) or _traced(i, keep) or not (isinstance(d, int) or _traced(d, keep))
                 else d for d, i in zip(declared.shape, inferred.shape))
    return TensorType(dtype, dims)


def _traced(d, keep) -> bool:
    """Whether a symbolic dim is one of ``keep`` or a product of them (``4*batch``)."""
    return bool(keep) and all(s in keep for s in dim_factors(d)[1])


def _input_symbols(graph: Graph) -> set:
    return {d for v in graph.inputs if isinstance(v.type, TensorType) and v.type.shape is not None
            for d in v.type.shape if isinstance(d, str)}


def _type_of_array(x) -> TensorType | None:
    if isinstance(x, np.ndarray):
        try:
            return TensorType(DType.from_np(x.dtype), x.shape)
        except TypeError:
            return None
    return None


def infer_shapes(graph: Graph, known: dict | None = None, symbolic: dict | None = None,
                 memory_limit: int | str | None = None) -> dict:
    """Infer every value's type in place; returns the map of values known ahead of time (by id).

    ``symbolic`` collects integer values known only in part (see ``InferContext.sym``).
    Raises ShapeError naming the node whose inputs contradict its rules, ResourceLimitError naming an
    output inferred larger than ``memory_limit`` bytes (graphc/limits.py) before anything computes it.
    """
    known = {} if known is None else known
    symbolic = {} if symbolic is None else symbolic
    limit = _memory_limit(memory_limit)
    for node in graph.nodes:
        infer_node(graph, node, known, symbolic, limit)
    return known


def infer_node(graph: Graph, node, known: dict, symbolic: dict, limit: int | None = None) -> None:
    """Infer one node's output types in place (its inputs' types must be known already).

    ``known`` and ``symbolic`` are the maps ``infer_shapes`` threads through a graph; a front end that
    builds a graph node by node (the DSL) keeps them and calls this as each node is created.
    ``limit``: the memory budget in bytes (None: from graphc/limits.py's configuration).
    """
    limit = _memory_limit() if limit is None else limit
    op = lookup(node.domain, node.op_type)
    if op is None:
        return
    inferred = None
    ctx = None
    if op.infer is not None:
        try:
            ctx = InferContext(node, graph, known, symbolic=symbolic,
                               infer_graph=lambda body: infer_shapes(body, dict(known), dict(symbolic), limit))
            inferred = op.infer(ctx)
        except GraphcError:
            raise
        except Exception as e:  # a bug or gap in an infer rule must not hide the model's real problem
            raise ShapeError(f"{node_label(node)}: shape inference failed: {type(e).__name__}: {e}") from e
    if inferred is None:
        inferred = [None] * len(node.outputs)
    for v, t in zip(node.outputs, inferred):  # before anything below evaluates the node ahead of time
        if v is not None:
            if isinstance(t, TensorType) and t.shape is not None and any(
                    isinstance(d, int) and d < 0 for d in t.shape):
                raise ShapeError(f"{node_label(node)}: output '{v.name}' would have the negative dims {t} "
                                 f"(check the node's attributes and input shapes)")
            check_type(f"{node_label(node)}: output '{v.name}'", _merge(v.type, t), limit)
    # Learn small values ahead of time (shape arithmetic in exported models).
    values = None
    if not has_fact(node, "nondeterministic") and not node.subgraphs():
        values = _try_known(node, known)
    for i, v in enumerate(node.outputs):
        if v is None:
            continue
        t = inferred[i] if i < len(inferred) else None
        if (values is None or values[i] is None) and ctx is not None and i in ctx.produced_sym:
            arr = _symbolic_to_array(ctx.produced_sym[i], t)
            if arr is None:
                symbolic[id(v)] = ctx.produced_sym[i]
            else:  # every entry is a number after all (e.g. the static dims of a symbolic shape)
                values = list(values) if values is not None else [None] * len(node.outputs)
                values[i] = arr
        if values is not None and values[i] is not None:
            known[id(v)] = values[i]
            t = _merge(t, _type_of_array(values[i]))
        why = types_conflict(v.type, t)
        if why and why.startswith("element type"):
            raise ShapeError(f"{node_label(node)}: output '{v.name}' is declared {v.type} "
                             f"but inferred as {t} ({why})")
        if why:
            # A declared shape is a hint that exporters sometimes leave stale (a traced length written
            # as a fixed dim): the shape inferred from the inputs wins, as in onnxruntime, with a warning.
            warnings.warn(f"{node_label(node)}: output '{v.name}' is declared {v.type} but inferred as {t} "
                          f"({why}); using the inferred shape", GraphcWarning, stacklevel=2)
            v.type = t
            continue
        v.type = _merge(v.type, t, _input_symbols(graph))


def _symbolic_to_array(dims: tuple, t) -> np.ndarray | None:
    """A partly known value whose entries are all ints, as the array it is (rank and dtype from ``t``)."""
    if not all(isinstance(d, int) for d in dims) or not isinstance(t, TensorType) or t.shape is None:
        return None
    dtype = t.dtype.np if t.dtype is not None and t.dtype.is_int else np.dtype(np.int64)
    if len(t.shape) == 0 and len(dims) == 1:
        return np.array(dims[0], dtype=dtype)
    if len(t.shape) == 1 and (not isinstance(t.shape[0], int) or t.shape[0] == len(dims)):
        return np.array(dims, dtype=dtype)
    return None


def _try_known(node, known: dict):
    args = []
    for v in node.inputs:
        if v is None:
            args.append(None)
            continue
        x = v.data if v.data is not None else known.get(id(v))
        if x is None and node.op_type == "Shape" and isinstance(v.type, TensorType) and v.type.is_static:
            x = np.empty(v.type.shape, dtype=np.uint8) if v.type.numel <= KNOWN_VALUE_LIMIT else None
            if x is None:
                return _shape_of_static(node, v)
        if x is None or (isinstance(x, np.ndarray) and x.size > KNOWN_VALUE_LIMIT):
            return None
        args.append(x)
    if node.op_type == "Shape" or all(not isinstance(a, np.ndarray) or a.size <= KNOWN_VALUE_LIMIT for a in args):
        try:
            outs = eval_node(node, args)
        except GraphcError:
            return None
        if any(isinstance(o, np.ndarray) and o.size > KNOWN_VALUE_LIMIT for o in outs):
            return None
        return outs
    return None


def _shape_of_static(node, v):
    """Shape of a large static tensor without allocating it."""
    shape = np.array(v.type.shape, dtype=np.int64)
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", None)
    return [shape[start:end]]


__all__ = ["KNOWN_VALUE_LIMIT", "infer_node", "infer_shapes"]
