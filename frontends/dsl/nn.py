"""Neural-network functions of tensors (``gc.nn``, TensorFlow 1's ``tf.nn``): activations, convolutions
with filter tensors you hold, pooling, ``bias_add``, ``moments``, ``batch_normalization``, dropout, losses.

Nothing here creates variables: the layers that own their weights are ``gc.layers`` (``gc.layers.Dense``,
``gc.layers.conv2d(x, 16, 3)``...). Layouts are ONNX's: images NCHW (channels first), sequences for conv1d
NCL; a convolution filter is ``[out_channels, in_channels / groups, *kernel]`` (OIHW), a transposed
convolution's ``[in_channels, out_channels / groups, *kernel]``. ``padding`` is ``"VALID"`` (none),
``"SAME"`` (output size ceil(input / stride), the extra pixel at the end, as TensorFlow), in any case,
or explicit sizes: an int, one int per spatial axis, or ``(begin, end)`` pairs.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import GraphBuildError
from graphc.ir import DType

from .losses import (binary_cross_entropy, mse, softmax_cross_entropy,  # noqa: F401  (gc.nn.* spellings)
                     softmax_cross_entropy_with_soft_labels)
from .math import _ints, reduce_mean, reshape, sigmoid, tanh  # noqa: F401
from .tensor import Tensor, apply_op, as_tensor


# ---- activations --------------------------------------------------------------------------
def relu(x) -> Tensor:
    """max(x, 0), elementwise."""
    return apply_op("Relu", [as_tensor(x)])


def gelu(x, approximate: str = "none") -> Tensor:
    """GELU, exact (erf) or ``approximate="tanh"``."""
    return apply_op("Gelu", [as_tensor(x)], {"approximate": approximate})


def silu(x) -> Tensor:
    """x * sigmoid(x) (swish), elementwise."""
    x = as_tensor(x)
    return x * sigmoid(x)


def softplus(x) -> Tensor:
    """log(1 + exp(x)), elementwise."""
    return apply_op("Softplus", [as_tensor(x)])


def leaky_relu(x, alpha: float = 0.01) -> Tensor:
    """x where x >= 0, else alpha * x."""
    return apply_op("LeakyRelu", [as_tensor(x)], {"alpha": float(alpha)})


def softmax(x, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``."""
    return apply_op("Softmax", [as_tensor(x)], {"axis": axis})


