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
from .ir import Graph, Node, TensorType, Value
from .ir.graph import resolve_scoped
from .ops.registry import lookup

#: The on-disk plan format this graphc writes and reads. Bump it when a saved plan's meaning changes.
PLAN_FORMAT = 1

#: Where nodes go that ONNX cannot express at the saved opset (see the module docstring).
LEGACY_DOMAIN = "graphc.legacy"

_KEY = "graphc."  # prefix of every metadata key graphc writes


def _version() -> str:
    from .version import __version__

    return __version__


@dataclass(eq=False)  # compared by identity: the compiler caches its bindings per plan
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

        writer = _plan_encoder()
        g = self.graph
        gp = writer.graph(g, [v for v in g.variables.values() if v not in g.inputs])
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


def _plan_encoder():
    """The codec's GraphEncoder with the plan format's choices (see the module docstring): ONNX domains at
    the newest opset, legacy nodes, splat constants and the node metadata."""
    import onnx

    from .onnx_codec import GraphEncoder, array_to_tensor

    class PlanEncoder(GraphEncoder):
        def __init__(self):
            super().__init__()
            self._accepts: dict[tuple, bool] = {}

        def opset(self, domain: str) -> int:
            if domain not in self.opsets:
                self.opsets[domain] = _latest_opset(domain) if domain in _ONNX_DOMAINS else 1
            return self.opsets[domain]

        def onnx_accepts(self, node: Node) -> bool:
            """Whether ONNX's schema at the saved opset describes this node (op exists, not deprecated,
            every attribute known)."""
            key = (node.domain, node.op_type, tuple(sorted(node.attrs)))
            if key not in self._accepts:
                try:
                    schema = onnx.defs.get_schema(node.op_type, self.opset(node.domain), node.domain)
                    ok = not schema.deprecated and all(k in schema.attributes for k in node.attrs)
                except Exception:  # onnx.defs.SchemaError: no such op at this opset
                    ok = False
                self._accepts[key] = ok
            return self._accepts[key]

        def node_domain(self, n: Node) -> tuple[str, dict[str, str]]:
            domain = n.domain
            meta = {}
            if domain in _ONNX_DOMAINS:
                self.opset(domain)
                if not self.onnx_accepts(n):
                    meta["graphc.domain"] = domain
                    domain = LEGACY_DOMAIN
            self.opset(domain)
            if n.opset is not None and n.domain in _ONNX_DOMAINS:
                meta["graphc.opset"] = str(n.opset)
            if n.source:
                meta["graphc.source"] = n.source
            return domain, meta

        def constant(self, g: Graph, name: str, data: np.ndarray, gp) -> None:
            """A constant whose elements are all equal goes as a ConstantOfShape node (marked so that loading
            makes it a constant again): the light CNNs' 0.02 weights would otherwise fill the file."""
            if not _is_splat(data):
                gp.initializer.append(array_to_tensor(data, name))
                return
            shape_name = name + "/shape"
            while shape_name in g._names:
                shape_name += "_"
            gp.initializer.append(array_to_tensor(np.array(data.shape, dtype=np.int64), shape_name))
            node_name = name + "/splat"
            while node_name in g._node_names:
                node_name += "_"
            self.opset("")
            node = onnx.helper.make_node("ConstantOfShape", [shape_name], [name], name=node_name,
                                         value=array_to_tensor(data.reshape(-1)[:1]))
            e = node.metadata_props.add()
            e.key, e.value = "graphc.constant", "splat"
            gp.node.append(node)

    return PlanEncoder()


#: Constants with at least this many elements, all equal, are saved as ConstantOfShape (see ``constant``).
SPLAT_MIN = 1024


def _is_splat(data: np.ndarray) -> bool:
    if data.size < SPLAT_MIN or data.dtype.kind not in "fiub":
        return False
    flat = data.reshape(-1)
    return bool(np.all(flat == flat[0])) and not (data.dtype.kind == "f" and np.isnan(flat[0]))


# ---- reading ----------------------------------------------------------------------------------
class _Reader:
    def __init__(self, label: str, opsets: dict[str, int]):
        from .onnx_codec import Decoder

        self.label = label
        self.opsets = opsets
        self.stack: list[Graph] = []
        self.decoder = Decoder(label)

    def graph(self, gp, outer: list[dict[str, Value]]) -> Graph:
        from .onnx_codec import constant_value, type_from_proto

        g = Graph(gp.name or "main")
        g.opset = {d: v for d, v in self.opsets.items() if d != LEGACY_DOMAIN}
        self.stack.append(g)
        scope: dict[str, Value] = {}
        types = {vi.name: vi.type for vi in list(gp.value_info) + list(gp.output) + list(gp.input)}
        for t in gp.initializer:
            v = constant_value(t.name, self.decoder.tensor(t))
            g.reserve_name(t.name)
            g.constants[t.name] = v
            scope[t.name] = v
        for vi in gp.input:
            v = Value(vi.name, type_from_proto(vi.type, g))
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
        from .onnx_codec import constant_value

        shape = tuple(int(d) for d in scope[np_.input[0]].data)
        fill = self.decoder.tensor(np_.attribute[0].t).reshape(-1)
        return constant_value(np_.output[0], np.full(shape, fill[0], dtype=fill.dtype))

    def resolve(self, name: str, scope, outer) -> Value | None:
        return resolve_scoped(name, scope, outer, self.stack)

    def node(self, np_, g: Graph, scope, outer, types) -> Node:
        from .onnx_codec import ATTR_KIND, type_from_proto

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
            v = Value(o, type_from_proto(types[o], g) if o in types else None)
            g.reserve_name(o)
            scope[o] = v
            outputs.append(v)
        attrs = {}
        for a in np_.attribute:
            if a.type not in ATTR_KIND:
                raise PlanFormatError(f"{self.label}: attribute '{a.name}' has no type")
            attrs[a.name] = self.decoder.attribute(a, g, lambda sub: self.graph(sub, outer + [scope]))
        opset = int(meta["graphc.opset"]) if "graphc.opset" in meta else self.opsets.get(domain)
        g._node_names.add(np_.name)
        return Node(np_.op_type, inputs, outputs, attrs, name=np_.name, domain=domain,
                    source=meta.get("graphc.source"), opset=opset)


def continue_symbols(g: Graph) -> None:
    """Make ``g``'s fresh symbols start after the ``unk__N`` symbols its types already use (a loaded plan's
    graph, or a copy about to be bound, must not reuse them)."""
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
    continue_symbols(graph)
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


__all__ = ["LEGACY_DOMAIN", "PLAN_FORMAT", "Plan", "PlanFormatError", "continue_symbols", "is_plan", "load_plan"]
