"""The GPU benchmarks' code paths, run with --smoke on the CPU emulator (no timing claims), and their parts that
need no GPU: the ONNX -> PyTorch module of the peers, and the light CNNs set to a batch size."""
from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest

from graphc.bench import cuda_gemm, cuda_models, cuda_training
from graphc.bench.cuda_common import relative_error


@pytest.fixture
def emulate(monkeypatch):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")


def _ort(w):
    return ort.InferenceSession(w.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, w.feeds)


def _rows(module, argv, capsys):
    args = module.build_parser().parse_args(argv)
    rows = module.run(args, log=print)
    return rows, capsys.readouterr().out


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_light_model_at_batch_3_is_three_batch_1_runs(name):
    """The batch is rewritten in the input and in the Reshapes (flatten, channel shuffle): row k of a batch-3
    run equals a batch-1 run of image k."""
    w3 = cuda_models.light_model(name, batch=3)
    (image,) = w3.feeds
    assert w3.feeds[image].shape[0] == 3 and len(w3.model.graph.input) == 1
    got = _ort(w3)
    w1 = cuda_models.light_model(name, batch=1)
    sess = ort.InferenceSession(w1.model.SerializeToString(), providers=["CPUExecutionProvider"])
    for k in range(3):
        want = sess.run(None, {image: w3.feeds[image][k:k + 1]})
        assert relative_error([g[k:k + 1] for g in got], want) < 1e-5
    assert np.std(got[-1]) > 1e-3


@pytest.mark.parametrize("name", ["squeezenet", "inception_v1", "shufflenet"])
def test_torch_module_runs_the_onnx_graph(name):
    """bench/torch_onnx.py agrees with onnxruntime (inception_v1 has asymmetric AveragePool pads)."""
    torch = pytest.importorskip("torch")
    from graphc.bench.torch_onnx import torch_module

    w = cuda_models.light_model(name, batch=2)
    m = torch_module(w.model).eval()
    with torch.no_grad():
        got = [o.numpy() for o in m(*[torch.from_numpy(w.feeds[n]) for n in m.input_names])]
    assert relative_error(got, _ort(w)) < 1e-4


def test_torch_module_names_an_op_it_cannot_run():
    pytest.importorskip("torch")
    from onnx import TensorProto as TP
    from onnx import helper as oh

    from graphc.bench.torch_onnx import torch_module

    g = oh.make_graph([oh.make_node("Erf", ["x"], ["y"], name="erf0")], "g",
                      [oh.make_tensor_value_info("x", TP.FLOAT, [2])], [oh.make_tensor_value_info("y", TP.FLOAT, [2])])
    with pytest.raises(NotImplementedError, match="node 'erf0': ONNX op ai.onnx.Erf"):
        torch_module(oh.make_model(g))


def test_models_smoke_on_the_emulator(emulate, capsys):
    rows, out = _rows(cuda_models, ["--smoke"], capsys)
    by = {r.engine: r for r in rows}
    assert by["graphc"].ok, by["graphc"].detail
    assert by["graphc"].error < 1e-3 and by["graphc"].seconds > 0 and by["graphc"].extra["launches"] > 5
    if _has("torch"):
        assert by["torch-eager"].ok and by["torch-compile"].ok, (by["torch-eager"].detail, by["torch-compile"].detail)
    else:
        assert by["torch-eager"].status == "unavailable"
    assert by["onnxruntime-cuda"].ok  # --smoke: the CPU provider, through the same I/O binding code
    assert "targets not judged" in out and "smoke_cnn b2" in out


def test_models_markdown_section(emulate, capsys, tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# results\n")
    assert cuda_models.main(["--smoke", "--engines", "graphc", "--markdown", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("# results\n\n## ") and "whole models against PyTorch" in text
    assert "Made by `python -m graphc.bench.cuda_models --smoke --engines graphc --markdown" in text
    assert "| smoke_cnn b2 |" in text and "CPU emulator" in text


def test_gemm_smoke_on_the_emulator(emulate, capsys):
    rows, out = _rows(cuda_gemm, ["--smoke"], capsys)
    graphc = [r for r in rows if r.engine == "graphc"]
    assert [r.workload for r in graphc] == ["float32", "float32 + TF32", "float16"]
    for r in graphc:
        assert r.ok, r.detail
    assert "64 x 64 x 64" in out and "targets not judged" in out


def test_training_smoke_on_the_emulator(emulate, capsys):
    rows, out = _rows(cuda_training, ["--smoke"], capsys)
    graphc = [r for r in rows if r.engine == "graphc"]
    assert len(graphc) == 2
    for r in graphc:
        assert r.ok, r.detail
        assert np.isfinite(r.extra["first_loss"]) and r.extra["first_loss"] > 0


def test_without_a_device_the_benchmarks_exit_2(monkeypatch, capsys):
    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    for name in [m for m in sys.modules if m == "pycuda" or m.startswith("pycuda.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    for module in (cuda_models, cuda_gemm, cuda_training):
        assert module.main(["--smoke"]) == 2
        assert "the CUDA backend needs PyCUDA" in capsys.readouterr().err


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
