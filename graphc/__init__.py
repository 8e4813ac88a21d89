"""graphc: a small static-graph compiler and runtime for deep learning.

``import graphc as gc`` gives the public facade. The facade sits above ``runtime`` and ``frontends``,
so the names that come from them are imported lazily (module ``__getattr__``): those layers can then
import ``graphc.ir`` and ``graphc.ops`` without a circular import.
"""
from __future__ import annotations

from .errors import (ExecutionError, ExternalDataError, FeedError, GraphcError, InvalidGraphError,
                     ModelLoadError, OpAttributeError, ResourceLimitError, ShapeError, UnsupportedOpError)
from .ir import DType, Node, TensorType, Value
from .ir import Graph as IRGraph  # gc.Graph is the DSL's subclass (lazy, below)
from .ir.dtypes import (bfloat16, bool, float16, float32, float64, int8, int16, int32, int64, string,  # noqa: A004
                        uint8, uint16, uint32, uint64)
from .version import __version__


def import_onnx(source, infer: bool = True, memory_limit: int | str | None = None) -> IRGraph:
    """Import an ONNX model (path, bytes or ModelProto) as a Graph with inferred types.

    ``memory_limit`` (bytes, or e.g. ``"2GB"``) bounds each tensor; see graphc/limits.py for the default.
    """
    from graphc.frontends.onnx import import_model

    return import_model(source, infer=infer, memory_limit=memory_limit)


def prepare(graph: IRGraph, backend: str | None = None, memory_limit: int | str | None = None, level: int = 2,
            **options):
    """Make a graph (or a compiled Plan) ready to run on a backend: returns an Executable with
    ``run(feeds) -> outputs``.

    ``backend``: "cpu" (compiled C++ kernels), "numpy" (the interpreter, the reference semantics) or "cuda";
    None (the default) or "auto": "cpu" where a C++ compiler is found, else "numpy" ($GRAPHC_BACKEND
    changes it; ``graphc.runtime.default_backend``).

    A Graph is compiled first (``gc.compile(graph, level=level)``): ``level=2`` (the default) simplifies,
    fuses and plans memory, as ``graphc compile`` does; ``level=0`` only plans memory (the graph runs op by
    op as imported), ``level=1`` simplifies without fusing. A Plan runs as it was compiled (``level`` is
    then ignored). Every backend runs the same compiled plan.

    ``memory_limit`` bounds each tensor the run would create (graphc/limits.py; default from the environment).
    Other keyword ``options`` go to the backend's ``prepare``: ``check_memory`` (both backends), ``fast``
    (numpy); ``tf32=True`` (let float32 matrix products use TF32 tensor cores), ``debug``, ``device`` (cuda).
    An option the backend does not take raises GraphcError naming the ones it does.
    """
    import inspect

    from .runtime import get_backend, resolve_backend

    backend = resolve_backend(backend)
    impl = get_backend(backend)
    if memory_limit is not None:
        options["memory_limit"] = memory_limit
    params = inspect.signature(impl.prepare).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        takes = [n for n, p in params.items() if n != "graph" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = [k for k in options if k not in takes]
        if unknown:
            raise GraphcError(f"backend '{backend}' takes no option {', '.join(repr(k) for k in unknown)}; its "
                              f"options are {', '.join(takes) or 'none'}, and gc.prepare's own: memory_limit, level")
    if isinstance(graph, IRGraph):
        from .compiler import compile as compile_graph

        graph = compile_graph(graph, level=level)
    return impl.prepare(graph, **options)


def run(model, feeds, backend: str | None = None, level: int = 2) -> list:
    """Import (if given a model rather than a Graph), compile at ``level``, prepare and run once; returns the
    outputs."""
    graph = model if isinstance(model, IRGraph) else import_onnx(model)
    return prepare(graph, backend, level=level).run(feeds)


_LAZY = {
    "infer_shapes": ("graphc.passes", "infer_shapes"),
    "ops": ("graphc.ops", None),
    "onnx_backend": ("graphc.frontends.onnx.backend", None),
    "Session": ("graphc.runtime.session", "Session"),
    "progress": ("graphc.runtime.session", "progress"),
    "export_onnx": ("graphc.frontends.onnx.exporter", "export_onnx"),
    "compile": ("graphc.compiler", "compile"),
    "load_plan": ("graphc.plan", "load_plan"),
    "set_num_threads": ("graphc.runtime.numpy.threads", "set_num_threads"),  # also GRAPHC_NUM_THREADS
    "get_num_threads": ("graphc.runtime.numpy.threads", "get_num_threads"),
    "distributed": ("graphc.frontends.dsl.distributed", None),  # data-parallel training over MPI (the `dist` extra)
}


#: The DSL's names (graphc.frontends.dsl.__all__; tests/dsl/test_dsl_discoverability.py keeps the two equal),
#: listed here so that ``dir(gc)`` and ``from graphc import *`` show them before the DSL is first imported.
_DSL = ("Graph", "Operation", "Tensor", "Variable", "abs", "add", "apply_op", "argmax", "argmin", "as_tensor", "assign",
        "broadcast_to", "cast", "ceil", "clip", "concat", "constant", "cos", "cumsum", "custom_gradient", "custom_op",
        "divide", "equal", "erf", "exp", "expand_dims", "flatten", "floor", "gather", "get_default_graph", "getitem",
        "gradients", "greater", "group", "initializers", "layers", "less", "log", "logical_and", "logical_not",
        "logical_or", "losses", "matmul", "maximum", "minimum", "multiply", "negative", "nn", "not_equal", "one_hot",
        "ones_like", "optim", "pad", "placeholder", "placeholder_with_default", "pow", "reciprocal",
        "reduce_logsumexp", "reduce_max", "reduce_mean", "reduce_min", "reduce_prod", "reduce_sum", "relu",
        "reshape", "round", "rsqrt", "shape", "sigmoid", "sign", "sin", "split", "sqrt", "square", "squeeze", "stack",
        "stop_gradient", "subtract", "swapaxes", "tanh", "tile", "transpose", "tril", "triu", "where", "zeros_like")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        m = importlib.import_module(mod)
        value = m if attr is None else getattr(m, attr)
    elif name in _DSL:  # the DSL: gc.Graph, gc.placeholder, gc.nn, gc.layers, gc.optim, gc.exp, ...
        import graphc.frontends.dsl as dsl

        value = getattr(dsl, name)
    else:
        raise AttributeError(f"module 'graphc' has no attribute '{name}'")
    globals()[name] = value  # resolved once: later lookups (and documentation tools) find it in the module
    return value


def __dir__() -> list[str]:
    """Every public name, the lazily imported ones included (they are not in the module's namespace yet)."""
    return sorted(set(globals()) | set(__all__))


__all__ = sorted({"DType", "ExecutionError", "ExternalDataError", "FeedError", "GraphcError", "IRGraph",
                  "InvalidGraphError", "ModelLoadError", "Node", "OpAttributeError", "ResourceLimitError", "ShapeError",
                  "TensorType", "UnsupportedOpError", "Value", "__version__", "bfloat16", "bool", "float16", "float32",
                  "float64", "int8", "int16", "int32", "int64", "string", "uint8", "uint16", "uint32", "uint64",
                  "import_onnx", "prepare", "run", *_LAZY, *_DSL})
