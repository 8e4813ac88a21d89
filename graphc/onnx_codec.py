"""The ONNX codec: converts between onnx protos and the IR (types, value infos, tensors, attributes, nodes, graphs).

The one place that knows how an IR thing is spelled in ONNX and back; the importer (frontends/onnx),
the exporter and the plan file format (graphc/plan.py) all go through it. Reading: ``Decoder`` turns
tensors (external data only from inside the model's folder, sizes checked against a memory budget before
anything is decoded), sparse tensors, types and attributes into IR values; a caller walks the graph, since
the importer and the plan reader walk it differently (the importer sorts, inlines functions and upgrades
opsets). Writing: ``GraphEncoder`` turns a Graph into a GraphProto, each attribute typed by its OpDef;
a subclass chooses how constants are written and which domain a node goes to (the plan format overrides
both). It sits above ``graphc.ops`` (it asks the OpDefs for attribute types) and below the passes.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

from .errors import ExternalDataError, ModelLoadError
from .ir import DType, Graph, Node, TensorType, Value
from .ir.types import MapType, OptionalType, SequenceType
from .limits import check_size
from .ops.registry import lookup

#: The IR's name for each ONNX attribute type (the ``type`` of an OpDef's attribute spec).
ATTR_KIND = {
    AttributeProto.INT: "int", AttributeProto.FLOAT: "float", AttributeProto.STRING: "string",
    AttributeProto.INTS: "ints", AttributeProto.FLOATS: "floats", AttributeProto.STRINGS: "strings",
    AttributeProto.TENSOR: "tensor", AttributeProto.TENSORS: "tensors", AttributeProto.GRAPH: "graph",
    AttributeProto.GRAPHS: "graphs", AttributeProto.SPARSE_TENSOR: "sparse_tensor",
    AttributeProto.TYPE_PROTO: "type_proto", AttributeProto.TYPE_PROTOS: "type_protos",
}


# ---- types and value infos ----------------------------------------------------------------------
def type_to_proto(t) -> onnx.TypeProto:
    """The TypeProto of an IR type (an empty one for None)."""
    tp = onnx.TypeProto()
    if isinstance(t, TensorType):
        if t.dtype is not None:
            tp.tensor_type.elem_type = t.dtype.value
        if t.shape is not None:
            tp.tensor_type.shape.SetInParent()
            for d in t.shape:
                dim = tp.tensor_type.shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                else:
                    dim.dim_param = d
    elif isinstance(t, SequenceType):
        tp.sequence_type.SetInParent()
        if t.elem is not None:
            tp.sequence_type.elem_type.CopyFrom(type_to_proto(t.elem))
    elif isinstance(t, OptionalType):
        tp.optional_type.SetInParent()
        if t.elem is not None:
            tp.optional_type.elem_type.CopyFrom(type_to_proto(t.elem))
    elif isinstance(t, MapType):
        tp.map_type.key_type = t.key.value
        if t.value is not None:
            tp.map_type.value_type.CopyFrom(type_to_proto(t.value))
    return tp


def value_info(name: str, t) -> onnx.ValueInfoProto:
    """A ValueInfoProto naming ``name``, typed by ``t`` (no type when ``t`` is None)."""
    vi = onnx.ValueInfoProto()
    vi.name = name
    if t is not None:
        vi.type.CopyFrom(type_to_proto(t))
    return vi


#: dim_param spellings exporters use for "unknown" rather than a name: each occurrence is its own symbol
#: (paddle2onnx writes "?" for every unknown dim of an input; a repeated "?" must not tie two dims together).
ANONYMOUS_DIMS = frozenset({"?", "-1", "None", "none", "unk", "unknown"})


def type_from_proto(tp: onnx.TypeProto, graph: Graph, where: str | None = None):
    """The IR type of a TypeProto. A dim with neither value nor name, a negative value (``-1``) or an
    anonymous name (ANONYMOUS_DIMS, such as ``?``) gets a fresh symbol of ``graph`` at each occurrence; a real
    name (``N``, ``batch``) is one symbol wherever it appears. Element type 0 (undefined) gives an unknown type;
    a code that is no ONNX element type raises ModelLoadError naming ``where`` (the value or attribute)."""
    which = tp.WhichOneof("value")
    if which == "tensor_type" or which == "sparse_tensor_type":
        tt = getattr(tp, which)
        try:
            dtype = DType(tt.elem_type) if tt.elem_type else None
        except ValueError:
            raise ModelLoadError(f"{where or 'a type'}: element type {tt.elem_type} is not an ONNX element type "
                                 f"(known codes: {', '.join(f'{d.value} {d.name}' for d in DType)})") from None
        if not tt.HasField("shape"):
            return TensorType(dtype, None)
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param and d.dim_param not in ANONYMOUS_DIMS:
                dims.append(d.dim_param)
            else:
                dims.append(graph.fresh_symbol())
        return TensorType(dtype, tuple(dims))
    if which == "sequence_type":
        st = tp.sequence_type
        return SequenceType(type_from_proto(st.elem_type, graph, where) if st.HasField("elem_type") else None)
    if which == "optional_type":
        ot = tp.optional_type
        return OptionalType(type_from_proto(ot.elem_type, graph, where) if ot.HasField("elem_type") else None)
    if which == "map_type":
        try:
            key = DType(tp.map_type.key_type)
        except ValueError:
            raise ModelLoadError(f"{where or 'a map type'}: map key type {tp.map_type.key_type} is not an ONNX "
                                 f"element type") from None
        mt = tp.map_type
        return MapType(key, type_from_proto(mt.value_type, graph, where) if mt.HasField("value_type") else None)
    return None


# ---- tensors ------------------------------------------------------------------------------------
def array_to_tensor(data, name: str = "") -> TensorProto:
    """The TensorProto of an array (its bytes copied into the proto)."""
    return numpy_helper.from_array(np.asarray(data), name)


def constant_value(name: str, data: np.ndarray) -> Value:
    """A constant Value holding ``data`` (string arrays are typed ``string``)."""
    dtype = DType.from_np(data.dtype) if data.dtype != object else DType.string
    return Value(name, TensorType(dtype, data.shape), data=data)


#: Element types whose raw bytes are the array's bytes as they are (no packing, no ml_dtypes conversion).
_PLAIN_TYPES = frozenset({TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.UINT16, TensorProto.INT16,
                          TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL, TensorProto.FLOAT16,
                          TensorProto.DOUBLE, TensorProto.UINT32, TensorProto.UINT64})


def _read_external(t: TensorProto, model_dir: str | None, label: str) -> bytes:
    """The bytes of a tensor kept in an external file (which must lie inside ``model_dir``)."""
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    where = f"{label}: tensor '{t.name}'"
    if model_dir is None:
        raise ExternalDataError(f"{where} keeps its data in an external file ('{loc}'), but the model was given "
                                f"as bytes or a proto; load it from its path so the file can be found")
    if not loc or os.path.isabs(loc) or ".." in loc.replace("\\", "/").split("/"):
        raise ExternalDataError(f"{where}: external data location '{loc}' must be a relative path inside "
                                f"the model's folder {model_dir}")
    full = os.path.realpath(os.path.join(model_dir, loc))
    root = os.path.realpath(model_dir)
    if os.path.commonpath([full, root]) != root:
        raise ExternalDataError(f"{where}: external data location '{loc}' resolves to {full}, outside the model's "
                                f"folder {root}")
    if not os.path.isfile(full):
        raise ExternalDataError(f"{where}: external data file '{loc}' does not exist in {root}")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ExternalDataError(f"{where}: external data offset/length are not integers: {info}") from None
    size = os.path.getsize(full)
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
        raise ExternalDataError(f"{where}: external data range offset={offset} length={length} lies outside "
                                f"'{loc}' ({size} bytes)")
    with open(full, "rb") as f:
        f.seek(offset)
        return f.read(length if length is not None else -1)


def _decode_raw(t: TensorProto, raw: bytes) -> np.ndarray:
    """``numpy_helper.to_array`` of ``t`` holding ``raw`` as its raw data. Where the bytes need no conversion,
    the array is a view of them (not first copied into a TensorProto: the weights are held once)."""
    if t.data_type in _PLAIN_TYPES and not t.HasField("segment") and sys.byteorder == "little":
        return np.frombuffer(raw, dtype=DType(t.data_type).np).reshape(tuple(t.dims))
    copy = TensorProto()
    copy.CopyFrom(t)
    del copy.external_data[:]
    copy.data_location = TensorProto.DEFAULT
    copy.raw_data = raw
    return numpy_helper.to_array(copy)


def tensor_to_array(t: TensorProto, model_dir: str | None = None, label: str = "model", limit: int = 0) -> np.ndarray:
    """Decode a TensorProto (reading external data from inside ``model_dir``); ``limit`` bounds its bytes."""
    try:
        DType(t.data_type)
    except ValueError:
        raise ModelLoadError(f"{label}: tensor '{t.name}' has unknown element type code {t.data_type}") from None
    # Before reading or decoding anything: a few bytes of protobuf may declare dims of 10^18 elements.
    check_size(f"{label}: tensor '{t.name}'", DType(t.data_type), [int(d) for d in t.dims], limit)
    raw = _read_external(t, model_dir, label) if t.data_location == TensorProto.EXTERNAL else None
    try:
        arr = numpy_helper.to_array(t) if raw is None else _decode_raw(t, raw)
    except Exception as e:
        raise ModelLoadError(f"{label}: tensor '{t.name}' ({DType(t.data_type).name}{list(t.dims)}) cannot be "
                             f"decoded: {e}") from None
    # np.ascontiguousarray turns a 0-d array into shape (1,): keep scalars scalar.
    return np.ascontiguousarray(arr).reshape(arr.shape) if isinstance(arr, np.ndarray) else arr


def sparse_to_array(sp, model_dir: str | None = None, label: str = "model", limit: int = 0) -> np.ndarray:
    """A SparseTensorProto as a dense array; indices are checked against its dims."""
    values = tensor_to_array(sp.values, model_dir, label, limit)
    indices = tensor_to_array(sp.indices, model_dir, label, limit)
    dims = tuple(int(d) for d in sp.dims)
    where = f"{label}: sparse tensor '{sp.values.name}'"
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{where}: dims must be >= 0, got {list(dims)}")
    check_size(where, DType.from_np(values.dtype) if values.dtype != object else DType.string, dims, limit)
    n = values.size
    if values.ndim != 1 or indices.dtype.kind not in "iu" or not (
            (indices.ndim == 1 and indices.shape[0] == n) or (indices.ndim == 2 and indices.shape == (n, len(dims)))):
        raise ModelLoadError(f"{where}: expected 1-D values [NNZ] and int64 indices [NNZ] or [NNZ, {len(dims)}], "
                             f"got values {list(values.shape)} and indices {indices.dtype}{list(indices.shape)}")
    bound = int(np.prod(dims, dtype=object)) if indices.ndim == 1 else np.array(dims, dtype=np.int64)
    if indices.size and (np.any(indices < 0) or np.any(indices >= bound)):
        raise ModelLoadError(f"{where}: an index lies outside the dims {list(dims)}")
    dense = np.zeros(dims, dtype=values.dtype)
    if indices.ndim == 1:
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


def array_to_sparse(arr) -> onnx.SparseTensorProto:
    """The SparseTensorProto of a dense array: its nonzero elements and their flat indices."""
    arr = np.asarray(arr)
    idx = np.flatnonzero(arr).astype(np.int64)
    return onnx.helper.make_sparse_tensor(array_to_tensor(arr.reshape(-1)[idx]), array_to_tensor(idx),
                                          list(arr.shape))


# ---- a model's weights left in its file ------------------------------------------------------------
#: Initializers with at least this many bytes of raw data are read from the model file one at a time.
IN_FILE_MIN_BYTES = 1 << 16

_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5  # field numbers in onnx.proto
_TENSOR_DATA_TYPE, _TENSOR_SEGMENT, _TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 2, 3, 9, 13, 14


class _Malformed(Exception):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _fields(buf, start: int, end: int):
    """(field number, wire type, where the field starts, where its payload starts, where it ends) of each
    field of the message in ``buf[start:end]``."""
    pos = start
    while pos < end:
        tag, p = _varint(buf, pos, end)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _Malformed
        if wire == 0:
            _, stop = _varint(buf, p, end)
        elif wire == 1:
            stop = p + 8
        elif wire == 5:
            stop = p + 4
        elif wire == 2:
            n, p = _varint(buf, p, end)
            stop = p + n
        else:  # groups: not in onnx.proto
            raise _Malformed
        if stop > end:
            raise _Malformed
        yield field, wire, pos, p, stop
        pos = stop


def _length_delimited(field: int, parts: list) -> list:
    size = sum(len(x) for x in parts)
    return [_encode_varint(field << 3 | 2), _encode_varint(size), *parts]


def _tensor_in_file(buf, start: int, end: int, location: str, min_bytes: int) -> list | None:
    """The parts of a TensorProto whose raw data stays in the file (an external-data reference to it), or
    None to keep the tensor as it is."""
    fields = list(_fields(buf, start, end))
    raw = [f for f in fields if f[0] == _TENSOR_RAW_DATA]
    dtype = [f for f in fields if f[0] == _TENSOR_DATA_TYPE]
    if len(raw) != 1 or raw[0][1] != 2 or raw[0][4] - raw[0][3] < min_bytes or len(dtype) != 1 or dtype[0][1] != 0:
        return None
    if any(f[0] in (_TENSOR_SEGMENT, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION) for f in fields):
        return None
    if _varint(buf, dtype[0][3], dtype[0][4])[0] not in _PLAIN_TYPES:
        return None
    parts = [buf[f[2]:f[4]] for f in fields if f[0] != _TENSOR_RAW_DATA]
    for key, value in (("location", location), ("offset", str(raw[0][3])), ("length", str(raw[0][4] - raw[0][3]))):
        entry = _length_delimited(1, [key.encode()]) + _length_delimited(2, [value.encode()])
        parts += _length_delimited(_TENSOR_EXTERNAL_DATA, entry)
    parts += [_encode_varint(_TENSOR_DATA_LOCATION << 3), _encode_varint(TensorProto.EXTERNAL)]
    return parts


def weights_left_in_file(buf, location: str, min_bytes: int = IN_FILE_MIN_BYTES) -> bytes | None:
    """The serialized model ``buf`` (the bytes of the file ``location``, e.g. an mmap) with the raw data of
    its main graph's large initializers left in the file: each becomes an external-data reference to its
    own bytes there, so that decoding reads one tensor at a time instead of the whole model twice (file
    bytes and proto). Only the message headers are read: the weights' pages are not touched. None when
    nothing would move or ``buf`` is not a model this can follow (then parse it as it is)."""
    try:
        end = len(buf)
        graphs = [f for f in _fields(buf, 0, end) if f[0] == _MODEL_GRAPH]
        if len(graphs) != 1 or graphs[0][1] != 2:
            return None
        _, _, g_field, g_start, g_end = graphs[0]
        graph_parts: list = []
        moved = False
        for field, wire, at, p, stop in _fields(buf, g_start, g_end):
            tensor = _tensor_in_file(buf, p, stop, location, min_bytes) \
                if field == _GRAPH_INITIALIZER and wire == 2 else None
            if tensor is None:
                graph_parts.append(buf[at:stop])
            else:
                graph_parts += _length_delimited(_GRAPH_INITIALIZER, tensor)
                moved = True
    except _Malformed:
        return None
    if not moved:
        return None
    return b"".join([buf[:g_field], *_length_delimited(_MODEL_GRAPH, graph_parts), buf[g_end:]])


# ---- attributes ---------------------------------------------------------------------------------
def decode_string(b: bytes) -> str:
    """An attribute string: UTF-8, else Latin-1 (older exporters wrote either)."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


