"""The Plan (an optimized graph, its schedule and buffer assignment) and its form on disk: an ONNX model.

A saved plan is a valid ONNX model (``onnx.checker`` passes): standard ops stay in their ONNX domains at
the newest opset the installed onnx knows, fused groups are ``graphc.FusedGroup`` nodes whose ``body``
is a GRAPH attribute, and the plan facts (format version, graphc version, optimization level, memory
plan, fusion and pass reports) are JSON strings in ``metadata_props``. A node whose meaning ONNX cannot
spell at that opset (one carrying graphc's internal marker of an older opset's semantics, or an op ONNX
deprecated) is kept in the ``graphc.legacy`` domain with its original domain in the node's metadata.
No pickle: every value is a tensor, a graph or JSON. ``load_plan`` reads the file back into a Plan
without running any optimization.
"""
from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import GraphcError, ModelLoadError, PlanFormatError
from .ir import DType, Graph, Node, TensorType, Value
from .ir.graph import resolve_scoped
from .ir.types import MapType, OptionalType, SequenceType
from .ops.registry import lookup

#: The on-disk plan format this graphc writes and reads. Bump it when a saved plan's meaning changes.
PLAN_FORMAT = 1

#: Where nodes go that ONNX cannot express at the saved opset (see the module docstring).
LEGACY_DOMAIN = "graphc.legacy"

_KEY = "graphc."  # prefix of every metadata key graphc writes


def _version() -> str:
    from .version import __version__

    return __version__


