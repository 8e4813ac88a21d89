"""``gc.gradients(ys, xs)`` on DSL tensors: a thin layer over ``graphc.autodiff.gradients``."""
from __future__ import annotations

from typing import Sequence

from graphc.autodiff import gradients as _ir_gradients

from .tensor import Tensor, _graph_of, as_tensor


def _listed(x) -> tuple[list, bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def gradients(ys, xs, grad_ys=None, unconnected: str = "error"):
    """d(sum of ys)/d(x) for each x, as Tensors (a list when ``xs`` is a list, else one Tensor).

    A broken path raises GradientError naming the variable and the node that cuts it; with
    ``unconnected="none"`` (or ``"zero"``) such an x gets None (or zeros) instead.
    """
    ys_l, _ = _listed(ys)
    xs_l, many = _listed(xs)
    g = _graph_of(ys_l + xs_l)
    gys = None
    if grad_ys is not None:
        gys_l, _ = _listed(grad_ys)
        gys = [None if gy is None else as_tensor(gy, g).value for gy in gys_l]
    outs = _ir_gradients(g, [as_tensor(y, g).value for y in ys_l], [as_tensor(x, g).value for x in xs_l], gys,
                         unconnected=unconnected)
    res = [None if v is None else Tensor(g, v) for v in outs]
    return res if many else res[0]


__all__ = ["gradients"]
