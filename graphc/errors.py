"""The error classes graphc raises: one root, ``GraphcError``, and a subclass per kind of fault.

Every message names the thing at fault (file, node, input or attribute) and says what was
expected and what came, so a user can act on it without reading a traceback.
"""
from __future__ import annotations


class GraphcError(Exception):
    """Root of every error graphc raises on purpose."""


class GraphcWarning(UserWarning):
    """Something in a model is suspicious but not fatal (e.g. a stale declared shape)."""


class ModelLoadError(GraphcError):
    """A model file or buffer could not be read as an ONNX model."""


class ExternalDataError(ModelLoadError):
    """A tensor's external data is missing, escapes the model folder, or is out of range."""


class PlanFormatError(ModelLoadError):
    """A saved plan this graphc cannot read: another plan format, or ops this version does not know."""


class InvalidGraphError(GraphcError):
    """The graph breaks a structural rule: undefined value, SSA violation, bad topological order."""


class UnsupportedOpError(GraphcError):
    """One or more operators have no OpDef. ``missing`` maps (domain, op_type, opset) to node names."""

    def __init__(self, missing: dict[tuple[str, str, int], list[str]], where: str = ""):
        self.missing = missing
        lines = []
        for (domain, op, opset), nodes in sorted(missing.items()):
            shown = ", ".join(repr(n) for n in nodes[:5]) + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
            lines.append(f"  {op} (domain '{domain or 'ai.onnx'}', opset {opset}): used by {len(nodes)} node(s): {shown}")
        head = f"{where}: " if where else ""
        super().__init__(f"{head}{len(missing)} unsupported operator(s):\n" + "\n".join(lines))


class OpAttributeError(GraphcError):
    """An attribute is missing, unknown, or of the wrong type or value."""


class ShapeError(GraphcError):
    """Type or shape inference found inputs that contradict an operator's rules."""


class ResourceLimitError(GraphcError):
    """A tensor would exceed the memory budget (graphc/limits.py); refused before allocating it."""


class FeedError(GraphcError):
    """A value fed to a run has the wrong name, dtype or shape."""


class ExecutionError(GraphcError):
    """An operator failed while running; the message names the node and its input types."""


class GradientError(GraphcError):
    """A gradient cannot be built: no path from a loss to a value, or a non-differentiable op cuts it."""


class GraphBuildError(GraphcError):
    """The Python DSL was used wrongly: no default graph, tensors of two graphs mixed, a bad argument."""


class DistributedError(GraphcError):
    """Data-parallel training went wrong: no MPI, ranks that disagree, a collective run before init()."""


class CudaUnavailableError(GraphcError):
    """The CUDA backend cannot start: PyCUDA is missing, or it found no driver or no GPU (or cuBLAS is
    missing). Here, at the bottom, so that every CUDA module raises it without importing another."""


def node_label(node) -> str:
    """How errors name a node: ``Conv node 'conv1'`` (with the user's source line when known)."""
    label = f"{node.op_type} node '{node.name}'"
    if getattr(node, "source", None):
        label += f" (created at {node.source})"
    return label
