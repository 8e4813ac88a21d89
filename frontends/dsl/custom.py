"""``gc.custom_op``: register an operator written by the user (NumPy + CUDA C) and get a DSL function for it.

The registration itself is graphc.custom's (an OpDef in the operator table); this module wraps the
result in a ``CustomOpFunction`` that builds the op's nodes on DSL tensors through ``apply_op``, like
any built-in DSL function: ``y = my_gelu(x)``, ``y = my_conv(x, w, stride=2)``.
"""
from __future__ import annotations

from typing import Callable

from graphc.custom import CustomOp, register_custom_op

from .tensor import Tensor, apply_op, as_tensor


class CustomOpFunction:
    """A registered custom op as a DSL function: ``op(*inputs, name=None, **attrs) -> Tensor`` (a list when
    the op has several outputs). ``op.custom`` is the registration (graphc.custom.CustomOp); ``op.build(ctx,
    *values, **attrs)`` appends the op inside a gradient rule."""

    def __init__(self, custom: CustomOp):
        self.custom = custom
        self.__name__ = custom.name
        self.__doc__ = custom.doc or f"The custom op '{custom.qualified_name}'."

    @property
    def name(self) -> str:
        return self.custom.name

    @property
    def domain(self) -> str:
        return self.custom.domain

    def build(self, ctx, *inputs, **attrs):
        return self.custom.build(ctx, *inputs, **attrs)

    def __call__(self, *inputs, name: str | None = None, **attrs):
        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        graph = like.graph if like is not None else None
        vals = [x if x is None or isinstance(x, Tensor) else as_tensor(x, graph) for x in inputs]
        return apply_op(self.custom.name, vals, attrs, num_outputs=self.custom.num_outputs,
                        domain=self.custom.domain, name=name or self.custom.name)

    def __repr__(self) -> str:
        return f"<custom op '{self.custom.qualified_name}'>"


def custom_op(name: str, *, numpy_impl: Callable, infer_shape: Callable | str, cuda_source: str | None = None,
              grad: Callable | None = None, domain: str = "custom", kernel: str | None = None,
              attrs: dict | None = None, num_outputs: int = 1, shape_params: bool = True,
              launch: Callable | None = None, doc: str = "") -> CustomOpFunction:
    """Register the op ``domain.name`` (see graphc/custom.py and docs/custom_ops.md) and return its DSL
    function. Registering a name again replaces the op, with a GraphcWarning."""
    return CustomOpFunction(register_custom_op(
        name, numpy_impl=numpy_impl, infer_shape=infer_shape, cuda_source=cuda_source, grad=grad, domain=domain,
        kernel=kernel, attrs=attrs, num_outputs=num_outputs, shape_params=shape_params, launch=launch, doc=doc))


__all__ = ["CustomOpFunction", "custom_op"]
