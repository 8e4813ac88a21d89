"""The one rewrite mechanism: tables of (pattern -> replacement) rules applied by ``apply_rules``.

A rule matches at a root node, either with a declarative pattern (``P``) over the producers of the root's
inputs, or with a function for matches a fixed pattern cannot spell (a product in any association order).
Its ``build`` function gets an ``Editor`` and the ``Match`` and returns the values that replace the root's
outputs (or None to decline). The engine checks that every node the match consumed besides the root has
no reader outside the match, inserts the new nodes before the root, moves all readers (and graph outputs,
which keep their names) to the replacements, and finally drops the nodes left without readers.
Rules are applied in sweeps over the graph until a sweep changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import GraphcError
from ..ir import DType, Graph, Node, TensorType, Value
from ..ops.interpret import node_captures
from ..ops.registry import InferContext, get_opdef, has_fact


# ---- patterns --------------------------------------------------------------------------------------
class P:
    """A pattern over one value.

    - ``P("Mul", P.any("x"), P.const("c", pred))``: the value is output 0 of a Mul (inputs in either order,
      Mul being commutative) whose inputs match the sub-patterns; ``name=`` binds the value itself.
    - ``P.any("x")``: any value, bound to ``x``; a second ``P.any("x")`` must be the same value.
    - ``P.const("c", pred)``: a constant whose array satisfies ``pred``.
    ``attrs`` is a predicate on the node's attributes; ``inputs=None`` accepts any inputs.
    """

    def __init__(self, op: str | tuple[str, ...] | None = None, *inputs: "P", name: str | None = None,
                 attrs: Callable[[dict], bool] | None = None, any_inputs: bool = False, output: int = 0):
        self.ops = (op,) if isinstance(op, str) else op
        self.inputs = None if any_inputs else tuple(inputs)
        self.name = name
        self.attrs = attrs
        self.output = output
        self.kind = "node"
        self.pred: Callable[[np.ndarray], bool] | None = None

    @classmethod
    def any(cls, name: str) -> "P":
        p = cls(None, name=name)
        p.kind = "any"
        return p

    @classmethod
    def const(cls, name: str | None = None, pred: Callable[[np.ndarray], bool] | None = None) -> "P":
        p = cls(None, name=name)
        p.kind = "const"
        p.pred = pred
        return p

    def root_ops(self) -> tuple[str, ...]:
        return self.ops or ()


class Match:
    """What a pattern bound: values by name (``m["x"]``), their arrays (``m.const("c")``), the matched nodes."""

    def __init__(self, root: Node, values: dict[str, Value], nodes: Sequence[Node]):
        self.root = root
        self.values = values
        self.nodes = list(nodes)

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def get(self, name: str) -> Value | None:
        return self.values.get(name)

    def const(self, name: str) -> np.ndarray | None:
        v = self.values.get(name)
        return None if v is None else v.data

    def node(self, name: str) -> Node:
        return self.values[name].producer


def _present(inputs: list) -> list:
    n = len(inputs)
    while n and inputs[n - 1] is None:
        n -= 1
    return inputs[:n]


def _match(p: P, v: Value | None, b: dict, nodes: tuple) -> Iterator[tuple[dict, tuple]]:
    if v is None:
        return
    if p.kind == "any":
        if p.name in b:
            if b[p.name] is v:
                yield b, nodes
            return
        yield {**b, p.name: v}, nodes
        return
    if p.kind == "const":
        if v.data is None or (p.pred is not None and not _safe_pred(p.pred, v.data)):
            return
        if p.name is not None:
            if p.name in b and b[p.name] is not v:
                return
            b = {**b, p.name: v}
        yield b, nodes
        return
    n = v.producer
    if n is None or n.domain != "" or (p.ops is not None and n.op_type not in p.ops):
        return
    if p.output >= len(n.outputs) or n.outputs[p.output] is not v:
        return
    if p.attrs is not None and not p.attrs(n.attrs):
        return
    if p.name is not None:
        if p.name in b and b[p.name] is not v:
            return
        b = {**b, p.name: v}
    if not any(x is n for x in nodes):
        nodes = nodes + (n,)
    if p.inputs is None:
        yield b, nodes
        return
    ins = _present(n.inputs)
    if len(ins) != len(p.inputs):
        return
    orders = [ins]
    if has_fact(n, "commutative") and len(ins) == 2:
        orders.append(ins[::-1])
    for order in orders:
        yield from _match_all(p.inputs, order, b, nodes)


def _match_all(pats, vals, b, nodes):
    if not pats:
        yield b, nodes
        return
    for b1, n1 in _match(pats[0], vals[0], b, nodes):
        yield from _match_all(pats[1:], vals[1:], b1, n1)


def _safe_pred(pred, data) -> bool:
    try:
        return bool(pred(data))
    except Exception:
        return False


# ---- rules -----------------------------------------------------------------------------------------
@dataclass
class Rule:
    """One entry of a rewrite table.

    ``pattern`` (a ``P`` rooted at the op being rewritten) or ``find`` (``fn(editor, node) -> Match | None``)
    says what to match; ``build(editor, match)`` returns the replacement of the root's output 0 (a Value),
    of all its outputs (a list, None entries for outputs nobody may read), or None to decline.
    """

    name: str
    build: Callable[["Editor", Match], Value | list | None]
    pattern: P | None = None
    find: Callable[["Editor", Node], Match | None] | None = None
    ops: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.ops:
            self.ops = self.pattern.root_ops() if self.pattern is not None else ()
        if not self.ops:
            raise ValueError(f"rule '{self.name}' names no root op")

    def matches(self, ed: "Editor", node: Node) -> Iterator[Match]:
        if self.find is not None:
            m = self.find(ed, node)
            if m is not None:
                yield m
            return
        for b, nodes in _match(self.pattern, node.outputs[0] if node.outputs else None, {}, ()):
            yield Match(node, b, nodes)


def rule_table(rules: Sequence[Rule]) -> dict[str, list[Rule]]:
    table: dict[str, list[Rule]] = {}
    for r in rules:
        for op in r.ops:
            table.setdefault(op, []).append(r)
    return table


# ---- editing -----------------------------------------------------------------------------------------
class Editor:
    """Edits a graph during one sweep: a use map, nodes waiting to be inserted, replacements of values."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.uses: dict[int, list[tuple[Node, int]]] = {}
        for n in graph.nodes:
            self._add_uses(n)
        self.output_ids = {id(v) for v in graph.outputs}
        self.input_ids = {id(v) for v in graph.inputs}
        self._pending: list[Node] = []
        self._inserts: dict[int, list[Node]] = {}
        self.applied: dict[str, int] = {}

    def _add_uses(self, n: Node) -> None:
        for i, v in enumerate(n.inputs):
            if v is not None:
                self.uses.setdefault(id(v), []).append((n, i))
        for v in node_captures(n) if n.subgraphs() else ():
            self.uses.setdefault(id(v), []).append((n, -1))

    # ---- queries used by rules ----
    def readers(self, v: Value) -> list[tuple[Node, int]]:
        return self.uses.get(id(v), [])

    def n_uses(self, v: Value) -> int:
        return len(self.readers(v)) + (1 if id(v) in self.output_ids else 0)

    def is_output(self, v: Value) -> bool:
        return id(v) in self.output_ids

    # ---- building (nodes are inserted only when the rule succeeds) ----
    def node(self, op_type: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None,
             num_outputs: int = 1, name: str | None = None, domain: str = "") -> Node:
        g = self.graph
        nname = g.unique_node_name(name or op_type)
        outs = [Value(g.unique_name(nname if num_outputs == 1 else f"{nname}:{i}")) for i in range(num_outputs)]
        node = Node(op_type, inputs, outs, attrs, name=nname, domain=domain, opset=g.opset.get(domain))
        op = get_opdef(node)
        op.complete_attrs(node)
        infer_node(g, node)
        self._pending.append(node)
        return node

    def op(self, op_type: str, *inputs: Value | None, name: str | None = None, **attrs) -> Value:
        """Shorthand: a one-output node; returns its output."""
        return self.node(op_type, list(inputs), attrs, name=name).outputs[0]

    def const(self, data, name: str = "const") -> Value:
        return self.graph.add_constant(np.asarray(data), name)

    # ---- applying ----
    def can_replace(self, old: Value, new: Value | None) -> bool:
        if new is old:
            return True
        readers = self.readers(old)
        if any(i < 0 for _, i in readers):
            return False  # read inside a subgraph body: rewriting it there is not worth the risk
        if new is None:
            return not readers and id(old) not in self.output_ids
        if isinstance(old.type, TensorType) and isinstance(new.type, TensorType):
            if old.type.dtype is not None and new.type.dtype is not None and old.type.dtype != new.type.dtype:
                return False
        if id(old) in self.output_ids:
            # a graph output keeps its name: the replacement takes it, so it must be free to be renamed
            if id(new) in self.output_ids or id(new) in self.input_ids:
                return False
            if new.producer is None and new.data is None:
                return False
        return True

    def replace(self, old: Value, new: Value) -> None:
        if new is old:
            return
        if id(old) in self.output_ids:
            self._rename(new, old.name)
            self.graph.outputs = [new if o is old else o for o in self.graph.outputs]
            self.output_ids.discard(id(old))
            self.output_ids.add(id(new))
        moved = self.uses.pop(id(old), [])
        for n, i in moved:
            n.inputs[i] = new
        self.uses.setdefault(id(new), []).extend(moved)

    def _rename(self, v: Value, name: str) -> None:
        g = self.graph
        if v.data is not None and g.constants.get(v.name) is v:
            del g.constants[v.name]
            v.name = name
            g.constants[name] = v
        else:
            v.name = name

    def try_rule(self, rule: Rule, node: Node) -> bool:
        for m in rule.matches(self, node):
            if not self._interior_private(m):
                continue
            mark = len(self._pending)
            try:
                result = rule.build(self, m)
            except GraphcError:
                result = None
            if result is None:
                del self._pending[mark:]
                continue
            new = [result] if isinstance(result, Value) else list(result)
            new += [None] * (len(node.outputs) - len(new))
            olds = [(o, n) for o, n in zip(node.outputs, new) if o is not None]
            if not all(self.can_replace(o, n) for o, n in olds):
                del self._pending[mark:]
                continue
            added = self._pending[mark:]
            del self._pending[mark:]
            self._inserts.setdefault(id(node), []).extend(added)
            for n in added:
                self._add_uses(n)
            for o, n in olds:
                if n is not None:
                    self.replace(o, n)
            self._release_sources(m)
            self.applied[rule.name] = self.applied.get(rule.name, 0) + 1
            return True
        return False

    def _release_sources(self, m: Match) -> None:
        """Drop, at once, the constants that only the replaced nodes read: a folded weight replaces its source
        instead of joining it until the end of the sweep (and, the dead nodes being cycles, beyond)."""
        dead = {id(n) for n in m.nodes} | {id(m.root)}
        for n in [m.root, *m.nodes]:
            for v in n.inputs:
                if v is None or v.data is None or self.graph.constants.get(v.name) is not v or id(v) in self.output_ids:
                    continue
                if all(id(r) in dead and i >= 0 for r, i in self.readers(v)):
                    del self.graph.constants[v.name]
                    v.data = None

    def _interior_private(self, m: Match) -> bool:
        """Every matched node but the root is read only by matched nodes (so the rewrite removes it)."""
        inside = {id(n) for n in m.nodes} | {id(m.root)}
        for n in m.nodes:
            if n is m.root:
                continue
            for v in n.outputs:
                if v is None:
                    continue
                if id(v) in self.output_ids:
                    return False
                if any(id(r) not in inside for r, _ in self.readers(v)):
                    return False
        return True

    def finish(self) -> None:
        """Insert the new nodes before the roots they replace, then drop nodes nobody reads."""
        from .dce import remove_dead

        if self._inserts:
            order: list[Node] = []
            for n in self.graph.nodes:
                order.extend(self._inserts.get(id(n), ()))
                order.append(n)
            self.graph.nodes = order
            self._inserts = {}
        remove_dead(self.graph)


