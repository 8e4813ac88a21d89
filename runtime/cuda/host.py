"""What the CUDA emulator and the CPU target share: the host's memory as a device's, the CUDA vocabulary's
types and intrinsics in C++, and a shared library built from generated kernels (one compiler run, cached).
"""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np

from .cache import KernelCache, KernelCompileError, cache_key, compiler_version
from ..codegen.kernel import Kernel, ctype

#: CUDA's bit casts, atomics, float4 and half types in C++ (C++20: std::atomic_ref), for a shim's header.
TYPES = r"""inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }
template <class T> inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <class T> inline T atomicCAS(T* p, T expected, T v) {
    std::atomic_ref<T>(*p).compare_exchange_strong(expected, v); return expected; }
struct alignas(16) float4 { float x, y, z, w; };
typedef _Float16 __half;
inline float __half2float(__half h) { return (float)h; }
inline __half __float2half(float f) { return (__half)f; }
struct __nv_bfloat16 { uint16_t bits; };
inline float __bfloat162float(__nv_bfloat16 b) { uint32_t u = (uint32_t)b.bits << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u; std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}
"""

#: Headers the generated sources include, made empty: the shim defines what they would.
FAKE_HEADERS = ("cuda_fp16.h", "cuda_bf16.h")


def host_view(ptr: int, n: int, dt: np.dtype) -> np.ndarray:
    """The ``n`` elements of type ``dt`` at host address ``ptr`` as a NumPy array (no copy)."""
    if not n:
        return np.empty(0, dt)
    return np.ctypeslib.as_array((ctypes.c_char * (n * dt.itemsize)).from_address(ptr)).view(dt)


def launch_arguments(kernel: Kernel) -> str:
    """The C arguments of a call of ``kernel`` from ``void** args``: pointers cast to their types, scalars
    read by value."""
    return ", ".join(f"*(const {ctype(p.dtype)}*)args[{i}]" if p.role == "scalar" else  # by value
                     f"({'' if p.role == 'output' else 'const '}{ctype(p.dtype)}*)args[{i}]"
                     for i, p in enumerate(kernel.params))


def argument_array(ptrs: list, n: int) -> tuple:
    """(``void*[n]`` of a launch's arguments, what keeps them alive): pointers as they are, a scalar parameter
    (a NumPy scalar among the pointers) as the address of a copy of it."""
    boxed = [np.array(a) if isinstance(a, np.generic) else a for a in ptrs]
    return (ctypes.c_void_p * max(n, 1))(*[b.ctypes.data if isinstance(b, np.ndarray) else b for b in boxed]), boxed


def build_library(cache: KernelCache, kind: str, compiler: str, options: tuple[str, ...], source: str,
                  kernels: list[Kernel], link: tuple[str, ...] = ()) -> ctypes.CDLL:
    """``source`` (a shim and ``kernels``) compiled by ``compiler`` into a shared library, cached under ``kind``
    by source, compiler version and options, and loaded. A rejected source raises KernelCompileError naming
    the kernels."""
    key = cache_key(source, kind, compiler_version(compiler), tuple(options) + tuple(link))

    def build(out: Path) -> None:
        inc = cache.root / kind / "include"
        inc.mkdir(parents=True, exist_ok=True)
        for h in FAKE_HEADERS:
            if not (inc / h).exists():
                (inc / h).write_text("// graphc: the shim defines the half types\n")
        src = out.with_suffix(".cpp")
        src.write_text(source)
        run = subprocess.run([compiler, *options, f"-I{inc}", "-o", str(out), str(src), *link],
                             capture_output=True, text=True)
        src.unlink()
        if run.returncode != 0:
            names = ", ".join(f"gc_k{j}={k.name}" for j, k in enumerate(kernels))
            raise KernelCompileError(f"{compiler} rejected the {kind} kernels ({names}):\n"
                                     f"{run.stderr.strip()[:4000]}")

    return ctypes.CDLL(str(cache.get_or_build(kind, key, ".so", build)))


class HostMemory:
    """Device memory that is host memory: a pointer is an address inside a NumPy array (``align``-byte
    aligned; filled with ``fill`` when given, left as it is otherwise); copies are memmoves."""

    def __init__(self, align: int, fill: int | None = None):
        self._align, self._fill = align, fill
        self._buffers: dict[int, np.ndarray] = {}  # pointer -> the array holding its bytes (live allocations)

    def alloc(self, nbytes: int) -> int:
        n = int(nbytes) + self._align
        raw = np.empty(n, dtype=np.uint8) if self._fill is None else np.full(n, self._fill, dtype=np.uint8)
        base = raw.ctypes.data
        ptr = base + (-base) % self._align
        self._buffers[ptr] = raw
        return ptr

    def free(self, ptr: int) -> None:
        """Give back an allocation (``alloc``'s pointer)."""
        self._buffers.pop(ptr, None)

    @property
    def live_allocations(self) -> int:
        """How many allocations are not freed yet (leak tests count them)."""
        return len(self._buffers)

    def htod(self, ptr: int, array: np.ndarray) -> None:
        a = np.ascontiguousarray(array)
        ctypes.memmove(ptr, a.ctypes.data, a.nbytes)

    def dtoh(self, array: np.ndarray, ptr: int) -> None:
        ctypes.memmove(array.ctypes.data, ptr, array.nbytes)

    def memset(self, ptr: int, byte: int, nbytes: int) -> None:
        ctypes.memset(ptr, byte, nbytes)

    def dtod(self, dst: int, src: int, nbytes: int) -> None:
        ctypes.memmove(dst, src, nbytes)

    def synchronize(self) -> None:
        pass


__all__ = ["FAKE_HEADERS", "TYPES", "HostMemory", "argument_array", "build_library", "host_view", "launch_arguments"]
