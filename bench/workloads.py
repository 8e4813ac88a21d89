"""The benchmark workloads: each one an ONNX model file plus seeded feeds, written into a work folder.

Every workload is built here from code (no downloads): the nine light CNNs from the onnx wheel with
seeded random weights (their shipped weights are all 0.02, which would hide wrong answers), an MLP,
one GPT-style transformer block, a long elementwise chain and a 1,000-node chain of tiny ops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

#: The opset of the models built here (17 keeps ReduceMean's axes as an attribute, as exporters of
#: GPT-style models commonly wrote them, and every engine compared here supports it).
OPSET = 17


@dataclass
class Workload:
    """A named model on disk with its feeds (input name -> array, in the model's input order)."""

    name: str
    model_path: str
    feeds: dict[str, np.ndarray]
    group: str  # "cnn", "mlp", "transformer", "elementwise", "chain"
    #: How many nodes the model has (the chain's per-step time divides by this).
    nodes: int = 0
    notes: str = ""

    @property
    def feeds_path(self) -> str:
        return self.model_path[: -len(".onnx")] + ".feeds.npz"


def _save(model, folder: str, name: str, feeds: dict[str, np.ndarray], group: str, notes: str = "",
          check: bool = True) -> Workload:
    import onnx

    if check:  # the light CNNs' extra logits output has no shape, which the checker refuses for IR 3
        onnx.checker.check_model(model)
    path = os.path.join(folder, f"{name}.onnx")
    onnx.save(model, path)
    w = Workload(name, path, feeds, group, nodes=len(model.graph.node), notes=notes)
    # Arrays are stored positionally (arr_0, arr_1, ...) so input names with '/' survive the .npz.
    np.savez(w.feeds_path, *feeds.values())
    return w


def load_feeds(model_path: str) -> dict[str, np.ndarray]:
    """The feeds saved beside a workload's model, keyed by the model's (non-initializer) input names."""
    import onnx

    model = onnx.load(model_path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    with np.load(model_path[: -len(".onnx")] + ".feeds.npz") as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    return dict(zip(names, arrays))


# ---- the light CNNs --------------------------------------------------------------------------
def light_cnn(folder: str, name: str, seed: int = 0) -> Workload:
    import onnx

    from graphc.models.light import path, with_random_weights

    model, feeds = with_random_weights(onnx.load(path(name)), seed=seed)
    inits = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    return _save(model, folder, f"light_{name}", dict(zip(names, feeds)), "cnn",
                 notes="onnx wheel's light model, seeded random weights, 1x3x224x224", check=False)


# ---- generated models ------------------------------------------------------------------------
class _Builder:
    """A few lines of onnx.helper bookkeeping: named initializers and nodes with fresh output names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, value, name: str | None = None) -> str:
        from onnx import numpy_helper

        self._n += 1
        name = name or f"c{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, *shape: int, scale: float | None = None) -> str:
        fan_in = shape[0] if len(shape) > 1 else 1
        s = scale if scale is not None else np.sqrt(1.0 / fan_in)
        return self.const((self.rng.standard_normal(shape) * s).astype(np.float32))

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        from onnx import helper

        self._n += 1
        outs = [f"{op_type.lower()}_{self._n}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"{op_type}_{self._n}", **attrs))
        return outs[0] if outputs == 1 else outs

    def model(self, name: str, inputs: list, outputs: list):
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="graphc-bench")
        m.ir_version = 8
        return m


def _float_io(name: str, shape) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape) if shape is not None else None)


def mlp(folder: str, batch: int = 64, sizes=(784, 512, 512, 10), seed: int = 1) -> Workload:
    """Gemm + Relu layers as PyTorch exports nn.Linear (weights [out, in], transB=1)."""
    b = _Builder(seed)
    h = "x"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = b.const((b.rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32))
        bias = b.const((b.rng.standard_normal(n_out) * 0.1).astype(np.float32))
        h = b.op("Gemm", h, w, bias, transB=1)
        if i < len(sizes) - 2:
            h = b.op("Relu", h)
    b.nodes[-1].output[0] = "logits"
    m = b.model("mlp", [_float_io("x", (batch, sizes[0]))], [_float_io("logits", (batch, sizes[-1]))])
    x = b.rng.standard_normal((batch, sizes[0])).astype(np.float32)
    return _save(m, folder, "mlp", {"x": x}, "mlp", notes=f"{'-'.join(map(str, sizes))}, batch {batch}")


def transformer_block(folder: str, seq: int = 128, d_model: int = 256, heads: int = 4, seed: int = 2) -> Workload:
    """A pre-LayerNorm GPT-2 style block: causal multi-head attention and a 4x GELU MLP, each with a
    residual. LayerNorm and GELU are written out in primitive ops (ReduceMean/Sqrt/Div and Erf), the
    form many exporters produce, so a compiler's pattern recognition has something to find."""
    b = _Builder(seed)
    dh = d_model // heads
    axes_last = [-1]

    def layer_norm(x: str) -> str:
        mean = b.op("ReduceMean", x, axes=axes_last, keepdims=1)
        xc = b.op("Sub", x, mean)
        var = b.op("ReduceMean", b.op("Mul", xc, xc), axes=axes_last, keepdims=1)
        std = b.op("Sqrt", b.op("Add", var, b.const(np.float32(1e-5))))
        gamma = b.const((1 + 0.1 * b.rng.standard_normal(d_model)).astype(np.float32))
        beta = b.const((0.1 * b.rng.standard_normal(d_model)).astype(np.float32))
        return b.op("Add", b.op("Mul", b.op("Div", xc, std), gamma), beta)

    def linear(x: str, n_in: int, n_out: int) -> str:
        bias = b.const((0.02 * b.rng.standard_normal(n_out)).astype(np.float32))
        return b.op("Add", b.op("MatMul", x, b.weight(n_in, n_out)), bias)

    def heads_first(x: str) -> str:  # [1, seq, d] -> [1, heads, seq, dh]
        r = b.op("Reshape", x, b.const(np.array([1, seq, heads, dh], np.int64)))
        return b.op("Transpose", r, perm=[0, 2, 1, 3])

    x = "x"
    h = layer_norm(x)
    qkv = linear(h, d_model, 3 * d_model)
    q, k, v = b.op("Split", qkv, b.const(np.array([d_model] * 3, np.int64)), outputs=3, axis=-1)
    q, v = heads_first(q), heads_first(v)
    kt = b.op("Transpose", b.op("Reshape", k, b.const(np.array([1, seq, heads, dh], np.int64))), perm=[0, 2, 3, 1])
    scores = b.op("Mul", b.op("MatMul", q, kt), b.const(np.float32(1.0 / np.sqrt(dh))))
    mask = np.triu(np.full((seq, seq), -1e9, np.float32), k=1)
    probs = b.op("Softmax", b.op("Add", scores, b.const(mask)), axis=-1)
    att = b.op("Transpose", b.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    att = b.op("Reshape", att, b.const(np.array([1, seq, d_model], np.int64)))
    x1 = b.op("Add", x, linear(att, d_model, d_model))
    f = linear(layer_norm(x1), d_model, 4 * d_model)
    gelu = b.op("Mul", b.op("Mul", f, b.const(np.float32(0.5))),
                b.op("Add", b.const(np.float32(1.0)), b.op("Erf", b.op("Div", f, b.const(np.float32(np.sqrt(2.0)))))))
    b.op("Add", x1, linear(gelu, 4 * d_model, d_model))
    b.nodes[-1].output[0] = "y"
    m = b.model("transformer_block", [_float_io("x", (1, seq, d_model))], [_float_io("y", (1, seq, d_model))])
    xin = b.rng.standard_normal((1, seq, d_model)).astype(np.float32)
    return _save(m, folder, "transformer", {"x": xin}, "transformer",
                 notes=f"GPT-2 style block, seq {seq}, d_model {d_model}, {heads} heads, causal mask")


#: The elementwise chain: (op, second operand) with "x" meaning the chain's input (a second read of it)
#: and a float meaning a scalar constant. Chosen to stay finite, to mix cheap and transcendental ops, and to
#: end in values that vary with the input (inputs are uniform in [0.5, 1.5]), so a wrong answer shows.
ELEMENTWISE_CHAIN: tuple[tuple[str, object], ...] = (
    ("Mul", 0.9), ("Add", 0.1), ("Tanh", None), ("Mul", 1.5), ("Sigmoid", None), ("Sub", 0.25), ("Abs", None),
    ("Add", 1.0), ("Sqrt", None), ("Mul", "x"), ("Neg", None), ("Exp", None), ("Add", 1.0), ("Log", None),
    ("Relu", None), ("Div", 1.7), ("Max", 0.1), ("Sub", "x"), ("Mul", 2.0), ("Tanh", None),
)


def elementwise_chain(folder: str, numel: int = 4 * 1024 * 1024, seed: int = 3) -> Workload:
    b = _Builder(seed)
    h = "x"
    for op, arg in ELEMENTWISE_CHAIN:
        if arg is None:
            h = b.op(op, h)
        else:
            h = b.op(op, h, "x" if arg == "x" else b.const(np.float32(arg)))
    b.nodes[-1].output[0] = "y"
    shape = (numel // 1024, 1024)
    m = b.model("elementwise_chain", [_float_io("x", shape)], [_float_io("y", shape)])
    x = b.rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
    return _save(m, folder, "elementwise20", {"x": x}, "elementwise",
                 notes=f"{len(ELEMENTWISE_CHAIN)} elementwise ops on {numel:,} float32 values")


def tiny_op_chain(folder: str, length: int = 1000, seed: int = 4) -> Workload:
    """A chain of Add/Mul/Relu/Sub on 16 floats: the time is almost all per-step overhead."""
    b = _Builder(seed)
    h = "x"
    cycle = ("Add", "Mul", "Relu", "Sub")
    for i in range(length):
        op = cycle[i % len(cycle)]
        if op == "Relu":
            h = b.op(op, h)
        else:
            c = 1.0 + 0.01 * float(b.rng.standard_normal()) if op == "Mul" else 0.1 * float(b.rng.standard_normal())
            h = b.op(op, h, b.const(np.float32(c)))
    b.nodes[-1].output[0] = "y"
    m = b.model("tiny_op_chain", [_float_io("x", (1, 16))], [_float_io("y", (1, 16))])
    x = b.rng.standard_normal((1, 16)).astype(np.float32)
    return _save(m, folder, f"chain{length}", {"x": x}, "chain", notes=f"{length} tiny ops (Add/Mul/Relu/Sub) on 1x16")


def custom_model(folder: str, model_path: str, seed: int = 0) -> Workload:
    """A user's model (``graphc bench MODEL``): seeded random feeds from graphc's inferred input types."""
    import shutil

    from graphc.cli import load_graph, random_feeds

    graph = load_graph(model_path)
    feeds = random_feeds(graph, seed)
    name = os.path.splitext(os.path.basename(model_path))[0]
    dest = os.path.join(folder, f"{name}.onnx")
    shutil.copyfile(model_path, dest)
    w = Workload(name, dest, feeds, "custom", nodes=len(graph.nodes), notes=model_path)
    np.savez(w.feeds_path, *feeds.values())
    return w


def _light(name: str) -> Callable[[str], Workload]:
    return lambda folder: light_cnn(folder, name)


def catalog() -> dict[str, Callable[[str], Workload]]:
    """Every standard workload by name, in report order."""
    from graphc.models.light import NAMES

    out: dict[str, Callable[[str], Workload]] = {f"light_{n}": _light(n) for n in NAMES}
    out["mlp"] = mlp
    out["transformer"] = transformer_block
    out["elementwise20"] = elementwise_chain
    out["chain1000"] = tiny_op_chain
    return out


#: What ``--quick`` runs: small, fast workloads that still exercise every engine.
QUICK = ("mlp", "chain1000")
