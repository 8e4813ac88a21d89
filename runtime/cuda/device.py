"""The device the CUDA executor drives, through PyCUDA: memory, copies, kernel loading and prepared launches.

The executor sees a small interface (``props``, ``alloc``, ``htod``, ``dtoh``, ``memset``, ``dtod``, ``load``,
``call`` for library routines, ``synchronize``), which ``runtime/cuda/emulator.py`` also implements on the
CPU so that everything above it runs in tests without a GPU. PyCUDA is imported only here, and only when
a device is made: ``pycuda.autoprimaryctx`` retains the device's primary context, the one cuBLAS, CuPy
and PyTorch use, so graphc's buffers and theirs live in one context (``pycuda.autoinit`` would make a
context of its own).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from graphc.errors import CudaUnavailableError

from .cache import KernelCache
from ..codegen.kernel import Kernel
from ..codegen.launch import DeviceProps

#: What a user reads when the CUDA backend cannot start: one sentence, the fix included.
NO_PYCUDA = ("the CUDA backend needs PyCUDA with an NVIDIA driver and the CUDA toolkit: install them and run "
             "pip install -e '.[cuda]' (or use backend='numpy')")


def require_pycuda() -> None:
    """Raise CudaUnavailableError (one sentence) unless ``import pycuda.driver`` works."""
    try:
        import pycuda.driver  # noqa: F401
    except ImportError as e:
        raise CudaUnavailableError(f"{NO_PYCUDA} ({e})") from None


Launcher = Callable[[int, int, list[int]], None]


class PyCudaDevice:
    """The current CUDA device in its primary context."""

    def __init__(self, cache: KernelCache | None = None):
        require_pycuda()
        try:
            import pycuda.autoprimaryctx  # noqa: F401
            import pycuda.driver as drv
        except Exception as e:  # pycuda.driver.Error: no driver, no device
            raise CudaUnavailableError(f"{NO_PYCUDA} (PyCUDA could not open a device: {e})") from None
        self.drv = drv
        dev = drv.Context.get_device()
        a = drv.device_attribute
        attrs = dev.get_attributes()
        self.props = DeviceProps(dev.name(), tuple(dev.compute_capability()), attrs[a.MULTIPROCESSOR_COUNT],
                                 attrs[a.MAX_THREADS_PER_BLOCK], attrs[a.MAX_THREADS_PER_MULTIPROCESSOR],
                                 attrs[a.WARP_SIZE])
        self.cache = cache or KernelCache()
        self._allocations = {}  # pointer -> pycuda DeviceAllocation (freed by ``free`` or with the device)
        self._compiled = {}  # kernel source -> cache.CompiledKernel
        self._modules = {}  # binary path -> loaded module
        self._cublas = None  # made on the first library call (runtime/cuda/cublas.py)

    def alloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(max(int(nbytes), 1))
        self._allocations[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        """Give back an allocation (``alloc``'s pointer): an executable's arena when the executable goes."""
        a = self._allocations.pop(ptr, None)
        if a is not None:
            try:
                a.free()
            except self.drv.Error:  # the context is already gone (interpreter exit): its memory with it
                pass

    @property
    def live_allocations(self) -> int:
        return len(self._allocations)

    def close(self) -> None:
        """Destroy the cuBLAS handle (its workspace) and free every allocation still held."""
        if self._cublas is not None:
            self._cublas.close()
            self._cublas = None
        for ptr in list(self._allocations):
            self.free(ptr)

    def __del__(self):
        import sys

        if sys.is_finalizing():  # at exit the primary context may be gone already; the process frees it all
            return
        try:
            self.close()
        except Exception:  # noqa: BLE001  (a device dropped after its context was popped)
            pass

    def htod(self, ptr: int, array: np.ndarray) -> None:
        if array.nbytes:
            self.drv.memcpy_htod(ptr, np.ascontiguousarray(array))

    def dtoh(self, array: np.ndarray, ptr: int) -> None:
        if array.nbytes:
            self.drv.memcpy_dtoh(array, ptr)

    def memset(self, ptr: int, byte: int, nbytes: int) -> None:
        if nbytes:
            self.drv.memset_d8(ptr, byte, nbytes)

    def dtod(self, dst: int, src: int, nbytes: int) -> None:
        """Copy ``nbytes`` between two device addresses (stream-ordered after the launches before it)."""
        if nbytes:
            self.drv.memcpy_dtod(dst, src, nbytes)

    def precompile(self, kernels: list[Kernel]) -> None:
        """Compile the kernels not compiled yet all at once (``KernelCache.compile_many``: one nvcc run per CPU,
        each kernel body once); the executor calls this before loading a plan's kernels."""
        todo = [k for k in kernels if k.source not in self._compiled]
        if todo:
            self._compiled.update(self.cache.compile_many(todo, self.props.arch))

    def load(self, kernel: Kernel) -> Launcher:
        """The kernel compiled (through the on-disk cache), loaded and prepared for low-overhead calls."""
        if kernel.source not in self._compiled:
            self.precompile([kernel])
        compiled = self._compiled[kernel.source]
        if compiled.path not in self._modules:  # one module per binary, which may hold many kernels
            self._modules[compiled.path] = self.drv.module_from_buffer(compiled.read())
        fn = self._modules[compiled.path].get_function(compiled.symbol)
        fn.prepare(kernel.signature)
        fa = self.drv.function_attribute

        def launch(grid: int, block: int, ptrs: list[int]) -> None:
            fn.prepared_call((grid, 1, 1), (block, 1, 1), *ptrs)

        def launch_with_scalars(grid: int, block: int, ptrs: list) -> None:
            # scalar parameters arrive as NumPy scalars: packed as the Python numbers the signature expects
            fn.prepared_call((grid, 1, 1), (block, 1, 1), *[a.item() if isinstance(a, np.generic) else a for a in ptrs])

        out = launch_with_scalars if any(p.role == "scalar" for p in kernel.params) else launch
        # what the compiled code allows: the executor shrinks or refuses a block above it (launch.fit_block)
        out.max_threads = fn.get_attribute(fa.MAX_THREADS_PER_BLOCK)
        out.registers = fn.get_attribute(fa.NUM_REGS)
        return out

    def call(self, call) -> Launcher:
        """A launcher for a library call (``libcall.Gemm``: cuBLAS, its handle in this device's context)."""
        from ..codegen.libcall import Gemm

        if not isinstance(call, Gemm):
            raise TypeError(f"the CUDA device has no library routine for {call!r}")
        if self._cublas is None:
            from .cublas import Cublas

            self._cublas = Cublas()
        return self._cublas.gemm(call)

    def synchronize(self) -> None:
        self.drv.Context.synchronize()


__all__ = ["CudaUnavailableError", "NO_PYCUDA", "PyCudaDevice", "require_pycuda"]
