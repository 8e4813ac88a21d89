"""A CPU stand-in for a CUDA device: generated kernels compiled as C++ by g++ and run with one OS thread per
CUDA thread where a kernel synchronizes its block (a plain loop over the threads otherwise), so that the
kernels' index arithmetic and reductions can be checked without a GPU.

A small header maps CUDA's vocabulary onto C++: ``threadIdx``/``blockIdx`` are thread-local, ``blockDim``
and ``gridDim`` global, ``__shared__`` arrays are function statics (blocks run one after another, so one
block's threads share them), ``__syncthreads`` is a ``std::barrier`` over the block's threads, ``__half``
is ``_Float16`` and ``__nv_bfloat16`` a 16-bit struct rounded to nearest even. The device reports tiny
limits (8 threads a block, 2 multiprocessors) so launches stay cheap and grid-stride loops wrap many
times; ``GRAPHC_CUDA_EMULATE=h100`` (or ``props=H100_PROPS``) gives it an H100's geometry instead (blocks of
256 threads and more, as the GPU runs them). Memory is host memory: a pointer is an address inside a NumPy
array, filled with 0xFF when allocated (a NaN in every float type), since ``cuMemAlloc`` does not clear what it
hands out: a kernel that reads bytes nobody wrote gets NaN or -1 here, not a zero that passes.

This is a testing and debugging tool (``GRAPHC_CUDA_EMULATE=1`` makes backend="cuda" use it): it checks
semantics, not speed, warp-level behaviour or the GPU's math library (expf and friends are glibc's here).
"""
from __future__ import annotations

import ctypes
import shutil

import numpy as np

from .cache import KernelCache, KernelCompileError, registers_of
from ..codegen.kernel import Kernel
from .host import TYPES, HostMemory, argument_array, build_library, host_view, launch_arguments
from ..codegen.launch import DeviceProps, max_block_for_registers
from ..codegen.libcall import Gemm, gemm_reference

SHIM = r"""
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
struct uint3 { unsigned x, y, z; };
static thread_local uint3 threadIdx, blockIdx;
static uint3 blockDim, gridDim;
static std::barrier<>* gc_block_barrier;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
inline void __syncthreads() { gc_block_barrier->arrive_and_wait(); }
""" + TYPES + r"""static void gc_run_grid(unsigned grid, unsigned block, const std::function<void()>& body) {
    gridDim = uint3{grid, 1, 1};
    blockDim = uint3{block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        std::barrier<> bar(block);
        gc_block_barrier = &bar;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([&, b, t] { blockIdx = uint3{b, 0, 0}; threadIdx = uint3{t, 0, 0}; body(); });
        for (auto& th : threads) th.join();
    }
}
// a kernel that never waits at a barrier: each block's threads run one after another on this OS thread
static void gc_run_grid_serial(unsigned grid, unsigned block, const std::function<void()>& body) {
    gridDim = uint3{grid, 1, 1};
    blockDim = uint3{block, 1, 1};
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t) {
            blockIdx = uint3{b, 0, 0};
            threadIdx = uint3{t, 0, 0};
            body();
        }
}
"""

#: g++'s options for the emulated kernels (-O1: they are checked for semantics, not speed).
OPTIONS = ("-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w")

EMULATOR_PROPS = DeviceProps(name="CPU emulator", compute_capability=(0, 0), multiprocessors=2,
                             max_threads_per_block=8, max_threads_per_multiprocessor=16, warp_size=4)
#: An H100's launch geometry (the generated kernels and launches are those the GPU gets), on the emulator.
H100_PROPS = DeviceProps(name="CPU emulator (H100 geometry)", compute_capability=(0, 0))
#: The byte a fresh allocation is filled with (0xFF..: NaN as a float, -1 as a signed integer).
FILL_BYTE = 0xFF


def available() -> bool:
    return shutil.which("g++") is not None


def combined_source(kernels: list[Kernel]) -> str:
    """Many kernels in one translation unit: each in a namespace of its own (so that two kernels of one
    name, or their helpers, do not clash), their ``#include`` lines hoisted to the top."""
    includes, parts = [], []
    for j, k in enumerate(kernels):
        body = []
        for line in k.source.splitlines():
            if line.startswith("#include"):
                if line not in includes:
                    includes.append(line)
            else:
                body.append(line.replace('extern "C" __global__', "__global__"))
        parts.append(f"namespace gc_k{j} {{\n" + "\n".join(body) + f"\n}}  // namespace gc_k{j}\n")
    return "\n".join(includes) + "\n" + "\n".join(parts)


