"""Lowering a planned graph to kernels: one kernel per fused group or lone node, and the missing-ops error.

Each node of the plan's (static-shaped) graph becomes a ``Step``: a generated kernel and, for each of its
parameters, the value it points at. An op lowered by code (``LOWERINGS``: a cuBLAS GEMM, a convolution)
gives steps of its own; heading a fused group (MatMul + bias + Relu), it runs first and the rest of the
group becomes ONE generated epilogue kernel (``lower_with_epilogue``). A fused group whose fusion no
generator handles yet (say, a prologue value that also leaves a reduction group) is lowered op by op
instead, its internal values then needing scratch buffers. Ops with no kernel at all are collected over
the whole graph and reported in one ``MissingKernelError``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from graphc.errors import GraphcError
from graphc.ir import DType, Graph, Node, TensorType, Value
from graphc.ops import has_fact

from .dialect import dialect, rendering
from .kernel import CodegenUnsupported, Kernel, KernelGroup, c_identifier, dtype_of, shape_of
from .elementwise import generate_loop
from .injective import INJECTIVE_OPS
from .expressions import ELEMENTWISE_OPS
from .rows import (REDUCE_OPS, ROW_OPS, generate_reduction, generate_row_op, generate_split_final,
                             split_partials)
from .launch import DeviceProps
from .libcall import Gemm

#: Ops the CUDA backend has kernels for: generated ones (part 1 of the backend), and those lowered by a
#: function of ``LOWERINGS`` (library calls and multi-kernel ops; ``register_lowering`` adds to this set).
SUPPORTED_OPS = set(ELEMENTWISE_OPS | INJECTIVE_OPS | REDUCE_OPS | ROW_OPS)
#: What part 2 adds (named in the error so that a user knows whether to wait or to rewrite).
PART_2_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization")


class MissingKernelError(GraphcError):
    """Ops of a graph that a generated-kernel backend has no kernel for; ``missing`` maps op type ->
    [(node, why)]; ``backend`` names the backend in the message ("CUDA" or "compiled CPU")."""

    def __init__(self, missing: dict[str, list[tuple[str, str]]], graph_name: str = "", backend: str = "CUDA"):
        self.missing = missing
        lines = []
        for op in sorted(missing):
            entries = missing[op]
            shown = ", ".join(repr(n) for n, _ in entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3
                                                                  else "")
            why = entries[0][1]
            lines.append(f"  {op}: {len(entries)} node(s) ({shown}): {why}")
        later = sorted(op for op in missing if op in PART_2_OPS and op not in LOWERINGS)  # not written yet
        tail = (f"\n{', '.join(later)} arrive with part 2 of the CUDA backend (matrix products, convolutions, pools); "
                f"until then run this model with backend='numpy'." if later else
                "\nRun this model with backend='numpy', or tell us which op you need.")
        where = f"graph '{graph_name}'" if graph_name else "the graph"
        super().__init__(f"{where} uses {len(missing)} op(s) the {backend} backend has no kernel for yet:\n"
                         + "\n".join(lines) + tail)


@dataclass
class Step:
    """One launch: ``kernel`` with ``args`` (a Value per pointer parameter, or a constant's array), or
    a library ``call`` (runtime/cuda/libcall.py) with ``args`` its pointer arguments in order."""

    kernel: Kernel | None
    args: list
    node: Node
    #: a view op whose output may share its input's bytes: no launch when the arena gives both one offset
    view_of: tuple[Value, Value] | None = None
    call: object | None = None


@dataclass
class Lowered:
    steps: list[Step] = field(default_factory=list)
    #: values that exist only inside a fused group lowered op by op: they need scratch memory
    scratch: list[Value] = field(default_factory=list)


class LowerContext:
    """What a lowering function (``LOWERINGS``) may use: the device's properties, kernels made from groups
    of nodes (named uniquely within the plan), library-call steps, and scratch buffers in the arena."""

    def __init__(self, props: DeviceProps, out: "Lowered", named: Callable[[KernelGroup], KernelGroup]):
        self.props = props
        self.out = out
        self._named = named
        #: inside a fused group's lowering: id of a body value -> the group's value outside it
        self.outer: dict[int, Value] = {}

    def constant(self, v: Value | None):
        """The constant data of ``v`` (or of the value it stands for outside the fused group being lowered), or
        None when it is computed at run time."""
        if v is None:
            return None
        if v.data is not None:
            return v.data
        o = self.outer.get(id(v))
        return o.data if o is not None else None

    def kernel_step(self, group: KernelGroup, node: Node, kernel: Kernel | None = None) -> Step:
        """A step launching the kernel generated for ``group`` (or ``kernel``, made by the caller from it)."""
        if kernel is None:
            group = self._named(group)
            kernel = generate(group, self.props)
        else:  # the caller named it (unique_name) when it wrote the kernel's source
            group.name = kernel.name
            kernel.group = group
        return Step(kernel, step_args(kernel, group.inputs, group.outputs, group.constants), node)

    def unique_name(self, name: str) -> str:
        """A kernel name (C identifier) made from ``name``, unique within the plan."""
        return self._named(KernelGroup(name, [], [], [])).name

    def call_step(self, call, args: list, node: Node) -> Step:
        return Step(None, list(args), node, call=call)

    def scratch(self, name: str, dtype: DType, shape) -> Value:
        """A buffer of its own in the arena (a workspace, an intermediate of a multi-kernel op)."""
        v = Value(name, TensorType(dtype, tuple(int(d) for d in shape)))
        self.out.scratch.append(v)
        return v

    def workspace(self, nbytes: int) -> Value:
        """The plan's one shared workspace (bytes), grown to the largest request: steps run one after another,
        so an op may use it between its own steps (im2col's columns, say) and the next op reuse it."""
        ws = getattr(self, "_workspace", None)
        if ws is None:
            ws = self._workspace = self.scratch("gc_workspace", DType.uint8, (max(int(nbytes), 1),))
        elif nbytes > ws.type.shape[0]:
            ws.type = TensorType(DType.uint8, (int(nbytes),))
        return ws


#: op type (``domain.op`` outside the ONNX domain) -> fn(node, ctx: LowerContext) -> list[Step]: ops lowered
#: by code rather than by one generated kernel (matrix products through cuBLAS, convolutions as im2col +
#: GEMM...). A function may raise
#: CodegenUnsupported for a node it cannot handle (an attribute, a dtype): the op is then reported missing.
LOWERINGS: dict[str, Callable[[Node, LowerContext], list[Step]]] = {}


#: op type -> fn(node) -> (call node, epilogue nodes, value standing for the output) or None: how an op of
#: LOWERINGS hands part of its work (Gemm's ``+ beta * C``, a convolution's bias) to the generated epilogue
#: kernel that runs after it anyway (``lower_with_epilogue``). New nodes and values only: the plan stays.
SPLITS: dict[str, Callable[[Node], tuple[Node, list[Node], Value] | None]] = {}


#: Lowerings found from the node rather than its op type: ``fn(node) -> lowering or None``, asked in order when
#: LOWERINGS has none (custom.py adds the one for the ops users write with gc.custom_op).
FALLBACKS: list[Callable[[Node], Callable | None]] = []


def register_fallback(fn: Callable[[Node], Callable | None]) -> Callable:
    """Add ``fn`` to FALLBACKS (a decorator)."""
    FALLBACKS.append(fn)
    return fn


def _fallback_lowering(node: Node):
    for fn in FALLBACKS:
        lowering = fn(node)
        if lowering is not None:
            return lowering
    return None


def register_lowering(op_type: str, fn: Callable[[Node, LowerContext], list[Step]],
                      split: Callable[[Node], tuple[Node, list[Node], Value] | None] | None = None) -> None:
    """Lower ``op_type`` by ``fn``; ``split`` (optional, see SPLITS) moves an elementwise tail of the op into
    the epilogue kernel, the op alone or as the head of a fused group."""
    LOWERINGS[op_type] = fn
    SUPPORTED_OPS.add(op_type)
    if split is not None:
        SPLITS[op_type] = split


def lower_with_epilogue(head: Node, rest: list[Node], outputs: list[Value], node: Node,
                        ctx: LowerContext) -> list[Step]:
    """Steps computing ``outputs``: ``head`` (an op of LOWERINGS) through its lowering function, then the
    elementwise ops ``rest`` (which read its output and values from outside) as ONE generated kernel.

    The head writes into the one output's buffer when it has the head output's shape and type and the
    epilogue is elementwise (each element then read and written by one thread, in place), else into
    scratch. The epilogue kernel's step is the last and carries ``node`` (so that the debug mode frees
    dead inputs only after it); step arguments are the values of ``head``, ``rest`` and ``outputs``.
    Raises CodegenUnsupported when the epilogue cannot be one kernel."""
    key = f"{head.domain}.{head.op_type}" if head.domain else head.op_type
    heads = [v for v in head.outputs if v is not None]
    if len(heads) != 1:
        raise CodegenUnsupported(head, f"{head.op_type} with {len(heads)} outputs takes no epilogue")
    stand_in = {}  # value of rest/outputs -> the value computing it now (a split's nodes and their copies)
    parts = SPLITS[key](head) if key in SPLITS else None
    if parts is not None:
        core, pre, result = parts
        stand_in[id(heads[0])] = result
        rest = pre + [_copy_node(n, stand_in) for n in rest]
        head = core
    outs = [stand_in.get(id(v), v) for v in outputs]
    back = {id(o): v for o, v in zip(outs, outputs) if o is not v}  # step args name the given outputs
    t = head.outputs[0]
    t_shape, t_dtype = shape_of(t), dtype_of(t)
    in_place = not any(o is t for o in outs) and len(outs) == 1 and shape_of(outs[0]) == t_shape and \
        dtype_of(outs[0]) == t_dtype and all(n.op_type in ELEMENTWISE_OPS for n in rest)
    if not rest:
        steps = LOWERINGS[key](head, ctx)
    else:
        made = {id(v) for n in rest for v in n.outputs if v is not None}
        if any(v is not None and id(v) in made for v in head.inputs):
            raise CodegenUnsupported(head, "an input of the group's head is computed by its epilogue")
        ins, consts, seen = [], [], {id(t)}
        for n in rest:
            for v in n.inputs:
                if v is not None and id(v) not in made and id(v) not in seen:
                    seen.add(id(v))
                    (consts if v.data is not None else ins).append(v)
        group = KernelGroup(f"{node.name}_epilogue", list(rest), [t] + ins, outs, consts, "elementwise",
                            frozenset({id(t), id(outs[0])}) if in_place else frozenset())
        epilogue = ctx.kernel_step(group, node)
        steps = LOWERINGS[key](head, ctx) + [epilogue]
    if not any(o is t for o in outs):  # where the head's result lives
        back[id(t)] = outputs[0] if in_place else ctx.scratch(ctx.unique_name(f"{t.name}_result"), t_dtype, t_shape)
    for st in steps:
        st.args = [back.get(id(a), a) for a in st.args]
    return steps


def _copy_node(n: Node, stand_in: dict) -> Node:
    """``n`` reading the stand-ins of its inputs, with new output values (recorded in ``stand_in``)."""
    outs = [Value(v.name, v.type) if v is not None else None for v in n.outputs]
    for v, w in zip(n.outputs, outs):
        if v is not None:
            stand_in[id(v)] = w
    return Node(n.op_type, [stand_in.get(id(v), v) if v is not None else None for v in n.inputs], outs, n.attrs,
                name=n.name, domain=n.domain, opset=n.opset)


def _lower_out_fusable(node: Node, ctx: LowerContext) -> list[Step]:
    """A fused group headed by one op of LOWERINGS (MatMul, Gemm, Conv) and an elementwise epilogue."""
    body = node.attrs["body"]
    heads = [n for n in body.nodes if not n.domain and n.op_type in LOWERINGS]
    if len(heads) != 1:
        raise CodegenUnsupported(node, f"the group has {len(heads)} ops lowered by code, not one head")
    rest = [n for n in body.nodes if n is not heads[0]]
    outer = {id(b): o for b, o in zip(body.inputs, node.inputs)}
    outer.update({id(b): o for b, o in zip(body.outputs, node.outputs)})
    # the head reads the group's constants themselves (a Conv's bias then goes to the epilogue, split_conv)
    head = heads[0]
    if any(v is not None and id(v) in outer and outer[id(v)].data is not None for v in head.inputs):
        head = Node(head.op_type, [outer[id(v)] if v is not None and id(v) in outer and outer[id(v)].data is not None
                                   else v for v in head.inputs], list(head.outputs), head.attrs, name=head.name,
                    domain=head.domain, opset=head.opset)
        for v in heads[0].outputs:  # a stand-in for lowering only: the body's values keep their producer
            if v is not None:
                v.producer = heads[0]
    ctx.outer = outer
    try:
        steps = lower_with_epilogue(head, rest, list(body.outputs), node, ctx)
    finally:
        ctx.outer = {}
    for st in steps:
        st.args = [outer.get(id(a), a) for a in st.args]
    return steps


def generate(group: KernelGroup, props: DeviceProps) -> Kernel:
    """The kernel for a group, by what its ops are (raises CodegenUnsupported), in ``props.target``'s dialect."""
    with rendering(props.target):
        return _generate(group, props)


def _generate(group: KernelGroup, props: DeviceProps) -> Kernel:
    ops = [n.op_type for n in group.nodes]
    for n in group.nodes:
        if n.domain:
            raise CodegenUnsupported(n, f"no generated kernel for ops of domain '{n.domain}'")
    last = ops[-1]
    if len(ops) == 1 and last in ROW_OPS:
        return generate_row_op(group, props)
    if last in REDUCE_OPS and all(op in ELEMENTWISE_OPS for op in ops[:-1]):
        return generate_reduction(group, props)
    unknown = [n for n in group.nodes if n.op_type not in ELEMENTWISE_OPS | INJECTIVE_OPS]
    if unknown:
        n = unknown[0]
        why = "no generated kernel yet" if n.op_type not in SUPPORTED_OPS else \
            f"{n.op_type} is generated only as a group's last op"
        raise CodegenUnsupported(n, why)
    return generate_loop(group, props)


def lower(graph: Graph, props: DeviceProps, tf32: bool = False, inplace: dict[str, str] | None = None) -> Lowered:
    """The steps that run ``graph`` (static shapes), or MissingKernelError listing every op without one.
    ``tf32``: float32 GEMMs may use TF32 tensor cores (off: exact float32). ``inplace``: the memory plan's
    in-place pairs (output name -> the input it overwrites): such a kernel's two pointers reach the same
    bytes, so neither is declared ``__restrict__``. The kernels are rendered in ``props.target``'s dialect."""
    with rendering(props.target):
        return _lower(graph, props, tf32, inplace)


def _lower(graph: Graph, props: DeviceProps, tf32: bool, inplace: dict[str, str] | None) -> Lowered:
    out = Lowered()
    missing: dict[str, list[tuple[str, str]]] = {}
    used: set[str] = set()
    inplace = inplace or {}

    def aliased(group: KernelGroup, outer) -> frozenset:
        """ids of the group's values (``outer(v)``: the graph value it stands for) written in place."""
        if not inplace:
            return frozenset()
        ids = set()
        for o in group.outputs:
            src = inplace.get(outer(o).name)
            for i in group.inputs if src is not None else ():
                if outer(i).name == src:
                    ids.update((id(o), id(i)))
        return frozenset(ids)

    def named(group: KernelGroup) -> KernelGroup:
        """Kernel names are C identifiers made from node names: make them unique within the plan."""
        name = c_identifier(group.name)
        while name in used:
            name += "_"
        used.add(name)
        group.name = name
        return group

    ctx = LowerContext(props, out, named)

    def unsupported(key: str, node: Node, why: str, into: list[Step], rename: dict | None) -> None:
        """No kernel for ``node``: on the CPU a step running it through the reference interpreter (``HostCall``)
        takes its place; on a GPU it is reported missing."""
        if not dialect(props.target).host_calls or not _host_callable(node):
            missing.setdefault(key, []).append((node.name, why))
            return
        call = HostCall(node, why)
        args = call.arguments()
        into.append(Step(None, [rename.get(id(a), a) for a in args] if rename else args, node, call=call))

    def lone(node: Node, into: list[Step], rename: dict | None = None) -> None:
        key = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
        lowering = LOWERINGS.get(key) or _fallback_lowering(node)  # the latter: ops users write (gc.custom_op)
        if lowering is not None:
            try:
                steps = lowering(node, ctx) if key not in SPLITS else \
                    lower_with_epilogue(node, [], [v for v in node.outputs if v is not None], node, ctx)
            except CodegenUnsupported as e:
                unsupported(key, node, e.why, into, rename)
                return
            for st in steps:
                if rename:
                    st.args = [rename.get(id(a), a) for a in st.args]
                    if st.view_of:
                        st.view_of = tuple(rename.get(id(a), a) for a in st.view_of)
                into.append(st)
            return
        if node.op_type not in SUPPORTED_OPS or node.domain:
            unsupported(key, node, "no generated kernel yet", into, rename)
            return
        try:
            group = named(KernelGroup.of_node(node))
            group.aliased = aliased(group, lambda v: rename.get(id(v), v) if rename else v)
            split = _split_steps(group, node, ctx)
            if split:
                for st in split:
                    st.args = [rename.get(id(a), a) for a in st.args] if rename else st.args
                into.extend(split)
                return
            kernel = generate(group, props)
        except CodegenUnsupported as e:
            unsupported(node.op_type, node, e.why, into, rename)
            return
        args = step_args(kernel, group.inputs, group.outputs, group.constants)
        # a view of a value in the arena (a one-element constant is a literal in the kernel: it has no bytes)
        view = (node.inputs[0], node.outputs[0]) if has_fact(node, "view") and \
            any(a is node.inputs[0] for a in args) else None
        if rename:  # a node of a fused group's body: its values at the group's edges are the outer ones
            args = [rename.get(id(a), a) for a in args]
            view = tuple(rename.get(id(a), a) for a in view) if view else None
        into.append(Step(kernel, args, node, view))

    for node in graph.nodes:
        if node.domain == "graphc" and node.op_type == "FusedGroup":
            group = named(KernelGroup.of_fused(node))
            body = node.attrs["body"]
            outer = {id(b): o for b, o in zip(body.inputs, node.inputs)}
            outer.update({id(b): o for b, o in zip(body.outputs, node.outputs)})
            group.aliased = aliased(group, lambda v: outer[id(v)])
            try:
                split = _split_steps(group, node, ctx)
                if split:
                    for st in split:
                        st.args = [outer.get(id(a), a) for a in st.args]
                    out.steps += split
                    continue
                kernel = generate(group, props)
            except CodegenUnsupported:
                try:  # a head lowered by code (a GEMM) and the rest as one epilogue kernel
                    out.steps += _lower_out_fusable(node, ctx)
                except CodegenUnsupported:
                    _split_group(node, group, lone, out)
                continue
            ins = [outer[id(v)] for v in group.inputs]
            outs = [outer[id(v)] for v in group.outputs]
            out.steps.append(Step(kernel, step_args(kernel, ins, outs, group.constants), node))
        else:
            lone(node, out.steps)
    if missing:
        raise MissingKernelError(missing, graph.name, "compiled CPU" if props.target == "c" else "CUDA")
    if tf32:  # every float32 GEMM, whichever lowering made it
        for st in out.steps:
            if isinstance(st.call, Gemm) and st.call.dtype == DType.float32:
                st.call = replace(st.call, tf32=True)
    return out


@dataclass
class HostCall:
    """A node run on the host by the reference interpreter (``eval_node``) over the arena's bytes: what the CPU
    target does for an op it has no kernel for (``why``). Step arguments: the node's inputs that are not
    constants, then the values its subgraphs capture, then its outputs (``arguments``)."""

    node: Node
    why: str = ""

    def arguments(self) -> list[Value]:
        from graphc.ops.interpret import node_captures

        seen, args = set(), []
        for v in [v for v in self.node.inputs if v is not None and v.data is None] + node_captures(self.node):
            if id(v) not in seen:
                seen.add(id(v))
                args.append(v)
        return args + [v for v in self.node.outputs if v is not None]


def _host_callable(node: Node) -> bool:
    """Whether ``HostCall`` can run ``node``: every value it reads or writes a tensor of static shape."""
    from graphc.ops.interpret import node_captures

    for v in [v for v in node.inputs if v is not None] + node_captures(node) + \
            [v for v in node.outputs if v is not None]:
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or not all(isinstance(d, int) for d in t.shape):
            return False
    return True


def _split_steps(group: KernelGroup, node: Node, ctx: LowerContext) -> list[Step]:
    """A reduction whose rows are too few to fill the device as two steps (``split_partials``): blocks reduce
    parts of each row into scratch, then a second kernel combines each row's parts. [] for any other group.
    Deterministic: each part and each combination is summed in one fixed order (no atomics)."""
    how = split_partials(group, ctx.props)
    if how is None:
        return []
    rows, parts, acc_dt = how
    partial = ctx.scratch(ctx.unique_name(f"{group.name}_partials"), acc_dt, (rows, parts))
    first = generate_reduction(group, ctx.props, partial)
    second = generate_split_final(group, ctx.props, partial, ctx.unique_name(f"{group.name}_combine"))
    return [Step(first, step_args(first, group.inputs, [partial], group.constants), node),
            Step(second, step_args(second, [partial], group.outputs, []), node)]


def step_args(kernel: Kernel, ins: list[Value], outs: list[Value], consts: list[Value]) -> list:
    args = []
    for p in kernel.params:
        if p.role == "input":
            args.append(ins[p.index])
        elif p.role == "output":
            args.append(outs[p.index])
        elif p.role == "scalar":  # passed by value: the executor hands it to the launcher as it is
            args.append(p.value)
        else:
            args.append(consts[p.index].data)
    return args


def _split_group(node: Node, group: KernelGroup, lone, out: Lowered) -> None:
    """Lower a fused group op by op. Kernels are generated from the body's own nodes (whose values know
    their producers); where a body value is one of the group's inputs or outputs, the step points at the
    outer value instead, and the other body values get scratch memory."""
    body = node.attrs["body"]
    outer = {id(b): o for b, o in zip(body.inputs, node.inputs)}
    outer.update({id(b): o for b, o in zip(body.outputs, node.outputs)})
    for n in body.nodes:
        for v in n.outputs:
            if v is not None and id(v) not in outer:
                out.scratch.append(v)
        lone(n, out.steps, outer)


__all__ = ["FALLBACKS", "HostCall", "LOWERINGS", "LowerContext", "MissingKernelError", "SPLITS", "SUPPORTED_OPS", "Step", "Lowered", "generate", "step_args",
           "lower", "lower_with_epilogue", "register_fallback", "register_lowering"]
