"""Bad input never crashes from deep inside: each case gets a GraphcError naming what is at fault."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphc.frontends.onnx import import_model
from graphc.cli import main as cli_main
from graphc.errors import (ExternalDataError, FeedError, GraphcError, InvalidGraphError, ModelLoadError,
                           OpAttributeError, UnsupportedOpError)
from graphc.runtime import get_backend


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    g = helper.make_graph(nodes, "m", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def relu_model(shape=("N", 4), dtype=TensorProto.FLOAT):
    return make_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                      [helper.make_tensor_value_info("x", dtype, list(shape))],
                      [helper.make_tensor_value_info("y", dtype, list(shape))])


def test_error_hierarchy():
    for cls in (ModelLoadError, ExternalDataError, InvalidGraphError, UnsupportedOpError, OpAttributeError, FeedError):
        assert issubclass(cls, GraphcError)


def test_truncated_file(tmp_path):
    data = relu_model().SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx: not (a valid )?(an )?ONNX model"):
        import_model(str(p))


def test_not_onnx_file(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is a text file, not a model\n" * 10)
    with pytest.raises(ModelLoadError, match=r"notes\.onnx: not"):
        import_model(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nope\.onnx: no such file"):
        import_model(str(tmp_path / "nope.onnx"))


def test_undefined_value():
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="r"),
                    helper.make_node("Add", ["y", "ghost"], ["z"], name="adder")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                   [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    with pytest.raises(InvalidGraphError, match=r"Add node 'adder' reads 'ghost', which no node, graph input or "
                                                r"initializer"):
        import_model(m)


def test_unknown_ops_listed_all_at_once():
    m = make_model([helper.make_node("FrobnicateA", ["x"], ["a"], name="f1"),
                    helper.make_node("Relu", ["a"], ["b"], name="ok"),
                    helper.make_node("FrobnicateB", ["b"], ["c"], name="f2"),
                    helper.make_node("FrobnicateA", ["c"], ["y"], name="f3"),
                    helper.make_node("Custom", ["y"], ["z"], name="f4", domain="com.example")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                   [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    m.opset_import.append(helper.make_opsetid("com.example", 3))
    with pytest.raises(UnsupportedOpError) as ei:
        import_model(m)
    msg = str(ei.value)
    assert "3 unsupported operator(s)" in msg
    assert "FrobnicateA (domain 'ai.onnx', opset 17): used by 2 node(s): 'f1', 'f3'" in msg
    assert "FrobnicateB (domain 'ai.onnx', opset 17): used by 1 node(s): 'f2'" in msg
    assert "Custom (domain 'com.example', opset 3): used by 1 node(s): 'f4'" in msg
    assert set(ei.value.missing) == {("", "FrobnicateA", 17), ("", "FrobnicateB", 17), ("com.example", "Custom", 3)}


def test_attribute_of_wrong_type():
    node = helper.make_node("Softmax", ["x"], ["y"], name="sm")
    node.attribute.append(helper.make_attribute("axis", 1.5))
    m = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    with pytest.raises(OpAttributeError, match=r"Softmax node 'sm': attribute 'axis' must be of type int, got float"):
        import_model(m)


def test_unknown_attribute():
    node = helper.make_node("Relu", ["x"], ["y"], name="r", alpha=0.5)
    m = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(OpAttributeError, match=r"Relu node 'r': unknown attribute 'alpha'"):
        import_model(m)


def _external_model(tmp_path, location: str, offset=None, length=None):
    t = numpy_helper.from_array(np.ones(4, np.float32), "w")
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    m = make_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializers=[t])
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    p = d / "m.onnx"
    p.write_bytes(m.SerializeToString())
    return p


def test_external_data_inside_folder_works(tmp_path):
    p = _external_model(tmp_path, "w.bin")
    (p.parent / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    g = import_model(str(p))
    out = get_backend("numpy").prepare(g).run({"x": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(out[0], np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_external_data_outside_folder_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    p = _external_model(tmp_path, location)
    with pytest.raises(ExternalDataError, match=r"tensor 'w'.*must be a relative path inside"):
        import_model(str(p))


def test_external_data_symlink_escape_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    p = _external_model(tmp_path, "link.bin")
    os.symlink(tmp_path / "secret.bin", p.parent / "link.bin")
    with pytest.raises(ExternalDataError, match=r"tensor 'w'.*resolves to .*outside the model's folder"):
        import_model(str(p))


def test_external_data_out_of_range(tmp_path):
    p = _external_model(tmp_path, "w.bin", offset=8, length=16)
    (p.parent / "w.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ExternalDataError, match=r"tensor 'w'.*offset=8 length=16 lies outside 'w.bin' \(16 bytes\)"):
        import_model(str(p))


def test_external_data_from_bytes_refused(tmp_path):
    p = _external_model(tmp_path, "w.bin")
    with pytest.raises(ExternalDataError, match=r"load it from its path"):
        import_model(p.read_bytes())


@pytest.fixture
def relu_exe():
    return get_backend("numpy").prepare(import_model(relu_model()))


def test_feed_unknown_and_missing_names_listed_at_once(relu_exe):
    with pytest.raises(FeedError, match=r"unknown input name\(s\): 'X', 'z'; missing input\(s\): 'x' "
                                        r"\(float32\[N,4\]\)"):
        relu_exe.run({"X": np.zeros((1, 4), np.float32), "z": 1})


def test_feed_wrong_dtype(relu_exe):
    with pytest.raises(FeedError, match=r"input 'x': expected element type float32 \(float32\[N,4\]\), "
                                        r"got float64\[2,4\]"):
        relu_exe.run({"x": np.zeros((2, 4))})


def test_feed_wrong_rank(relu_exe):
    with pytest.raises(FeedError, match=r"input 'x': expected rank 2 \(float32\[N,4\]\), got rank 1"):
        relu_exe.run({"x": np.zeros(4, np.float32)})


def test_feed_wrong_fixed_dim(relu_exe):
    with pytest.raises(FeedError, match=r"input 'x': dim 1 must be 4 \(float32\[N,4\]\), got 5"):
        relu_exe.run({"x": np.zeros((2, 5), np.float32)})


def test_feed_symbolic_dim_contradiction():
    m = make_model([helper.make_node("Add", ["a", "b"], ["y"], name="add")],
                   [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
                    helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])])
    exe = get_backend("numpy").prepare(import_model(m))
    with pytest.raises(FeedError, match=r"input 'b': dim 0 is the symbol N, which input 'a' set to 3, but got 4"):
        exe.run({"a": np.zeros((3, 2), np.float32), "b": np.zeros((4, 2), np.float32)})
    out = exe.run({"a": np.ones((3, 2), np.float32), "b": np.ones((3, 2), np.float32)})
    np.testing.assert_array_equal(out[0], np.full((3, 2), 2, np.float32))


def test_cli_error_is_one_paragraph_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07garbage" * 3)
    rc = cli_main(["show", str(p)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("graphc: error: ") and "bad.onnx" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_cli_debug_shows_traceback(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError):
        cli_main(["--debug", "show", str(p)])


def test_cli_bad_feed_exit_2(tmp_path, capsys):
    mp = tmp_path / "relu.onnx"
    onnx.save(relu_model(), str(mp))
    arr = tmp_path / "x.npy"
    np.save(arr, np.zeros((2, 4), np.float64))
    rc = cli_main(["run", str(mp), "--input", f"x={arr}"])
    err = capsys.readouterr().err
    assert rc == 2 and "input 'x': expected element type float32" in err


def test_internal_marker_attribute_refused():
    node = helper.make_node("Softmax", ["x"], ["y"], name="sm", legacy_coerce_2d=1)
    m = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    with pytest.raises(OpAttributeError, match=r"Softmax node 'sm': 'legacy_coerce_2d' is not an ONNX attribute"):
        import_model(m)
