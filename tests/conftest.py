"""Shared fixtures and markers: ``cuda`` tests skip without a GPU, ``nvcc`` tests without the compiler."""
from __future__ import annotations

import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Where a test names no backend it checks graphc's semantics, on the reference backend (the NumPy interpreter),
# without compiling kernels for every small graph. The CPU backend's tests name backend="cpu" (every ONNX node
# case, the light CNNs, the DSL sweep, training, tests/cpu); the default itself (cpu where a C++ compiler is
# found) is tested in tests/test_default_backend.py, and the README's examples run with it (tests/test_docs.py).
os.environ.setdefault("GRAPHC_BACKEND", "numpy")


def _has_cuda() -> bool:
    if os.environ.get("GRAPHC_GPU_DRYRUN", "") not in ("", "0"):  # the emulator stands in (tests/cuda/conftest.py)
        return True
    try:
        import pycuda.driver as drv  # noqa: F401

        drv.init()
        return drv.Device.count() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    cuda = None
    nvcc = shutil.which("nvcc") is not None
    for item in items:
        # markers, not keywords: a test's keywords also hold its folder names (tests/cuda)
        if item.get_closest_marker("cuda") is not None:
            if cuda is None:
                cuda = _has_cuda()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU with pycuda"))
        if item.get_closest_marker("nvcc") is not None and not nvcc:
            item.add_marker(pytest.mark.skip(reason="needs nvcc on the PATH"))


@pytest.fixture
def tiny_cnn_path() -> str:
    return os.path.join(ROOT, "models", "data", "tiny_cnn.onnx")


# ---- user ops (gc.custom_op): tests that register some forget them after, so that the op table and
# the gradient-coverage tests in the same worker see only the built-in ops
@pytest.fixture
def forget_custom_ops():
    from graphc.custom import CUSTOM_OPS, unregister_custom_op

    before = set(CUSTOM_OPS)
    yield
    for domain, name in set(CUSTOM_OPS) - before:
        unregister_custom_op(name, domain)


@pytest.fixture(scope="module")
def custom_example():
    """models/custom_cuda_ops.py, its ops registered for the requesting test module only."""
    import importlib
    import warnings

    import graphc.models.custom_cuda_ops as m
    from graphc.custom import unregister_custom_op
    from graphc.errors import GraphcWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphcWarning)
        m = importlib.reload(m)  # (re)registers its ops, whatever an earlier module did
    yield m
    for op in (m.fused_gelu, m.fused_gelu_grad, m.direct_conv2d):
        unregister_custom_op(op.name, op.domain)
