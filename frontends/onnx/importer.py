"""Imports an ONNX model into a graphc Graph.

Initializers become constants, each node is checked against its OpDef (attributes, arity) and
rewritten from its opset into the newest form of the op, model-local functions are inlined, and
standard ops graphc has no OpDef for but that ONNX defines as a function are expanded into that
function's body. Every unsupported op is reported at once. External data is read only from inside
the model's folder.
"""
from __future__ import annotations

import mmap
import os
from typing import Any

import onnx
from onnx import AttributeProto

from graphc.errors import GraphcError, InvalidGraphError, ModelLoadError, OpAttributeError, UnsupportedOpError, node_label
from graphc.ir import Graph, Node, TensorType, Value
from graphc.ir.graph import resolve_scoped
from graphc.limits import memory_limit as _memory_limit
from graphc.onnx_codec import ATTR_KIND, Decoder, constant_value, type_from_proto, type_to_proto, weights_left_in_file
from graphc.ops import lookup
from graphc.ops.registry import canonical_domain
from graphc.passes import infer_shapes

# ---- loading ----------------------------------------------------------------------------------
def load_model_proto(source: Any, weights_in_file: bool = False) -> tuple[onnx.ModelProto, str | None, str]:
    """Read a model from a path, bytes or ModelProto. Returns (proto, its folder or None, a label).

    ``weights_in_file``: a model read from a path keeps its large initializers' bytes in the file, as
    external-data references to the file itself (``onnx_codec.weights_left_in_file``); decoding them then
    reads one at a time, and the process never holds the whole file beside the parsed proto.
    """
    if isinstance(source, onnx.ModelProto):
        return source, None, "<ModelProto>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(bytes(source), "<bytes>"), None, "<bytes>"
    path = os.fspath(source)
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a folder, expected an .onnx file")
    model_dir = os.path.dirname(os.path.abspath(path))
    model = _parse_leaving_weights(path, model_dir) if weights_in_file else None
    if model is not None:
        return model, model_dir, path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read: {e.strerror}") from None
    return _parse(data, path), model_dir, path


def _parse_leaving_weights(path: str, model_dir: str) -> onnx.ModelProto | None:
    """The model at ``path`` with its large initializers left in the file, or None where that does not
    apply (nothing large, the path is a link out of its folder, the bytes do not parse: then the whole
    file is read as usual, and its errors are reported as usual)."""
    name = os.path.basename(path)
    if "\\" in name or os.path.realpath(path) != os.path.join(os.path.realpath(model_dir), name):
        return None
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            data = weights_left_in_file(mm, name)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None
    if data is None:
        return None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError: the full read reports it
        return None
    return model if model.HasField("graph") and model.ir_version > 0 else None


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"{label}: not a valid ONNX model (protobuf decoding failed after reading "
                             f"{len(data)} bytes: {e}); the file may be truncated or of another format") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise ModelLoadError(f"{label}: not an ONNX model: it has no graph or no IR version "
                             f"({len(data)} bytes read)")
    return model


