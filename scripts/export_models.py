"""Exports the small PyTorch models that tests/exported/ runs (CNN, LSTM tagger, transformer encoder).

Each model is exported twice, by both of torch's ONNX exporters (the TorchScript one, ``dynamo=False``,
and the torch.export one, ``dynamo=True``), because they emit different graphs for the same module:
the first a classic ONNX LSTM/Conv/MatMul graph, the second the onnxscript decompositions. The dynamic
axes are named ``batch`` and ``seq`` in both, so the tests can assert that graphc keeps those symbols.

torch is too large to be a test dependency, so the .onnx files are committed under
tests/exported/models/ and this script is how they were made. Run it again with a CPU build of torch
(``pip install torch==2.13.0 onnxscript``):

    python scripts/export_models.py            # writes tests/exported/models/*.onnx
    python scripts/export_models.py --check    # also compares each file with torch on onnxruntime

Weights come from fixed seeds, so re-running reproduces the same models up to exporter changes.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import warnings

import numpy as np

OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "exported", "models")
OPSET = 18
BOTH = ("torchscript", "dynamo")


def _modules():
    """The three modules, each with an example input, input/output names and dynamic axes."""
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        """Conv/BatchNorm/ReLU/MaxPool blocks, a residual add, global average pooling and a classifier."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.MaxPool2d(2))
            self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.BatchNorm2d(16), nn.ReLU(),
                                       nn.Conv2d(16, 16, 1))
            self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU6())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(32, 10))

        def forward(self, image):
            x = self.stem(image)
            x = torch.relu(x + self.block(x))
            x = self.pool(self.down(x))
            return torch.softmax(self.head(x), dim=-1)

    class LSTMTagger(nn.Module):
        """Token embedding, a two-layer bidirectional LSTM, and per-token tag log-probabilities."""

        def __init__(self, vocab=50, emb=16, hidden=24, tags=7):
            super().__init__()
            self.embed = nn.Embedding(vocab, emb)
            self.lstm = nn.LSTM(emb, hidden, num_layers=2, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * hidden, tags)

        def forward(self, tokens):
            h, _ = self.lstm(self.embed(tokens))
            return torch.log_softmax(self.out(h), dim=-1)

    class TransformerEncoder(nn.Module):
        """Token + learned position embeddings, two pre-norm encoder layers (GELU), a final LayerNorm."""

        def __init__(self, vocab=64, d_model=32, heads=4, layers=2, max_len=64):
            super().__init__()
            self.embed = nn.Embedding(vocab, d_model)
            self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.1)
            layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=64, dropout=0.1, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d_model)

        def forward(self, tokens):
            seq = tokens.shape[1]
            x = self.embed(tokens) + self.pos[:seq]
            return self.norm(self.encoder(x))

    class MaskedEncoder(nn.Module):
        """A BERT-like encoder written out by hand: token + position embeddings, multi-head attention with a
        key padding mask taken from the tokens (id 0), a GELU MLP, post-norm residuals, and a pooled
        first-token output. Its attention reshapes read batch and sequence sizes from the input, so the
        TorchScript exporter keeps both axes dynamic (torch's own MultiheadAttention bakes the traced
        sequence length into a Reshape under that exporter)."""

        def __init__(self, vocab=40, d_model=32, heads=4, layers=2, max_len=64):
            super().__init__()
            self.heads = heads
            self.embed = nn.Embedding(vocab, d_model)
            self.pos = nn.Embedding(max_len, d_model)
            self.qkv = nn.ModuleList(nn.Linear(d_model, 3 * d_model) for _ in range(layers))
            self.proj = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(layers))
            self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(d_model, 64), nn.GELU(), nn.Linear(64, d_model))
                                     for _ in range(layers))
            self.norm1 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
            self.norm2 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
            self.pooler = nn.Linear(d_model, d_model)

        def forward(self, tokens):
            b, s = tokens.shape[0], tokens.shape[1]
            positions = torch.arange(s, device=tokens.device).unsqueeze(0)
            x = self.embed(tokens) + self.pos(positions)
            pad = (tokens == 0).unsqueeze(1).unsqueeze(2)  # [b, 1, 1, s]
            for qkv, proj, mlp, n1, n2 in zip(self.qkv, self.proj, self.mlp, self.norm1, self.norm2):
                q, k, v = qkv(x).reshape(b, s, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
                scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5)
                att = torch.softmax(scores.masked_fill(pad, -1e4), dim=-1)
                x = n1(x + proj((att @ v).transpose(1, 2).reshape(b, s, -1)))
                x = n2(x + mlp(x))
            return x, torch.tanh(self.pooler(x[:, 0]))

    torch.manual_seed(0)
    cnn = SmallCNN()
    # Non-trivial BatchNorm statistics, so folding or ignoring them shows in the outputs.
    for m in cnn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():  # spread the logits, so the class probabilities differ clearly between classes
        cnn.head[2].weight.mul_(8.0)
    tagger = LSTMTagger()
    encoder = TransformerEncoder()
    masked = MaskedEncoder()
    bs, bss = {0: "batch"}, {0: "batch", 1: "seq"}
    # name, module, example input, input names, {name: dynamic axes} for inputs and outputs, exporters
    return [
        ("cnn", cnn, torch.randn(2, 3, 32, 32), ["image"], {"image": bs, "probs": bs}, BOTH),
        ("lstm_tagger", tagger, torch.randint(0, 50, (2, 9)), ["tokens"], {"tokens": bss, "tag_logprobs": bss},
         BOTH),
        # torch's MultiheadAttention keeps the sequence axis dynamic only under the dynamo exporter.
        ("transformer", encoder, torch.randint(0, 64, (2, 9)), ["tokens"], {"tokens": bss, "hidden": bss},
         ("dynamo",)),
        ("masked_encoder", masked, torch.randint(1, 40, (2, 9)), ["tokens"],
         {"tokens": bss, "hidden": bss, "pooled": bs}, BOTH),
    ]


