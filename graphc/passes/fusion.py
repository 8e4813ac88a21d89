"""Fusion: groups ops into ``graphc.FusedGroup`` nodes by their pattern kinds and the post-dominator tree.

The rules, on one card (after TVM's ``fuse_ops``):

- Every op has a kind (``OpDef.kind``): elementwise < broadcast < injective < reduction < out-fusable < opaque.
  A node with subgraphs, several outputs, a random result or no OpDef counts as opaque.
- An edge from a producer to a consumer is *elementwise* when the consumer's output has the shape of the
  value it reads: nothing is broadcast up, so a fused loop computes the producer once per element.
- A node fuses only into its immediate post-dominator D (every path from the node to the graph's end goes
  through D), and every op on the paths between them joins the same group. A group is therefore convex
  and has one root, the only member whose value leaves the group.
- The node's group fuses into D when every op on those paths (D included) is accepted by the group's kind:
  out-fusable (Conv, MatMul, Gemm) and elementwise/broadcast groups accept elementwise/broadcast ops through
  elementwise edges (an epilogue: bias, activation, residual add; or simply a longer elementwise chain);
  an elementwise/broadcast group also fuses into a reduction D (a prologue); injective groups accept
  injective ops; reductions and opaque ops take nothing after them.
- A group holds at most one out-fusable op and at most ``MAX_GROUP_OPS`` ops.

Every edge left between two groups gets a reason (``FusionReport.explain``): kind, shape, multiple
consumers, graph output or size limit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import node_label
from ..ir import Graph, Node, TensorType, Value
from ..ops.interpret import node_captures
from ..ops.registry import Kind, lookup

#: The most ops one group may hold (TVM uses 256; a smaller group keeps kernels and listings readable).
MAX_GROUP_OPS = 64

#: Constants at most this large (or not floating point) are copied into a group's body, so shape and axis
#: arguments stay visible to inference and code generation; larger ones (weights) become body inputs.
BODY_CONSTANT_LIMIT = 64

FUSED_OP = "FusedGroup"
FUSED_DOMAIN = "graphc"

_KIND_NAMES = {Kind.ELEMENTWISE: "elementwise", Kind.BROADCAST: "broadcast", Kind.INJECTIVE: "injective",
               Kind.REDUCTION: "reduction", Kind.OUT_FUSABLE: "out-fusable", Kind.OPAQUE: "opaque"}


def kind_name(kind: Kind) -> str:
    return _KIND_NAMES[kind]


# ---- report -----------------------------------------------------------------------------------
@dataclass
class FusedGroupInfo:
    """One group fusion made: the FusedGroup node's name, its pattern kind, and its ops in order."""

    name: str
    kind: str
    ops: list[str]
    nodes: list[str]


@dataclass
class UnfusedEdge:
    """An edge between two groups and why it stayed: ``reason`` is one of REASONS, ``detail`` says more."""

    producer: str
    consumer: str
    value: str
    reason: str
    detail: str
    producer_op: str = ""
    consumer_op: str = ""


REASONS = ("kind", "shape", "multiple consumers", "graph output", "size limit")


