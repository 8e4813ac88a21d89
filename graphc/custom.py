"""User-written operators: ``register_custom_op`` turns a NumPy function, a shape rule, an optional gradient
and a CUDA C kernel into an ``OpDef`` of the operator table, so that every part of graphc treats the op as
one of its own.

What each piece becomes:

- ``numpy_impl(*inputs, **attrs) -> array or tuple of arrays``: the OpDef's ``eval`` (the NumPy backend,
  constant folding, the tests' reference).
- ``infer_shape(*input_types, **attrs) -> TensorType or list of them`` (or ``"same"``: like input 0): the
  OpDef's ``infer``. Input types may have ``shape=None`` (rank unknown) or symbolic dims (strings).
- ``grad(ctx, inputs, outputs, output_grads, **attrs) -> one gradient per input`` (None: no gradient for
  that input): the OpDef's gradient rule, built with ``ctx`` (a ``graphc.autodiff.GradContext``: ``ctx.op``
  appends any op, ``CustomOp.build(ctx, ...)`` another custom op). Without it, ``gradients`` through the
  op raises GradientError naming the op.
- ``cuda_source``: CUDA C defining ``extern "C" __global__ void <kernel>(...)``; runtime/cuda/custom.py
  lowers the op's nodes to launches of it (the calling convention is documented there and in
  docs/custom_ops.md).

Every user function receives the node's attributes as keyword arguments. Custom ops live in a domain of
their own (default ``"custom"``), never in ONNX's or graphc's: a model imported from ONNX finds them by
(domain, op type), and the exporter writes them with their domain. Registering a name again replaces the
op, with a GraphcWarning (re-running a notebook cell is the common case); graphs built before keep
pointing at the name, so they use the new definition.

The DSL function (``gc.custom_op``, frontends/dsl/custom.py) registers through here and returns a
callable that builds the op's nodes on DSL tensors.
"""
from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import GraphcError, GraphcWarning, ShapeError, node_label
from .ir import Node, TensorType
from .ops.registry import REGISTRY, REQUIRED, Attr, InferContext, Kind, OpDef, canonical_domain, register

#: Domains a custom op may not use: ONNX's and graphc's own.
RESERVED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "graphc", "graphc.legacy")
#: OpDef.family of every custom op (how the exporter and the CUDA lowering recognise them).
FAMILY = "custom"
#: Python attribute values (or types, for a required attribute) -> attribute type.
_ATTR_OF_PY = {int: "int", float: "float", str: "string"}


class CustomOpError(GraphcError):
    """A custom op is declared wrongly (missing function, bad attribute, kernel not in the source) or its
    CUDA source does not compile; the message names the op."""


@dataclass
class CustomOp:
    """A registered user op: what ``register_custom_op`` was given, and its ``opdef`` in the table."""

    name: str
    domain: str
    numpy_impl: Callable[..., Any]
    infer_shape: Callable[..., Any] | str
    cuda_source: str | None = None
    kernel: str = ""
    grad: Callable | None = None
    attrs: dict[str, Attr] = field(default_factory=dict)
    num_inputs: tuple[int, int] = (0, 2**31)
    num_outputs: int = 1
    shape_params: bool = True
    launch: Callable | None = None
    doc: str = ""
    opdef: OpDef | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.domain}.{self.name}"

    @property
    def kernel_attrs(self) -> list[str]:
        """The attributes passed to the CUDA kernel, in declared order: every int and float attribute."""
        return [k for k, a in self.attrs.items() if a.type in ("int", "float")]

    def build(self, ctx, *inputs, **attrs):
        """Append a node of this op inside a gradient rule (``ctx``: a GradContext); returns its output
        Value (a list when the op has several outputs)."""
        outs = ctx.op_n(self.name, *inputs, num_outputs=self.num_outputs, domain=self.domain, **attrs)
        return outs[0] if self.num_outputs == 1 else outs

    # ---- the OpDef's hooks -------------------------------------------------------------------
    def _eval(self, node: Node, *inputs):
        result = self.numpy_impl(*inputs, **node.attrs)
        results = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        if len(results) != self.num_outputs:
            raise CustomOpError(f"{node_label(node)}: numpy_impl of custom op '{self.qualified_name}' returned "
                                f"{len(results)} array(s), expected {self.num_outputs}")
        out = []
        for k, (r, v) in enumerate(zip(results, node.outputs)):
            r = np.asarray(r)
            want = v.type.dtype if v is not None and isinstance(v.type, TensorType) else None
            if want is not None and want.np != r.dtype:
                raise CustomOpError(f"{node_label(node)}: numpy_impl of custom op '{self.qualified_name}' returned "
                                    f"{r.dtype} for output {k}, but infer_shape said {want}")
            out.append(r)
        return out[0] if len(out) == 1 else tuple(out)

    def _infer(self, ctx: InferContext) -> list:
        types = [ctx.type(i) for i in range(ctx.n_inputs)]
        if self.infer_shape == "same":
            if not types or not isinstance(types[0], TensorType):
                ctx.fail(f"custom op '{self.qualified_name}' declares infer_shape='same', which needs a tensor "
                         f"input 0")
            return [types[0]] * self.num_outputs
        try:
            got = self.infer_shape(*types, **ctx.node.attrs)
        except GraphcError:
            raise
        except Exception as e:
            raise ShapeError(f"{node_label(ctx.node)}: infer_shape of custom op '{self.qualified_name}' raised "
                             f"{type(e).__name__}: {e}") from e
        got = list(got) if isinstance(got, (list, tuple)) and not isinstance(got, TensorType) else [got]
        if len(got) != self.num_outputs or not all(isinstance(t, TensorType) for t in got):
            ctx.fail(f"infer_shape of custom op '{self.qualified_name}' must return {self.num_outputs} TensorType(s), "
                     f"got {got!r}")
        return got

    def _grad_rule(self, ctx, node: Node, dys):
        grads = self.grad(ctx, list(node.inputs), list(node.outputs), list(dys), **node.attrs)
        grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
        if len(grads) > len(node.inputs):
            raise CustomOpError(f"{node_label(node)}: grad of custom op '{self.qualified_name}' returned "
                                f"{len(grads)} gradients for {len(node.inputs)} inputs")
        return grads


