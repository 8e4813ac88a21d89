"""Graph-to-graph passes. Each is a plain function; the pass manager (a later step) runs them in order."""
from .infer_shapes import infer_shapes

__all__ = ["infer_shapes"]
