"""Lowering a planned graph to kernels: one kernel per fused group or lone node, and the missing-ops error.

Each node of the plan's (static-shaped) graph becomes a ``Step``: a generated kernel and, for each of its
parameters, the value it points at. A fused group whose fusion no generator handles yet (say, a prologue
value that also leaves a reduction group) is lowered op by op instead, its internal values then
needing scratch buffers. Ops with no kernel at all are collected over the whole graph and reported in
one ``MissingKernelError``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from graphc.errors import GraphcError
from graphc.ir import DType, Graph, Node, TensorType, Value
from graphc.passes.memory import VIEW_OPS

from .codegen import CodegenUnsupported, Kernel, KernelGroup, c_identifier
from .codegen_elementwise import generate_loop
from .codegen_injective import INJECTIVE_OPS
from .codegen_ops import ELEMENTWISE_OPS
from .codegen_reduce import REDUCE_OPS, ROW_OPS, generate_reduction, generate_row_op
from .launch import DeviceProps

#: Ops the CUDA backend has kernels for: generated ones (part 1 of the backend), and those lowered by a
#: function of ``LOWERINGS`` (library calls and multi-kernel ops; ``register_lowering`` adds to this set).
SUPPORTED_OPS = set(ELEMENTWISE_OPS | INJECTIVE_OPS | REDUCE_OPS | ROW_OPS)
#: What part 2 adds (named in the error so that a user knows whether to wait or to rewrite).
PART_2_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization")


class MissingKernelError(GraphcError):
    """Ops of a graph that the CUDA backend has no kernel for; ``missing`` maps op type -> [(node, why)]."""

    def __init__(self, missing: dict[str, list[tuple[str, str]]], graph_name: str = ""):
        self.missing = missing
        lines = []
        for op in sorted(missing):
            entries = missing[op]
            shown = ", ".join(repr(n) for n, _ in entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3
                                                                  else "")
            why = entries[0][1]
            lines.append(f"  {op}: {len(entries)} node(s) ({shown}): {why}")
        later = sorted(op for op in missing if op in PART_2_OPS)
        tail = (f"\n{', '.join(later)} arrive with part 2 of the CUDA backend (matrix products, convolutions, pools); "
                f"until then run this model with backend='numpy'." if later else
                "\nRun this model with backend='numpy', or tell us which op you need.")
        where = f"graph '{graph_name}'" if graph_name else "the graph"
        super().__init__(f"{where} uses {len(missing)} op(s) the CUDA backend has no kernel for yet:\n"
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

    def kernel_step(self, group: KernelGroup, node: Node, kernel: Kernel | None = None) -> Step:
        """A step launching the kernel generated for ``group`` (or ``kernel``, made by the caller from it)."""
        group = self._named(group)
        if kernel is None:
            kernel = generate(group, self.props)
        else:
            kernel.group = group
        return Step(kernel, _args(kernel, group.inputs, group.outputs, group.constants), node)

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


#: op type -> fn(node, ctx: LowerContext) -> list[Step]: ops lowered by code rather than by one generated
#: kernel (matrix products through cuBLAS, convolutions as im2col + GEMM...). A function may raise
#: CodegenUnsupported for a node it cannot handle (an attribute, a dtype): the op is then reported missing.
LOWERINGS: dict[str, Callable[[Node, LowerContext], list[Step]]] = {}


def register_lowering(op_type: str, fn: Callable[[Node, LowerContext], list[Step]]) -> None:
    LOWERINGS[op_type] = fn
    SUPPORTED_OPS.add(op_type)


def generate(group: KernelGroup, props: DeviceProps) -> Kernel:
    """The kernel for a group, by what its ops are (raises CodegenUnsupported)."""
    ops = [n.op_type for n in group.nodes]
    for n in group.nodes:
        if n.domain:
            raise CodegenUnsupported(n, f"no CUDA kernel for ops of domain '{n.domain}'")
    last = ops[-1]
    if len(ops) == 1 and last in ROW_OPS:
        return generate_row_op(group, props)
    if last in REDUCE_OPS and all(op in ELEMENTWISE_OPS for op in ops[:-1]):
        return generate_reduction(group, props)
    unknown = [n for n in group.nodes if n.op_type not in ELEMENTWISE_OPS | INJECTIVE_OPS]
    if unknown:
        n = unknown[0]
        why = "no CUDA kernel yet" if n.op_type not in SUPPORTED_OPS else \
            f"{n.op_type} is generated only as a group's last op"
        raise CodegenUnsupported(n, why)
    return generate_loop(group, props)


def lower(graph: Graph, props: DeviceProps) -> Lowered:
    """The steps that run ``graph`` (static shapes), or MissingKernelError listing every op without one."""
    out = Lowered()
    missing: dict[str, list[tuple[str, str]]] = {}
    used: set[str] = set()

    def named(group: KernelGroup) -> KernelGroup:
        """Kernel names are C identifiers made from node names: make them unique within the plan."""
        name = c_identifier(group.name)
        while name in used:
            name += "_"
        used.add(name)
        group.name = name
        return group

    ctx = LowerContext(props, out, named)

    def lone(node: Node, into: list[Step], rename: dict | None = None) -> None:
        if node.op_type in LOWERINGS and not node.domain:
            try:
                steps = LOWERINGS[node.op_type](node, ctx)
            except CodegenUnsupported as e:
                missing.setdefault(node.op_type, []).append((node.name, e.why))
                return
            for st in steps:
                if rename:
                    st.args = [rename.get(id(a), a) for a in st.args]
                    if st.view_of:
                        st.view_of = tuple(rename.get(id(a), a) for a in st.view_of)
                into.append(st)
            return
        if node.op_type not in SUPPORTED_OPS or node.domain:
            why = "no CUDA kernel yet"
            missing.setdefault(node.op_type if not node.domain else f"{node.domain}.{node.op_type}",
                               []).append((node.name, why))
            return
        try:
            group = named(KernelGroup.of_node(node))
            kernel = generate(group, props)
        except CodegenUnsupported as e:
            missing.setdefault(node.op_type, []).append((node.name, e.why))
            return
        args = _args(kernel, group.inputs, group.outputs, group.constants)
        view = (node.inputs[0], node.outputs[0]) if node.op_type in VIEW_OPS else None
        if rename:  # a node of a fused group's body: its values at the group's edges are the outer ones
            args = [rename.get(id(a), a) for a in args]
            view = tuple(rename.get(id(a), a) for a in view) if view else None
        into.append(Step(kernel, args, node, view))

    for node in graph.nodes:
        if node.domain == "graphc" and node.op_type == "FusedGroup":
            group = named(KernelGroup.of_fused(node))
            try:
                kernel = generate(group, props)
            except CodegenUnsupported:
                _split_group(node, group, lone, out)
                continue
            body = node.attrs["body"]
            outer = {id(b): o for b, o in zip(body.inputs, node.inputs)}
            outer.update({id(b): o for b, o in zip(body.outputs, node.outputs)})
            ins = [outer[id(v)] for v in group.inputs]
            outs = [outer[id(v)] for v in group.outputs]
            out.steps.append(Step(kernel, _args(kernel, ins, outs, group.constants), node))
        else:
            lone(node, out.steps)
    if missing:
        raise MissingKernelError(missing, graph.name)
    return out


def _args(kernel: Kernel, ins: list[Value], outs: list[Value], consts: list[Value]) -> list:
    args = []
    for p in kernel.params:
        if p.role == "input":
            args.append(ins[p.index])
        elif p.role == "output":
            args.append(outs[p.index])
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


__all__ = ["LOWERINGS", "LowerContext", "MissingKernelError", "SUPPORTED_OPS", "Step", "Lowered", "generate", "lower",
           "register_lowering"]
