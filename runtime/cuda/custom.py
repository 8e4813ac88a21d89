"""Lowering of user-written CUDA ops (``gc.custom_op``, graphc/custom.py): one launch of the user's kernel per node.

Calling convention (what the kernel named ``kernel`` must declare, in this order):

1. one pointer per input, in the node's order, ``const T*`` of the input's element type;
2. one pointer per output, ``T*``;
3. ``long long n``: the number of elements of output 0;
4. when the op was registered with ``shape_params=True`` (the default): the dims of every input, then of
   every output, each a ``long long`` (a rank-2 input ``x`` gives ``long long x0, long long x1``);
5. the op's ``int`` attributes as ``long long`` and ``float`` attributes as ``float``, in the order the
   op declared them (other attribute types reach numpy_impl, infer_shape and launch only).

The launch is a 1-D grid-stride one over ``n`` (``launch.elementwise_launch``: the kernel loops
``for (i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)``), unless the op
gives ``launch(shapes, props, **attrs) -> (grid, block)``. The source is compiled through the same
on-disk kernel cache as generated kernels (nvcc for a GPU, g++ for the CPU emulator), with a ``#line``
directive so that compiler messages name the op and the user's own line numbers. ``check_source``
compiles it with nvcc on demand (registration time, tests).
"""
from __future__ import annotations

from graphc.custom import CustomOp, CustomOpError, custom_op_of
from graphc.ir import DType, Node

from .cache import KernelCache, KernelCompileError
from ..codegen.kernel import CodegenUnsupported, Kernel, KernelGroup, Param, dtype_of, numel, shape_of
from ..codegen.launch import DeviceProps, elementwise_launch
from ..codegen.lowering import LowerContext, Step, register_fallback


def kernel_source(op: CustomOp) -> str:
    """The op's CUDA source as compiled: a comment naming the op, then the user's text under a ``#line``
    directive (compiler errors then read ``custom.MyOp(12): error: ...``), then one that stops blaming the op
    for what follows it in the emulator's combined source (other kernels, the launchers)."""
    return (f'// graphc custom op {op.qualified_name}\n#line 1 "{op.qualified_name}"\n{op.cuda_source}\n'
            f'#line 1 "graphc-generated"\n')


def custom_kernel(node: Node, op: CustomOp, props: DeviceProps) -> Kernel:
    """The launch of ``op``'s kernel for one node (static shapes), following the calling convention above."""
    if op.cuda_source is None:
        raise CodegenUnsupported(node, f"custom op '{op.qualified_name}' was registered without cuda_source, so it "
                                       f"runs on the NumPy backend only")
    ins = list(node.inputs)
    while ins and ins[-1] is None:
        ins.pop()
    if any(v is None for v in ins):
        raise CodegenUnsupported(node, f"custom op '{op.qualified_name}': an absent optional input (input "
                                       f"{ins.index(None)}) has no pointer to pass to the kernel")
    outs = list(node.outputs)
    if len(outs) < op.num_outputs or any(v is None for v in outs):
        raise CodegenUnsupported(node, f"custom op '{op.qualified_name}': the kernel writes {op.num_outputs} "
                                       f"output(s); declare every one of them on the node")
    params = [Param("input", i, f"in{i}", dtype_of(v)) for i, v in enumerate(ins)]
    params += [Param("output", k, f"out{k}", dtype_of(v)) for k, v in enumerate(outs)]
    shapes = [shape_of(v) for v in ins + outs]
    n = numel(shapes[len(ins)])

    def scalar(name: str, dt: DType, value) -> Param:
        return Param("scalar", len(params), name, dt, dt.np.type(value))

    params.append(scalar("n", DType.int64, n))
    if op.shape_params:
        for j, s in enumerate(shapes):
            params += [scalar(f"dim{j}_{d}", DType.int64, x) for d, x in enumerate(s)]
    for k in op.kernel_attrs:
        a = op.attrs[k]
        if k not in node.attrs:
            raise CodegenUnsupported(node, f"custom op '{op.qualified_name}': attribute '{k}' has no value (and no "
                                           f"default) to pass to the kernel")
        params.append(scalar(k, DType.int64 if a.type == "int" else DType.float32, node.attrs[k]))
    if op.launch is not None:
        grid, block = _user_launch(node, op, shapes, props)
    else:
        grid, block = elementwise_launch(n, props)
    # kind "custom-launch": the op chose its block, which is not shrunk to fit its registers (launch.fit_block)
    group = KernelGroup(node.name, [node], ins, outs, kind="custom-launch" if op.launch is not None else "custom")
    # n_elements 0 (no launch) only when every output is empty: a user launch may cover more than output 0
    total = sum(numel(s) for s in shapes[len(ins):])
    return Kernel(op.kernel, kernel_source(op), params, grid, block, group, total)


def _user_launch(node: Node, op: CustomOp, shapes, props: DeviceProps) -> tuple[int, int]:
    try:
        got = op.launch([tuple(s) for s in shapes], props, **node.attrs)
        grid, block = (int(x) for x in got)
    except (TypeError, ValueError) as e:
        raise CodegenUnsupported(node, f"launch of custom op '{op.qualified_name}' must return (grid, block) "
                                       f"ints: {type(e).__name__}: {e}") from None
    if grid < 1 or not 1 <= block <= props.max_threads_per_block:
        raise CodegenUnsupported(node, f"launch of custom op '{op.qualified_name}' returned grid={grid}, "
                                       f"block={block}; the device ({props.name}) takes 1 to "
                                       f"{props.max_threads_per_block} threads a block (see props)")
    return grid, block


def lower_custom(node: Node, ctx: LowerContext) -> list[Step]:
    """A LOWERINGS-style function for every custom op: one step launching the user's kernel."""
    op = custom_op_of(node.domain, node.op_type)
    kernel = custom_kernel(node, op, ctx.props)
    return [ctx.kernel_step(kernel.group, node, kernel)]


@register_fallback
def custom_lowering(node: Node):
    """``lower_custom`` when ``node`` is a registered custom op, else None (lowering.py asks for each node
    that LOWERINGS does not know)."""
    return lower_custom if node.domain and custom_op_of(node.domain, node.op_type) is not None else None


def check_source(op, arch: str = "sm_90", cache: KernelCache | None = None) -> str:
    """Compile ``op``'s CUDA source with nvcc to PTX (through the kernel cache); returns the PTX text.

    ``op``: a CustomOp, the DSL's function for it, or its qualified name ("custom.MyGelu"). Raises
    CustomOpError naming the op, with nvcc's messages, when nvcc rejects the source.
    """
    op = _resolve(op)
    if op.cuda_source is None:
        raise CustomOpError(f"custom op '{op.qualified_name}' has no cuda_source to compile")
    try:
        ptx = (cache or KernelCache()).compile_cuda(kernel_source(op), op.kernel, arch, target="ptx")
    except KernelCompileError as e:
        raise CustomOpError(f"custom op '{op.qualified_name}': its CUDA source does not compile:\n{e}") from None
    return ptx.decode(errors="replace")


def _resolve(op) -> CustomOp:
    if isinstance(op, CustomOp):
        return op
    if isinstance(getattr(op, "custom", None), CustomOp):
        return op.custom
    if isinstance(op, str):
        domain, _, name = op.rpartition(".")
        found = custom_op_of(domain or "custom", name)
        if found is not None:
            return found
    raise CustomOpError(f"{op!r} is not a registered custom op")


__all__ = ["check_source", "custom_kernel", "custom_lowering", "kernel_source", "lower_custom"]
