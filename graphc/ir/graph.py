"""The graph IR: ``Value`` (an SSA edge), ``Node`` (one operator application) and ``Graph``.

A Graph owns its inputs, constants, nodes (in topological order) and outputs. Values are objects,
compared by identity; names are unique within a graph and exist for printing and for feeds.
A subgraph (the body of If/Loop/Scan) may use values of the enclosing graphs: it lists them in
``captures``.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any, Callable

import numpy as np

from ..errors import InvalidGraphError, node_label
from .dtypes import DType
from .types import OptionalType, SequenceType, TensorType

#: The symbol names inside a dim (a product dim such as "4*N" names N).
_SYMBOL_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Value:
    """An SSA edge: produced once (by a node, or as a graph input or constant), used many times."""

    __slots__ = ("name", "type", "producer", "data", "__weakref__")

    def __init__(self, name: str, type: TensorType | SequenceType | OptionalType | None = None,
                 producer: "Node | None" = None, data: np.ndarray | None = None):
        self.name = name
        self.type = type
        self.producer = producer
        self.data = data

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type if self.type is not None else '?'}"


class Node:
    """One operator application. ``attrs`` holds Python values (int, float, str, lists, arrays, Graphs)."""

    __slots__ = ("op_type", "domain", "name", "inputs", "outputs", "attrs", "source", "opset")

    def __init__(self, op_type: str, inputs: Sequence[Value | None], outputs: Sequence[Value | None],
                 attrs: dict[str, Any] | None = None, name: str = "", domain: str = "",
                 source: str | None = None, opset: int | None = None):
        self.op_type = op_type
        self.domain = domain
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs or {})
        self.source = source
        self.opset = opset
        for v in self.outputs:
            if v is not None:
                v.producer = self

    def subgraphs(self) -> list["Graph"]:
        out = []
        for a in self.attrs.values():
            if isinstance(a, Graph):
                out.append(a)
            elif isinstance(a, list) and a and isinstance(a[0], Graph):
                out.extend(a)
        return out

    def __repr__(self) -> str:
        return f"<{node_label(self)}>"


def _format_attr(v: Any) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 8 and v.dtype != object:
            return f"tensor({np.array2string(v.reshape(-1), separator=', ')})"
        return f"tensor<{DType.from_np(v.dtype).name}{list(v.shape)}>"
    if isinstance(v, Graph):
        return f"graph<{v.name}: {len(v.nodes)} nodes>"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list) and len(v) > 16:
        return f"[{', '.join(map(str, v[:16]))}, ... ({len(v)} items)]"
    return repr(v) if isinstance(v, (str, bytes)) else str(v)


#: Set by graphc.ops at import time: checks one node's recorded output types against its OpDef.
#: A hook rather than an import, because the IR sits below the operator layer.
node_type_checker: Callable[[Node], None] | None = None


class Graph:
    """A dataflow graph: inputs, constants, nodes in topological order, outputs."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, Value] = {}
        self.variables: dict[str, Value] = {}
        self.captures: list[Value] = []
        self.opset: dict[str, int] = {}
        self.metadata: dict[str, str] = {}
        self._names: set[str] = set()
        self._node_names: set[str] = set()
        self._counter = itertools.count()
        self._symbols = itertools.count()

    # ---- building -------------------------------------------------------------------------
    def _claim(self, base: str, taken: set[str]) -> str:
        name = base
        while name in taken:
            name = f"{base}_{next(self._counter)}"
        taken.add(name)
        return name

    def unique_name(self, base: str) -> str:
        """A value name not used yet in this graph (``base``, else ``base_N``)."""
        return self._claim(base or "v", self._names)

    def reserve_name(self, name: str) -> None:
        self._names.add(name)

    def unique_node_name(self, base: str) -> str:
        """Node names live apart from value names (as in ONNX) but are unique among nodes."""
        return self._claim(base or "node", self._node_names)

    def fresh_symbol(self, prefix: str = "unk") -> str:
        """A new dimension symbol for a size that nothing constrains yet, never one the graph's inputs
        already name (a model may itself call a dim ``unk__3``)."""
        taken = {tok for v in [*self.inputs, *self.outputs] if v is not None and isinstance(v.type, TensorType) and v.type.shape is not None
                 for d in v.type.shape if isinstance(d, str) for tok in _SYMBOL_TOKEN.findall(d)}
        while True:
            name = f"{prefix}__{next(self._symbols)}"
            if name not in taken:
                return name

    def add_input(self, name: str, type: TensorType | None) -> Value:
        v = Value(self.unique_name(name), type)
        self.inputs.append(v)
        return v

    def add_constant(self, data: np.ndarray, name: str = "const") -> Value:
        data = np.asarray(data) if not isinstance(data, np.ndarray) else data
        v = Value(self.unique_name(name), TensorType(DType.from_np(data.dtype), data.shape), data=data)
        self.constants[v.name] = v
        return v

    def add_node(self, op_type: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None,
                 num_outputs: int = 1, name: str | None = None, domain: str = "",
                 output_names: Sequence[str] | None = None, source: str | None = None) -> Node:
        """Append a node and create its outputs; returns the node (``node.outputs`` are the new values)."""
        nname = self.unique_node_name(name or op_type)
        if output_names is None:
            output_names = [nname if num_outputs == 1 else f"{nname}:{i}" for i in range(num_outputs)]
        outs = [Value(self.unique_name(n)) if n is not None else None for n in output_names]
        node = Node(op_type, inputs, outs, attrs, name=nname, domain=domain, source=source,
                    opset=self.opset.get(domain))
        self.nodes.append(node)
        return node

    # ---- queries --------------------------------------------------------------------------
    def values(self) -> Iterable[Value]:
        """Every value this graph defines (inputs, constants, node outputs), in definition order."""
        yield from self.inputs
        yield from self.constants.values()
        for n in self.nodes:
            for v in n.outputs:
                if v is not None:
                    yield v

    def value(self, name: str) -> Value:
        for v in self.values():
            if v.name == name:
                return v
        raise KeyError(name)

    def consumers(self) -> dict[Value, list[tuple[Node, int]]]:
        """For each value, the (node, input index) pairs that read it."""
        uses: dict[Value, list[tuple[Node, int]]] = {}
        for n in self.nodes:
            for i, v in enumerate(n.inputs):
                if v is not None:
                    uses.setdefault(v, []).append((n, i))
        return uses

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for n in self.nodes:
            key = n.op_type if not n.domain else f"{n.domain}.{n.op_type}"
            hist[key] = hist.get(key, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def parameter_count(self) -> int:
        return int(sum(v.data.size for v in self.constants.values()))

    def to_networkx(self):
        """A networkx DiGraph over nodes (edges follow values); built on demand."""
        import networkx as nx

        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n)
        for n in self.nodes:
            for v in n.inputs:
                if v is not None and v.producer is not None and v.producer in g:
                    g.add_edge(v.producer, n)
        return g

    # ---- rewriting ------------------------------------------------------------------------
    def sort_topologically(self) -> None:
        """Reorder nodes so every value is defined before use (stable: keeps order where it can)."""
        defined = {id(v) for v in self.inputs} | {id(v) for v in self.constants.values()}
        defined |= {id(v) for v in self.captures} | {id(v) for v in self.variables.values()}
        pending = list(self.nodes)
        ordered: list[Node] = []
        produced = {id(v) for n in self.nodes for v in n.outputs if v is not None}
        while pending:
            progress = False
            rest = []
            for n in pending:
                if all(v is None or id(v) in defined or id(v) not in produced for v in _all_inputs(n)):
                    ordered.append(n)
                    defined.update(id(v) for v in n.outputs if v is not None)
                    progress = True
                else:
                    rest.append(n)
            if not progress:
                raise InvalidGraphError(
                    f"graph '{self.name}': nodes form a cycle; {node_label(rest[0])} waits on itself")
            pending = rest
        self.nodes = ordered

    def copy(self) -> "Graph":
        """A structural copy: new Values and Nodes, constant arrays shared (they are immutable)."""
        return _copy_graph(self, {})

    # ---- checking -------------------------------------------------------------------------
    def verify(self, check_types: bool = True, _outer: frozenset = frozenset()) -> None:
        """Check SSA, topological order, that every input is defined and that types agree.

        Raises InvalidGraphError (or ShapeError for a type mismatch) naming the node at fault.
        """
        where = f"graph '{self.name}'"
        seen_names: dict[str, str] = {}
        defined: set[int] = set(_outer) | {id(v) for v in self.captures}

        def define(v: Value, what: str) -> None:
            if id(v) in defined:
                raise InvalidGraphError(f"{where}: value '{v.name}' is defined twice (second time by {what})")
            if v.name in seen_names:
                raise InvalidGraphError(
                    f"{where}: name '{v.name}' is used by two values ({seen_names[v.name]} and {what})")
            seen_names[v.name] = what
            defined.add(id(v))

        for v in self.inputs:
            define(v, "a graph input")
        for v in self.variables.values():
            if id(v) not in defined:  # a variable may also be listed as an input
                define(v, "a variable")
        for name, v in self.constants.items():
            if v.data is None:
                raise InvalidGraphError(f"{where}: constant '{name}' has no data")
            if isinstance(v.type, TensorType) and v.type.shape is not None and tuple(v.type.shape) != v.data.shape:
                raise InvalidGraphError(
                    f"{where}: constant '{name}' is declared {v.type} but holds an array of shape {v.data.shape}")
            define(v, "a constant")
        produced_later = {id(v) for n in self.nodes for v in n.outputs if v is not None}
        for node in self.nodes:
            for i, v in enumerate(node.inputs):
                if v is None:
                    continue
                if id(v) not in defined:
                    if id(v) in produced_later:
                        raise InvalidGraphError(
                            f"{where}: {node_label(node)} reads '{v.name}' (input {i}) before "
                            f"{node_label(v.producer)} defines it: nodes are not in topological order")
                    raise InvalidGraphError(
                        f"{where}: {node_label(node)} reads '{v.name}' (input {i}), which nothing defines")
            for sub in node.subgraphs():
                sub.verify(check_types, frozenset(defined))
            for v in node.outputs:
                if v is not None:
                    if v.producer is not node:
                        raise InvalidGraphError(
                            f"{where}: output '{v.name}' of {node_label(node)} records another producer")
                    define(v, node_label(node))
            if check_types and node_type_checker is not None:
                node_type_checker(node)
        for v in self.outputs:
            if id(v) not in defined:
                raise InvalidGraphError(f"{where}: graph output '{v.name}' is not defined")

    # ---- printing -------------------------------------------------------------------------
    def __str__(self) -> str:
        return "\n".join(self.listing())

    def listing(self, indent: str = "") -> list[str]:
        opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(self.opset.items()))
        lines = [f"{indent}graph {self.name}" + (f"  (opset {opsets})" if opsets else "")]
        for v in self.inputs:
            lines.append(f"{indent}  input  %{v.name}: {_t(v)}")
        if self.constants:
            params = self.parameter_count()
            lines.append(f"{indent}  {len(self.constants)} constants, {params:,} elements")
        for n in self.nodes:
            outs = ", ".join(f"%{v.name}: {_t(v)}" if v is not None else "_" for v in n.outputs)
            ins = ", ".join(_ref(v) for v in n.inputs)
            attrs = {k: a for k, a in n.attrs.items() if not isinstance(a, Graph)}
            attr_s = (" {" + ", ".join(f"{k}={_format_attr(a)}" for k, a in attrs.items()) + "}") if attrs else ""
            op = n.op_type if not n.domain else f"{n.domain}.{n.op_type}"
            lines.append(f"{indent}  {outs} = {op}({ins}){attr_s}  # {n.name}")
            for k, a in n.attrs.items():
                subs = a if isinstance(a, list) else [a]
                for sub in subs:
                    if isinstance(sub, Graph):
                        lines.append(f"{indent}    {k}:")
                        lines.extend(sub.listing(indent + "      "))
        lines.append(f"{indent}  return " + ", ".join(f"%{v.name}" for v in self.outputs))
        return lines