def log_softmax(x, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis``, computed stably."""
    return apply_op("LogSoftmax", [as_tensor(x)], {"axis": axis})


# ---- convolutions and pooling with tensors the caller holds -------------------------------------
def _tuple(v, n: int, what: str = "value") -> list[int]:
    if isinstance(v, (int, np.integer)):
        return [int(v)] * n
    v = [int(a) for a in v]
    if len(v) != n:
        raise GraphBuildError(f"{what} must be an int or {n} ints (one per spatial axis), got {v}")
    return v


def _pad_attrs(what: str, padding, x: Tensor, kernel: list[int], strides: list[int],
               dilations: list[int]) -> dict:
    """The ``pads`` (or ``auto_pad``) attribute of a Conv/pool node for a ``padding`` argument."""
    n = len(kernel)
    eff = [(k - 1) * d for k, d in zip(kernel, dilations)]
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return {"pads": [0] * (2 * n)}
        if mode == "causal":
            if n != 1:
                raise GraphBuildError(f"{what}: padding 'causal' is for 1-D convolutions, got {n} spatial axes")
            return {"pads": eff + [0] * n}
        if mode == "same":
            if all(s == 1 for s in strides):
                return {"pads": [e // 2 for e in eff] + [e - e // 2 for e in eff]}
            spatial = x.shape[2:] if x.shape is not None else None
            if spatial is None or not all(isinstance(d, int) for d in spatial):
                return {"auto_pad": "SAME_UPPER"}  # sizes known only at run time: the op resolves it per input
            total = [max((-(-d // s) - 1) * s + e + 1 - d, 0) for d, s, e in zip(spatial, strides, eff)]
            return {"pads": [t // 2 for t in total] + [t - t // 2 for t in total]}
        raise GraphBuildError(f"{what}: padding must be 'SAME', 'VALID' (any case) or sizes, got {padding!r}")
    if isinstance(padding, (int, np.integer)):
        return {"pads": [int(padding)] * (2 * n)}
    p = list(padding)
    if len(p) == n and all(isinstance(a, (tuple, list)) and len(a) == 2 for a in p):
        return {"pads": [int(a[0]) for a in p] + [int(a[1]) for a in p]}
    p = _tuple(p, n, f"{what}: padding")
    return {"pads": p + p}


def _check_rank(what: str, x: Tensor, rank: int) -> None:
    if x.ndim is not None and x.ndim != rank + 2:
        raise GraphBuildError(f"{what}: input '{x.name}' must have rank {rank + 2} (N, C, {rank} spatial), "
                              f"got shape {list(x.shape)}")


def _filters(what: str, filters, x: Tensor, rank: int, layout: str) -> Tensor:
    if not isinstance(filters, (Tensor, np.ndarray)):
        raise GraphBuildError(f"{what}: filters must be a tensor of shape {layout}, got {type(filters).__name__} "
                              f"{filters!r} (to create the filter variables, use gc.layers.conv{rank}d(x, filters, "
                              f"kernel_size))")
    w = as_tensor(filters, x.graph)
    if w.shape is None or len(w.shape) != rank + 2 or not all(isinstance(d, int) for d in w.shape[2:]):
        raise GraphBuildError(f"{what}: filters '{w.name}' must have shape {layout} with a known kernel size, "
                              f"got {None if w.shape is None else list(w.shape)}")
    return w


def _conv(what: str, x: Tensor, w: Tensor, b, strides, padding, dilations, groups: int) -> Tensor:
    rank = len(w.shape) - 2
    kernel = [int(d) for d in w.shape[2:]]
    s, d = _tuple(strides, rank, f"{what}: strides"), _tuple(dilations, rank, f"{what}: dilations")
    attrs = {"kernel_shape": kernel, "strides": s, "dilations": d, "group": int(groups),
             **_pad_attrs(what, padding, x, kernel, s, d)}
    return apply_op("Conv", [x, w, b], attrs)


def _convolution(rank: int, x, filters, strides, padding, dilations, groups: int, name: str | None) -> Tensor:
    what = f"gc.nn.conv{rank}d"
    x = as_tensor(x)
    _check_rank(what, x, rank)
    w = _filters(what, filters, x, rank, "[out_channels, in_channels / groups, " +
                 ", ".join(["kd", "kh", "kw"][3 - rank:]) + "]")
    return _conv(what, x, w, None, strides, padding, dilations, groups)


def conv1d(x, filters, strides=1, padding="VALID", dilations=1, groups: int = 1, name: str | None = None) -> Tensor:
    """1-D convolution of x [N, C, L] with the filter tensor ``filters`` [out, C / groups, k]; ``padding``
    "VALID", "SAME", "causal" (left only) or sizes. The layer that owns its filters is gc.layers.Conv1D."""
    return _convolution(1, x, filters, strides, padding, dilations, groups, name)


def conv2d(x, filters, strides=1, padding="VALID", dilations=1, groups: int = 1, name: str | None = None) -> Tensor:
    """2-D convolution of x [N, C, H, W] with the filter tensor ``filters`` [out, C / groups, kh, kw]
    (``tf.nn.conv2d`` in NCHW/OIHW layout). The layer that owns its filters is gc.layers.Conv2D."""
    return _convolution(2, x, filters, strides, padding, dilations, groups, name)


def conv3d(x, filters, strides=1, padding="VALID", dilations=1, groups: int = 1, name: str | None = None) -> Tensor:
    """3-D convolution of x [N, C, D, H, W] with the filter tensor ``filters`` [out, C / groups, kd, kh, kw]."""
    return _convolution(3, x, filters, strides, padding, dilations, groups, name)


def conv2d_transpose(x, filters, output_shape=None, strides=1, padding="VALID", dilations=1,
                     groups: int = 1) -> Tensor:
    """The transpose (gradient) of conv2d: x [N, C, H, W], ``filters`` [C, out / groups, kh, kw] (ONNX
    ConvTranspose's layout). Output size: "VALID" ``(H - 1) * stride + (kh - 1) * dilation + 1``, "SAME"
    ``H * stride``; ``output_shape`` ([out_h, out_w], or the full [N, out, out_h, out_w]) overrides both."""
    what = "gc.nn.conv2d_transpose"
    x = as_tensor(x)
    _check_rank(what, x, 2)
    w = _filters(what, filters, x, 2, "[in_channels, out_channels / groups, kh, kw]")
    kernel = [int(d) for d in w.shape[2:]]
    s, d = _tuple(strides, 2, f"{what}: strides"), _tuple(dilations, 2, f"{what}: dilations")
    attrs = {"kernel_shape": kernel, "strides": s, "dilations": d, "group": int(groups)}
    if output_shape is not None:
        attrs["output_shape"] = [int(v) for v in list(output_shape)[-2:]]
        if isinstance(padding, str) and padding.lower() == "same":
            attrs["auto_pad"] = "SAME_UPPER"
    elif isinstance(padding, str) and padding.lower() == "same":
        eff = [(k - 1) * dd + 1 for k, dd in zip(kernel, d)]
        total = [max(e - st, 0) for e, st in zip(eff, s)]
        attrs["pads"] = [t // 2 for t in total] + [t - t // 2 for t in total]
        attrs["output_padding"] = [max(st - e, 0) for e, st in zip(eff, s)]
    else:
        attrs.update(_pad_attrs(what, padding, x, kernel, s, d))
    return apply_op("ConvTranspose", [x, w], attrs)


def _pool(op: str, what: str, x, ksize, strides, padding) -> Tensor:
    x = as_tensor(x)
    if x.ndim is None or x.ndim < 3:
        raise GraphBuildError(f"{what}: input '{x.name}' must be [N, C, spatial...] (rank 3 to 5), got shape "
                              f"{None if x.shape is None else list(x.shape)}")
    rank = x.ndim - 2
    k = _tuple(ksize, rank, f"{what}: ksize")
    s = _tuple(strides if strides is not None else ksize, rank, f"{what}: strides")
    return apply_op(op, [x], {"kernel_shape": k, "strides": s, **_pad_attrs(what, padding, x, k, s, [1] * rank)})


def max_pool(x, ksize, strides=None, padding="VALID") -> Tensor:
    """Max over windows of ``ksize`` (an int or one per spatial axis) of x [N, C, spatial...]; ``strides``
    default to ``ksize``. Padded positions never win."""
    return _pool("MaxPool", "gc.nn.max_pool", x, ksize, strides, padding)


def avg_pool(x, ksize, strides=None, padding="VALID") -> Tensor:
    """Mean over windows of ``ksize`` of x [N, C, spatial...]; with "SAME" padding the border windows
    average only the real positions (as TensorFlow)."""
    return _pool("AveragePool", "gc.nn.avg_pool", x, ksize, strides, padding)


def bias_add(x, bias) -> Tensor:
    """x + bias along the channel axis (axis 1: NCHW, or the last axis of a [N, C] input)."""
    x = as_tensor(x)
    b = as_tensor(bias, x.graph)
    if b.ndim != 1:
        raise GraphBuildError(f"gc.nn.bias_add: bias '{b.name}' must be 1-D, got shape {b.shape}")
    if x.ndim is None or x.ndim < 2:
        raise GraphBuildError(f"gc.nn.bias_add: input '{x.name}' must have rank >= 2 (channels on axis 1), "
                              f"got shape {x.shape}")
    c, bc = x.shape[1], b.shape[0]
    if isinstance(c, int) and isinstance(bc, int) and c != bc:
        raise GraphBuildError(f"gc.nn.bias_add: bias '{b.name}' has {bc} elements but input '{x.name}' has {c} "
                              f"channels (axis 1 of {list(x.shape)})")
    return x + (b if x.ndim == 2 else reshape(b, [-1] + [1] * (x.ndim - 2)))


def moments(x, axes, keepdims: bool = False) -> tuple[Tensor, Tensor]:
    """(mean, variance) of x over ``axes`` (the population variance, as tf.nn.moments)."""
    x = as_tensor(x)
    mean = reduce_mean(x, axes, keepdims=True)
    d = x - mean
    var = reduce_mean(d * d, axes, keepdims=keepdims)
    return (mean if keepdims else reduce_mean(x, axes)), var


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon: float) -> Tensor:
    """``(x - mean) / sqrt(variance + variance_epsilon) * scale + offset`` with broadcasting (offset and scale
    may be None), as tf.nn.batch_normalization; the statistics come from ``moments`` or running averages."""
    x = as_tensor(x)
    y = (x - mean) / apply_op("Sqrt", [as_tensor(variance, x.graph) + variance_epsilon])
    if scale is not None:
        y = y * scale
    if offset is not None:
        y = y + offset
    return y


def _check_flag(flag: Tensor, what: str) -> None:
    """A run-time switch must be a boolean scalar tensor."""
    if flag.dtype != DType.bool or (flag.shape is not None and len(flag.shape) != 0):
        raise GraphBuildError(f"{what}: `training` must be a Python bool or a boolean scalar tensor, got "
                              f"'{flag.name}' of type {flag.type}")


def dropout(x, rate, training=True, seed: int | None = None) -> Tensor:
    """Zeroes each element with probability ``rate`` and scales the rest by 1 / (1 - rate); x itself when not
    training. ``rate`` is a number in [0, 1) or a float tensor (``1 - keep_prob`` of a placeholder);
    ``training`` a bool or a boolean scalar tensor (one graph for training and evaluation).

    Masks are reproducible and new at every run: element i of run t keeps when ``frac(a_i + t * b_i) >= rate``,
    where a_i and b_i (in [1/4, 3/4)) are drawn once from ``seed`` (default: the next seed of ``Graph(seed)``)
    and t is the graph's run counter, which ``gc.Session`` feeds with its run number. The forward and backward
    passes of one run share the mask.
    """
    x = as_tensor(x)
    g = x.graph
    if isinstance(training, Tensor):
        _check_flag(training, "gc.nn.dropout")
    elif not training:
        return x
    if isinstance(rate, Tensor):
        if rate.ndim not in (None, 0) or rate.dtype is None or not rate.dtype.is_float:
            raise GraphBuildError(f"gc.nn.dropout: a rate tensor must be a float scalar, got '{rate.name}' of "
                                  f"type {rate.type}")
        keep_scale = 1.0 / (1.0 - rate)
        threshold = rate
    else:
        if rate == 0.0 and not isinstance(training, Tensor):
            return x
        if not 0.0 <= rate < 1.0:
            raise GraphBuildError(f"gc.nn.dropout: rate must be in [0, 1), got {rate}")
        keep_scale = 1.0 / (1.0 - rate)
        threshold = rate
    from .variables import run_counter

    s1 = g.next_seed() if seed is None else int(seed)
    s2 = int(np.random.SeedSequence([s1, 1]).generate_state(1)[0])
    f64 = DType.float64.value
    a = apply_op("RandomUniformLike", [x], {"low": 0.0, "high": 1.0, "seed": float(s1), "dtype": f64})
    b = apply_op("RandomUniformLike", [x], {"low": 0.25, "high": 0.75, "seed": float(s2), "dtype": f64})
    u = a + run_counter(g) * b
    u = u - apply_op("Floor", [u])
    thr = threshold if not isinstance(threshold, Tensor) else apply_op("Cast", [threshold], {"to": f64})
    keep = apply_op("Cast", [u >= thr], {"to": x.dtype.value})
    if isinstance(keep_scale, Tensor):
        keep_scale = apply_op("Cast", [keep_scale], {"to": x.dtype.value})
    y = x * keep * keep_scale
    if isinstance(training, Tensor):
        from .math import where

        y = where(training, y, x)
    return y


def causal_mask_bias(scores: Tensor) -> Tensor:
    """0 where a query may attend (key position <= query position), -1e9 elsewhere; shape [T, T] of scores."""
    g = scores.graph
    tt_shape = apply_op("Slice", [apply_op("Shape", [scores]), _ints(g, [-2], "starts"),
                                  _ints(g, [np.iinfo(np.int64).max], "ends")])
    ones = apply_op("ConstantOfShape", [tt_shape], {"value": np.ones(1, dtype=scores.dtype.np)})
    lower = apply_op("Trilu", [ones], {"upper": 0})
    return (lower - 1.0) * 1e9


__all__ = ["avg_pool", "batch_normalization", "bias_add", "binary_cross_entropy", "causal_mask_bias", "conv1d",
           "conv2d", "conv2d_transpose", "conv3d", "dropout", "gelu", "leaky_relu", "log_softmax", "max_pool",
           "moments", "mse", "relu", "sigmoid", "silu", "softmax", "softmax_cross_entropy",
           "softmax_cross_entropy_with_soft_labels", "softplus", "tanh"]
