"""Every kernel the CUDA backend generates for its test graphs compiles with nvcc (sm_90), no GPU needed:
a syntax or type error in generated code fails here. All kernels go through nvcc in one translation unit
(each in a namespace of its own); one kernel of each kind also goes through the kernel cache as it is,
to a cubin, as the runtime would compile it."""
from __future__ import annotations

import subprocess

import pytest

import graphc as gc
from cuda_cases import all_cases
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda.cache import KernelCache, find_nvcc
from graphc.runtime.cuda.emulator import combined_source
from graphc.runtime.codegen.launch import DeviceProps
from graphc.runtime.codegen.lowering import lower

pytestmark = pytest.mark.nvcc
ARCH = "sm_90"


@pytest.fixture(scope="module")
def kernels():
    out = {}
    for c in all_cases():
        for s in lower(compile_graph(gc.import_onnx(c.model)).graph, DeviceProps()).steps:
            if s.kernel is not None:  # library calls (GEMM) have none
                out.setdefault(s.kernel.source, s.kernel)
    return list(out.values())


def test_every_generated_kernel_compiles_to_ptx(kernels, tmp_path):
    src = tmp_path / "all_kernels.cu"
    src.write_text(combined_source(kernels))
    ptx = tmp_path / "all_kernels.ptx"
    run = subprocess.run([find_nvcc(), "--ptx", f"-arch={ARCH}", "-std=c++17", "-o", str(ptx), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert ptx.read_text().count(".entry") == len(kernels) > 100


def test_onnx_node_case_kernels_compile_to_ptx(tmp_path):
    from cuda_node_cases import lowered_node_cases

    kernels = list({s.kernel.source: s.kernel for _, _, steps in lowered_node_cases(DeviceProps())
                    for s in steps if s.kernel is not None}.values())
    src = tmp_path / "node_kernels.cu"
    src.write_text(combined_source(kernels))
    run = subprocess.run([find_nvcc(), "--ptx", f"-arch={ARCH}", "-std=c++17", "-o", str(tmp_path / "k.ptx"), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "k.ptx").read_text().count(".entry") == len(kernels) > 300


def test_one_kernel_of_each_kind_compiles_through_the_cache(kernels, tmp_path):
    kinds = {}
    for k in kernels:
        src = k.source
        kind = ("vector" if "float4" in src else "block-row" if "__shared__" in src else
                "thread-row" if "row <" in src else "half" if "cuda_fp16" in src else "loop")
        kinds.setdefault(kind, k)
    assert set(kinds) == {"vector", "block-row", "thread-row", "loop"} or len(kinds) >= 4
    cache = KernelCache(tmp_path)
    for k in kinds.values():
        cubin = cache.compile_cuda(k.source, k.name, ARCH)
        assert cubin[:4] == b"\x7fELF"
    assert cache.misses == len(kinds) and cache.hits == 0
    again = KernelCache(tmp_path)
    for k in kinds.values():
        again.compile_cuda(k.source, k.name, ARCH)
    assert again.hits == len(kinds) and again.misses == 0  # a second process starts warm


def test_nvcc_errors_name_the_kernel(tmp_path):
    from graphc.runtime.cuda.cache import KernelCompileError

    with pytest.raises(KernelCompileError, match="kernel 'broken'"):
        KernelCache(tmp_path).compile_cuda('extern "C" __global__ void broken() { undefined_thing; }', "broken", ARCH)
