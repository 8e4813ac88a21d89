"""Reverse-mode differentiation: appends to a graph the nodes that compute d(sum of ys)/d(each x).

``gradients(graph, ys, xs)`` walks the nodes between the xs and the ys in reverse topological order and
calls each node's ``OpDef.grad`` rule, which builds ordinary IR nodes through a ``GradContext``. The
gradient nodes are part of the graph afterwards, so shape inference, folding and fusion treat them like
the forward pass. A value read several times receives one partial gradient per use; they are added up
(fan-out). Rules undo broadcasting with ``GradContext.unbroadcast``. Since rules are built from
registered (mostly differentiable) ops, the result can be differentiated again (higher order).

When no gradient reaches an x, ``GradientError`` says why: nothing connects it to the ys, or the path goes
through a node whose op is not differentiable (the error names the node, its op and where it was created).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import GradientError, ShapeError, node_label
from .ir import DType, Graph, Node, TensorType, Value
from .ops.registry import REGISTRY, InferContext, lookup

__all__ = ["GradContext", "GradOverride", "gradients", "differentiability", "GradientError"]


class GradOverride:
    """A gradient rule for one node of one graph, used instead of its op's rule (``stop_gradient`` and
    ``custom_gradient`` of the DSL): ``rule(ctx, node, dys)`` returns one gradient per value of ``wrt``
    (the node's inputs when None), like an op's rule returns one per input; None means "no gradient"."""

    __slots__ = ("node", "rule", "wrt")

    def __init__(self, node: Node, rule: Callable, wrt: Sequence[Value] | None = None):
        self.node, self.rule, self.wrt = node, rule, None if wrt is None else list(wrt)


def _all_inputs(node: Node) -> list[Value]:
    """A node's inputs plus the enclosing values its subgraphs read (a gradient path may pass there too)."""
    vals = [v for v in node.inputs if v is not None]
    for sub in node.subgraphs():
        vals.extend(sub.captures)
    return vals


def _is_float(v: Value) -> bool:
    return isinstance(v.type, TensorType) and v.type.dtype is not None and v.type.dtype.is_float


class GradContext:
    """What a gradient rule builds with: ``op`` appends a node (types inferred at once), plus shape helpers.

    ``node`` is the forward node whose rule is running; new nodes are named after it and carry its source
    line, so a gradient node in a listing or an error points back at the user's code.
    """

    def __init__(self, graph: Graph, overrides: dict[int, GradOverride] | None = None):
        self.graph = graph
        self.node: Node | None = None
        #: Per-node rules that replace the op's (id(node) -> GradOverride).
        self.overrides: dict[int, GradOverride] = overrides or {}
        #: What inference learned of small integer values built here (Shape of a symbolic tensor...).
        self._symbolic: dict[int, tuple] = {}

    # ---- building nodes ---------------------------------------------------------------------------
    def op_n(self, op_type: str, *inputs: Value | None, num_outputs: int, domain: str = "",
             **attrs: Any) -> list[Value]:
        """Append a node with ``num_outputs`` outputs; returns them (typed by the op's inference)."""
        opdef = lookup(domain, op_type)
        if opdef is None:
            raise GradientError(f"gradient rule of {self._where()} uses {op_type}, which has no OpDef")
        base = f"{self.node.name}_grad" if self.node is not None else "grad"
        node = self.graph.add_node(op_type, list(inputs), {k: v for k, v in attrs.items() if v is not None},
                                   num_outputs=num_outputs, name=base, domain=domain,
                                   source=self.node.source if self.node is not None else None)
        opdef.complete_attrs(node)
        if opdef.infer is not None:
            ictx = InferContext(node, self.graph, {}, symbolic=self._symbolic)
            try:
                types = opdef.infer(ictx)
            except ShapeError as e:
                raise GradientError(f"gradient rule of {self._where()} built an invalid node: {e}") from e
            for k, (v, t) in enumerate(zip(node.outputs, types)):
                v.type = t
                if k in ictx.produced_sym:
                    self._symbolic[id(v)] = ictx.produced_sym[k]
        return node.outputs

    def op(self, op_type: str, *inputs: Value | None, domain: str = "", **attrs: Any) -> Value:
        """Append a one-output node ``op_type(*inputs, **attrs)``; returns its output."""
        return self.op_n(op_type, *inputs, num_outputs=1, domain=domain, **attrs)[0]

    def const(self, array, like: Value | None = None) -> Value:
        """A constant; with ``like``, in like's element type."""
        arr = np.asarray(array)
        if like is not None:
            arr = arr.astype(self.dtype(like).np)
        name = f"{self.node.name}_grad_c" if self.node is not None else "grad_c"
        return self.graph.add_constant(arr, name)

    def scalar(self, x: float, like: Value) -> Value:
        """A rank-0 constant in like's element type."""
        return self.const(np.array(x), like)

    def ints(self, values: Sequence[int]) -> Value:
        """A 1-D int64 constant (axes, shapes, pads)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def output(self, node: Node, k: int) -> Value:
        """Output k of a forward node, declaring it when the model did not (e.g. Dropout's mask)."""
        while len(node.outputs) <= k:
            node.outputs.append(None)
        if node.outputs[k] is None:
            v = Value(self.graph.unique_name(f"{node.name}:{k}"), producer=node)
            opdef = lookup(node.domain, node.op_type)
            if opdef is not None and opdef.infer is not None:
                types = opdef.infer(InferContext(node, self.graph, {}, symbolic=self._symbolic))
                v.type = types[k] if k < len(types) else None
            node.outputs[k] = v
        return node.outputs[k]

    # ---- types and shapes -----------------------------------------------------------------------
    def dtype(self, v: Value) -> DType:
        t = v.type
        if not isinstance(t, TensorType) or t.dtype is None:
            raise GradientError(f"gradient rule of {self._where()}: the element type of '{v.name}' is unknown "
                                f"(run shape inference before taking gradients)")
        return t.dtype

    def shape_of(self, v: Value) -> tuple | None:
        """The (possibly symbolic) shape of v, or None when its rank is unknown."""
        return v.type.shape if isinstance(v.type, TensorType) else None

    def static_shape(self, v: Value) -> tuple[int, ...] | None:
        s = self.shape_of(v)
        return s if s is not None and all(isinstance(d, int) for d in s) else None

    def rank(self, v: Value) -> int:
        s = self.shape_of(v)
        if s is None:
            raise GradientError(f"gradient rule of {self._where()} needs the rank of '{v.name}', which is unknown")
        return len(s)

    def shape(self, v: Value) -> Value:
        """v's shape as a 1-D int64 value (a constant when static)."""
        s = self.static_shape(v)
        return self.ints(s) if s is not None else self.op("Shape", v)

    def dim(self, v: Value, axis: int) -> Value:
        """v's size along ``axis`` as a 1-D int64 value of one element."""
        s = self.shape_of(v)
        if s is not None and isinstance(s[axis], int):
            return self.ints([s[axis]])
        return self.op("Shape", v, start=axis, end=axis + 1 if axis != -1 else None)

    def size(self, v: Value, like: Value | None = None) -> Value:
        """v's element count as a scalar: int64, or like's element type when given."""
        s = self.static_shape(v)
        if s is not None:
            n = int(np.prod(s, dtype=np.int64))
            return self.const(np.array(n, np.int64)) if like is None else self.scalar(n, like)
        n = self.op("Size", v)
        return n if like is None else self.op("Cast", n, to=self.dtype(like).value)

    def shape_vector(self, parts: Sequence[int | Value]) -> Value:
        """A 1-D int64 shape from ints and 1-element int64 values (a constant when all are ints)."""
        if all(isinstance(p, (int, np.integer)) for p in parts):
            return self.ints([int(p) for p in parts])
        vals = [self.ints([p]) if isinstance(p, (int, np.integer)) else p for p in parts]
        return self.op("Concat", *vals, axis=0)

    def zeros_like(self, v: Value) -> Value:
        s = self.static_shape(v)
        if s is not None:
            return self.const(np.zeros(s), v)
        return self.op("ConstantOfShape", self.op("Shape", v), value=np.zeros(1, self.dtype(v).np))

    def ones_like(self, v: Value) -> Value:
        s = self.static_shape(v)
        if s is not None:
            return self.const(np.ones(s), v)
        return self.op("ConstantOfShape", self.op("Shape", v), value=np.ones(1, self.dtype(v).np))

    def reshape_like(self, g: Value, like: Value) -> Value:
        """g reshaped to like's shape (used by shape-only ops: their gradient is a reshape back)."""
        r = self.op("Reshape", g, self.shape(like))
        r.type = TensorType(r.type.dtype, self.shape_of(like))
        return r

    def expand_like(self, g: Value, like: Value) -> Value:
        """g broadcast to like's shape."""
        if self.shape_of(g) is not None and self.shape_of(g) == self.shape_of(like):
            return g
        return self.op("Expand", g, self.shape(like))

    def unbroadcast(self, g: Value, like: Value) -> Value:
        """Sum g over the axes along which ``like`` was broadcast, giving a value of like's shape.

        With known dims the axes are found now; where a symbolic dim might be 1 at run time (two different
        symbols), the axes are computed in the graph from the shapes.
        """
        gs, ls = self.shape_of(g), self.shape_of(like)
        if gs is None or ls is None:
            return self._unbroadcast_dynamic(g, like)
        if gs == ls:
            return g
        lead = len(gs) - len(ls)
        if lead < 0:
            return self._unbroadcast_dynamic(g, like)
        axes = list(range(lead))
        for k, d in enumerate(ls):
            gd = gs[lead + k]
            if d == gd:
                continue
            if d == 1:
                axes.append(lead + k)
            elif isinstance(d, int) and isinstance(gd, int):
                raise GradientError(f"gradient rule of {self._where()}: gradient of shape {list(gs)} does not "
                                    f"broadcast from '{like.name}' of shape {list(ls)}")
            else:  # e.g. like's dim 'N' against g's dim 'M': N may be 1 at run time
                return self._unbroadcast_dynamic(g, like)
        r = self.op("ReduceSum", g, self.ints(axes), keepdims=1) if axes else g
        if lead:
            r = self.reshape_like(r, like)
        return r

    def _unbroadcast_dynamic(self, g: Value, like: Value) -> Value:
        """unbroadcast with the axes computed at run time: every axis where like's (padded) shape is 1."""
        lrank = self.rank(like)
        gshape = self.op("Shape", g)
        lshape = self.op("Shape", like)
        grank = self.op("Size", gshape)
        pad = self.op("Sub", self.op("Reshape", grank, self.ints([1])), self.ints([lrank]))
        ones = self.op("ConstantOfShape", pad, value=np.ones(1, np.int64))
        padded = self.op("Concat", ones, lshape, axis=0)
        differs = self.op("Not", self.op("Equal", padded, gshape))
        axes = self.op("Reshape", self.op("NonZero", differs), self.ints([-1]))
        r = self.op("ReduceSum", g, axes, keepdims=1, noop_with_empty_axes=1)
        return self.reshape_like(r, like)

    def restore_reduced(self, g: Value, node: Node, rank: int) -> Value:
        """For a reduction ``node`` (axes input 1, ``keepdims``), g reshaped to keep the reduced axes as 1."""
        if node.attrs.get("keepdims", 1):
            return g
        axes = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] is not None else None
        if axes is None or (axes.data is not None and axes.data.size == 0):
            return self.op("Reshape", g, self.ints([1] * rank))
        return self.op("Unsqueeze", g, axes)

    def reduced_axes(self, node: Node, rank: int) -> list[int] | None:
        """The axes a reduction node reduces, when known before running (None: computed at run time)."""
        axes = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] is not None else None
        if axes is None or (axes.data is not None and axes.data.size == 0 and not node.attrs.get("noop_with_empty_axes")):
            return list(range(rank))
        if axes.data is None:
            return None
        return sorted(int(a) % rank for a in axes.data.reshape(-1))

    def route_back(self, node: Node, g: Value, k: int = 0) -> Value:
        """Gradient wrt input k of an op that only moves, copies or drops elements of that input.

        The node is rerun on element numbers (1-based, so that 0 marks an output element that came from no
        input, such as padding); g is then scatter-added to the elements each output came from. One rule
        serves Gather, Slice, Tile, Pad, DepthToSpace, Resize (nearest) and the like.
        """
        x = node.inputs[k]
        n = self.size(x)
        flat_n = self.op("Reshape", n, self.ints([1]))
        numbers = self.op("Range", self.const(np.array(1, np.int64)), self.op("Add", n, self.const(np.array(1, np.int64))),
                          self.const(np.array(1, np.int64)))
        ins = list(node.inputs)
        ins[k] = self.op("Reshape", numbers, self.shape(x))
        attrs = dict(node.attrs)
        routed = self.op_n(node.op_type, *ins, num_outputs=len(node.outputs), domain=node.domain, **attrs)[0]
        slots = self.op("ConstantOfShape", self.op("Add", flat_n, self.ints([1])), value=np.zeros(1, self.dtype(x).np))
        summed = self.op("ScatterElements", slots, self.op("Reshape", routed, self.ints([-1])),
                         self.op("Reshape", g, self.ints([-1])), axis=0, reduction="add")
        dx = self.op("Slice", summed, self.ints([1]), self.ints([2**62]), self.ints([0]))
        return self.reshape_like(dx, x)

    # ---- decompositions -------------------------------------------------------------------------
    def by_decomposition(self, node: Node, dys: Sequence[Value | None],
                         build: Callable[["GradContext", Node], Sequence[Value | None]]) -> list[Value | None]:
        """A rule from a forward decomposition: ``build`` recomputes the node's outputs from its inputs with
        differentiable primitive ops; the gradient of those primitives is the node's gradient.
        """
        start = len(self.graph.nodes)
        outs = build(self, node)
        nodes = self.graph.nodes[start:]
        seeds = {}
        for v, dy in zip(outs, dys):
            if v is not None and dy is not None:
                seeds.setdefault(id(v), []).append(dy)
        wrt = [v for v in node.inputs if v is not None]
        outer = self.node
        try:
            partials, _ = _sweep(self, nodes, seeds, wrt)
        finally:
            self.node = outer
        return [self.accumulate(partials.get(id(v), [])) if v is not None else None for v in node.inputs]

    def accumulate(self, parts: list[Value]) -> Value | None:
        """The sum of the partial gradients of one value (fan-out)."""
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            return self.op("Add", parts[0], parts[1])
        return self.op("Sum", *parts)

    def _where(self) -> str:
        return node_label(self.node) if self.node is not None else "a gradient"


