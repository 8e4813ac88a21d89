"""``KernelCache.compile_many``: a plan's kernels compiled at once (one nvcc run per CPU), each body once, and
found again by body from another plan or process; ``kernel_body`` decides which kernels share a body."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.models.light import path
from graphc.runtime.cuda.cache import NAME_PLACEHOLDER, KernelCache, KernelCompileError, kernel_body
from graphc.runtime.codegen.launch import DeviceProps
from graphc.runtime.codegen.lowering import lower

ARCH = "sm_90"
needs_nvcc = pytest.mark.nvcc


def _kernel(name, source):
    return SimpleNamespace(name=name, source=source)


def _scale(name, factor="2.0f", node="n"):
    return (f"// graphc kernel '{name}': Mul '{node}'\n#define GC_ONE 1.0f\n"
            f'extern "C" __global__ void {name}(const float* __restrict__ x, float* __restrict__ y)\n{{\n'
            f"    int i = blockIdx.x * blockDim.x + threadIdx.x;  // Mul '{node}'\n"
            f"    if (i < 64) y[i] = x[i] * {factor} * GC_ONE;\n}}\n")


def _in_binary(compiled) -> bool:
    data = compiled.read()
    return data[:4] == b"\x7fELF" and b"\0" + compiled.symbol.encode() + b"\0" in data


# ---- kernel_body (no nvcc) ----------------------------------------------------------------------
def test_kernels_differing_by_name_and_comments_share_a_body():
    a, b = kernel_body(_scale("n1", node="first"), "n1"), kernel_body(_scale("n2_", node="second"), "n2_")
    assert a == b and NAME_PLACEHOLDER in a and "//" not in a and "first" not in a
    assert kernel_body(_scale("n1", factor="3.0f"), "n1") != a  # the code differs


def test_a_name_that_is_also_another_identifier_keeps_bodies_apart():
    # kernel "x" renames its parameter x too; kernel "k" keeps x: not the same body
    assert kernel_body(_scale("x"), "x") != kernel_body(_scale("k"), "k")


@pytest.mark.parametrize("source", [
    'extern "C" __global__ void k() { printf("a // b"); }',  # a // inside a string
    "extern \"C\" __global__ void k() { char c = '/'; }",
    "extern \"C\" __global__ void k() { /* block */ }",
    "#define K(x) \\\n  x\nextern \"C\" __global__ void k() {}",  # a continued line
    "// a comment continued \\\nextern \"C\" __global__ void k() {}",
    f'extern "C" __global__ void k() {{ int {NAME_PLACEHOLDER} = 0; }}',
])
def test_sources_whose_comments_are_ambiguous_are_keyed_exactly(source):
    assert kernel_body(source, "k") is None


# ---- compile_many (nvcc) -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def squeezenet_kernels():
    graph = gc.import_onnx(onnx.load(path("squeezenet")).SerializeToString())
    return [s.kernel for s in lower(compile_graph(graph).graph, DeviceProps()).steps if s.kernel is not None]


@needs_nvcc
def test_a_plans_kernels_compile_in_one_unit_per_job_and_each_body_once(squeezenet_kernels, tmp_path):
    kernels = squeezenet_kernels
    bodies = {kernel_body(k.source, k.name) for k in kernels}
    assert None not in bodies and len(kernels) > len(bodies) > 20  # node names are all that tells many apart
    cache = KernelCache(tmp_path)
    got = cache.compile_many(kernels, ARCH, jobs=2)
    assert set(got) == {k.source for k in kernels}
    assert len({c.path for c in got.values()}) == 2  # two nvcc runs
    assert (cache.misses, cache.hits) == (len(bodies), 0)
    assert all(_in_binary(c) for c in got.values())
    same = {}
    for k in kernels:  # kernels of one body share one compiled symbol
        assert same.setdefault(kernel_body(k.source, k.name), got[k.source]) == got[k.source]
    again = KernelCache(tmp_path)  # a second process starts warm
    assert again.compile_many(kernels, ARCH) == got and (again.misses, again.hits) == (0, len(bodies))


@needs_nvcc
def test_another_plans_kernel_with_the_same_body_is_a_hit(tmp_path):
    first = KernelCache(tmp_path).compile_many([_kernel("conv_a", _scale("conv_a"))], ARCH)
    later = KernelCache(tmp_path)
    got = later.compile_many([_kernel("conv_b", _scale("conv_b", node="other")),
                              _kernel("conv_c", _scale("conv_c", factor="3.0f"))], ARCH)
    assert (later.hits, later.misses) == (1, 1)
    assert got[_scale("conv_b", node="other")] == first[_scale("conv_a")]  # symbol conv_a, compiled earlier
    assert got[_scale("conv_c", factor="3.0f")].symbol == "conv_c" and _in_binary(got[_scale("conv_c", factor="3.0f")])


@needs_nvcc
def test_two_kernels_of_one_name_in_one_unit_get_symbols_of_their_own(tmp_path):
    a, b = _kernel("k", _scale("k")), _kernel("k", _scale("k", factor="5.0f"))
    got = KernelCache(tmp_path).compile_many([a, b], ARCH, jobs=1)
    ca, cb = got[a.source], got[b.source]
    assert ca.path == cb.path and ca.symbol != cb.symbol and _in_binary(ca) and _in_binary(cb)


@needs_nvcc
def test_a_kernel_nvcc_rejects_is_named_and_the_others_are_still_cached(tmp_path):
    good = [_kernel("good1", _scale("good1")), _kernel("good2", _scale("good2", factor="4.0f"))]
    # the longest source: compiled first of the unit, and then alone first
    broken = _kernel("broken", "// " + "padding " * 80 + '\nextern "C" __global__ void broken() { undefined_thing; }')
    with pytest.raises(KernelCompileError, match="(?s)kernel .broken.*undefined_thing"):
        KernelCache(tmp_path).compile_many([good[0], broken, good[1]], ARCH, jobs=1)
    again = KernelCache(tmp_path)
    again.compile_many(good, ARCH)
    assert (again.hits, again.misses) == (2, 0)


@needs_nvcc
def test_a_source_keyed_exactly_compiles_alone(tmp_path):
    src = 'extern "C" __global__ void user_k(float* y) { /* custom */ y[threadIdx.x] = 1.0f; }'
    cache = KernelCache(tmp_path)
    got = cache.compile_many([_kernel("user_k", src), _kernel("n1", _scale("n1"))], ARCH)
    assert got[src].symbol == "user_k" and got[src].path != got[_scale("n1")].path and _in_binary(got[src])


# ---- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_the_gpu_device_loads_kernels_of_one_body_from_one_module(tmp_path):
    from onnx import TensorProto as TP
    from onnx import helper as oh

    from graphc.runtime.cuda import CudaBackend
    from graphc.runtime.cuda.device import PyCudaDevice

    if shutil.which("nvcc") is None:
        pytest.skip("needs nvcc")
    nodes = [oh.make_node("Exp", ["x"], ["a"], name="first"), oh.make_node("Exp", ["y"], ["b"], name="second")]
    info = [oh.make_tensor_value_info(n, TP.FLOAT, [64]) for n in ("x", "y")]
    out = [oh.make_tensor_value_info(n, TP.FLOAT, [64]) for n in ("a", "b")]
    model = oh.make_model(oh.make_graph(nodes, "two_exps", info, out), opset_imports=[oh.make_opsetid("", 21)])
    device = PyCudaDevice(KernelCache(tmp_path))
    exe = CudaBackend.prepare(gc.import_onnx(model.SerializeToString()), device=device)
    x, y = np.linspace(-1, 1, 64, dtype=np.float32), np.linspace(0, 2, 64, dtype=np.float32)
    a, b = exe.run({"x": x, "y": y})
    np.testing.assert_allclose(a, np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(b, np.exp(y), rtol=1e-6)
    assert len(device._modules) == 1 and device.cache.misses == 1