def _export(name, module, example, input_names, axes, exporter: str) -> str:
    import onnx
    import torch

    module.eval()
    output_names = [k for k in axes if k not in input_names]
    path = os.path.join(OUT_DIR, f"{name}_{exporter}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {k: {i: torch.export.Dim(s, min=1, max=64) for i, s in axes[k].items()} for k in input_names}
            prog = torch.onnx.export(module, (example,), input_names=input_names, output_names=output_names,
                                     dynamic_shapes=dims, opset_version=OPSET, dynamo=True, external_data=False,
                                     verbose=False)
            model = prog.model_proto
        else:
            buf = io.BytesIO()
            torch.onnx.export(module, (example,), buf, input_names=input_names, output_names=output_names,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
            model = onnx.load_from_string(buf.getvalue())
    model.doc_string = f"{name}: made by scripts/export_models.py with torch {torch.__version__}'s {exporter} exporter"
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _check(path, module, example) -> float:
    """Largest |onnxruntime - torch| over the outputs at batch 1, 3 and sequence 5, 17."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, seq in [(1, 5), (3, 17)]:
        if example.dtype == torch.int64:
            x = torch.randint(0, 40, (batch, seq))
        else:
            x = torch.randn(batch, *example.shape[1:])
        with torch.no_grad():
            want = module(x)
        want = want if isinstance(want, tuple) else (want,)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        for g, w in zip(got, want):
            worst = max(worst, float(np.abs(g - w.numpy()).max()))
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare each export with torch on onnxruntime")
    args = p.parse_args(argv)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, module, example, input_names, axes, exporters in _modules():
        for exporter in exporters:
            path = _export(name, module, example, input_names, axes, exporter)
            line = f"{os.path.relpath(path)}: {os.path.getsize(path) / 1024:.0f} KB"
            if args.check:
                line += f", max |onnxruntime - torch| = {_check(path, module, example):.2e}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