# ---- the reverse sweep ---------------------------------------------------------------------------
def _reachable_from(nodes: Sequence[Node], starts: Sequence[Value]) -> set[int]:
    """ids of the values computed (through ``nodes``, in topological order) from any of ``starts``."""
    seen = {id(v) for v in starts}
    for n in nodes:
        if any(id(v) in seen for v in _all_inputs(n)):
            seen.update(id(v) for v in n.outputs if v is not None)
    return seen


def _reaching(nodes: Sequence[Node], ends: Sequence[Value]) -> set[int]:
    """ids of the values that any of ``ends`` is computed from (through ``nodes``)."""
    seen = {id(v) for v in ends}
    for n in reversed(nodes):
        if any(v is not None and id(v) in seen for v in n.outputs):
            seen.update(id(v) for v in _all_inputs(n))
    return seen


def _sweep(ctx: GradContext, nodes: Sequence[Node], seeds: dict[int, list[Value]], wrt: Sequence[Value]):
    """Propagate gradients from ``seeds`` (value id -> partials) back through ``nodes`` toward ``wrt``.

    Returns (partials by value id, cuts): a cut is (node, input index or None) where a gradient that was
    needed stopped: the op has no rule (None) or its rule gives none for that input.
    """
    partials: dict[int, list[Value]] = {k: list(v) for k, v in seeds.items()}
    depends = _reachable_from(nodes, wrt)
    cuts: list[tuple[Node, int | None]] = []
    for node in reversed(list(nodes)):
        if not any(id(v) in depends for v in _all_inputs(node)):
            continue
        if not any(v is not None and id(v) in partials for v in node.outputs):
            continue
        dys = [ctx.accumulate(partials.pop(id(v))) if v is not None and id(v) in partials else None
               for v in node.outputs]
        for v, dy in zip(node.outputs, dys):
            if dy is not None:
                partials[id(v)] = [dy]  # a y that is also read by a later x keeps its total
        override = ctx.overrides.get(id(node))
        targets = node.inputs
        if override is not None and override.node is node:
            ctx.node = node
            if override.wrt is not None:
                targets = override.wrt
            grads = list(override.rule(ctx, node, dys))
        else:
            opdef = lookup(node.domain, node.op_type)
            if opdef is None or opdef.grad is None:
                cuts.append((node, None))
                continue
            opdef.complete_attrs(node)
            ctx.node = node
            grads = list(opdef.grad(ctx, node, dys))
        grads += [None] * (len(targets) - len(grads))
        for i, (v, g) in enumerate(zip(targets, grads)):
            if v is None or id(v) not in depends:
                continue
            if g is None or not _is_float(v):
                cuts.append((node, i))
                continue
            partials.setdefault(id(v), []).append(g)
    return partials, cuts


