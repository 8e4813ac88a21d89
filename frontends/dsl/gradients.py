"""Gradients on DSL tensors: ``gc.gradients(ys, xs)`` (a thin layer over ``graphc.autodiff.gradients``), and
the ways to shape them: ``gc.stop_gradient`` and the ``gc.custom_gradient`` decorator.

Both are recorded as per-node rules (``graphc.autodiff.GradOverride``) on an ``Identity`` node, so the graph
itself holds only ordinary ops: a custom gradient is written with gc ops and runs on every backend.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

from graphc.autodiff import GradOverride
from graphc.autodiff import gradients as _ir_gradients
from graphc.errors import GradientError, GraphBuildError

from .tensor import Tensor, _graph_of, apply_op, as_tensor


def _listed(x) -> tuple[list, bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def gradients(ys, xs, grad_ys=None, unconnected: str = "error"):
    """d(sum of ys)/d(x) for each x, as Tensors (a list when ``xs`` is a list, else one Tensor).

    A broken path raises GradientError naming the variable and the node that cuts it; with
    ``unconnected="none"`` (or ``"zero"``) such an x gets None (or zeros) instead. Gradients through
    ``gc.round``, ``gc.floor``, ``gc.ceil`` and ``gc.sign`` are zero (see ``gc.round``).
    """
    ys_l, _ = _listed(ys)
    xs_l, many = _listed(xs)
    g = _graph_of(ys_l + xs_l)
    gys = None
    if grad_ys is not None:
        gys_l, _ = _listed(grad_ys)
        gys = [None if gy is None else as_tensor(gy, g).value for gy in gys_l]
    outs = _ir_gradients(g, [as_tensor(y, g).value for y in ys_l], [as_tensor(x, g).value for x in xs_l], gys,
                         unconnected=unconnected, overrides=list(getattr(g, "grad_overrides", {}).values()))
    res = [None if v is None else Tensor(g, v) for v in outs]
    return res if many else res[0]


def _override(t: Tensor, rule: Callable, wrt: Sequence[Tensor] | None = None) -> None:
    node = t.op
    t.graph.grad_overrides[id(node)] = GradOverride(node, rule, None if wrt is None else [w.value for w in wrt])


def stop_gradient(x, name: str | None = None) -> Tensor:
    """x itself in the forward pass; in gradients a constant (its gradient is zero): ``tf.stop_gradient``,
    PyTorch's ``x.detach()``. A straight-through estimator: ``x + gc.stop_gradient(gc.round(x) - x)``."""
    x = as_tensor(x)
    y = apply_op("Identity", [x], name=name or "stop_gradient")
    _override(y, lambda ctx, node, dys: [ctx.zeros_like(node.inputs[0])])
    return y


def custom_gradient(fn: Callable) -> Callable:
    """Decorator: ``fn(*inputs)`` returns ``(y, grad)`` where ``grad(dy)`` gives the gradient for each tensor
    input (a Tensor, or a list/tuple with one entry per tensor input; None for "no gradient"). Both are
    written with gc ops, so they run on every backend and can be differentiated again::

        @gc.custom_gradient
        def round_ste(x):
            return gc.round(x), lambda dy: dy        # rounds forward, passes gradients straight through

    Variables ``fn`` reads get no gradient through it: pass them as inputs. ``y`` is one tensor.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in args if isinstance(a, Tensor)]
        if not tensors:
            raise GraphBuildError(f"custom_gradient '{fn.__name__}': pass the inputs to differentiate as tensors "
                                  f"(positional arguments), got none")
        out = fn(*args, **kwargs)
        if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
            raise GraphBuildError(f"custom_gradient '{fn.__name__}' must return (y, grad_fn), got "
                                  f"{type(out).__name__}")
        y, grad_fn = out
        if not isinstance(y, Tensor):
            raise GraphBuildError(f"custom_gradient '{fn.__name__}': y must be one Tensor, got {type(y).__name__}")
        g = y.graph
        anchor = apply_op("Identity", [y], name=f"{fn.__name__}_custom_gradient")

        def rule(ctx, node, dys):
            if dys[0] is None:
                return [None] * len(tensors)
            with g.as_default():
                grads = grad_fn(Tensor(g, dys[0]))
            listed = list(grads) if isinstance(grads, (list, tuple)) else [grads]
            if len(listed) != len(tensors):
                raise GradientError(f"custom_gradient '{fn.__name__}': its gradient function returned "
                                    f"{len(listed)} gradient(s) for {len(tensors)} tensor input(s)")
            vals = []
            for x, gx in zip(tensors, listed):
                if gx is None:
                    vals.append(None)
                    continue
                gx = as_tensor(gx, g, x.dtype)
                if gx.dtype != x.dtype or (gx.shape is not None and x.shape is not None and
                                           len(gx.shape) != len(x.shape)):
                    raise GradientError(f"custom_gradient '{fn.__name__}': the gradient for input '{x.name}' "
                                        f"({x.type}) must have its type and shape, got '{gx.name}' ({gx.type})")
                vals.append(gx.value)
            return vals

        _override(anchor, rule, tensors)
        return anchor

    return wrapper


__all__ = ["custom_gradient", "gradients", "stop_gradient"]
