"""The memory budget (graphc/limits.py): huge tensors are refused, naming the tensor, before allocation."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphc as gc
from graphc import limits
from graphc.errors import ModelLoadError, ResourceLimitError


def make_model(nodes, inputs, outputs, inits=(), opset=17, sparse=()):
    g = helper.make_graph(nodes, "m", inputs, outputs, initializer=list(inits), sparse_initializer=list(sparse))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def out(name="y", dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, None)


def const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype), name)


# ---- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    (1024, 1024), ("1024", 1024), ("2KB", 2048), ("1.5MiB", 3 << 19), ("3g", 3 << 30), ("none", 0), ("0", 0)])
def test_parse_size(text, expected):
    assert limits.parse_size(text) == expected


def test_parse_size_percentage_of_physical_memory():
    assert limits.parse_size("50%") == limits.physical_memory() // 2


@pytest.mark.parametrize("bad", ["lots", "12 parsecs", "-5", -1])
def test_parse_size_refuses_nonsense(bad):
    with pytest.raises(ResourceLimitError, match="memory"):
        limits.parse_size(bad)


def test_limit_precedence(monkeypatch):
    monkeypatch.delenv(limits.ENV_VAR, raising=False)
    assert limits.memory_limit() == int(limits.physical_memory() * limits.DEFAULT_FRACTION)
    monkeypatch.setenv(limits.ENV_VAR, "1MB")
    assert limits.memory_limit() == 1 << 20
    assert limits.memory_limit("2KB") == 2048  # the argument wins over the environment


# ---- refused at import ----------------------------------------------------------------------------
def test_initializer_claiming_huge_dims_with_little_data():
    t = TensorProto()
    t.name, t.data_type = "weights", TensorProto.FLOAT
    t.dims.extend([10**9, 10**9])
    t.raw_data = b"\0" * 16
    m = make_model([helper.make_node("Relu", ["weights"], ["y"])], [], [out()], [t])
    with pytest.raises(ResourceLimitError, match=r"tensor 'weights' would take .*float32\[1000000000,1000000000\]"):
        gc.import_onnx(m)


def test_sparse_initializer_with_huge_dims():
    values = numpy_helper.from_array(np.ones(1, np.float32), "sp")
    indices = numpy_helper.from_array(np.array([0], np.int64), "sp_idx")
    sp = helper.make_sparse_tensor(values, indices, [10**7, 10**7])
    m = make_model([helper.make_node("Relu", ["sp"], ["y"])], [], [out()], sparse=[sp])
    with pytest.raises(ResourceLimitError, match=r"sparse tensor 'sp' would take"):
        gc.import_onnx(m)


def test_sparse_initializer_index_out_of_range():
    values = numpy_helper.from_array(np.ones(1, np.float32), "sp")
    indices = numpy_helper.from_array(np.array([99], np.int64), "sp_idx")
    sp = helper.make_sparse_tensor(values, indices, [2, 3])
    m = make_model([helper.make_node("Relu", ["sp"], ["y"])], [], [out()], sparse=[sp])
    with pytest.raises(ModelLoadError, match=r"sparse tensor 'sp': an index lies outside the dims \[2, 3\]"):
        gc.import_onnx(m)


@pytest.mark.parametrize("build", [
    lambda: ([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")], [const("s", [10**6, 10**6])]),
    lambda: ([helper.make_node("Expand", ["x", "s"], ["y"], name="cos")],
             [const("x", [1.0], np.float32), const("s", [10**6, 10**6])]),
    lambda: ([helper.make_node("Tile", ["x", "r"], ["y"], name="cos")],
             [const("x", [[1.0]], np.float32), const("r", [10**6, 10**6])]),
    lambda: ([helper.make_node("Range", ["a", "b", "c"], ["y"], name="cos")],
             [const("a", 0.0, np.float32), const("b", 1e13, np.float32), const("c", 1.0, np.float32)]),
    lambda: ([helper.make_node("Resize", ["x", "", "sc"], ["y"], name="cos")],
             [const("x", np.ones((1, 1, 2, 2)), np.float32), const("sc", [1, 1, 1e6, 1e6], np.float32)]),
], ids=["ConstantOfShape", "Expand", "Tile", "Range", "Resize"])
def test_outputs_inferred_huge_are_refused_at_import(build):
    nodes, inits = build()
    m = make_model(nodes, [], [out()], inits)
    with pytest.raises(ResourceLimitError, match=rf"{nodes[0].op_type} node 'cos': output 'y' would take"):
        gc.import_onnx(m)


def test_import_limit_argument():
    m = make_model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")], [], [out()],
                   [const("s", [64, 64])])
    gc.import_onnx(m)  # 16 KiB: fine with the default budget
    with pytest.raises(ResourceLimitError, match=r"output 'y' would take 16 KiB .* memory limit of 1 KiB"):
        gc.import_onnx(m, memory_limit="1KB")


# ---- refused at run time ---------------------------------------------------------------------------
def test_feed_binding_a_symbol_huge_is_refused_before_running():
    m = make_model([helper.make_node("Relu", ["x"], ["h"], name="first"),
                    helper.make_node("Tile", ["h", "r"], ["y"], name="tile")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])], [out()],
                   [const("r", [1, 64])])
    exe = gc.prepare(gc.import_onnx(m), memory_limit="64KB")
    assert exe.run({"x": np.ones((2, 8), np.float32)})[0].shape == (2, 512)
    with pytest.raises(ResourceLimitError, match=r"Tile node 'tile': output 'y' would take 256 KiB "
                                                 r"\(float32\[128,512\]\)"):
        exe.run({"x": np.ones((128, 8), np.float32)})


def test_shape_fed_at_run_time_is_checked_before_the_node_runs():
    m = make_model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")],
                   [helper.make_tensor_value_info("s", TensorProto.INT64, [2])], [out()])
    exe = gc.prepare(gc.import_onnx(m))
    assert exe.run({"s": np.array([2, 3], np.int64)})[0].shape == (2, 3)
    with pytest.raises(ResourceLimitError, match=r"ConstantOfShape node 'cos': output 'y' would take 3.64 TiB"):
        exe.run({"s": np.array([10**6, 10**6], np.int64)})


def test_env_var_sets_the_runtime_budget(monkeypatch):
    monkeypatch.setenv(limits.ENV_VAR, "1KB")
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])], [out()])
    exe = gc.prepare(gc.import_onnx(m))
    exe.run({"x": np.ones(100, np.float32)})
    with pytest.raises(ResourceLimitError, match=r"Relu node 'r': output 'y' would take 4 KiB"):
        exe.run({"x": np.ones(1024, np.float32)})


def test_limit_zero_turns_checks_off():
    m = make_model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")], [], [out()],
                   [const("s", [64, 64])])
    exe = gc.prepare(gc.import_onnx(m, memory_limit=0), memory_limit=0)
    assert exe.run({})[0].shape == (64, 64)
