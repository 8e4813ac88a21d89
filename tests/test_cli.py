"""The graphc command line: show, run and check on a light CNN and on a model with a symbolic batch dim."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from graphc.cli import main
from graphc.models.light import path as light_path

RESNET = light_path("resnet50")


def test_show_resnet(capsys):
    assert main(["show", RESNET]) == 0
    out = capsys.readouterr().out
    assert "gpu_0/softmax_1: float32[1,1000] = Softmax(" in out
    assert "Conv" in out and "parameters" in out
    assert "float32[1,64,112,112] = Conv(%gpu_0/data_0" in out


def test_show_json_is_stable(capsys):
    assert main(["show", RESNET, "--json"]) == 0
    first = capsys.readouterr().out
    assert main(["show", RESNET, "--json"]) == 0
    assert capsys.readouterr().out == first
    data = json.loads(first)
    assert data["op_histogram"]["Conv"] == 53
    assert data["outputs"] == [{"name": "gpu_0/softmax_1", "dtype": "float32", "shape": [1, 1000]}]
    assert data["node_count"] == len(data["nodes"])
    # The weights are ConstantOfShape outputs here, not initializers: they still count as parameters
    # (conv and fc weights plus the BatchNorm statistics made that way), the shape tensors do not.
    assert data["parameter_count"] == 25_610_154


def test_check_resnet(capsys):
    assert main(["check", RESNET]) == 0
    assert "OK" in capsys.readouterr().out


def test_run_resnet_random(tmp_path, capsys):
    assert main(["run", RESNET, "--random-inputs", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu_0/softmax_1: shape [1, 1000], float32")
    saved = np.load(tmp_path / "gpu_0_softmax_1.npy")
    assert saved.shape == (1, 1000)
    np.testing.assert_allclose(saved.sum(), 1.0, rtol=1e-4)


def test_symbolic_batch_show_and_run(tiny_cnn_path, tmp_path, capsys):
    assert main(["show", tiny_cnn_path]) == 0
    assert "probs: float32[N,10] = Softmax" in capsys.readouterr().out
    assert main(["show", tiny_cnn_path, "--set", "N=4"]) == 0
    assert "probs: float32[4,10] = Softmax" in capsys.readouterr().out
    assert main(["run", tiny_cnn_path, "--random-inputs", "--set", "N=4", "--output-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("probs: shape [4, 10], float32")
    probs = np.load(tmp_path / "probs.npy")
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(4), rtol=1e-5)
    assert main(["check", tiny_cnn_path]) == 0


def test_symbolic_batch_needs_set_for_random(tiny_cnn_path, capsys):
    assert main(["run", tiny_cnn_path, "--random-inputs"]) == 2
    assert "bind them with --set, e.g. --set N=1" in capsys.readouterr().err


def test_set_unknown_symbol(tiny_cnn_path, capsys):
    assert main(["show", tiny_cnn_path, "--set", "B=2"]) == 2
    assert "no such symbolic dim (symbols in the inputs: N)" in capsys.readouterr().err


def test_run_with_input_file(tiny_cnn_path, tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", tiny_cnn_path, "--input", f"image={tmp_path / 'x.npy'}"]) == 0
    assert capsys.readouterr().out.startswith("probs: shape [3, 10], float32")


def test_check_lists_all_unsupported(tmp_path, capsys):
    nodes = [helper.make_node("NoSuchOp", ["x"], ["a"], name="n1"), helper.make_node("AlsoNot", ["a"], ["y"], name="n2")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "NoSuchOp" in err and "AlsoNot" in err and "2 unsupported operator(s)" in err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "graphc.cli", "check", RESNET], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_python_dash_m_graphc_is_the_graphc_command(tmp_path):
    from graphc.models import light  # noqa: F401  (the package is importable from anywhere)

    r = subprocess.run([sys.executable, "-m", "graphc", "check", RESNET], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    r2 = subprocess.run([sys.executable, "-m", "graphc", "--help"], capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0 and "compile" in r2.stdout and "run" in r2.stdout
