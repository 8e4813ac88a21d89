"""graphc behind ``onnx.backend.base.Backend``, so onnx's own backend test runner drives it unchanged.

``prepare(model)`` compiles the model at -O2 (simplify, fuse, plan memory), as onnxruntime applies its graph
optimizations by default; ``prepare(model, level=0)`` runs it op by op as imported (memory still planned).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from graphc.ir import Graph

from .importer import import_model


class GraphcRep(BackendRep):
    """A prepared model: ``run(inputs)`` with a list (in input order) or a dict of arrays.

    ``run`` may be called from several threads at once (as onnxruntime's ``InferenceSession.run``): the
    executable's runs share nothing (NumPy: an arena per run in flight; CUDA: runs take turns).

    ``graph`` is the compiled plan's graph (the imported graph is not kept: its weights would be held twice)."""

    def __init__(self, graph: Graph, backend: str | None = None, level: int = 2):
        from graphc.compiler import compile as compile_graph
        from graphc.runtime import get_backend

        self.plan = compile_graph(graph, level=level)
        self.graph = self.plan.graph
        self.executable = get_backend(backend).prepare(self.plan)

    def run(self, inputs: Any, **kwargs) -> tuple:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        return tuple(self.executable.run(inputs))


class GraphcBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs) -> GraphcRep:
        if not cls.supports_device(device):
            raise ValueError(f"graphc does not support device '{device}' here")
        return GraphcRep(import_model(model), backend=kwargs.get("backend"), level=kwargs.get("level", 2))

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info=None,
                 **kwargs) -> tuple:
        """Run one NodeProto on concrete inputs (a list in the node's input order, or a dict by name)."""
        if isinstance(inputs, dict):
            inputs = [inputs[n] for n in node.input if n]
        present = [n for n in node.input if n]
        vis = []
        for name, x in zip(present, inputs):
            x = np.asarray(x)
            vis.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(x.dtype), x.shape))
        outs = [onnx.helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
        graph = onnx.helper.make_graph([node], "run_node", vis, outs)
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(node.domain, opset)])
        return cls.run_model(model, list(inputs), device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")


prepare = GraphcBackend.prepare
run_model = GraphcBackend.run_model
run_node = GraphcBackend.run_node
supports_device = GraphcBackend.supports_device
