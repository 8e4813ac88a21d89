"""The backend a run gets when it names none: "cpu" where a C++ compiler is found, else "numpy";
$GRAPHC_BACKEND overrides it (tests/conftest.py sets it to "numpy" for the rest of the suite)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc import runtime
from graphc.runtime import cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _graph():
    node = oh.make_node("Tanh", ["x"], ["y"])
    g = oh.make_graph([node], "default", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, ["N", 4])])
    return gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))


def test_the_default_is_cpu_where_a_compiler_is_found(monkeypatch):
    monkeypatch.delenv(runtime.BACKEND_ENV, raising=False)
    assert runtime.default_backend() == ("cpu" if cpu.available() else "numpy")
    monkeypatch.setattr(cpu, "available", lambda: False)
    assert runtime.default_backend() == "numpy"
    assert runtime.resolve_backend("auto") == "numpy" and runtime.resolve_backend(None) == "numpy"
    assert runtime.resolve_backend("cpu") == "cpu"


@pytest.mark.parametrize("value,want", [("numpy", "numpy"), ("CPU", "cpu"), (" cuda ", "cuda")])
def test_the_environment_names_the_default(monkeypatch, value, want):
    monkeypatch.setenv(runtime.BACKEND_ENV, value)
    assert runtime.default_backend() == want


def test_a_bad_name_says_what_is_allowed(monkeypatch):
    monkeypatch.setenv(runtime.BACKEND_ENV, "gpu")
    with pytest.raises(gc.GraphcError, match=r"GRAPHC_BACKEND is 'gpu'.*numpy, cpu, cuda.*auto"):
        runtime.default_backend()
    monkeypatch.delenv(runtime.BACKEND_ENV)
    with pytest.raises(gc.GraphcError, match=r"unknown backend 'tpu'.*'auto', the default"):
        gc.prepare(_graph(), backend="tpu")


@pytest.mark.skipif(not cpu.available(), reason="needs a C++ compiler")
def test_prepare_and_session_run_the_cpu_backend_by_default(monkeypatch):
    monkeypatch.delenv(runtime.BACKEND_ENV, raising=False)
    g = _graph()
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    exe = gc.prepare(g)
    assert hasattr(exe, "device"), type(exe)  # the compiled backend's executable: it has a device
    (got,) = exe.run({"x": x})
    (want,) = gc.prepare(g, backend="numpy").run({"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    d = gc.Graph()
    with d.as_default():
        xp = gc.placeholder(gc.float32, ["N", 4], name="x")
        yp = gc.tanh(xp)
    with gc.Session(d) as sess:
        assert sess.backend == "cpu"
        (y,) = sess.run([yp], {xp: x})
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not cpu.available(), reason="needs a C++ compiler")
def test_the_cli_says_which_backend_ran(tmp_path):
    model = os.path.join(ROOT, "models", "data", "tiny_cnn.onnx")
    env = {k: v for k, v in os.environ.items() if k != runtime.BACKEND_ENV}
    env["PYTHONPATH"] = ROOT
    r = subprocess.run([sys.executable, "-m", "graphc", "run", model, "--random-inputs", "--set", "N=2"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "on backend 'cpu'" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "graphc", "run", model, "--random-inputs", "--set", "N=2",
                        "--backend", "numpy"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "on backend 'numpy'" in r.stderr, r.stderr