class Decoder:
    """Reads a model's tensors and attributes: ``label`` names the model in errors, external data comes only
    from inside ``model_dir``, and no tensor larger than ``limit`` bytes (0: unchecked) is decoded."""

    def __init__(self, label: str, model_dir: str | None = None, limit: int = 0):
        self.label = label
        self.model_dir = model_dir
        self.limit = limit

    def tensor(self, t: TensorProto) -> np.ndarray:
        return tensor_to_array(t, self.model_dir, self.label, self.limit)

    def sparse(self, sp) -> np.ndarray:
        return sparse_to_array(sp, self.model_dir, self.label, self.limit)

    def attribute(self, a: AttributeProto, graph: Graph, subgraph: Callable[[onnx.GraphProto], Graph]) -> Any:
        """The IR value of an attribute of a node of ``graph``; ``subgraph`` reads a GRAPH attribute's body.
        The caller rejects an attribute whose type is not in ``ATTR_KIND`` first (naming the node)."""
        t = a.type
        if t == AttributeProto.INT:
            return int(a.i)
        if t == AttributeProto.FLOAT:
            return float(a.f)
        if t == AttributeProto.STRING:
            return decode_string(a.s)
        if t == AttributeProto.INTS:
            return [int(x) for x in a.ints]
        if t == AttributeProto.FLOATS:
            return [float(x) for x in a.floats]
        if t == AttributeProto.STRINGS:
            return [decode_string(x) for x in a.strings]
        if t == AttributeProto.TENSOR:
            return self.tensor(a.t)
        if t == AttributeProto.TENSORS:
            return [self.tensor(x) for x in a.tensors]
        if t == AttributeProto.SPARSE_TENSOR:
            return self.sparse(a.sparse_tensor)
        if t == AttributeProto.GRAPH:
            return subgraph(a.g)
        if t == AttributeProto.GRAPHS:
            return [subgraph(x) for x in a.graphs]
        if t == AttributeProto.TYPE_PROTO:
            return type_from_proto(a.tp, graph, f"attribute '{a.name}'")
        if t == AttributeProto.TYPE_PROTOS:
            return [type_from_proto(x, graph, f"attribute '{a.name}'") for x in a.type_protos]
        raise ValueError(f"attribute '{a.name}' has no type")