# ---- the importer -----------------------------------------------------------------------------
class _Importer:
    def __init__(self, model: onnx.ModelProto, model_dir: str | None, label: str, limit: int = 0):
        self.model = model
        self.label = label
        self.decoder = Decoder(label, model_dir, limit)  # tensors, types and attributes
        self.opsets = {canonical_domain(o.domain): int(o.version) for o in model.opset_import}
        if "" not in self.opsets and any(n.domain in ("", "ai.onnx") for n in model.graph.node):
            raise ModelLoadError(f"{label}: the model declares no opset for the default ONNX domain")
        self.functions = {(f.domain, f.name): f for f in model.functions}
        self.missing: dict[tuple[str, str, int], list[str]] = {}
        self.expanded: dict[str, int] = {}
        # The graphs being imported, outermost first: _stack[i] owns scope level i of `outer + [scope]`.
        self._stack: list[Graph] = []

    # -- graphs --
    def import_graph(self, gp: onnx.GraphProto, outer: list[dict[str, Value]], parent: Graph | None) -> Graph:
        g = Graph(gp.name or "main")
        g.opset = dict(self.opsets)
        if parent is not None:
            g._symbols = parent._symbols
        self._stack.append(g)
        try:
            return self._fill_graph(g, gp, outer)
        finally:
            self._stack.pop()

    def _fill_graph(self, g: Graph, gp: onnx.GraphProto, outer: list[dict[str, Value]]) -> Graph:
        scope: dict[str, Value] = {}
        init_names = set()
        for t in gp.initializer:
            v = constant_value(t.name, self.decoder.tensor(t))
            g.reserve_name(t.name)
            g.constants[t.name] = v
            scope[t.name] = v
            init_names.add(t.name)
        for sp in gp.sparse_initializer:
            name = sp.values.name
            v = constant_value(name, self.decoder.sparse(sp))
            g.reserve_name(name)
            g.constants[name] = v
            scope[name] = v
            init_names.add(name)
        for kind, vis in (("input", gp.input), ("output", gp.output), ("value_info", gp.value_info)):
            for vi in vis:  # element types checked up front: an unknown code is refused, naming the value
                if vi.HasField("type"):
                    type_from_proto(vi.type, g, f"{self.label}: graph '{g.name}' {kind} '{vi.name}'")
        for vi in gp.input:
            if vi.name in init_names:
                continue  # an initializer listed as input (IR < 4 style): a constant with a default
            if vi.name in scope:
                raise InvalidGraphError(f"{self.label}: graph '{g.name}' declares input '{vi.name}' twice")
            v = Value(vi.name, type_from_proto(vi.type, g))
            g.reserve_name(vi.name)
            g.inputs.append(v)
            scope[vi.name] = v
        declared = {vi.name: vi for vi in list(gp.value_info) + list(gp.output)}
        self._import_nodes(g, list(gp.node), scope, outer, declared)
        for vo in gp.output:
            v = self._resolve(vo.name, scope, outer)
            if v is None:
                raise InvalidGraphError(f"{self.label}: graph output '{vo.name}' of graph '{g.name}' is not "
                                        f"produced by any node, input or initializer")
            if v.type is None and vo.HasField("type"):
                v.type = type_from_proto(vo.type, g)
            g.outputs.append(v)
        return g

    def _resolve(self, name: str, scope, outer) -> Value | None:
        return resolve_scoped(name, scope, outer, self._stack)

    def _import_nodes(self, g: Graph, nodes: list, scope, outer, declared) -> None:
        order = self._toposort(nodes, scope, outer, g)
        for np_ in order:
            self._import_node(g, np_, scope, outer, declared)

    def _toposort(self, nodes, scope, outer, g) -> list:
        """ONNX requires sorted nodes, but exporters sometimes do not comply: sort, keeping order."""
        produced = {o: i for i, n in enumerate(nodes) for o in n.output if o}
        ready = set(scope) | {k for level in outer for k in level}
        out, pending = [], list(nodes)
        while pending:
            rest = []
            for n in pending:
                needs = [x for x in n.input if x and x not in ready]
                if needs and all(x in produced for x in needs):
                    rest.append(n)
                    continue
                if needs:
                    bad = [x for x in needs if x not in produced][0]
                    raise InvalidGraphError(
                        f"{self.label}: {n.op_type} node '{n.name or '(unnamed)'}' reads '{bad}', which no node, "
                        f"graph input or initializer of graph '{g.name}' (or an enclosing graph) defines")
                out.append(n)
                ready.update(o for o in n.output if o)
            if len(rest) == len(pending):
                raise InvalidGraphError(f"{self.label}: nodes of graph '{g.name}' form a cycle through "
                                        f"{rest[0].op_type} node '{rest[0].name or '(unnamed)'}'")
            pending = rest
        return out

    def _import_node(self, g: Graph, np_: onnx.NodeProto, scope, outer, declared, rename=None) -> None:
        domain = canonical_domain(np_.domain)
        opset = self.opsets.get(domain, 1)
        name = g.unique_node_name(np_.name or f"{np_.op_type}_{len(g.nodes)}")
        inputs = []
        for x in np_.input:
            if not x:
                inputs.append(None)
                continue
            v = self._resolve(x, scope, outer)
            if v is None:
                raise InvalidGraphError(f"{self.label}: {np_.op_type} node '{name}' reads '{x}', which is not defined")
            inputs.append(v)
        fn = self.functions.get((np_.domain, np_.op_type))
        op = lookup(domain, np_.op_type)
        if fn is not None and op is None:
            self._inline_function(g, np_, fn, inputs, scope, outer, name)
            return
        if op is None:
            body, defaults = _onnx_function_body(np_, opset, domain, inputs)
            if body is not None:
                self.expanded[np_.op_type] = self.expanded.get(np_.op_type, 0) + 1
                self._inline_function(g, np_, body, inputs, scope, outer, name, defaults)
                return
        outputs = []
        for o in np_.output:
            if not o:
                outputs.append(None)
                continue
            if o in scope:
                raise InvalidGraphError(f"{self.label}: {np_.op_type} node '{name}' defines '{o}', which is "
                                        f"already defined: values must be assigned once")
            v = Value(o)
            g.reserve_name(o)
            vi = declared.get(o)
            if vi is not None and vi.HasField("type"):
                v.type = type_from_proto(vi.type, g)
            scope[o] = v
            outputs.append(v)
        attrs = {}
        node = Node(np_.op_type, inputs, outputs, {}, name=name, domain=domain, opset=opset)
        for a in np_.attribute:
            attrs[a.name] = self._attr_value(a, node, g, scope, outer)
        node.attrs = attrs
        if op is None:
            self.missing.setdefault((domain, np_.op_type, opset), []).append(name)
            g.nodes.append(node)
            return
        original = dict(attrs)
        op.upgrade(node, g, opset)  # first: an older opset may spell an attribute with another type
        for a in np_.attribute:
            spec = op.attrs.get(a.name)
            got = ATTR_KIND.get(a.type, "undefined")
            unchanged = a.name in node.attrs and node.attrs[a.name] is original[a.name]
            if spec is not None and spec.internal:
                raise OpAttributeError(f"{self.label}: {node_label(node)}: '{a.name}' is not an ONNX attribute of "
                                       f"{np_.op_type} (graphc uses it internally to keep an older opset's meaning)")
            if spec is not None and unchanged and spec.type != got:
                raise OpAttributeError(f"{self.label}: {node_label(node)}: attribute '{a.name}' must be of type "
                                       f"{spec.type}, got {got}")
        op.complete_attrs(node)
        op.check_arity(node)
        g.nodes.append(node)

    def _attr_value(self, a: AttributeProto, node: Node, g: Graph, scope, outer) -> Any:
        if a.type not in ATTR_KIND:
            raise OpAttributeError(f"{self.label}: {node_label(node)}: attribute '{a.name}' has no type")
        return self.decoder.attribute(a, g, lambda sub: self.import_graph(sub, outer + [scope], g))

    # -- functions --
    def _inline_function(self, g: Graph, call: onnx.NodeProto, fn: onnx.FunctionProto, inputs, scope, outer,
                         name: str, defaults: dict | None = None) -> None:
        """Expand a function call into its body, renaming the body's values under the call's name."""
        attrs = dict(defaults or {})
        attrs.update({a.name: a for a in fn.attribute_proto})
        attrs.update({a.name: a for a in call.attribute})
        local: dict[str, Value] = {}
        for formal, actual in zip(fn.input, inputs):
            if actual is not None:
                local[formal] = actual
        inner_scope = dict(scope)
        inner_scope.update(local)
        rename: dict[str, str] = {}
        out_names = dict(zip(fn.output, call.output))
        body = []
        for bn in fn.node:
            nn = onnx.NodeProto()
            nn.CopyFrom(bn)
            nn.name = f"{name}/{bn.name or bn.op_type}"
            for i, x in enumerate(nn.input):
                if x and x not in local:
                    nn.input[i] = rename.get(x, x)
            for a in nn.attribute:  # subgraphs may read the body's values from their enclosing scope
                for sub in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)):
                    _rename_captures(sub, rename)
            for i, x in enumerate(nn.output):
                if x in out_names:
                    nn.output[i] = out_names[x]
                elif x:
                    rename[x] = g.unique_name(f"{name}/{x}")
                    nn.output[i] = rename[x]
            # attribute references
            new_attrs = []
            for a in nn.attribute:
                if a.ref_attr_name:
                    if a.ref_attr_name in attrs:
                        r = AttributeProto()
                        r.CopyFrom(attrs[a.ref_attr_name])
                        r.name = a.name
                        new_attrs.append(r)
                else:
                    new_attrs.append(a)
            del nn.attribute[:]
            nn.attribute.extend(new_attrs)
            body.append(nn)
        fn_opsets = {canonical_domain(o.domain): int(o.version) for o in fn.opset_import}
        saved = dict(self.opsets)
        for k, v in fn_opsets.items():
            self.opsets[k] = v
        try:
            for nn in body:
                self._import_node(g, nn, inner_scope, outer, {})
        finally:
            self.opsets = saved
        for formal, actual in zip(fn.output, call.output):
            if actual and actual in inner_scope:
                scope[actual] = inner_scope[actual]
            elif actual and formal in local:
                # the function returns one of its inputs unchanged
                ident = g.add_node("Identity", [local[formal]], output_names=[actual])
                ident.opset = self.opsets.get("")
                scope[actual] = ident.outputs[0]


