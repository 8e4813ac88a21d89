"""ONNX export: writes the inference subgraph of a graph as an ONNX model that onnxruntime can run.

``export_onnx(graph_or_session, outputs, path, inputs=None)`` keeps only the nodes the outputs need,
turns variables into initializers holding their current values (a Session's trained state, or the
graph's initial values), and writes standard-domain nodes at a fixed opset. Attributes graphc filled
in with defaults that the target opset does not know are dropped; any other mismatch is an error.
Nodes of user ops (``gc.custom_op``) are written in their own domain (opset 1), all attributes kept.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import helper

from graphc.custom import custom_op_of
from graphc.errors import GraphcError
from graphc.ir import Graph, TensorType, Value
from graphc.onnx_codec import GraphEncoder, array_to_tensor, value_info
from graphc.ops import lookup

#: Opset written by default: new enough for every op the DSL emits, old enough for current onnxruntime.
DEFAULT_OPSET = 21


class ExportError(GraphcError):
    """The graph cannot be written as ONNX: an op of graphc's own domain, a missing input, an attribute the opset
    lacks."""


def _value_info(name: str, t) -> onnx.ValueInfoProto:
    """A tensor's value info; other and untyped values are written with no type."""
    return value_info(name, t if isinstance(t, TensorType) and t.dtype is not None else None)


class _Renamed(GraphEncoder):
    """Writes nodes with the values renamed as the exported model's inputs are."""

    def __init__(self, rename: dict[int, str]):
        super().__init__()
        self.rename = rename

    def value_name(self, v: Value | None) -> str:
        return "" if v is None else self.rename.get(id(v), v.name)


def _node_attrs(node, opset: int) -> dict[str, Any]:
    """The node's attributes that the target opset's schema knows (defaults it does not know are dropped)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        raise ExportError(f"{node.op_type} node '{node.name}': ONNX opset {opset} has no {node.op_type} "
                          f"operator") from None
    known = set(schema.attributes)
    opdef = lookup(node.domain, node.op_type)
    out = {}
    for k, v in node.attrs.items():
        if v is None:
            continue
        if k in known:
            out[k] = v
            continue
        default = opdef.attrs[k].default if opdef is not None and k in opdef.attrs else None
        if default is not None and v == default:
            continue
        raise ExportError(f"{node.op_type} node '{node.name}': attribute '{k}'={v!r} does not exist in ONNX "
                          f"opset {opset}; export with a newer opset")
    return out


def _named(items, what: str) -> list[tuple[str | None, Value]]:
    if items is None:
        return []
    if isinstance(items, Mapping):
        return [(k, t.value) for k, t in items.items()]
    if hasattr(items, "value"):
        items = [items]
    return [(None, t.value) for t in items]


def to_onnx_model(graph: Graph, outputs, inputs=None, variables: Mapping[str, np.ndarray] | None = None,
                  opset: int = DEFAULT_OPSET, name: str | None = None) -> onnx.ModelProto:
    """The ONNX model computing ``outputs`` (tensors, or a dict name -> tensor) from ``inputs``.

    ``inputs`` defaults to the placeholders the outputs need; tensors given as inputs cut the graph there.
    Variables become initializers with the values in ``variables`` (by name).
    """
    outs = _named(outputs, "outputs")
    ins = _named(inputs, "inputs")
    if not outs:
        raise ExportError("export_onnx: no outputs to export")
    variables = dict(variables or {})
    producer = {id(v): n for n in graph.nodes for v in n.outputs if v is not None}
    input_ids = {id(v) for _, v in ins}
    placeholders = {id(v): v for v in graph.inputs}
    var_ids = {id(v): k for k, v in graph.variables.items()}
    needed_nodes: set[int] = set()
    used_placeholders: dict[int, Value] = {}
    used_vars: dict[str, Value] = {}
    used_consts: dict[int, Value] = {}
    stack = [v for _, v in outs]
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if id(v) in input_ids:
            continue
        if id(v) in placeholders:
            used_placeholders[id(v)] = v
            continue
        if id(v) in var_ids:
            used_vars[var_ids[id(v)]] = v
            continue
        if v.data is not None:
            used_consts[id(v)] = v
            continue
        n = producer.get(id(v))
        if n is None:
            raise ExportError(f"export_onnx: '{v.name}' is neither computed by the graph nor an input")
        if id(n) not in needed_nodes:
            needed_nodes.add(id(n))
            stack.extend(x for x in n.inputs if x is not None)
    if ins and used_placeholders:
        names = ", ".join(f"'{v.name}'" for v in used_placeholders.values())
        raise ExportError(f"export_onnx: the outputs also need placeholder(s) {names}, which are not in `inputs`")
    graph_inputs = [(k, v) for k, v in ins] if ins else [(None, v) for v in graph.inputs if id(v) in used_placeholders]
    nodes = []
    rename: dict[int, str] = {}
    input_protos = []
    for k, v in graph_inputs:
        rename[id(v)] = k or v.name
        input_protos.append(_value_info(k or v.name, v.type))

    encoder = _Renamed(rename)
    nm = encoder.value_name

    custom_domains: set[str] = set()  # of user ops (gc.custom_op): written as they are, in their domain
    for n in graph.nodes:
        if id(n) not in needed_nodes:
            continue
        custom = custom_op_of(n.domain, n.op_type) if n.domain not in ("", "ai.onnx") else None
        if custom is not None:
            custom_domains.add(custom.domain)
        elif n.domain not in ("", "ai.onnx"):
            raise ExportError(f"{n.op_type} node '{n.name}' is in graphc's own domain '{n.domain}' and has no "
                              f"ONNX form; export the inference outputs only")
        if n.subgraphs():
            raise ExportError(f"{n.op_type} node '{n.name}': exporting subgraphs is not supported")
        attrs = _node_attrs(n, opset) if custom is None else {k: a for k, a in n.attrs.items() if a is not None}
        nodes.append(encoder.node(n, attrs))
    inits = []
    for v in used_consts.values():
        inits.append(array_to_tensor(v.data, nm(v)))
    for k, v in used_vars.items():
        if k not in variables:
            raise ExportError(f"export_onnx: no value for variable '{k}'")
        inits.append(array_to_tensor(variables[k], nm(v)))
    out_protos = []
    for k, v in outs:
        if k is not None and k != nm(v):
            nodes.append(helper.make_node("Identity", [nm(v)], [k], name=f"output_{k}"))
        out_protos.append(_value_info(k or nm(v), v.type))
    gp = helper.make_graph(nodes, name or graph.name, input_protos, out_protos, initializer=inits)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in sorted(custom_domains)]
    model = helper.make_model(gp, opset_imports=opsets, producer_name="graphc")
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model


def export_onnx(graph, outputs, path: str | os.PathLike, inputs=None, opset: int = DEFAULT_OPSET,
                variables: Mapping[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """Write the inference subgraph computing ``outputs`` to ``path``; returns the ModelProto.

    ``graph`` is a Graph (variables keep their initial values) or a Session (its trained values).
    ``outputs``/``inputs`` are tensors or dicts name -> tensor (dict keys name the model's inputs/outputs).
    """
    if hasattr(graph, "state") and hasattr(graph, "graph"):  # a Session
        values = dict(graph.state)
        graph = graph.graph
    else:
        values = dict(getattr(graph, "initial_values", {}))
    values.update(variables or {})
    model = to_onnx_model(graph, outputs, inputs, values, opset)
    onnx.save(model, os.fspath(path))
    return model


__all__ = ["DEFAULT_OPSET", "ExportError", "export_onnx", "to_onnx_model"]
