"""The CUDA backend on a real GPU (marked ``cuda``: skipped without PyCUDA and a device). Not yet run: the
session that wrote the backend had no GPU; the same checks pass on the CPU emulator (test_cuda_emulator.py)."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from cuda_cases import all_cases
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda.cache import KernelCache

pytestmark = pytest.mark.cuda
CASES = all_cases()


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    from graphc.runtime.cuda.device import PyCudaDevice

    return PyCudaDevice()  # the warm cache ($GRAPHC_CACHE_DIR: scripts/gpu_check.sh carries it)


def _same(outs, ref, rtol, atol, where):
    for a, b in zip(outs, ref):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gpu_agrees_with_numpy(case, device):
    from graphc.runtime.cuda import CudaBackend

    graph = gc.import_onnx(case.model)
    exe = CudaBackend.prepare(compile_graph(graph), device=device, debug=True)  # dead bytes filled with NaN
    ref = gc.prepare(graph, backend="numpy").run(case.feeds)
    # the GPU's expf/erff differ from glibc's in the last bits: a little more room than on the emulator
    _same(exe.run(case.feeds), ref, max(case.rtol, 1e-5), max(case.atol, 1e-6), case.name)


def test_onnx_node_cases_on_the_gpu(device):
    from cuda_node_cases import lowered_node_cases
    from graphc.tools.conformance import _normalize, assert_similar
    from graphc.runtime.cuda import CudaBackend

    failures = []
    for case, plan, _ in lowered_node_cases(device.props):
        try:
            exe = CudaBackend.prepare(plan, device=device, debug=True)
            for inputs, refs in case.data_sets:
                outs = exe.run([_normalize(x) for x in inputs])
                for i, (r, o) in enumerate(zip(refs, outs)):
                    assert_similar(_normalize(r), o, case.rtol, case.atol, f"output {i}")
        except Exception as e:
            failures.append(f"{case.name}: {type(e).__name__}: {str(e)[:200]}")
    assert not failures, "\n".join(failures)


def test_get_backend_cuda_uses_the_primary_context():
    import pycuda.driver as drv

    from graphc.runtime import get_backend

    backend = get_backend("cuda")
    exe = backend.prepare(gc.import_onnx(CASES[0].model))
    ctx = drv.Context.get_current()
    primary = drv.Context.get_device().retain_primary_context()
    assert ctx is not None and ctx.handle == primary.handle
    assert exe.run(CASES[0].feeds)


def test_second_prepare_is_warm(device, tmp_path):
    from graphc.runtime.cuda import CudaBackend
    from graphc.runtime.cuda.device import PyCudaDevice

    case = next(c for c in CASES if c.name == "chain20_vectorized")
    plan = compile_graph(gc.import_onnx(case.model))
    cold = PyCudaDevice(KernelCache(tmp_path))
    CudaBackend.prepare(plan, device=cold)
    warm = PyCudaDevice(KernelCache(tmp_path))  # as a second process would
    CudaBackend.prepare(plan, device=warm)
    assert cold.cache.misses >= 1 and warm.cache.misses == 0 and warm.cache.hits == cold.cache.misses