@dataclass
class Plan:
    """An optimized graph ready to run: nodes in schedule order, and where its activations live.

    ``memory`` is the buffer assignment for the graph's own shapes (None while some are symbolic: then
    ``memory_for(sizes)`` plans, and caches, one assignment per binding of the symbols).
    """

    graph: Graph
    level: int = 2
    memory: Any = None  # graphc.passes.memory.MemoryPlan
    fusion: Any = None  # graphc.passes.fusion.FusionReport
    passes: list[dict] = field(default_factory=list)  # one record per pass application
    stage_seconds: dict[str, float] = field(default_factory=dict)
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # input_shapes, sets: what compile was told
    graphc_version: str = field(default_factory=_version)
    _bound: dict = field(default_factory=dict, repr=False)

    @property
    def schedule(self) -> list[str]:
        """The node names in the order they run."""
        return [n.name for n in self.graph.nodes]

    @property
    def compile_seconds(self) -> float:
        return sum(self.stage_seconds.values())

    @property
    def symbols(self) -> list[str]:
        """Symbolic dims still open in the inputs (bound per run)."""
        out: list[str] = []
        for v in self.graph.inputs:
            if isinstance(v.type, TensorType) and v.type.shape is not None:
                out.extend(d for d in v.type.shape if isinstance(d, str) and d not in out)
        return out

    # ---- symbolic dims ------------------------------------------------------------------------
    def bind(self, sizes: Mapping[str, int]) -> "Plan":
        """This plan with symbolic dims bound (a copy, shapes re-inferred, memory planned); cached.

        What the sizes make constant folds (``Shape`` and the arithmetic on it, the Reshape targets, Slice
        bounds and ConstantOfShape shapes computed from it: constant folding and dead-code elimination, the
        new constants moved into the fused groups that read them), so that a backend generating kernels for
        static shapes sees constants; nothing else is re-optimized: the other nodes keep their order.
        """
        from .passes.bind import bind_symbols
        from .passes.memory import plan_memory

        fixed = self.options.get("sets") or {}
        sizes = {k: int(v) for k, v in sizes.items() if fixed.get(k) != int(v)}  # bound when compiled: fine
        unknown = [k for k in sizes if k not in self.symbols]
        if unknown:
            raise GraphcError(f"cannot set {', '.join(unknown)}: the plan's inputs have no such symbolic dim "
                              f"(open symbols: {', '.join(self.symbols) or 'none'}; bound when compiled: "
                              f"{', '.join(f'{k}={v}' for k, v in fixed.items()) or 'none'})")
        if not sizes:
            return self
        key = tuple(sorted(sizes.items()))
        if key not in self._bound:
            g = self.graph.copy()
            _continue_symbols(g)
            bind_symbols(g, sizes)
            _fold_bound(g)
            mem = plan_memory(g)
            self._bound[key] = Plan(g, self.level, mem, self.fusion, self.passes, dict(self.stage_seconds),
                                    self.source, dict(self.options, sets=dict(self.options.get("sets") or {},
                                                                              **sizes)), self.graphc_version)
        return self._bound[key]

    def memory_for(self, sizes: Mapping[str, int] | None = None):
        """The memory plan for one binding of the symbolic dims (the plan's own when none are open)."""
        if not self.symbols or not sizes:
            return self.memory
        return self.bind(sizes).memory

    # ---- reporting ----------------------------------------------------------------------------
    def summary(self) -> str:
        lines = [f"plan of {self.source or self.graph.name}: -O{self.level}, {len(self.graph.nodes)} nodes, "
                 f"compiled by graphc {self.graphc_version} in {self.compile_seconds:.3f} s "
                 f"({', '.join(f'{k} {v:.3f}' for k, v in self.stage_seconds.items())})"]
        if self.passes:
            changed = sum(1 for r in self.passes if r.get("changed"))
            lines.append(f"passes: {len(self.passes)} applications, {changed} changed the graph")
        if self.fusion is not None:
            lines.append(self.fusion.summary())
        if self.memory is not None:
            lines.append(self.memory.summary())
        elif self.symbols:
            lines.append(f"memory: planned per binding of {', '.join(self.symbols)} (see --set)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def memory_table(self) -> str:
        """One line per planned value, in schedule order: offset, bytes, lifetime, what it overwrites."""
        mem = self.memory
        if mem is None:
            return "memory: not planned (symbolic shapes; bind them with --set)"
        lines = [f"{'value':40s} {'offset':>12s} {'bytes':>12s}  steps"]
        for name in sorted(mem.offsets, key=lambda n: (mem.lifetimes[n][0], n)):
            a, b = mem.lifetimes[name]
            end = "end" if b == len(mem.schedule) else str(b)
            extra = f"  (in place over {mem.inplace[name]})" if name in mem.inplace else ""
            lines.append(f"{name:40s} {mem.offsets[name]:12,d} {mem.sizes[name]:12,d}  {a}-{end}{extra}")
        if mem.unplanned:
            lines.append(f"sized at run time: {', '.join(mem.unplanned)}")
        return "\n".join(lines)

    def stage_report(self, stage: str) -> str:
        """What ``graphc show --stage`` prints after the graph of a stage."""
        if stage == "planned":
            return self.summary() + "\n" + self.memory_table()
        if stage == "fused" and self.fusion is not None:
            return self.fusion.summary() + "\n(graphc compile --explain-fusion says why each unfused edge stayed)"
        return self.summary()

    # ---- saving -------------------------------------------------------------------------------
    def to_onnx(self):
        """The plan as an ``onnx.ModelProto`` (see the module docstring)."""
        import onnx

        writer = _Writer()
        gp = writer.graph(self.graph, top=True)
        facts = {"level": self.level, "source": self.source, "options": self.options,
                 "stage_seconds": self.stage_seconds, "variables": list(self.graph.variables),
                 "variable_inputs": [v.name for v in self.graph.inputs if v.name in self.graph.variables]}
        meta = {f"{_KEY}plan.format": str(PLAN_FORMAT), f"{_KEY}version": self.graphc_version,
                f"{_KEY}plan": json.dumps(facts), f"{_KEY}passes": json.dumps(self.passes)}
        if self.fusion is not None:
            meta[f"{_KEY}fusion"] = json.dumps(self.fusion.to_dict())
        if self.memory is not None:
            meta[f"{_KEY}memory"] = json.dumps(self.memory.to_dict())
        for k, v in self.graph.metadata.items():
            if not k.startswith(_KEY):
                meta[k] = str(v)
        opsets = [onnx.helper.make_opsetid(d, v) for d, v in sorted(writer.opsets.items())]
        model = onnx.helper.make_model(gp, opset_imports=opsets, producer_name="graphc",
                                       producer_version=self.graphc_version)
        model.ir_version = onnx.IR_VERSION
        onnx.helper.set_model_props(model, meta)
        return model

    def save(self, path: str) -> None:
        """Write the plan as an ONNX model file."""
        model = self.to_onnx()
        try:
            with open(path, "wb") as f:
                f.write(model.SerializeToString())
        except OSError as e:
            raise GraphcError(f"cannot write the plan to '{path}': {e.strerror}") from None


# ---- writing ----------------------------------------------------------------------------------
def _latest_opset(domain: str) -> int:
    import onnx

    if domain == "":
        return onnx.defs.onnx_opset_version()
    return max((s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.domain == domain),
               default=1)


_ONNX_DOMAINS = ("", "ai.onnx.ml", "ai.onnx.preview.training")


class _Writer:
    def __init__(self):
        self.opsets: dict[str, int] = {}
        self._accepts: dict[tuple, bool] = {}

    def _opset(self, domain: str) -> int:
        if domain not in self.opsets:
            self.opsets[domain] = _latest_opset(domain) if domain in _ONNX_DOMAINS else 1
        return self.opsets[domain]

    def onnx_accepts(self, node: Node) -> bool:
        """Whether ONNX's schema at the saved opset describes this node (op exists, not deprecated,
        every attribute known)."""
        import onnx

        key = (node.domain, node.op_type, tuple(sorted(node.attrs)))
        if key not in self._accepts:
            try:
                schema = onnx.defs.get_schema(node.op_type, self._opset(node.domain), node.domain)
                ok = not schema.deprecated and all(k in schema.attributes for k in node.attrs)
            except Exception:  # onnx.defs.SchemaError: no such op at this opset
                ok = False
            self._accepts[key] = ok
        return self._accepts[key]

    def graph(self, g: Graph, top: bool = False):
        import onnx
        from onnx import numpy_helper

        gp = onnx.GraphProto()
        gp.name = g.name
        inputs = list(g.inputs)
        if top:
            inputs += [v for v in g.variables.values() if v not in g.inputs]
        gp.input.extend(_value_info(v) for v in inputs)
        for name, v in g.constants.items():
            data = np.asarray(v.data)
            if _is_splat(data):
                gp.node.append(self.splat(g, name, data, gp))
            else:
                gp.initializer.append(numpy_helper.from_array(data, name))
        for n in g.nodes:
            gp.node.append(self.node(n))
        gp.output.extend(_value_info(v) for v in g.outputs)
        outs = {id(v) for v in g.outputs}
        for n in g.nodes:
            for v in n.outputs:
                if v is not None and id(v) not in outs and v.type is not None:
                    gp.value_info.append(_value_info(v))
        return gp

    def splat(self, g: Graph, name: str, data: np.ndarray, gp):
        """A constant whose elements are all equal, as a ConstantOfShape node (marked so that loading
        makes it a constant again): the light CNNs' 0.02 weights would otherwise fill the file."""
        import onnx
        from onnx import numpy_helper

        shape_name = name + "/shape"
        while shape_name in g._names:
            shape_name += "_"
        gp.initializer.append(numpy_helper.from_array(np.array(data.shape, dtype=np.int64), shape_name))
        node_name = name + "/splat"
        while node_name in g._node_names:
            node_name += "_"
        self._opset("")
        node = onnx.helper.make_node("ConstantOfShape", [shape_name], [name], name=node_name,
                                     value=numpy_helper.from_array(data.reshape(-1)[:1]))
        e = node.metadata_props.add()
        e.key, e.value = "graphc.constant", "splat"
        return node

    def node(self, n: Node):
        import onnx

        domain = n.domain
        meta = {}
        if domain in _ONNX_DOMAINS:
            self._opset(domain)
            if not self.onnx_accepts(n):
                meta["graphc.domain"] = domain
                domain = LEGACY_DOMAIN
        self._opset(domain)
        if n.opset is not None and n.domain in _ONNX_DOMAINS:
            meta["graphc.opset"] = str(n.opset)
        if n.source:
            meta["graphc.source"] = n.source
        op = lookup(n.domain, n.op_type)
        attrs = []
        for k, a in n.attrs.items():
            if a is None:
                continue
            spec = op.attrs.get(k) if op is not None else None
            attrs.append(self.attribute(k, a, spec.type if spec is not None else _guess_attr_type(a)))
        node = onnx.helper.make_node(n.op_type, [v.name if v is not None else "" for v in n.inputs],
                                     [v.name if v is not None else "" for v in n.outputs], name=n.name,
                                     domain=domain)
        node.attribute.extend(attrs)
        for k, v in meta.items():
            e = node.metadata_props.add()
            e.key, e.value = k, v
        return node

    def attribute(self, name: str, a: Any, kind: str):
        import onnx
        from onnx import AttributeProto as AP
        from onnx import numpy_helper

        if kind == "graph":
            return onnx.helper.make_attribute(name, self.graph(a), attr_type=AP.GRAPH)
        if kind == "graphs":
            return onnx.helper.make_attribute(name, [self.graph(x) for x in a], attr_type=AP.GRAPHS)
        if kind == "tensor":
            return onnx.helper.make_attribute(name, numpy_helper.from_array(np.asarray(a)), attr_type=AP.TENSOR)
        if kind == "tensors":
            return onnx.helper.make_attribute(name, [numpy_helper.from_array(np.asarray(x)) for x in a],
                                              attr_type=AP.TENSORS)
        if kind == "sparse_tensor":
            arr = np.asarray(a)
            idx = np.flatnonzero(arr).astype(np.int64)
            sp = onnx.helper.make_sparse_tensor(numpy_helper.from_array(arr.reshape(-1)[idx]),
                                                numpy_helper.from_array(idx), list(arr.shape))
            return onnx.helper.make_attribute(name, sp, attr_type=AP.SPARSE_TENSOR)
        if kind == "type_proto":
            return onnx.helper.make_attribute(name, _type_proto(a), attr_type=AP.TYPE_PROTO)
        if kind == "type_protos":
            return onnx.helper.make_attribute(name, [_type_proto(x) for x in a], attr_type=AP.TYPE_PROTOS)
        simple = {"int": (AP.INT, int), "float": (AP.FLOAT, float), "string": (AP.STRING, str),
                  "ints": (AP.INTS, lambda x: [int(e) for e in x]),
                  "floats": (AP.FLOATS, lambda x: [float(e) for e in x]),
                  "strings": (AP.STRINGS, lambda x: [str(e) for e in x])}
        code, conv = simple[kind]
        return onnx.helper.make_attribute(name, conv(a), attr_type=code)


#: Constants with at least this many elements, all equal, are saved as ConstantOfShape (see ``splat``).
SPLAT_MIN = 1024


def _is_splat(data: np.ndarray) -> bool:
    if data.size < SPLAT_MIN or data.dtype.kind not in "fiub":
        return False
    flat = data.reshape(-1)
    return bool(np.all(flat == flat[0])) and not (data.dtype.kind == "f" and np.isnan(flat[0]))


def _guess_attr_type(a: Any) -> str:
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
        inner = _guess_attr_type(a[0])
        return {"graph": "graphs", "int": "ints", "float": "floats", "string": "strings", "tensor": "tensors"}[inner]
    return "ints"


def _type_proto(t):
    import onnx

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
            tp.sequence_type.elem_type.CopyFrom(_type_proto(t.elem))
    elif isinstance(t, OptionalType):
        tp.optional_type.SetInParent()
        if t.elem is not None:
            tp.optional_type.elem_type.CopyFrom(_type_proto(t.elem))
    elif isinstance(t, MapType):
        tp.map_type.key_type = t.key.value
        if t.value is not None:
            tp.map_type.value_type.CopyFrom(_type_proto(t.value))
    return tp


def _value_info(v: Value):
    import onnx

    vi = onnx.ValueInfoProto()
    vi.name = v.name
    if v.type is not None:
        vi.type.CopyFrom(_type_proto(v.type))
    return vi


# ---- reading ----------------------------------------------------------------------------------
def _type_from_proto(tp):
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        tt = tp.tensor_type
        dtype = DType(tt.elem_type) if tt.elem_type else None
        if not tt.HasField("shape"):
            return TensorType(dtype, None)
        return TensorType(dtype, tuple(int(d.dim_value) if d.HasField("dim_value") else d.dim_param
                                       for d in tt.shape.dim))
    if which == "sequence_type":
        st = tp.sequence_type
        return SequenceType(_type_from_proto(st.elem_type) if st.HasField("elem_type") else None)
    if which == "optional_type":
        ot = tp.optional_type
        return OptionalType(_type_from_proto(ot.elem_type) if ot.HasField("elem_type") else None)
    if which == "map_type":
        mt = tp.map_type
        return MapType(DType(mt.key_type), _type_from_proto(mt.value_type) if mt.HasField("value_type") else None)
    return None


class _Reader:
    def __init__(self, label: str, opsets: dict[str, int]):
        self.label = label
        self.opsets = opsets
        self.stack: list[Graph] = []

    def graph(self, gp, outer: list[dict[str, Value]]) -> Graph:
        from onnx import numpy_helper

        g = Graph(gp.name or "main")
        g.opset = {d: v for d, v in self.opsets.items() if d != LEGACY_DOMAIN}
        self.stack.append(g)
        scope: dict[str, Value] = {}
        types = {vi.name: vi.type for vi in list(gp.value_info) + list(gp.output) + list(gp.input)}
        for t in gp.initializer:
            arr = numpy_helper.to_array(t)
            v = Value(t.name, TensorType(DType.from_np(arr.dtype), arr.shape), data=arr)
            g.reserve_name(t.name)
            g.constants[t.name] = v
            scope[t.name] = v
        for vi in gp.input:
            v = Value(vi.name, _type_from_proto(vi.type))
            g.reserve_name(vi.name)
            g.inputs.append(v)
            scope[vi.name] = v
        splat_shapes = set()
        for np_ in gp.node:
            if any(e.key == "graphc.constant" for e in np_.metadata_props):
                v = self.splat(np_, scope)
                g.reserve_name(v.name)
                g.constants[v.name] = v
                scope[v.name] = v
                splat_shapes.add(np_.input[0])
                continue
            g.nodes.append(self.node(np_, g, scope, outer, types))
        still_read = {v.name for n in g.nodes for v in n.inputs if v is not None}
        for name in splat_shapes - still_read:
            g.constants.pop(name, None)
        for vo in gp.output:
            v = self.resolve(vo.name, scope, outer)
            if v is None:
                raise PlanFormatError(f"{self.label}: graph output '{vo.name}' of graph '{g.name}' is not defined")
            g.outputs.append(v)
        self.stack.pop()
        return g

    def splat(self, np_, scope) -> Value:
        from onnx import numpy_helper

        shape = tuple(int(d) for d in scope[np_.input[0]].data)
        fill = numpy_helper.to_array(np_.attribute[0].t).reshape(-1)
        data = np.full(shape, fill[0], dtype=fill.dtype)
        return Value(np_.output[0], TensorType(DType.from_np(data.dtype), data.shape), data=data)

    def resolve(self, name: str, scope, outer) -> Value | None:
        return resolve_scoped(name, scope, outer, self.stack)

    def node(self, np_, g: Graph, scope, outer, types) -> Node:
        meta = {e.key: e.value for e in np_.metadata_props}
        domain = np_.domain
        if domain == LEGACY_DOMAIN:
            domain = meta.get("graphc.domain", "")
        if domain == "ai.onnx":
            domain = ""
        inputs = []
        for x in np_.input:
            if not x:
                inputs.append(None)
                continue
            v = self.resolve(x, scope, outer)
            if v is None:
                raise PlanFormatError(f"{self.label}: {np_.op_type} node '{np_.name}' reads '{x}', which is not "
                                      f"defined")
            inputs.append(v)
        outputs = []
        for o in np_.output:
            if not o:
                outputs.append(None)
                continue
            v = Value(o, _type_from_proto(types[o]) if o in types else None)
            g.reserve_name(o)
            scope[o] = v
            outputs.append(v)
        attrs = {a.name: self.attribute(a, scope, outer) for a in np_.attribute}
        opset = int(meta["graphc.opset"]) if "graphc.opset" in meta else self.opsets.get(domain)
        g._node_names.add(np_.name)
        return Node(np_.op_type, inputs, outputs, attrs, name=np_.name, domain=domain,
                    source=meta.get("graphc.source"), opset=opset)

    def attribute(self, a, scope, outer) -> Any:
        from onnx import AttributeProto as AP
        from onnx import numpy_helper

        t = a.type
        if t == AP.INT:
            return int(a.i)
        if t == AP.FLOAT:
            return float(a.f)
        if t == AP.STRING:
            return a.s.decode("utf-8", errors="replace")
        if t == AP.INTS:
            return [int(x) for x in a.ints]
        if t == AP.FLOATS:
            return [float(x) for x in a.floats]
        if t == AP.STRINGS:
            return [x.decode("utf-8", errors="replace") for x in a.strings]
        if t == AP.TENSOR:
            return numpy_helper.to_array(a.t)
        if t == AP.TENSORS:
            return [numpy_helper.to_array(x) for x in a.tensors]
        if t == AP.GRAPH:
            return self.graph(a.g, outer + [scope])
        if t == AP.GRAPHS:
            return [self.graph(x, outer + [scope]) for x in a.graphs]
        if t == AP.SPARSE_TENSOR:
            sp = a.sparse_tensor
            vals, idx = numpy_helper.to_array(sp.values), numpy_helper.to_array(sp.indices)
            dense = np.zeros(tuple(sp.dims), dtype=vals.dtype)
            dense.reshape(-1)[idx] = vals
            return dense
        if t == AP.TYPE_PROTO:
            return _type_from_proto(a.tp)
        if t == AP.TYPE_PROTOS:
            return [_type_from_proto(x) for x in a.type_protos]
        raise PlanFormatError(f"{self.label}: attribute '{a.name}' has no type")


def _fold_bound(g: Graph) -> None:
    """Fold what the bound sizes made constant (see ``Plan.bind``), then re-infer the types."""
    from .passes.fold import fold_constants
    from .passes.infer_shapes import infer_shapes

    for _ in range(len(g.nodes) + 1):  # a round folds whole chains; another only after a group's output folded
        if not (fold_constants(g) | _fold_groups(g)):
            break
    infer_shapes(g)


def _fold_groups(g: Graph) -> bool:
    """In each fused group: constant inputs move into the body, as fusion does with the constants it sees
    (small ones, or any that is not floating point: a body's Reshape then reads its shape as a constant), the
    body folds, and an output that folded becomes a constant of ``g`` (a group left without one goes)."""
    from .passes.dce import remove_dead
    from .passes.fold import fold_constants
    from .passes.fusion import BODY_CONSTANT_LIMIT, FUSED_DOMAIN, FUSED_OP

    changed = False
    for node in g.nodes:
        if node.domain != FUSED_DOMAIN or node.op_type != FUSED_OP:
            continue
        body = node.attrs["body"]
        moved = False
        for v, b in zip(node.inputs, body.inputs):
            data = v.data if v is not None else None
            if data is not None and (data.size <= BODY_CONSTANT_LIMIT or data.dtype.kind not in "fc"):
                b.data, b.type = data, v.type  # the body's Value itself: its readers need no rewiring
                body.constants[b.name] = b
                moved = True
        if moved:
            kept = [(v, b) for v, b in zip(node.inputs, body.inputs) if b.data is None]
            node.inputs, body.inputs = [v for v, _ in kept], [b for _, b in kept]
        if not (fold_constants(body) or moved):
            continue
        changed = True
        for v, b in zip(node.outputs, body.outputs):
            if b.data is not None:
                v.data, v.type, v.producer = b.data, b.type, None
                g.constants[v.name] = v
        kept = [(v, b) for v, b in zip(node.outputs, body.outputs) if b.data is None]
        node.outputs, body.outputs = [v for v, _ in kept], [b for _, b in kept]
    if changed:
        g.nodes = [n for n in g.nodes if n.outputs]
        remove_dead(g)  # the constants no node reads now
    return changed


def _continue_symbols(g: Graph) -> None:
    """Make ``g``'s fresh symbols start after the ``unk__N`` symbols its types already use."""
    top = -1
    pat = re.compile(r"__(?:check)?(\d+)$")

    def scan(graph: Graph) -> None:
        nonlocal top
        for v in graph.values():
            if isinstance(v.type, TensorType) and v.type.shape is not None:
                for d in v.type.shape:
                    if isinstance(d, str):
                        m = pat.search(d)
                        if m:
                            top = max(top, int(m.group(1)))
        for n in graph.nodes:
            for sub in n.subgraphs():
                scan(sub)

    scan(g)
    g._symbols = itertools.count(top + 1)


def is_plan(path: str) -> bool:
    """True when ``path`` is a file written by ``Plan.save`` (its bytes hold the plan-format key; a quick
    test that does not parse the model)."""
    try:
        with open(path, "rb") as f:
            return f"{_KEY}plan.format".encode() in f.read()
    except OSError:
        return False


def load_plan(source) -> Plan:
    """Read a plan saved by ``Plan.save`` (a path or a ModelProto); nothing is re-optimized.

    Raises PlanFormatError when the file is not a plan, or one this graphc cannot read (another plan
    format, or ops it does not know), saying which graphc wrote it.
    """
    import onnx

    from .passes.fusion import FusionReport
    from .passes.memory import MemoryPlan

    if isinstance(source, onnx.ModelProto):
        model, label = source, "<ModelProto>"
    else:
        label = os.fspath(source)
        if not os.path.isfile(label):
            raise ModelLoadError(f"{label}: no such file")
        try:
            model = onnx.load(label)
        except Exception as e:
            raise ModelLoadError(f"{label}: not a valid ONNX model: {e}") from None
    meta = {p.key: p.value for p in model.metadata_props}
    fmt = meta.get(f"{_KEY}plan.format")
    if fmt is None:
        raise PlanFormatError(f"{label}: not a graphc plan (no '{_KEY}plan.format' metadata); it is an ordinary "
                              f"ONNX model: import it, or compile it with `graphc compile`")
    wrote = meta.get(f"{_KEY}version", "unknown")
    if fmt != str(PLAN_FORMAT):
        raise PlanFormatError(f"{label}: written by graphc {wrote} in plan format {fmt}, but this graphc "
                              f"({_version()}) reads plan format {PLAN_FORMAT} only; compile the model again "
                              f"with this version (`graphc compile MODEL -o {os.path.basename(label)}`)")
    opsets = {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in model.opset_import}
    try:
        graph = _Reader(label, opsets).graph(model.graph, [])
    except (KeyError, ValueError, TypeError) as e:
        raise PlanFormatError(f"{label}: cannot be read as a graphc plan (written by graphc {wrote}): "
                              f"{type(e).__name__}: {e}") from None
    unknown = sorted({(n.domain, n.op_type) for n in _all_nodes(graph) if lookup(n.domain, n.op_type) is None})
    if unknown:
        shown = ", ".join(f"{d + '.' if d else ''}{op}" for d, op in unknown)
        raise PlanFormatError(f"{label}: written by graphc {wrote}, uses ops this graphc ({_version()}) does not "
                              f"know: {shown}; compile the model again with this version")
    facts = json.loads(meta.get(f"{_KEY}plan", "{}"))
    for name in facts.get("variables", []):
        v = next((x for x in graph.inputs if x.name == name), None)
        if v is not None:
            graph.variables[name] = v
            if name not in facts.get("variable_inputs", []):
                graph.inputs.remove(v)
    graph.metadata = {k: v for k, v in meta.items() if not k.startswith(_KEY)}
    _continue_symbols(graph)
    memory = MemoryPlan.from_dict(json.loads(meta[f"{_KEY}memory"])) if f"{_KEY}memory" in meta else None
    fusion = FusionReport.from_dict(json.loads(meta[f"{_KEY}fusion"])) if f"{_KEY}fusion" in meta else None
    return Plan(graph, int(facts.get("level", 0)), memory, fusion, json.loads(meta.get(f"{_KEY}passes", "[]")),
                {k: float(v) for k, v in facts.get("stage_seconds", {}).items()}, facts.get("source", ""),
                facts.get("options", {}), wrote)


def _all_nodes(g: Graph):
    for n in g.nodes:
        yield n
        for sub in n.subgraphs():
            yield from _all_nodes(sub)


__all__ = ["LEGACY_DOMAIN", "PLAN_FORMAT", "Plan", "PlanFormatError", "is_plan", "load_plan"]