@dataclass
class FusionReport:
    groups: list[FusedGroupInfo] = field(default_factory=list)
    unfused: list[UnfusedEdge] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    seconds: float = 0.0

    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.unfused:
            counts[e.reason] = counts.get(e.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def summary(self) -> str:
        fused_ops = sum(len(g.nodes) for g in self.groups)
        reasons = ", ".join(f"{k}: {n}" for k, n in self.reason_counts().items()) or "none"
        return (f"fusion: {len(self.groups)} groups holding {fused_ops} ops; {self.nodes_before} nodes -> "
                f"{self.nodes_after}; {len(self.unfused)} edges left unfused ({reasons}); "
                f"{1e3 * self.seconds:.1f} ms")

    def explain(self) -> str:
        """One line per group, then one line per unfused edge with its reason."""
        lines = [self.summary(), "groups:"]
        for g in self.groups:
            lines.append(f"  {g.name} [{g.kind}]: {' + '.join(g.ops)}")
        lines.append("unfused edges:")
        for e in self.unfused:
            lines.append(f"  {e.producer_op} '{e.producer}' -> {e.consumer_op} '{e.consumer}' (%{e.value}): "
                         f"{e.reason}: {e.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"groups": [vars(g) for g in self.groups], "unfused": [vars(e) for e in self.unfused],
                "nodes_before": self.nodes_before, "nodes_after": self.nodes_after, "seconds": self.seconds}

    @staticmethod
    def from_dict(d: dict) -> "FusionReport":
        return FusionReport([FusedGroupInfo(**g) for g in d.get("groups", [])],
                            [UnfusedEdge(**e) for e in d.get("unfused", [])], int(d.get("nodes_before", 0)),
                            int(d.get("nodes_after", 0)), float(d.get("seconds", 0.0)))


# ---- kinds and edges --------------------------------------------------------------------------
def node_kind(node: Node) -> tuple[Kind, str]:
    """The node's fusion kind, and for an op made opaque by its node (not its OpDef) the reason."""
    op = lookup(node.domain, node.op_type)
    if op is None:
        return Kind.OPAQUE, " (no OpDef)"
    if node.subgraphs():
        return Kind.OPAQUE, " (it has subgraphs)"
    if op.nondeterministic and not node.domain:
        return Kind.OPAQUE, " (its result is random)"
    if sum(v is not None for v in node.outputs) > 1:
        return Kind.OPAQUE, " (it has several outputs)"
    if not all(isinstance(v.type, TensorType) for v in node.outputs if v is not None):
        return Kind.OPAQUE, " (its output is not a tensor)"
    return op.kind, ""


def _out(node: Node) -> Value:
    return next(v for v in node.outputs if v is not None)


def _shape(v: Value):
    return v.type.shape if isinstance(v.type, TensorType) else None


def _label(node: Node) -> str:
    return f"{node.op_type} '{node.name}'"


class _Group:
    __slots__ = ("members", "kind", "out_fusable")

    def __init__(self, members: list[int], kind: Kind, out_fusable: int | None):
        self.members = members
        self.kind = kind
        self.out_fusable = out_fusable


_SINK = -1


class _Fuser:
    """Decides the groups over ``graph.nodes`` (indices in topological order)."""

    def __init__(self, graph: Graph, max_ops: int):
        self.graph = graph
        self.nodes = graph.nodes
        self.max_ops = max_ops
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        kinds = [node_kind(n) for n in self.nodes]
        self.kind = [k for k, _ in kinds]
        self.opaque_why = [w for _, w in kinds]
        # consumers[i]: (consumer index, value read) pairs, one per distinct (value, consumer)
        self.consumers: list[list[tuple[int, Value]]] = [[] for _ in self.nodes]
        seen = set()
        for j, n in enumerate(self.nodes):
            reads = [v for v in n.inputs if v is not None] + (node_captures(n) if n.subgraphs() else [])
            for v in reads:
                p = v.producer
                if p is None or id(p) not in self.index or (id(v), j) in seen:
                    continue
                seen.add((id(v), j))
                self.consumers[self.index[id(p)]].append((j, v))
        out_ids = {id(v) for v in graph.outputs}
        self.is_output = [any(v is not None and id(v) in out_ids for v in n.outputs) for n in self.nodes]
        self.ipdom = self._post_dominators()
        self.group = [_Group([i], self.kind[i], i if self.kind[i] == Kind.OUT_FUSABLE else None)
                      for i in range(len(self.nodes))]
        self.failure: dict[int, tuple[str, str]] = {}

    def _post_dominators(self) -> list[int]:
        """The immediate post-dominator of each node (``_SINK``: the graph's end).

        The nodes are in topological order, so a node's post-dominators all come after it: walking the
        nodes backwards, a node's immediate post-dominator is the meeting point of its consumers' chains
        (and the end, for a graph output), found by climbing the lower-indexed chain until both meet (the
        "intersect" step of Cooper, Harvey and Kennedy's dominance algorithm, on a DAG in one pass). This is
        the networkx ``immediate_dominators`` result on the reversed graph, without importing networkx
        (17 MiB of resident memory) into every compile.
        """
        n = len(self.nodes)
        end = n  # _SINK's place in the order: after every node
        ipdom = [end] * n

        def meet(a: int, b: int) -> int:
            while a != b:
                while a < b:
                    a = ipdom[a]
                while b < a:
                    b = ipdom[b]
            return a

        for i in range(n - 1, -1, -1):
            targets = [j for j, _ in self.consumers[i]]
            if self.is_output[i] or not targets:
                targets.append(end)
            d = targets[0]
            for j in targets[1:]:
                d = meet(d, j)
            ipdom[i] = d
        return [_SINK if d == end else d for d in ipdom]

    # -- judging ---------------------------------------------------------------------------------
    def edge_verdict(self, gkind: Kind, v: Value, p: int, is_dom: bool) -> tuple[str, str] | None:
        """Why a group of kind ``gkind`` cannot take op ``p`` through an edge reading ``v`` (None: it can)."""
        node, kp = self.nodes[p], self.kind[p]
        if kp == Kind.OPAQUE:
            return "kind", f"{_label(node)} is opaque{self.opaque_why[p]}"
        if gkind == Kind.INJECTIVE:
            if kp != Kind.INJECTIVE:
                return "kind", (f"{_label(node)} is {kind_name(kp)} and the producer's group is injective: "
                                f"injective ops fuse only with injective ops")
            return None
        if kp == Kind.REDUCTION and is_dom and gkind <= Kind.BROADCAST:
            return None  # an elementwise prologue of a reduction
        if kp == Kind.OUT_FUSABLE:
            return "kind", (f"{_label(node)} is out-fusable: it takes the ops after it as an epilogue, "
                            f"never the ops before it")
        if kp == Kind.REDUCTION:
            return "kind", (f"{_label(node)} is a reduction: only an elementwise prologue fuses into it, "
                            f"and the producer's group is {kind_name(gkind)}")
        if kp == Kind.INJECTIVE:
            return "kind", (f"{_label(node)} is injective: it fuses only with injective ops, and the producer's "
                            f"group is {kind_name(gkind)}")
        got, want = _shape(v), _shape(_out(node))
        if got is None or want is None:
            return "shape", f"the shape of %{v.name} or of {_label(node)}'s output is unknown"
        if tuple(got) != tuple(want):
            return "shape", (f"{_label(node)} broadcasts %{v.name} ({v.type}) up to {_out(node).type}; fused, "
                             f"it would be recomputed for every output element")
        return None

    def group_verdict(self, i: int) -> tuple[str, str] | None:
        """Why node i's group cannot take anything after it (None: it may)."""
        g = self.group[i]
        if g.kind == Kind.OPAQUE:
            return "kind", f"{_label(self.nodes[i])} is opaque{self.opaque_why[i]}"
        if g.kind == Kind.REDUCTION:
            return "kind", f"{_label(self.nodes[i])} ends a reduction group, and reductions take no epilogue"
        return None

    def paths_to(self, i: int, d: int) -> list[int] | None:
        """Nodes on the paths from i to its post-dominator d (d included), or None past the size limit."""
        found = {d}
        stack = [j for j, _ in self.consumers[i]]
        while stack:
            j = stack.pop()
            if j in found:
                continue
            found.add(j)
            if len(found) > self.max_ops:
                return None
            stack.extend(k for k, _ in self.consumers[j])
        return sorted(found)

    def try_fuse(self, i: int) -> tuple[str, str] | None:
        """Fuse node i's group into its immediate post-dominator; returns why not, or None on success."""
        d = self.ipdom[i]
        why = self.group_verdict(i)
        if why:
            return why
        if d == _SINK:
            return self._no_dominator_reason(i)
        g = self.group[i]
        path = self.paths_to(i, d)
        if path is None:
            return "size limit", f"the ops between {_label(self.nodes[i])} and {_label(self.nodes[d])} exceed " \
                                 f"the limit of {self.max_ops} ops per group"
        members = set(path) | {i}
        for p in path:
            for u in [i] + path:
                for c, v in self.consumers[u]:
                    if c == p:
                        why = self.edge_verdict(g.kind, v, p, p == d)
                        if why:
                            return why
        groups = {id(self.group[k]): self.group[k] for k in members}
        size = sum(len(x.members) for x in groups.values())
        if size > self.max_ops:
            return "size limit", f"the group would hold {size} ops (limit {self.max_ops})"
        outs = [x.out_fusable for x in groups.values() if x.out_fusable is not None]
        if len(outs) > 1:
            a, b = (self.nodes[k] for k in sorted(outs)[:2])
            return "kind", f"the group would hold two out-fusable ops, {_label(a)} and {_label(b)}"
        merged = sorted(k for x in groups.values() for k in x.members)
        new = _Group(merged, max(x.kind for x in groups.values()), outs[0] if outs else None)
        for k in merged:
            self.group[k] = new
        return None

    def _no_dominator_reason(self, i: int) -> tuple[str, str]:
        node = self.nodes[i]
        if self.is_output[i]:
            return "graph output", f"%{_out(node).name} is a graph output, so it is written out whole"
        readers = sorted({c for c, _ in self.consumers[i]})
        shown = ", ".join(_label(self.nodes[c]) for c in readers[:3])
        return "multiple consumers", (f"its readers ({shown}) lead to the graph's end on separate paths that "
                                      f"never meet again")

    def run(self) -> None:
        for i in range(len(self.nodes)):
            if self.group[i].members[-1] != i:  # inside a group already: its edges are internal
                continue
            why = self.try_fuse(i)
            if why:
                self.failure[i] = why

    # -- explaining ------------------------------------------------------------------------------
    def unfused_edges(self) -> list[UnfusedEdge]:
        out = []
        for i, n in enumerate(self.nodes):
            for c, v in self.consumers[i]:
                if self.group[c] is self.group[i]:
                    continue
                reason, detail = self.edge_reason(i, c, v)
                out.append(UnfusedEdge(n.name, self.nodes[c].name, v.name, reason, detail, n.op_type,
                                       self.nodes[c].op_type))
        return out

    def edge_reason(self, i: int, c: int, v: Value) -> tuple[str, str]:
        why = self.group_verdict(i)
        if why:
            return why
        why = self.edge_verdict(self.group[i].kind, v, c, c == self.ipdom[i])
        if why:
            return why
        if self.ipdom[i] == _SINK:
            return self._no_dominator_reason(i)
        reason, detail = self.failure.get(i, ("kind", "the consumer's group could not take it"))
        readers = sorted({k for k, _ in self.consumers[i]})
        if len(readers) > 1 and reason not in ("size limit",):
            others = ", ".join(_label(self.nodes[k]) for k in readers if k != c)
            return "multiple consumers", (f"%{v.name} is also read by {others}; the paths meet again at "
                                          f"{_label(self.nodes[self.ipdom[i]])}, but {detail}")
        return reason, detail


# ---- rewriting ---------------------------------------------------------------------------------
def _build_group_node(graph: Graph, members: list[Node], kind: Kind, out_ids_outside: set[int]) -> Node:
    """Replace nothing yet: make the FusedGroup node (with its body) standing for ``members``."""
    root = members[-1]
    name = graph.unique_node_name(f"fused_{root.name}")
    body = Graph(name)
    body.opset = dict(graph.opset)
    produced = {id(v) for n in members for v in n.outputs if v is not None}
    mapping: dict[int, Value] = {}
    ext: list[Value] = []
    for n in members:
        for v in n.inputs:
            if v is None or id(v) in produced or id(v) in mapping:
                continue
            if v.data is not None and (v.data.size <= BODY_CONSTANT_LIMIT or v.data.dtype.kind not in "fc"):
                c = Value(v.name, v.type, data=v.data)
                body.reserve_name(v.name)
                body.constants[v.name] = c
                mapping[id(v)] = c
            else:
                bi = Value(graph.unique_name(f"{name}/{v.name}"), v.type)
                body.reserve_name(bi.name)
                body.inputs.append(bi)
                mapping[id(v)] = bi
                ext.append(v)
    outer_outs: list[Value] = []
    for n in members:
        new_outs = []
        for v in n.outputs:
            if v is None:
                new_outs.append(None)
            elif id(v) in out_ids_outside:
                bv = Value(graph.unique_name(f"{name}/{v.name}"), v.type)
                body.reserve_name(bv.name)
                mapping[id(v)] = bv
                new_outs.append(bv)
                outer_outs.append(v)
                body.outputs.append(bv)
            else:
                body.reserve_name(v.name)
                mapping[id(v)] = v
                new_outs.append(v)
        body._node_names.add(n.name)
        body.nodes.append(Node(n.op_type, [mapping[id(v)] if v is not None else None for v in n.inputs], new_outs,
                               n.attrs, name=n.name, domain=n.domain, source=n.source, opset=n.opset))
    return Node(FUSED_OP, ext, outer_outs, {"body": body, "kind": kind_name(kind).replace("-", "_")}, name=name,
                domain=FUSED_DOMAIN, opset=graph.opset.get(FUSED_DOMAIN, 1))


def fuse(graph: Graph, max_ops: int = MAX_GROUP_OPS) -> FusionReport:
    """Fuse ``graph`` in place (its top level): each group of two or more ops becomes a FusedGroup node."""
    t0 = time.perf_counter()
    report = FusionReport(nodes_before=len(graph.nodes))
    fuser = _Fuser(graph, max_ops)
    fuser.run()
    report.unfused = fuser.unfused_edges()
    nodes = graph.nodes
    groups = {}
    for i in range(len(nodes)):
        g = fuser.group[i]
        if len(g.members) > 1:
            groups[id(g)] = g
    if not groups:
        report.nodes_after = len(nodes)
        report.seconds = time.perf_counter() - t0
        return report
    graph.opset.setdefault(FUSED_DOMAIN, 1)
    read_outside: dict[int, set[int]] = {}  # group id -> ids of member values read outside the group
    out_ids = {id(v) for v in graph.outputs}
    for g in groups.values():
        member_set = set(g.members)
        outside = set()
        for k in g.members:
            for c, v in fuser.consumers[k]:
                if c not in member_set:
                    outside.add(id(v))
            outside.update(id(v) for v in nodes[k].outputs if v is not None and id(v) in out_ids)
        read_outside[id(g)] = outside
    used_before = {id(v) for n in nodes for v in n.inputs if v is not None}
    new_nodes: list[Node] = []
    for i, n in enumerate(nodes):
        g = fuser.group[i]
        if len(g.members) == 1:
            new_nodes.append(n)
        elif g.members[-1] == i:
            members = [nodes[k] for k in g.members]
            fused = _build_group_node(graph, members, g.kind, read_outside[id(g)])
            new_nodes.append(fused)
            report.groups.append(FusedGroupInfo(fused.name, fused.attrs["kind"], [m.op_type for m in members],
                                                [m.name for m in members]))
    graph.nodes = new_nodes
    graph.sort_topologically()  # a no-op for convex groups; raises InvalidGraphError if one was not
    used_after = {id(v) for n in graph.nodes for v in n.inputs if v is not None} | out_ids
    for name, v in list(graph.constants.items()):
        if id(v) in used_before and id(v) not in used_after:
            del graph.constants[name]  # copied into the bodies that read it
    report.nodes_after = len(graph.nodes)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["FusionReport", "FusedGroupInfo", "UnfusedEdge", "MAX_GROUP_OPS", "REASONS", "fuse", "node_kind"]
