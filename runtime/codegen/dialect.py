"""The dialects a kernel is rendered in: CUDA C for nvcc, and C++ for the host's compiler.

Both read the same generated text; the host target defines CUDA's few keywords in a small header
(runtime/cpu/device.py), so a dialect only decides where the two must be written differently. There are
three such places, each a field of ``Dialect``:

- the loop over a kernel's work (``work_loop``): CUDA strides over the whole grid from each thread's global
  index (neighbouring threads touch neighbouring elements, so loads coalesce); C gives each chunk of the work (one
  call of the kernel on the host's thread pool) one contiguous share of it, walked in order, which is what a C compiler vectorizes;
- rows (``row_loops``): C splits a loop over a tensor whose last dim is long enough into a loop over rows and
  an inner loop along the row, so that the inner loop has no division in it and vectorizes;
- vectors (``vector_loads``): CUDA reads and writes four floats at a time (``float4``) where a kernel allows
  it; a C compiler vectorizes the scalar loop by itself.

And two that are not about text: on the host, an op with no kernel may run between two kernels on the
arena's bytes through the reference interpreter (``host_calls``); on a GPU it cannot. And a host kernel may call
the BLAS's GEMM itself and keep a scratch buffer per thread (``kernel_gemm``: ``gc_gemm_rm`` and ``gc_scratch`` of
runtime/cpu's shim), so that one work item can make a convolution's columns for a band of output rows and
multiply them while they are in its core's cache; a CUDA kernel calls no library.

The dialect is chosen per plan from ``DeviceProps.target`` and set around the lowering by ``rendering``;
the generators ask ``current()``.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """What a target's kernel text differs in (see the module docstring)."""

    name: str
    row_loops: bool
    vector_loads: bool
    host_calls: bool
    kernel_gemm: bool

    def work_loop(self, it: str, n, var: str = "i") -> str:
        """The opening line of the loop over a kernel's ``n`` work items, ``var`` of C type ``it``."""
        if self.name == "c":
            return (f"    for ({it} {var} = gc_share({n}, 0), gc_end_{var} = gc_share({n}, 1); {var} < gc_end_{var}; "
                    f"++{var}) {{")
        return (f"    for ({it} {var} = blockIdx.x * ({it})blockDim.x + threadIdx.x; {var} < {n}; "
                f"{var} += ({it})blockDim.x * gridDim.x) {{")


#: CUDA C, compiled by nvcc (and, for tests, by g++ in the emulator).
CUDA = Dialect("cuda", row_loops=False, vector_loads=True, host_calls=False, kernel_gemm=False)
#: C++ for the host's compiler (the compiled CPU backend, runtime/cpu: chunks of a launch on its thread pool).
C = Dialect("c", row_loops=True, vector_loads=False, host_calls=True, kernel_gemm=True)
#: By ``DeviceProps.target``.
DIALECTS = {d.name: d for d in (CUDA, C)}

_CURRENT: ContextVar[Dialect] = ContextVar("graphc_codegen_dialect", default=CUDA)


def dialect(target: str | Dialect) -> Dialect:
    """The dialect named ``target`` ("cuda" or "c"); a clear error for any other name."""
    if isinstance(target, Dialect):
        return target
    try:
        return DIALECTS[target]
    except KeyError:
        raise ValueError(f"unknown code generation target {target!r}: expected one of {sorted(DIALECTS)}") from None


def current() -> Dialect:
    """The dialect the kernels being generated are rendered in (CUDA outside ``rendering``)."""
    return _CURRENT.get()


@contextmanager
def rendering(target: str | Dialect):
    """Render the kernels generated inside the block in ``target``'s dialect."""
    token = _CURRENT.set(dialect(target))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def grid_stride_loop(it: str, n, var: str = "i") -> str:
    """The opening line of the loop every generated kernel runs over its work, in the current dialect."""
    return current().work_loop(it, n, var)


__all__ = ["C", "CUDA", "DIALECTS", "Dialect", "current", "dialect", "grid_stride_loop", "rendering"]
