"""The graphc IR: element types, tensor types with symbolic dims, values, nodes and graphs."""
from .dtypes import DType
from .graph import Graph, Node, Value
from .types import Dim, MapType, OptionalType, SequenceType, TensorType, is_symbol

__all__ = ["DType", "Dim", "Graph", "MapType", "Node", "OptionalType", "SequenceType", "TensorType", "Value",
           "is_symbol"]