def resolve_scoped(name: str, scope: dict, outer: list, stack: list) -> Value | None:
    """The Value ``name`` refers to, looking in ``scope`` and then in the enclosing ``outer`` scopes.

    ``stack`` lists the graphs being built, outermost first (``stack[i]`` owns ``outer[i]``, the last one
    owns ``scope``). A value of an enclosing graph becomes a capture of every graph between the one that
    defines it and the innermost one.
    """
    if name in scope:
        return scope[name]
    for level in range(len(outer) - 1, -1, -1):
        if name in outer[level]:
            v = outer[level][name]
            for inner in stack[level + 1:]:
                if v not in inner.captures:
                    inner.captures.append(v)
            return v
    return None


def _t(v: Value) -> str:
    return str(v.type) if v.type is not None else "?"


def _ref(v: Value | None) -> str:
    if v is None:
        return "_"
    if v.data is not None and v.data.size == 1 and v.data.dtype != object:
        return f"{v.data.reshape(()).item()!r}"
    return f"%{v.name}"


def _all_inputs(node: Node) -> list[Value | None]:
    """A node's inputs plus the outer values its subgraphs capture (they must be defined first too)."""
    vals = list(node.inputs)
    for sub in node.subgraphs():
        vals.extend(sub.captures)
    return vals