def _seed(ctx: GradContext, y: Value, gy: Value | None) -> Value:
    if not _is_float(y):
        raise GradientError(f"cannot differentiate '{y.name}': its element type is "
                            f"{y.type.dtype if isinstance(y.type, TensorType) else 'unknown'}, not floating point")
    if gy is not None:
        return gy
    return ctx.ones_like(y)


def gradients(graph: Graph, ys: Sequence[Value], xs: Sequence[Value],
              grad_ys: Sequence[Value | None] | None = None, unconnected: str = "error",
              overrides: Sequence[GradOverride] = ()) -> list[Value | None]:
    """Append gradient nodes to ``graph``; returns d(sum of ys)/dx for each x, a Value of x's shape.

    ``grad_ys`` (one per y, None for ones) weight the ys: the result is the vector-Jacobian product.
    ``unconnected`` says what an x that receives no gradient gets: "error" (GradientError naming the
    variable and, when one cuts the path, the non-differentiable node), "none" (None) or "zero" (zeros).
    ``overrides`` replace the rules of single nodes (GradOverride).
    """
    ys, xs = list(ys), list(xs)
    if unconnected not in ("error", "none", "zero"):
        raise ValueError(f"unconnected must be 'error', 'none' or 'zero', got {unconnected!r}")
    if grad_ys is not None and len(grad_ys) != len(ys):
        raise GradientError(f"grad_ys has {len(grad_ys)} entries for {len(ys)} ys")
    _ensure_types(graph, list(ys) + list(xs))
    ctx = GradContext(graph, {id(o.node): o for o in overrides})
    fwd_nodes = list(graph.nodes)
    start_nodes, start_consts = len(graph.nodes), set(graph.constants)
    seeds: dict[int, list[Value]] = {}
    for k, y in enumerate(ys):
        seeds.setdefault(id(y), []).append(_seed(ctx, y, grad_ys[k] if grad_ys is not None else None))
    partials, cuts = _sweep(ctx, fwd_nodes, seeds, xs)
    ctx.node = None
    results: list[Value | None] = []
    for x in xs:
        g = ctx.accumulate(partials.get(id(x), []))
        if g is None:
            if unconnected == "error":
                raise GradientError(_explain(graph, fwd_nodes, ys, x, cuts))
            if unconnected == "zero":
                g = ctx.zeros_like(x)
        results.append(g)
    _prune(graph, start_nodes, start_consts, [g for g in results if g is not None])
    return results