def attribute_kind(a: Any) -> str:
    """The attribute type of a value on a node without an OpDef (kept as the model had it)."""
    if isinstance(a, Graph):
        return "graph"
    if isinstance(a, bool) or isinstance(a, (int, np.integer)):
        return "int"
    if isinstance(a, (float, np.floating)):
        return "float"
    if isinstance(a, str):
        return "string"
    if isinstance(a, np.ndarray):
        return "tensor"
    if isinstance(a, (list, tuple)) and a:
        inner = attribute_kind(a[0])
        return {"graph": "graphs", "int": "ints", "float": "floats", "string": "strings", "tensor": "tensors"}[inner]
    return "ints"


_SIMPLE = {"int": (AttributeProto.INT, int), "float": (AttributeProto.FLOAT, float),
           "string": (AttributeProto.STRING, str), "ints": (AttributeProto.INTS, lambda x: [int(e) for e in x]),
           "floats": (AttributeProto.FLOATS, lambda x: [float(e) for e in x]),
           "strings": (AttributeProto.STRINGS, lambda x: [str(e) for e in x])}


def attribute_to_proto(name: str, a: Any, kind: str,
                       subgraph: Callable[[Graph], onnx.GraphProto] | None = None) -> AttributeProto:
    """The AttributeProto ``name`` holding ``a`` as ONNX attribute type ``kind`` (see ``ATTR_KIND``);
    ``subgraph`` writes a GRAPH attribute's body."""
    make = onnx.helper.make_attribute
    if kind in ("graph", "graphs"):
        if subgraph is None:
            raise ValueError(f"attribute '{name}' holds a graph, and no subgraph writer was given")
        if kind == "graph":
            return make(name, subgraph(a), attr_type=AttributeProto.GRAPH)
        return make(name, [subgraph(x) for x in a], attr_type=AttributeProto.GRAPHS)
    if kind == "tensor":
        return make(name, array_to_tensor(a), attr_type=AttributeProto.TENSOR)
    if kind == "tensors":
        return make(name, [array_to_tensor(x) for x in a], attr_type=AttributeProto.TENSORS)
    if kind == "sparse_tensor":
        return make(name, array_to_sparse(a), attr_type=AttributeProto.SPARSE_TENSOR)
    if kind == "type_proto":
        return make(name, type_to_proto(a), attr_type=AttributeProto.TYPE_PROTO)
    if kind == "type_protos":
        return make(name, [type_to_proto(x) for x in a], attr_type=AttributeProto.TYPE_PROTOS)
    code, conv = _SIMPLE[kind]
    return make(name, conv(a), attr_type=code)


