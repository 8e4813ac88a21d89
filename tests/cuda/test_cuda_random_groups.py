"""Random fused elementwise groups (hypothesis): the CUDA kernels agree with the NumPy backend, on the CPU
emulator always (few examples: each compiles with g++) and on a GPU when there is one (marked cuda)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda.cache import KernelCache

UNARY = ["Relu", "Tanh", "Sigmoid", "Neg", "Abs", "Exp", "Softsign"]
BINARY = ["Add", "Sub", "Mul", "Max", "Min"]
SHAPES = [(4, 6), (2, 3, 5), (16,)]


@st.composite
def fused_groups(draw):
    shape = draw(st.sampled_from(SHAPES))
    n = draw(st.integers(2, 8))
    names, nodes, inputs, feeds = ["x"], [], [("x", shape)], {}
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    for i in range(n):
        if draw(st.booleans()):
            op = draw(st.sampled_from(UNARY))
            nodes.append(oh.make_node(op, [draw(st.sampled_from(names))], [f"t{i}"]))
        else:
            op = draw(st.sampled_from(BINARY))
            other = draw(st.sampled_from(names + ["bcast"]))
            if other == "bcast":  # a broadcast operand: one of the shape's suffixes with ones
                bshape = tuple(d if draw(st.booleans()) else 1 for d in shape[draw(st.integers(0, len(shape) - 1)):])
                other = f"b{i}"
                inputs.append((other, bshape))
            nodes.append(oh.make_node(op, [names[-1], other], [f"t{i}"]))
        names.append(f"t{i}")
    graph = oh.make_graph(nodes, "random_group", [oh.make_tensor_value_info(k, TP.FLOAT, list(s)) for k, s in inputs],
                          [oh.make_tensor_value_info(names[-1], TP.FLOAT, None)])
    feeds = {k: rng.uniform(-1.5, 1.5, size=s).astype(np.float32) for k, s in inputs}
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)]).SerializeToString(), feeds


def _check(model, feeds, device):
    from graphc.runtime.cuda import CudaBackend

    graph = gc.import_onnx(model)
    (y,) = CudaBackend.prepare(compile_graph(graph), device=device, debug=True).run(feeds)
    (ref,) = gc.prepare(graph, backend="numpy").run(feeds)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group=fused_groups())
def test_random_groups_on_the_emulator(group, tmp_path_factory):
    from graphc.runtime.cuda.emulator import EmulatedDevice

    _check(*group, EmulatedDevice(KernelCache(tmp_path_factory.getbasetemp() / "random-groups")))


@pytest.mark.cuda
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group=fused_groups())
def test_random_groups_on_the_gpu(group, tmp_path_factory):
    from graphc.runtime.cuda.device import PyCudaDevice

    _check(*group, PyCudaDevice())  # the warm cache ($GRAPHC_CACHE_DIR: scripts/gpu_check.sh carries it)