def _ensure_types(graph: Graph, values: list[Value]) -> None:
    if any(not isinstance(v.type, TensorType) for v in values) or any(
            v is not None and not isinstance(v.type, TensorType) for n in graph.nodes for v in n.outputs):
        from .ops.infer import infer_shapes

        infer_shapes(graph)


def _prune(graph: Graph, start_nodes: int, start_consts: set[str], keep: list[Value]) -> None:
    """Drop the gradient nodes (and constants) this call added that no returned gradient uses."""
    live = {id(v) for v in keep}
    new_nodes = graph.nodes[start_nodes:]
    kept = []
    for n in reversed(new_nodes):
        if any(v is not None and id(v) in live for v in n.outputs):
            kept.append(n)
            live.update(id(v) for v in _all_inputs(n))
    graph.nodes[start_nodes:] = list(reversed(kept))
    for name in [k for k in graph.constants if k not in start_consts]:
        if id(graph.constants[name]) not in live:
            del graph.constants[name]


# ---- explaining a missing gradient ----------------------------------------------------------------
def _kind_of(graph: Graph, x: Value) -> str:
    if any(v is x for v in graph.variables.values()):
        return "variable"
    if any(v is x for v in graph.inputs):
        return "input"
    if x.data is not None:
        return "constant"
    return "value"