def _rename_captures(gp: onnx.GraphProto, rename: dict[str, str]) -> None:
    """Rename, inside a subgraph (recursively), the outer values it reads that an inlined body renamed."""
    local = {i.name for i in gp.input} | {t.name for t in gp.initializer} | {o for n in gp.node for o in n.output}
    mapping = {k: v for k, v in rename.items() if k not in local}
    for n in gp.node:
        for i, x in enumerate(n.input):
            if x in mapping:
                n.input[i] = mapping[x]
        for a in n.attribute:
            for sub in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)):
                _rename_captures(sub, mapping)
    for o in gp.output:
        if o.name in mapping:
            o.name = mapping[o.name]


def _onnx_function_body(np_: onnx.NodeProto, opset: int, domain: str, inputs):
    """(body, attribute defaults) of a standard op that ONNX defines as a function, else (None, None)."""
    body = _function_proto(np_, opset, domain, inputs)
    if body is None:
        return None, None
    schema = onnx.defs.get_schema(np_.op_type, opset, domain)
    defaults = {k: a.default_value for k, a in schema.attributes.items()
                if a.default_value.type != AttributeProto.UNDEFINED}
    return body, defaults


def _function_proto(np_: onnx.NodeProto, opset: int, domain: str, inputs) -> onnx.FunctionProto | None:
    try:
        schema = onnx.defs.get_schema(np_.op_type, opset, domain)
    except Exception:
        return None
    try:
        if schema.has_function:
            return schema.function_body if schema.function_body.node else None
        if schema.has_context_dependent_function:
            types = []
            for v in inputs:
                if v is None or not isinstance(v.type, TensorType) or v.type.dtype is None:
                    return None
                types.append(type_to_proto(v.type).SerializeToString())
            fb = schema.get_context_dependent_function(np_.SerializeToString(), types)
            fn = onnx.FunctionProto()
            fn.ParseFromString(fb)
            return fn if fn.node else None
    except Exception:
        return None
    return None


