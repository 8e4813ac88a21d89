"""The code generator's dialects (runtime/codegen/dialect.py): one description, two texts, differing only where
the targets do."""
from __future__ import annotations

import pytest

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.codegen.dialect import C, CUDA, current, dialect, rendering
from graphc.runtime.codegen.launch import DeviceProps
from graphc.runtime.codegen.lowering import lower


def _relu_chain_plan():
    from onnx import TensorProto as TP
    from onnx import helper as oh

    nodes = [oh.make_node("Mul", ["x", "two"], ["m"]), oh.make_node("Relu", ["m"], ["y"])]
    g = oh.make_graph(nodes, "chain", [oh.make_tensor_value_info("x", TP.FLOAT, [8, 64])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)], [oh.make_tensor("two", TP.FLOAT, [], [2.0])])
    return compile_graph(gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)])))


def test_the_two_dialects_differ_only_in_the_loop_over_the_work():
    plan = _relu_chain_plan()
    cuda = [s.kernel.source for s in lower(plan.graph, DeviceProps()).steps if s.kernel]
    c = [s.kernel.source for s in lower(plan.graph, DeviceProps(target="c")).steps if s.kernel]
    assert len(cuda) == len(c) == 1
    assert "blockIdx.x * (int)blockDim.x + threadIdx.x" in cuda[0] and "gc_share" not in cuda[0]
    assert "gc_share" in c[0] and "blockIdx" not in c[0]
    assert "float4" in cuda[0] and "float4" not in c[0]  # vectors are CUDA's; the C compiler vectorizes itself


def test_rendering_sets_the_dialect_for_the_block_only():
    assert current() is CUDA
    with rendering("c"):
        assert current() is C and current().row_loops and current().host_calls
    assert current() is CUDA


def test_an_unknown_target_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown code generation target 'metal': expected one of \['c', 'cuda'\]"):
        dialect("metal")
