"""One-node graph and model builders shared by the op tests in tests/ops (imported as ``from oputil import ...``)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper

import graphc.ops  # noqa: F401  (registers the operators)
from graphc.ir import Graph, TensorType
from graphc.ops import lookup
from graphc.passes import infer_shapes

OPSET = onnx.defs.onnx_opset_version()


def T(dtype, *shape) -> TensorType:
    return TensorType(dtype, shape)


def infer_one(op: str, inputs: list, attrs: dict | None = None, n_out: int = 1, consts: dict | None = None) -> list:
    """Build a one-node graph (the node is named 'n'), complete its attributes, infer, return its output types.

    ``inputs`` holds TensorTypes (graph inputs), arrays (constants) or None (absent); ``consts`` maps input
    positions to arrays that replace the entries there with constants.
    """
    g = Graph("t")
    vals = []
    for i, x in enumerate(inputs):
        if consts and i in consts:
            vals.append(g.add_constant(np.asarray(consts[i]), f"c{i}"))
        elif x is None:
            vals.append(None)
        elif isinstance(x, np.ndarray):
            vals.append(g.add_constant(x, f"c{i}"))
        else:
            vals.append(g.add_input(f"x{i}", x))
    node = g.add_node(op, vals, dict(attrs or {}), num_outputs=n_out, name="n")
    lookup("", op).complete_attrs(node)
    g.outputs = list(node.outputs)
    infer_shapes(g)
    return [v.type for v in node.outputs]


def one_node_model(op: str, inputs: list, attrs: dict | None = None, n_out: int = 1,
                   opset: int = OPSET) -> tuple[onnx.ModelProto, dict]:
    """A one-node ONNX model over numpy ``inputs`` (None: an absent optional input); returns (model, feeds).

    Inputs are named i0, i1, ... and outputs o0, o1, ... with no declared type; trailing absent inputs are
    left off the node; object arrays are string tensors.
    """
    names = [f"i{k}" if x is not None else "" for k, x in enumerate(inputs)]
    while names and names[-1] == "":
        names.pop()
    outs = [f"o{k}" for k in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    feeds = {n: x for n, x in zip(names, inputs) if n}
    vis = [helper.make_tensor_value_info(n, TensorProto.STRING if x.dtype == object
                                         else helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
           for n, x in feeds.items()]
    ovi = [helper.make_empty_tensor_value_info(o) for o in outs]
    model = helper.make_model(helper.make_graph([node], "t", vis, ovi), opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    return model, feeds


def model(op: str, inputs: list, attrs: dict | None = None, n_out: int = 1, opset: int = OPSET) -> onnx.ModelProto:
    """``one_node_model`` without the feeds."""
    return one_node_model(op, inputs, attrs, n_out, opset)[0]
