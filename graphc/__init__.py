"""graphc: a small static-graph compiler and runtime for deep learning.

``import graphc as gc`` gives the public facade. The facade sits above ``runtime`` and ``frontends``,
so the names that come from them are imported lazily (module ``__getattr__``): those layers can then
import ``graphc.ir`` and ``graphc.ops`` without a circular import.
"""
from __future__ import annotations

from .errors import (ExecutionError, ExternalDataError, FeedError, GraphcError, InvalidGraphError,
                     ModelLoadError, OpAttributeError, ShapeError, UnsupportedOpError)
from .ir import DType, Graph, Node, TensorType, Value
from .ir.dtypes import (bfloat16, bool, float16, float32, float64, int8, int16, int32, int64, string,  # noqa: A004
                        uint8, uint16, uint32, uint64)

__version__ = "0.1.0"


def import_onnx(source, infer: bool = True) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) as a Graph with inferred types."""
    from frontends.onnx import import_model

    return import_model(source, infer=infer)


def prepare(graph: Graph, backend: str = "numpy"):
    """Make a graph ready to run on a backend: returns an Executable with ``run(feeds) -> outputs``."""
    from runtime import get_backend

    return get_backend(backend).prepare(graph)


def run(model, feeds, backend: str = "numpy") -> list:
    """Import (if given a model rather than a Graph), prepare and run once; returns the outputs."""
    graph = model if isinstance(model, Graph) else import_onnx(model)
    return prepare(graph, backend).run(feeds)


_LAZY = {
    "infer_shapes": ("graphc.passes", "infer_shapes"),
    "ops": ("graphc.ops", None),
    "onnx_backend": ("frontends.onnx.backend", None),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        m = importlib.import_module(mod)
        return m if attr is None else getattr(m, attr)
    raise AttributeError(f"module 'graphc' has no attribute '{name}'")


__all__ = ["DType", "ExecutionError", "ExternalDataError", "FeedError", "Graph", "GraphcError", "InvalidGraphError",
           "ModelLoadError", "Node", "OpAttributeError", "ShapeError", "TensorType", "UnsupportedOpError", "Value",
           "import_onnx", "prepare", "run"]
