"""Launch configuration: block and grid sizes for each kind of kernel, from the device's properties.

Kernels loop grid-stride, so the grid only needs to fill the device: at most as many blocks as its
multiprocessors hold at once, never more than there is work for.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceProps:
    """What launch configuration and code generation need to know of a device."""

    name: str = "NVIDIA H100 (assumed)"
    compute_capability: tuple[int, int] = (9, 0)
    multiprocessors: int = 132
    max_threads_per_block: int = 1024
    max_threads_per_multiprocessor: int = 2048
    warp_size: int = 32
    #: the dialect kernels are rendered in: "cuda" (CUDA C for nvcc), or "c" (C++ for the host's
    #: compiler: ``multiprocessors`` is then the thread count, and a block is one thread)
    target: str = "cuda"
    #: C target: the host's compiler builds runtime/cpu's AVX-512 panel micro-kernel (``gc_panel_gemm``), which
    #: lowerings may then choose over the BLAS (a product by a constant matrix packed once)
    panel_gemm: bool = False

    @property
    def arch(self) -> str:
        """nvcc's ``-arch`` for this device, e.g. ``sm_90``."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


#: Threads per block for grid-stride elementwise loops.
ELEMENTWISE_BLOCK = 256
#: Most threads per block for a reduction over one row.
REDUCTION_BLOCK = 256
#: A row at least this long is reduced by a whole block; shorter rows by one thread each.
BLOCK_ROW_MIN = 128


def _resident_blocks(props: DeviceProps, block: int) -> int:
    return props.multiprocessors * max(1, props.max_threads_per_multiprocessor // block)


def elementwise_launch(n: int, props: DeviceProps) -> tuple[int, int]:
    """(grid, block) for a grid-stride loop over ``n`` items."""
    block = min(ELEMENTWISE_BLOCK, props.max_threads_per_block)
    grid = max(1, min(-(-n // block), _resident_blocks(props, block)))
    return grid, block


def reduction_launch(rows: int, row_len: int, props: DeviceProps) -> tuple[str, int, int]:
    """(strategy, grid, block) for ``rows`` reductions of ``row_len`` elements each.

    ``"block"``: one block per row (grid-stride over rows), threads striding along the row and a tree
    reduction in shared memory; ``"thread"``: one thread per row, for many short rows.
    """
    if props.target == "c":  # a CPU thread reduces whole rows; rows too few for the threads are split
        return "thread", max(1, min(rows, props.multiprocessors)), 1
    few_rows = rows < props.multiprocessors * 32
    if row_len >= BLOCK_ROW_MIN or (few_rows and row_len > props.warp_size // 4):
        block = min(REDUCTION_BLOCK, props.max_threads_per_block)
        while block // 2 >= max(props.warp_size, 1) and block // 2 >= row_len:
            block //= 2  # a power of two no larger than needed: the tree reduction halves it
        return "block", max(1, min(rows, _resident_blocks(props, block))), block
    grid, block = elementwise_launch(rows, props)
    return "thread", grid, block


#: On the CPU a row is split only into parts of at least this many elements.
CPU_SPLIT_MIN = 16384
#: A split reduction gives each block of a row at least this many of the row's elements per thread.
SPLIT_MIN_PER_THREAD = 8


def reduction_split(rows: int, row_len: int, props: DeviceProps) -> int:
    """Into how many parts (blocks) each row of a reduction is split: 1 (one block a row) unless the rows are
    too few to fill the device and long enough that each part still gives every thread of its block
    ``SPLIT_MIN_PER_THREAD`` elements. A ReduceSum over a whole tensor (one row) would otherwise run on one
    block of one multiprocessor, per-channel statistics of an activation on C blocks."""
    if props.target == "c":  # a part per thread, each at least CPU_SPLIT_MIN elements
        if 2 * rows > props.multiprocessors:
            return 1
        parts = min(-(-props.multiprocessors // rows), row_len // CPU_SPLIT_MIN)
        return parts if parts >= 2 else 1
    strategy, _, block = reduction_launch(rows, row_len, props)
    if strategy != "block":
        return 1
    resident = _resident_blocks(props, block)
    if 2 * rows > resident:
        return 1
    parts = min(-(-resident // rows), row_len // (block * SPLIT_MIN_PER_THREAD))
    return parts if parts >= 2 else 1


#: Registers one block may use (every architecture since sm_50), allocated per warp in units of 256.
REGISTERS_PER_BLOCK = 65536
REGISTER_UNIT = 256


def max_block_for_registers(registers: int, props: DeviceProps) -> int:
    """The most threads a block of a kernel using ``registers`` a thread can have: what the driver reports as
    the function's MAX_THREADS_PER_BLOCK (a whole number of warps), computed here where there is no driver."""
    warp = max(props.warp_size, 1)
    per_warp = -(-registers * warp // REGISTER_UNIT) * REGISTER_UNIT
    return min(props.max_threads_per_block, REGISTERS_PER_BLOCK // max(per_warp, 1) * warp)


def fit_block(kernel, max_threads: int | None, registers: int | None, props: DeviceProps) -> int:
    """The block a kernel launches with, given the most threads its compiled code allows (None: unknown).

    A grid-stride kernel that shares nothing across its block (no ``__syncthreads``) runs the same with fewer
    threads a block: its block shrinks to fit, in whole warps. Any other kernel, and a custom op that asked for
    its own block, would fail at launch with CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: refused here, by name."""
    from graphc.errors import GraphcError

    if max_threads is None or kernel.block <= max_threads:
        return kernel.block
    if kernel.group.kind != "custom-launch" and "__syncthreads" not in kernel.source:
        warp = max(props.warp_size, 1)
        return max(warp, max_threads // warp * warp)
    node = kernel.group.nodes[0].name if kernel.group.nodes else kernel.group.name
    raise GraphcError(f"kernel '{kernel.name}' (node '{node}') asks for blocks of {kernel.block} threads, but its "
                      f"compiled code uses {registers if registers is not None else 'too many'} registers a thread, "
                      f"which allows at most {max_threads} threads a block on {props.name}: launch it with a block of "
                      f"at most {max_threads} threads (or make the kernel use fewer registers, e.g. __launch_bounds__)")


__all__ = ["DeviceProps", "REGISTERS_PER_BLOCK", "elementwise_launch", "fit_block", "max_block_for_registers", "reduction_split",
           "reduction_launch"]