def _copy_graph(g: Graph, mapping: dict[int, Value]) -> Graph:
    new = Graph(g.name)
    new.opset = dict(g.opset)
    new.metadata = dict(g.metadata)
    new._names = set(g._names)
    new._node_names = set(g._node_names)

    def clone(v: Value | None) -> Value | None:
        if v is None:
            return None
        if id(v) in mapping:
            return mapping[id(v)]
        nv = Value(v.name, v.type, None, v.data)
        mapping[id(v)] = nv
        return nv

    new.captures = [mapping.get(id(v), v) for v in g.captures]
    for v in g.captures:
        mapping.setdefault(id(v), v)
    new.inputs = [clone(v) for v in g.inputs]
    new.constants = {k: clone(v) for k, v in g.constants.items()}
    new.variables = {k: clone(v) for k, v in g.variables.items()}
    for n in g.nodes:
        attrs = {}
        for k, a in n.attrs.items():
            if isinstance(a, Graph):
                attrs[k] = _copy_graph(a, mapping)
            elif isinstance(a, list) and a and isinstance(a[0], Graph):
                attrs[k] = [_copy_graph(s, mapping) for s in a]
            else:
                attrs[k] = a
        ins = [clone(v) for v in n.inputs]
        outs = [clone(v) for v in n.outputs]
        new.nodes.append(Node(n.op_type, ins, outs, attrs, n.name, n.domain, n.source, n.opset))
    new.outputs = [clone(v) for v in g.outputs]
    return new