def launcher_source(kernel: Kernel, j: int) -> str:
    """An ``extern "C"`` entry point that runs kernel ``j`` over a grid with its pointers from an array: the
    threads of a block as OS threads when the kernel synchronizes them (``__syncthreads``), else in a loop."""
    args = launch_arguments(kernel)
    run = "gc_run_grid" if "__syncthreads" in kernel.source else "gc_run_grid_serial"
    return (f'extern "C" void gc_launch_{j}(void** args, unsigned grid, unsigned block) {{\n'
            f"    {run}(grid, block, [&] {{ gc_k{j}::{kernel.name}({args}); }});\n}}\n")


class EmulatedDevice(HostMemory):
    """The device interface of ``runtime/cuda/device.py`` on the CPU (see the module docstring)."""

    def __init__(self, cache: KernelCache | None = None, props: DeviceProps = EMULATOR_PROPS,
                 check_registers: str | None = None):
        """``check_registers``: an architecture (``"sm_90"``) to compile each loaded kernel for with nvcc too, so
        that its launcher reports the register count and most threads a block the GPU would allow, as
        ``PyCudaDevice.load``'s does (the executor then shrinks or refuses a block that would not launch)."""
        if not available():
            raise KernelCompileError("the CUDA emulator compiles kernels with g++, which is not on the PATH")
        # memory not cleared, as cuMemAlloc's; cudaMalloc returns 256-byte aligned pointers
        super().__init__(align=256, fill=FILL_BYTE)
        self.props = props
        self.check_registers = check_registers
        self._gpu = {}  # kernel source -> cache.CompiledKernel for check_registers's architecture
        self.cache = cache or KernelCache()
        self._libs = []
        self._launchers = {}
        self.launches = 0

    def precompile(self, kernels: list[Kernel]) -> None:
        """Compile kernels not loaded yet, all in one g++ run (the C++ headers dominate its time)."""
        todo = list({k.source: k for k in kernels if k.source not in self._launchers}.values())
        if self.check_registers:  # the GPU's binaries too, all at once (parallel nvcc runs), for their registers
            self._gpu.update(self.cache.compile_many([k for k in kernels if k.source not in self._gpu],
                                                     self.check_registers))
        if not todo:
            return
        source = f"{SHIM}\n{combined_source(todo)}\n" + "".join(launcher_source(k, j) for j, k in enumerate(todo))
        lib = build_library(self.cache, "emulator", "g++", OPTIONS, source, todo)
        self._libs.append(lib)
        for j, k in enumerate(todo):
            fn = getattr(lib, f"gc_launch_{j}")
            fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint, ctypes.c_uint]
            self._launchers[k.source] = self._launcher(fn, len(k.params))

    def _launcher(self, fn, n: int):
        def launch(grid: int, block: int, ptrs: list[int]) -> None:
            self.launches += 1
            args, _alive = argument_array(ptrs, n)  # _alive: the scalars' copies, held until the call returns
            fn(args, grid, block)

        return launch

    def load(self, kernel: Kernel):
        self.precompile([kernel])
        launch = self._launchers[kernel.source]
        if self.check_registers:
            compiled = self._gpu[kernel.source]
            registers = registers_of(compiled.path, compiled.symbol)

            def checked(grid: int, block: int, ptrs: list, _launch=launch) -> None:
                _launch(grid, block, ptrs)

            checked.registers = registers
            checked.max_threads = max_block_for_registers(registers, DeviceProps())  # the GPU's limits
            return checked
        return launch

    def call(self, call):
        """A launcher for a library call: GEMMs run in NumPy (``gemm_reference``) on the arena's host memory."""
        if not isinstance(call, Gemm):
            raise TypeError(f"the CUDA emulator cannot run library call {call!r}")
        dt = call.dtype.np

        def view(ptr: int, which: str) -> np.ndarray:
            return host_view(ptr, call.extent(which), dt)

        def launch(grid: int, block: int, ptrs: list[int]) -> None:
            self.launches += 1
            a, b, c = ptrs
            gemm_reference(call, view(a, "a"), view(b, "b"), view(c, "c"))

        return launch


__all__ = ["EMULATOR_PROPS", "FILL_BYTE", "H100_PROPS", "EmulatedDevice", "available", "launcher_source"]