def _explain(graph: Graph, nodes: list[Node], ys: list[Value], x: Value, cuts) -> str:
    kind = _kind_of(graph, x)
    y_names = " or ".join(f"'{y.name}'" for y in ys)
    reaching = [y for y in ys if id(x) in _reaching(nodes, [y])]
    if not reaching and not any(y is x for y in ys):
        return (f"no gradient path from {y_names} to {kind} '{x.name}': "
                f"{'it does' if len(ys) == 1 else 'they do'} not depend on it")
    y = reaching[0]
    from_x = _reachable_from(nodes, [x])
    to_y = _reaching(nodes, [y])
    cut_at = {(id(n), i) for n, i in cuts}
    for node in nodes:
        ins = [(i, v) for i, v in enumerate(node.inputs) if v is not None and id(v) in from_x]
        if not ins or not any(v is not None and id(v) in to_y for v in node.outputs):
            continue
        opdef = lookup(node.domain, node.op_type)
        if opdef is None or opdef.grad is None:
            why = opdef.no_grad if opdef is not None and opdef.no_grad else \
                f"no gradient rule is registered for {node.op_type} yet"
            return (f"the path from '{y.name}' to {kind} '{x.name}' goes through {node_label(node)}, "
                    f"which is not differentiable ({why})")
        outs = [v for v in node.outputs if v is not None and id(v) in to_y]
        if any(_is_float(v) for _, v in ins) and outs and not any(_is_float(v) for v in outs):
            dt = outs[0].type.dtype if isinstance(outs[0].type, TensorType) else "?"
            return (f"the path from '{y.name}' to {kind} '{x.name}' goes through {node_label(node)}, "
                    f"which is not differentiable: its output '{outs[0].name}' is {dt}")
        for i, v in ins:
            if (id(node), i) in cut_at:
                t = v.type if v.type is not None else "?"
                return (f"the path from '{y.name}' to {kind} '{x.name}' goes through {node_label(node)}, "
                        f"which is not differentiable with respect to input {i} ('{v.name}': {t})")
    return f"no gradient reaches {kind} '{x.name}' from '{y.name}'"


# ---- the table of what is differentiable ------------------------------------------------------------
def differentiability() -> dict[str, str]:
    """Every registered op -> "differentiable", or why it is not (declared reason, or "no rule yet")."""
    out = {}
    for (domain, name), op in sorted(REGISTRY.items()):
        key = f"{domain}.{name}" if domain else name
        out[key] = "differentiable" if op.grad is not None else (op.no_grad or "no gradient rule yet")
    return out