def infer_node(graph: Graph, node: Node) -> None:
    """Give a new node's outputs the types its OpDef infers from its inputs."""
    op = get_opdef(node)
    if op.infer is None:
        return
    try:
        types = op.infer(InferContext(node, graph))
    except GraphcError:
        raise
    except Exception:
        return
    for v, t in zip(node.outputs, types):
        if v is not None and t is not None:
            v.type = t


def apply_rules(graph: Graph, rules: Sequence[Rule] | dict[str, list[Rule]], max_sweeps: int = 16,
                applied: dict[str, int] | None = None) -> bool:
    """Apply a rule table in sweeps until one changes nothing; True when anything changed.

    ``applied`` (if given) collects how many times each rule fired.
    """
    table = rules if isinstance(rules, dict) else rule_table(rules)
    changed_any = False
    for _ in range(max_sweeps):
        ed = Editor(graph)
        changed = False
        for node in list(graph.nodes):
            for rule in table.get(node.op_type, ()):
                if node.domain == "" and ed.try_rule(rule, node):
                    changed = True
                    break
        ed.finish()
        if applied is not None:
            for k, c in ed.applied.items():
                applied[k] = applied.get(k, 0) + c
        if not changed:
            break
        changed_any = True
    return changed_any


# ---- small helpers for rules -----------------------------------------------------------------------
def static_shape(v: Value | None) -> tuple | None:
    t = v.type if v is not None else None
    return tuple(t.shape) if isinstance(t, TensorType) and t.shape is not None else None


def dtype_of(v: Value | None) -> DType | None:
    t = v.type if v is not None else None
    return t.dtype if isinstance(t, TensorType) else None


def is_scalar_like(a: np.ndarray) -> bool:
    return isinstance(a, np.ndarray) and a.size == 1


def all_equal(value: float, rtol: float = 0.0) -> Callable[[np.ndarray], bool]:
    """Predicate: every entry of a numeric array equals ``value`` (within ``rtol``)."""

    def pred(a: np.ndarray) -> bool:
        if a.dtype.kind not in "fiub" or a.size == 0:
            return False
        x = a.astype(np.float64)
        return bool(np.all(np.abs(x - value) <= rtol * abs(value)))

    return pred
