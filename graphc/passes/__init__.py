"""Graph-to-graph passes, each a plain function run by the pass manager (``manager.PassManager``)."""
from .infer_shapes import infer_shapes
from .manager import PASSES, PassManager, PassRecord, PassReport, register_pass
from .pipeline import simplify

__all__ = ["PASSES", "PassManager", "PassRecord", "PassReport", "infer_shapes", "register_pass", "simplify"]