#: Every registered custom op, by (domain, name).
CUSTOM_OPS: dict[tuple[str, str], CustomOp] = {}


def custom_op_of(domain: str, name: str) -> CustomOp | None:
    """The custom op registered as (domain, name), or None."""
    return CUSTOM_OPS.get((canonical_domain(domain), name))


def _attr_schema(op: str, attrs: dict | None) -> dict[str, Attr]:
    out = {}
    for k, v in (attrs or {}).items():
        if not isinstance(k, str) or not k.isidentifier():
            raise CustomOpError(f"custom op '{op}': attribute name {k!r} must be a Python identifier")
        if isinstance(v, Attr):
            out[k] = v
        elif isinstance(v, type) and v in _ATTR_OF_PY:  # a type: a required attribute
            out[k] = Attr(_ATTR_OF_PY[v], REQUIRED)
        elif isinstance(v, (bool, np.bool_)):
            raise CustomOpError(f"custom op '{op}': attribute '{k}' defaults to a bool; use 0 or 1 (ONNX has no "
                                f"bool attributes)")
        elif isinstance(v, (int, np.integer)):
            out[k] = Attr("int", int(v))
        elif isinstance(v, (float, np.floating)):
            out[k] = Attr("float", float(v))
        elif isinstance(v, str):
            out[k] = Attr("string", v)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, np.integer)) for x in v):
            out[k] = Attr("ints", [int(x) for x in v])
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float, np.number)) for x in v):
            out[k] = Attr("floats", [float(x) for x in v])
        else:
            raise CustomOpError(f"custom op '{op}': attribute '{k}' has default {v!r}; give an int, float, str, "
                                f"non-empty list of ints or floats, a type (int, float, str: required) or an Attr")
    return out


