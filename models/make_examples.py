"""Writes the small example models shipped in models/data/ (run: ``python -m graphc.models.make_examples``).

``tiny_cnn.onnx``: a digit-sized CNN (Conv-Relu-MaxPool-Conv-Relu-GlobalAveragePool-Flatten-Gemm-Softmax)
with a symbolic batch dim ``N`` and seeded random weights, small enough to ship and to run in a test.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def tiny_cnn(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def w(name, *shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        arr = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        return numpy_helper.from_array(arr, name)

    inits = [w("conv1_w", 8, 1, 3, 3), w("conv1_b", 8), w("conv2_w", 16, 8, 3, 3), w("conv2_b", 16),
             w("fc_w", 10, 16), w("fc_b", 10)]
    nodes = [
        helper.make_node("Conv", ["image", "conv1_w", "conv1_b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="graphc-examples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    os.makedirs(HERE, exist_ok=True)
    path = os.path.join(HERE, "tiny_cnn.onnx")
    onnx.save(tiny_cnn(), path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