def import_model(source: Any, infer: bool = True, memory_limit: int | str | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into a Graph with inferred types.

    Raises ModelLoadError for unreadable input, UnsupportedOpError listing every unsupported op,
    InvalidGraphError / OpAttributeError / ShapeError naming the node at fault, ResourceLimitError
    naming a tensor larger than ``memory_limit`` (see graphc/limits.py; default from the environment).
    """
    limit = _memory_limit(memory_limit)
    model, model_dir, label = load_model_proto(source, weights_in_file=True)
    imp = _Importer(model, model_dir, label, limit)
    try:
        g = imp.import_graph(model.graph, [], None)
    except GraphcError:
        raise
    except RecursionError:
        raise ModelLoadError(f"{label}: the model nests subgraphs or functions too deeply") from None
    if imp.missing:
        raise UnsupportedOpError(imp.missing, where=label)
    g.metadata = {p.key: p.value for p in model.metadata_props}
    g.metadata["source"] = label
    if imp.expanded:
        g.metadata["expanded_functions"] = ",".join(f"{k}x{v}" for k, v in sorted(imp.expanded.items()))
    if infer or any(n.op_type == "Gradient" and n.domain == "ai.onnx.preview.training" for n in g.nodes):
        from .gradient import expand_gradients

        try:
            infer_shapes(g, memory_limit=limit)
            if expand_gradients(g):  # ONNX's Gradient op, computed by graphc's autodiff
                infer_shapes(g, memory_limit=limit)
        except GraphcError as e:
            raise type(e)(f"{label}: {e}") from None
    return g