def _input_arity(op: str, fn: Callable, attrs: dict[str, Attr]) -> tuple[int, int]:
    """(least, most) inputs, from numpy_impl's positional parameters that are not attributes."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (0, 2**31)
    lo, hi = 0, 0
    for p in sig.parameters.values():
        if p.name in attrs:
            continue
        if p.kind == p.VAR_POSITIONAL:
            return (lo, 2**31)
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            hi += 1
            if p.default is p.empty:
                lo += 1
    return (lo, hi)


def _kernel_declared(source: str, kernel: str) -> bool:
    return re.search(rf"__global__\s+void\s+(__launch_bounds__\s*\([^)]*\)\s*)?{re.escape(kernel)}\s*\(",
                     source) is not None and re.search(r'extern\s+"C"', source) is not None


def register_custom_op(name: str, *, numpy_impl: Callable, infer_shape: Callable | str,
                       cuda_source: str | None = None, grad: Callable | None = None, domain: str = "custom",
                       kernel: str | None = None, attrs: dict | None = None, num_outputs: int = 1,
                       shape_params: bool = True, launch: Callable | None = None, doc: str = "") -> CustomOp:
    """Register (or replace, with a GraphcWarning) the op ``domain.name``; see the module docstring.

    ``attrs``: name -> default (int, float, str, list of ints/floats), a type (int, float, str) for a
    required attribute, or an ``Attr``; order matters: int and float attributes are passed to the CUDA
    kernel in this order. ``kernel``: the CUDA function's name (default ``name``). ``shape_params``: pass
    every input's and output's dims to the kernel. ``launch(shapes, props, **attrs) -> (grid, block)``
    replaces the default grid-stride launch (``shapes``: input shapes then output shapes; ``props``: the
    device's ``DeviceProps``). Raises CustomOpError for a bad declaration.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise CustomOpError(f"custom op name must be an identifier (letters, digits, _), got {name!r}")
    domain = canonical_domain(domain)
    where = f"{domain}.{name}"
    if domain in RESERVED_DOMAINS:
        raise CustomOpError(f"custom op '{name}': domain '{domain}' belongs to ONNX or graphc; give custom ops a "
                            f"domain of their own (the default is 'custom')")
    if not callable(numpy_impl):
        raise CustomOpError(f"custom op '{where}': numpy_impl must be a function (*inputs, **attrs) -> array(s), "
                            f"got {numpy_impl!r}; the NumPy backend and the tests run it")
    if not (infer_shape == "same" or callable(infer_shape)):
        raise CustomOpError(f"custom op '{where}': infer_shape must be a function (*input_types, **attrs) -> "
                            f"TensorType(s) or 'same', got {infer_shape!r}")
    if grad is not None and not callable(grad):
        raise CustomOpError(f"custom op '{where}': grad must be a function (ctx, inputs, outputs, output_grads, "
                            f"**attrs) -> input gradients, got {grad!r}")
    if launch is not None and not callable(launch):
        raise CustomOpError(f"custom op '{where}': launch must be a function (shapes, props, **attrs) -> "
                            f"(grid, block), got {launch!r}")
    if not isinstance(num_outputs, int) or num_outputs < 1:
        raise CustomOpError(f"custom op '{where}': num_outputs must be an int >= 1, got {num_outputs!r}")
    kernel = kernel or name
    if cuda_source is not None:
        if not isinstance(cuda_source, str):
            raise CustomOpError(f"custom op '{where}': cuda_source must be a string of CUDA C, got "
                                f"{type(cuda_source).__name__}")
        if not _kernel_declared(cuda_source, kernel):
            raise CustomOpError(f"custom op '{where}': cuda_source does not define the kernel "
                                f"'extern \"C\" __global__ void {kernel}(...)'; name the kernel '{kernel}' or pass "
                                f"kernel='<its name>'")
    schema = _attr_schema(where, attrs)
    op = CustomOp(name, domain, numpy_impl, infer_shape, cuda_source, kernel, grad, schema,
                  _input_arity(where, numpy_impl, schema), num_outputs, shape_params, launch, doc)
    key = (domain, name)
    if key in REGISTRY:
        if key not in CUSTOM_OPS:
            raise CustomOpError(f"custom op '{where}': an op of that name and domain is already part of graphc")
        warnings.warn(f"custom op '{where}' registered again: the new definition replaces the old one",
                      GraphcWarning, stacklevel=3)
        del REGISTRY[key]
    op.opdef = register(OpDef(
        name, eval=op._eval, infer=op._infer, attrs=schema, domain=domain, kind=Kind.OPAQUE,
        inputs=op.num_inputs, outputs=(1, num_outputs), grad=op._grad_rule if grad is not None else None,
        no_grad="" if grad is not None else
        f"custom op '{where}' was registered without a gradient: pass grad=fn to gc.custom_op",
        family=FAMILY, doc=doc or (numpy_impl.__doc__ or "").strip().split("\n")[0]))
    CUSTOM_OPS[key] = op
    return op


def unregister_custom_op(name: str, domain: str = "custom") -> None:
    """Remove a custom op from the table (tests; a name that is not registered is ignored)."""
    key = (canonical_domain(domain), name)
    if key in CUSTOM_OPS:
        del CUSTOM_OPS[key]
        REGISTRY.pop(key, None)


__all__ = ["CUSTOM_OPS", "CustomOp", "CustomOpError", "custom_op_of", "register_custom_op", "unregister_custom_op"]
