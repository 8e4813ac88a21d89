"""Models exported by torch.onnx.export (both exporters), against onnxruntime at several sizes of their
dynamic axes; ``graphc check`` passes on each, and inference keeps the symbolic axes to the outputs.

The .onnx files are committed under models/ (torch is too large to be a test dependency);
scripts/export_models.py made them and makes them again.
"""
from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from graphc.frontends.onnx import import_model
from graphc.cli import main as graphc_main
from graphc.errors import GraphcWarning
from graphc.ir import TensorType
from graphc.passes import infer_shapes
from graphc.passes.bind import bind_symbols
from graphc.runtime import get_backend

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")

#: file stem -> (ops the model must contain, {output: its inferred dims})
MODELS = {
    "cnn_torchscript": ({"Conv", "MaxPool", "GlobalAveragePool", "Clip", "Gemm", "Softmax"},
                        {"probs": ("batch", 10)}),
    "cnn_dynamo": ({"Conv", "MaxPool", "ReduceMean", "Clip", "Gemm", "Softmax"}, {"probs": ("batch", 10)}),
    "lstm_tagger_torchscript": ({"Gather", "LSTM", "Transpose", "MatMul", "LogSoftmax"},
                                {"tag_logprobs": ("batch", "seq", 7)}),
    # this exporter declares the output [batch, 9, 7] (the traced length): inference keeps 'seq'
    "lstm_tagger_dynamo": ({"Gather", "LSTM", "Expand", "MatMul", "LogSoftmax"},
                           {"tag_logprobs": ("batch", "seq", 7)}),
    "transformer_dynamo": ({"LayerNormalization", "MatMul", "Softmax", "Erf", "Slice", "Gemm"},
                           {"hidden": ("batch", "seq", 32)}),
    "masked_encoder_torchscript": ({"Range", "Equal", "Where", "LayerNormalization", "Softmax", "Erf", "Tanh"},
                                   {"hidden": ("batch", "seq", 32), "pooled": ("batch", 32)}),
    "masked_encoder_dynamo": ({"Equal", "Where", "LayerNormalization", "Softmax", "Erf", "Tanh"},
                              {"hidden": ("batch", "seq", 32), "pooled": ("batch", 32)}),
}
SIZES = [(1, 5), (3, 17), (3, 5), (1, 17)]  # (batch, seq); the CNN reads only batch


def _path(stem: str) -> str:
    return os.path.join(HERE, stem + ".onnx")


def _feeds(model: onnx.ModelProto, batch: int, seq: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    (inp,) = model.graph.input
    if inp.type.tensor_type.elem_type == onnx.TensorProto.INT64:  # token ids; id 0 is padding where masked
        return {inp.name: rng.integers(0, 40, size=(batch, seq)).astype(np.int64)}
    return {inp.name: rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)}


def test_models_folder_holds_exactly_the_listed_models():
    on_disk = {os.path.basename(p)[:-5] for p in glob.glob(os.path.join(HERE, "*.onnx"))}
    assert on_disk == set(MODELS)
    for stem in MODELS:  # small files, as committed models should be
        assert os.path.getsize(_path(stem)) < 1 << 20


@pytest.mark.parametrize("stem", sorted(MODELS))
def test_exported_model_matches_onnxruntime(stem):
    model = onnx.load(_path(stem))
    ops, _ = MODELS[stem]
    assert ops <= {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    exe = get_backend("numpy").prepare(import_model(model))
    for k, (batch, seq) in enumerate(SIZES):
        feeds = _feeds(model, batch, seq, seed=k)
        want = sess.run(None, feeds)
        got = exe.run(feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype, (stem, batch, seq, g.shape, w.shape)
            assert np.ptp(w) > 0.05  # outputs that vary, or the comparison would prove little
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"{stem} at batch={batch} seq={seq}")


@pytest.mark.parametrize("stem", sorted(MODELS))
def test_inference_keeps_the_symbolic_axes(stem):
    graph = import_model(_path(stem))
    _, outs = MODELS[stem]
    assert {v.name: v.type.shape for v in graph.outputs} == outs


@pytest.mark.parametrize("stem", sorted(MODELS))
def test_bound_symbols_give_static_output_shapes(stem):
    """Binding batch and seq (graphc --set) makes every output static, with the sizes a run gives.

    The dynamo exporter declares lstm_tagger_dynamo's LSTM output 'getitem' as [batch, 9, 48] (the traced
    length): a stale declared shape is a warning, and the inferred shape wins, as in onnxruntime."""
    model = onnx.load(_path(stem))
    for k, (batch, seq) in enumerate(SIZES[:2]):
        bound = import_model(model, infer=False)
        named = {s for v in bound.inputs for s in v.type.shape if isinstance(s, str)}
        bind_symbols(bound, {s: n for s, n in {"batch": batch, "seq": seq}.items() if s in named})
        if stem == "lstm_tagger_dynamo" and seq != 9:
            with pytest.warns(GraphcWarning, match=r"'getitem' is declared float32\[batch,9,48\]"):
                infer_shapes(bound)
        else:
            infer_shapes(bound)
        got = get_backend("numpy").prepare(bound).run(_feeds(model, batch, seq, seed=k))
        for v, g in zip(bound.outputs, got):
            assert isinstance(v.type, TensorType) and v.type.shape == g.shape, (stem, v.type, g.shape)


@pytest.mark.parametrize("stem", sorted(MODELS))
def test_graphc_check_passes(stem, capsys):
    assert graphc_main(["check", _path(stem)]) == 0
    assert "OK" in capsys.readouterr().out
