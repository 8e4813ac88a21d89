"""The nine light CNNs (seeded random weights, as tests/test_light_models.py uses them) on the CUDA backend equal
the NumPy backend within rtol 1e-3: on the CPU emulator here, and on a real GPU in the ``cuda``-marked test.

Their ops on the CUDA side: Conv (im2col/1x1/depthwise + GEMM), Gemm, MaxPool, AveragePool, LRN,
BatchNormalization, Concat, Reshape, Softmax, GlobalAveragePool and the fused Conv/Gemm + Relu/Sum groups.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.models.light import NAMES, path, with_random_weights
from graphc.runtime.cuda import CudaBackend
from graphc.runtime.cuda.cache import KernelCache


def _model(name):
    model, feeds = with_random_weights(onnx.load(path(name)), seed=1234)
    return gc.import_onnx(model.SerializeToString()), feeds


def _check(name, device):
    graph, feeds = _model(name)
    exe = CudaBackend.prepare(graph, device=device)
    got = exe.run(feeds)
    expected = gc.prepare(graph, backend="numpy").run(feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert g.shape == e.shape and g.dtype == e.dtype, name
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(e).max())), err_msg=name)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from graphc.runtime.cuda.emulator import EmulatedDevice

    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulator needs g++")
    return EmulatedDevice(KernelCache(tmp_path_factory.mktemp("kernel-cache")))


#: CPU seconds per net measured on the 2-core dev machine (load, random weights, compile, g++, emulator, NumPy):
#: alexnet 4.6, densenet121 9.0, inception_v1 4.0, inception_v2 4.8, resnet50 3.7, shufflenet 3.7, squeezenet 1.8,
#: vgg19 13.3 (7 of them making its 140M random weights), zfnet512 5.4; the nets over 5 s are marked slow.
SLOW = {"densenet121", "vgg19", "zfnet512"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES])
def test_light_model_on_the_emulator_equals_numpy(name, emulator):
    _check(name, emulator)


@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    from graphc.runtime.cuda.device import PyCudaDevice

    return PyCudaDevice()  # the warm cache ($GRAPHC_CACHE_DIR: scripts/gpu_check.sh carries it)


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_light_model_on_the_gpu_equals_numpy(name, gpu):
    _check(name, gpu)


@pytest.mark.nvcc
def test_every_light_model_kernel_compiles_to_ptx(tmp_path):
    """All kernels of the nine nets (about 1,100, for the default device's launch configuration) through nvcc."""
    from graphc.compiler import compile as compile_graph
    from graphc.runtime.cuda.cache import find_nvcc
    from graphc.runtime.cuda.emulator import combined_source
    from graphc.runtime.codegen.launch import DeviceProps
    from graphc.runtime.codegen.lowering import lower

    kernels = {}
    for name in NAMES:
        graph = gc.import_onnx(onnx.load(path(name)).SerializeToString())
        for s in lower(compile_graph(graph).graph, DeviceProps()).steps:
            if s.kernel is not None:
                kernels.setdefault(s.kernel.source, s.kernel)
    src = tmp_path / "light_kernels.cu"
    src.write_text(combined_source(list(kernels.values())))
    ptx = tmp_path / "light_kernels.ptx"
    run = subprocess.run([find_nvcc(), "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(ptx), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    # 760 distinct kernels (900+ before a fused Conv's constant bias joined its epilogue kernel)
    assert ptx.read_text().count(".entry") == len(kernels) > 700
