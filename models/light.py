"""The nine full-size CNNs shipped inside the onnx wheel ("light" models: every weight is 0.02).

``python -m graphc.models.light NAME`` prints the path of one (e.g. ``resnet50``); ``light_inputs`` builds
the inputs onnx's backend test runner feeds them, so outputs compare with ``light_NAME_output_0.pb``.
"""
from __future__ import annotations

import os
import sys

import numpy as np

NAMES = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
         "vgg19", "zfnet512")


def folder() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def path(name: str) -> str:
    name = name.removeprefix("light_").removesuffix(".onnx")
    if name not in NAMES:
        raise SystemExit(f"unknown light model '{name}'; choose one of: {', '.join(NAMES)}")
    return os.path.join(folder(), f"light_{name}.onnx")


def reference_output(name: str) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    t = onnx.TensorProto()
    with open(os.path.join(folder(), f"light_{name}_output_0.pb"), "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def light_inputs(model) -> list[np.ndarray]:
    """The inputs onnx's runner uses for these models: arange(n)/n in each non-initializer input's shape."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        out.append((np.arange(n).reshape(shape) / n).astype(np.float32))
    return out


def with_random_weights(model, seed: int = 0):
    """A copy whose 0.02 weights (ConstantOfShape nodes) are seeded He-scaled random initializers,
    and the seeded random positive values to feed its other inputs (BatchNorm scale/bias/mean/var, data).

    The input of a final Softmax (the logits) becomes a second output, so a comparison sees values
    that are not squashed into near-uniform or near-one-hot probabilities.

    Returns (model, feeds as a list in input order)."""
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    uses = {(i, n.op_type, k) for n in g.node for k, i in enumerate(n.input)}
    positive = {i for i, op, k in uses if op == "BatchNormalization" and k in (1, 4)}  # scale, variance
    keep = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(d) for d in inits[node.input[0]])
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            w = (rng.standard_normal(shape) * np.sqrt(1.0 / max(fan_in, 1))).astype(np.float32)
            if node.output[0] in positive:
                w = rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
            elif len(shape) == 1:
                w = (rng.standard_normal(shape) * 0.1).astype(np.float32)
            g.initializer.append(numpy_helper.from_array(w, node.output[0]))
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    live = [t for t in g.initializer if t.name in used or t.name in {o.name for o in g.output}]
    dropped = {t.name for t in g.initializer} - {t.name for t in live}
    del g.initializer[:]
    g.initializer.extend(live)
    inputs = [vi for vi in g.input if vi.name not in dropped]  # IR 3 lists initializers as inputs too
    del g.input[:]
    g.input.extend(inputs)
    outs = {o.name for o in g.output}
    for node in g.node:
        if node.op_type == "Softmax" and node.output[0] in outs:
            g.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    init_names = {t.name for t in g.initializer}
    feeds = []
    for vi in g.input:
        if vi.name in init_names:
            continue
        shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        feeds.append(rng.uniform(0.5, 1.5, size=shape).astype(np.float32))
    return m, feeds


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m graphc.models.light NAME   (one of: " + ", ".join(NAMES) + ")", file=sys.stderr)
        sys.exit(2)
    print(path(sys.argv[1]))