def node_attribute_kind(node: Node, name: str) -> str:
    """The ONNX type of attribute ``name`` of ``node``: its OpDef's, else guessed from the value."""
    op = lookup(node.domain, node.op_type)
    spec = op.attrs.get(name) if op is not None else None
    return spec.type if spec is not None else attribute_kind(node.attrs[name])


# ---- nodes and graphs ---------------------------------------------------------------------------
class GraphEncoder:
    """Writes Graphs as GraphProtos. ``node_domain``, ``constant`` and ``value_name`` are the hooks a file
    format overrides (by default a node keeps its domain, a constant becomes an initializer and a value keeps
    its name); ``opsets`` collects the domains written (version 1 unless the format says otherwise)."""

    def __init__(self):
        self.opsets: dict[str, int] = {}

    def opset(self, domain: str) -> int:
        """The opset version the model will import for ``domain`` (recorded on first use)."""
        return self.opsets.setdefault(domain, 1)

    def node_domain(self, n: Node) -> tuple[str, dict[str, str]]:
        """(the domain ``n`` is written in, metadata_props for the NodeProto)."""
        self.opset(n.domain)
        return n.domain, {}

    def value_name(self, v: Value | None) -> str:
        """The name ``v`` is written under ("" for a missing optional input or output)."""
        return "" if v is None else v.name

    def constant(self, g: Graph, name: str, data: np.ndarray, gp: onnx.GraphProto) -> None:
        """Write one of ``g``'s constants into ``gp``."""
        gp.initializer.append(array_to_tensor(data, name))

    def graph(self, g: Graph, extra_inputs: list[Value] = ()) -> onnx.GraphProto:
        """``g`` as a GraphProto: inputs (then ``extra_inputs``), constants, nodes, outputs, and a value info
        for every typed intermediate value."""
        gp = onnx.GraphProto()
        gp.name = g.name
        gp.input.extend(value_info(v.name, v.type) for v in [*g.inputs, *extra_inputs])
        for name, v in g.constants.items():
            self.constant(g, name, np.asarray(v.data), gp)
        for n in g.nodes:
            gp.node.append(self.node(n))
        gp.output.extend(value_info(v.name, v.type) for v in g.outputs)
        outs = {id(v) for v in g.outputs}
        for n in g.nodes:
            for v in n.outputs:
                if v is not None and id(v) not in outs and v.type is not None:
                    gp.value_info.append(value_info(v.name, v.type))
        return gp

    def node(self, n: Node, attrs: dict[str, Any] | None = None) -> onnx.NodeProto:
        """``n`` as a NodeProto with ``attrs`` (default: the node's own; None values are left out)."""
        domain, meta = self.node_domain(n)
        node = onnx.helper.make_node(n.op_type, [self.value_name(v) for v in n.inputs],
                                     [self.value_name(v) for v in n.outputs], name=n.name, domain=domain)
        for k, a in (n.attrs if attrs is None else attrs).items():
            if a is not None:
                node.attribute.append(attribute_to_proto(k, a, node_attribute_kind(n, k), self.graph))
        for k, v in meta.items():
            e = node.metadata_props.add()
            e.key, e.value = k, v
        return node


__all__ = ["ATTR_KIND", "Decoder", "GraphEncoder", "array_to_sparse", "array_to_tensor", "attribute_kind",
           "attribute_to_proto", "constant_value", "decode_string", "node_attribute_kind", "sparse_to_array",
           "tensor_to_array", "type_from_proto", "type_to_proto", "value_info", "weights_left_in_file"]
