"""The shape-inference pass: every value's type, inferred in place over the whole graph.

Inference itself is the op layer's (graphc/ops/infer.py: ``infer_node`` beside ``InferContext``); this module
is where the compiler's passes find it.
"""
from __future__ import annotations

from ..ir.types import OptionalType, SequenceType
from ..ops.infer import KNOWN_VALUE_LIMIT, infer_node, infer_shapes
from ..ops.registry import types_conflict

__all__ = ["KNOWN_VALUE_LIMIT", "infer_node", "infer_shapes", "types_conflict", "OptionalType", "SequenceType"]
