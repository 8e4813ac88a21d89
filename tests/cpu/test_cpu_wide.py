"""Kernels compiled for 512-bit vectors (runtime/cpu/device.py, ``GC_WIDE``): only elementwise loops that call
vector math are marked (a loop with clamped loads, which GCC 12 miscompiles with AVX-512, never is), the macro
is empty on a host without AVX-512, and a marked chain of transcendental functions keeps the NumPy backend's
values."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.runtime.codegen.lowering import lower
from graphc.runtime.cpu import available, host_props
from graphc.runtime.cpu.device import WIDE_ISA, _widened, wide_macro

pytestmark = pytest.mark.skipif(not available(), reason="the CPU backend needs a C++ compiler")


def _graph(nodes, shape=(64, 256)):
    g = oh.make_graph(nodes, "wide", [oh.make_tensor_value_info("x", TP.FLOAT, list(shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    return gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))


def _kernels(graph):
    return [s.kernel for s in lower(gc.compile(graph).graph, host_props(1)).steps if s.kernel is not None]


CHAIN = [oh.make_node("Tanh", ["x"], ["a"]), oh.make_node("Exp", ["a"], ["b"]), oh.make_node("Log", ["b"], ["c"]),
         oh.make_node("Sigmoid", ["c"], ["d"]), oh.make_node("Mul", ["d", "x"], ["y"])]


def test_only_elementwise_loops_with_vector_math_are_marked():
    (chain,) = _kernels(_graph(CHAIN))
    assert "GC_WIDE" in _widened(chain).source
    (plain,) = _kernels(_graph([oh.make_node("Relu", ["x"], ["a"]), oh.make_node("Add", ["a", "x"], ["y"])]))
    assert _widened(plain).source == plain.source  # no vector math: nothing to gain
    for k in _kernels(_graph([oh.make_node("Tanh", ["x"], ["a"]), oh.make_node("Concat", ["a", "x"], ["y"], axis=1)])):
        ops = [n.op_type for n in k.group.nodes]
        assert ("GC_WIDE" in _widened(k).source) == (ops == ["Tanh"]), ops  # Concat's clamped loads: never


def test_the_macro_follows_the_host():
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    assert ("avx512f" in wide_macro()) == all(isa in flags for isa in WIDE_ISA)


def test_a_wide_chain_keeps_the_numpy_backends_values():
    graph = _graph(CHAIN, (33, 1000))  # a row that is no whole number of 16-wide vectors
    x = np.random.default_rng(0).uniform(-4, 4, (33, 1000)).astype(np.float32)
    (want,) = gc.prepare(graph, backend="numpy").run({"x": x})
    (got,) = gc.prepare(graph, backend="cpu").run({"x": x})
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
