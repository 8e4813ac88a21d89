"""Neural-network layers and activations (``gc.nn``): dense, conv, pooling, norms, embedding, attention.

Layers that own variables exist as objects (``Dense(128)``, callable on several inputs with shared
weights) and as functions (``dense(x, 128)`` makes a new layer each call). Image layouts are NCHW
and sequence layouts for conv1d are NCL, as in ONNX.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from graphc.errors import GraphBuildError
from graphc.ir import DType

from . import initializers as init
from .graph import Operation
from .losses import binary_cross_entropy, mse, softmax_cross_entropy  # noqa: F401  (gc.nn.* spellings)
from .math import _ints, reduce_mean, reshape, sigmoid, split, tanh, transpose  # noqa: F401
from .tensor import Tensor, apply_op, as_tensor, const_value
from .variables import Variable, assign


# ---- activations --------------------------------------------------------------------------
def relu(x) -> Tensor:
    return apply_op("Relu", [as_tensor(x)])


def gelu(x, approximate: str = "none") -> Tensor:
    """GELU, exact (erf) or ``approximate="tanh"``."""
    return apply_op("Gelu", [as_tensor(x)], {"approximate": approximate})


def silu(x) -> Tensor:
    x = as_tensor(x)
    return x * sigmoid(x)


def softplus(x) -> Tensor:
    return apply_op("Softplus", [as_tensor(x)])


def leaky_relu(x, alpha: float = 0.01) -> Tensor:
    return apply_op("LeakyRelu", [as_tensor(x)], {"alpha": float(alpha)})


def softmax(x, axis: int = -1) -> Tensor:
    return apply_op("Softmax", [as_tensor(x)], {"axis": axis})


def log_softmax(x, axis: int = -1) -> Tensor:
    return apply_op("LogSoftmax", [as_tensor(x)], {"axis": axis})


# ---- layers with variables ----------------------------------------------------------------
def _static_dim(x: Tensor, axis: int, what: str) -> int:
    s = x.shape
    if s is None or not isinstance(s[axis], int):
        raise GraphBuildError(f"{what}: dim {axis} of input '{x.name}' must be known while building "
                              f"(got shape {None if s is None else list(s)}) to size the weights")
    return s[axis]


class Layer:
    """A layer whose variables are created on its first call and shared by later calls."""

    def __init__(self, name: str):
        self.name = name
        self.built = False

    def variables(self) -> list[Tensor]:
        return [v for v in vars(self).values() if isinstance(v, Tensor)]


class Dense(Layer):
    """y = x @ W + b over the last axis; W is [in, units]."""

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer=None,
                 name: str = "dense"):
        super().__init__(name)
        self.units, self.activation, self.use_bias = units, activation, use_bias
        self.kernel_initializer = kernel_initializer or init.glorot_uniform()

    def __call__(self, x) -> Tensor:
        x = as_tensor(x)
        if not self.built:
            n_in = _static_dim(x, -1, f"dense layer '{self.name}'")
            with x.graph.as_default():
                self.w = Variable(self.kernel_initializer, name=f"{self.name}/w", shape=[n_in, self.units])
                self.b = Variable(init.zeros(), name=f"{self.name}/b", shape=[self.units]) if self.use_bias else None
            self.built = True
        y = x @ self.w
        if self.use_bias:
            y = y + self.b
        return self.activation(y) if self.activation is not None else y


def dense(x, units: int, activation=None, use_bias: bool = True, kernel_initializer=None,
          name: str = "dense") -> Tensor:
    return Dense(units, activation, use_bias, kernel_initializer, name)(x)


def _tuple(v, n: int) -> list[int]:
    return [int(v)] * n if isinstance(v, (int, np.integer)) else [int(a) for a in v]


def _conv_pads(padding, kernel: list[int], dilation: list[int], causal: bool = False) -> list[int]:
    n = len(kernel)
    eff = [(k - 1) * d for k, d in zip(kernel, dilation)]
    if causal:
        return eff + [0] * n
    if padding == "valid":
        return [0] * (2 * n)
    if padding == "same":
        return [e // 2 for e in eff] + [e - e // 2 for e in eff]
    p = _tuple(padding, n)
    return p + p


class _Conv(Layer):
    def __init__(self, rank: int, filters: int, kernel_size, strides=1, padding="valid", dilation=1, groups: int = 1,
                 use_bias: bool = True, causal: bool = False, kernel_initializer=None, name: str = "conv"):
        super().__init__(name)
        self.rank, self.filters, self.groups, self.use_bias, self.causal = rank, filters, groups, use_bias, causal
        self.kernel = _tuple(kernel_size, rank)
        self.strides = _tuple(strides, rank)
        self.dilation = _tuple(dilation, rank)
        self.padding = padding
        self.kernel_initializer = kernel_initializer or init.he_uniform()

    def __call__(self, x) -> Tensor:
        x = as_tensor(x)
        if x.ndim is not None and x.ndim != self.rank + 2:
            raise GraphBuildError(f"conv{self.rank}d layer '{self.name}': input '{x.name}' must have rank "
                                  f"{self.rank + 2} (N, C, spatial...), got shape {list(x.shape)}")
        if not self.built:
            c_in = _static_dim(x, 1, f"conv layer '{self.name}'")
            if c_in % self.groups or self.filters % self.groups:
                raise GraphBuildError(f"conv layer '{self.name}': channels in ({c_in}) and filters "
                                      f"({self.filters}) must be divisible by groups ({self.groups})")
            with x.graph.as_default():
                self.w = Variable(self.kernel_initializer, name=f"{self.name}/w",
                                  shape=[self.filters, c_in // self.groups, *self.kernel])
                self.b = Variable(init.zeros(), name=f"{self.name}/b", shape=[self.filters]) if self.use_bias else None
            self.built = True
        attrs = {"kernel_shape": self.kernel, "strides": self.strides, "dilations": self.dilation,
                 "group": self.groups, "pads": _conv_pads(self.padding, self.kernel, self.dilation, self.causal)}
        return apply_op("Conv", [x, self.w, self.b], attrs)


class Conv2D(_Conv):
    """2-D convolution over NCHW input; W is [filters, C/groups, kh, kw]."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation=1, groups=1, use_bias=True,
                 kernel_initializer=None, name="conv2d"):
        super().__init__(2, filters, kernel_size, strides, padding, dilation, groups, use_bias, False,
                         kernel_initializer, name)


class Conv1D(_Conv):
    """1-D convolution over NCL input; ``causal=True`` pads on the left only; ``groups=C`` is depthwise."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation=1, groups=1, use_bias=True,
                 causal=False, kernel_initializer=None, name="conv1d"):
        super().__init__(1, filters, kernel_size, strides, padding, dilation, groups, use_bias, causal,
                         kernel_initializer, name)


def conv2d(x, filters: int, kernel_size, strides=1, padding="valid", dilation=1, groups: int = 1,
           use_bias: bool = True, kernel_initializer=None, name: str = "conv2d") -> Tensor:
    return Conv2D(filters, kernel_size, strides, padding, dilation, groups, use_bias, kernel_initializer, name)(x)


def conv1d(x, filters: int, kernel_size, strides=1, padding="valid", dilation=1, groups: int = 1,
           use_bias: bool = True, causal: bool = False, kernel_initializer=None, name: str = "conv1d") -> Tensor:
    return Conv1D(filters, kernel_size, strides, padding, dilation, groups, use_bias, causal, kernel_initializer,
                  name)(x)


def _pool(op: str, x, pool_size, strides, padding, rank: int) -> Tensor:
    x = as_tensor(x)
    k = _tuple(pool_size, rank)
    s = _tuple(strides if strides is not None else pool_size, rank)
    attrs = {"kernel_shape": k, "strides": s, "pads": _conv_pads(padding, k, [1] * rank)}
    return apply_op(op, [x], attrs)


def max_pool2d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    return _pool("MaxPool", x, pool_size, strides, padding, 2)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    return _pool("AveragePool", x, pool_size, strides, padding, 2)


def max_pool1d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    return _pool("MaxPool", x, pool_size, strides, padding, 1)


def avg_pool1d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    return _pool("AveragePool", x, pool_size, strides, padding, 1)


class BatchNorm(Layer):
    """Batch normalization over axis 1 (channels). Training mode normalizes with the batch's statistics
    and adds the running-statistics updates to ``graph.update_ops`` (``minimize`` runs them); inference
    mode uses the running statistics (an ONNX BatchNormalization node).
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, name: str = "batch_norm"):
        super().__init__(name)
        self.momentum, self.epsilon = momentum, epsilon

    def __call__(self, x, training: bool) -> Tensor:
        x = as_tensor(x)
        if not self.built:
            c = _static_dim(x, 1, f"batch_norm '{self.name}'")
            with x.graph.as_default():
                self.gamma = Variable(init.ones(), name=f"{self.name}/gamma", shape=[c])
                self.beta = Variable(init.zeros(), name=f"{self.name}/beta", shape=[c])
                self.mean = Variable(init.zeros(), name=f"{self.name}/moving_mean", shape=[c], trainable=False)
                self.var = Variable(init.ones(), name=f"{self.name}/moving_var", shape=[c], trainable=False)
            self.built = True
        if not training:
            return apply_op("BatchNormalization", [x, self.gamma, self.beta, self.mean, self.var],
                            {"epsilon": self.epsilon})
        axes = [a for a in range(x.ndim) if a != 1]
        bshape = [1, -1] + [1] * (x.ndim - 2)
        mu = reduce_mean(x, axes, keepdims=True)
        d = x - mu
        var = reduce_mean(d * d, axes, keepdims=True)
        y = d / apply_op("Sqrt", [var + self.epsilon])
        y = y * reshape(self.gamma, bshape) + reshape(self.beta, bshape)
        m = self.momentum
        upd_mean = assign(self.mean, self.mean * m + reshape(mu, [-1]) * (1 - m))
        upd_var = assign(self.var, self.var * m + reshape(var, [-1]) * (1 - m))
        x.graph.update_ops.extend([upd_mean, upd_var])
        return y


def batch_norm(x, training: bool, momentum: float = 0.9, epsilon: float = 1e-5, name: str = "batch_norm") -> Tensor:
    return BatchNorm(momentum, epsilon, name)(x, training)


class LayerNorm(Layer):
    """Normalizes over the last axis, then scales and shifts (gamma, beta of that axis's size)."""

    def __init__(self, epsilon: float = 1e-5, name: str = "layer_norm"):
        super().__init__(name)
        self.epsilon = epsilon

    def __call__(self, x) -> Tensor:
        x = as_tensor(x)
        if not self.built:
            c = _static_dim(x, -1, f"layer_norm '{self.name}'")
            with x.graph.as_default():
                self.gamma = Variable(init.ones(), name=f"{self.name}/gamma", shape=[c])
                self.beta = Variable(init.zeros(), name=f"{self.name}/beta", shape=[c])
            self.built = True
        return apply_op("LayerNormalization", [x, self.gamma, self.beta], {"axis": -1, "epsilon": self.epsilon})


def layer_norm(x, epsilon: float = 1e-5, name: str = "layer_norm") -> Tensor:
    return LayerNorm(epsilon, name)(x)


class Embedding(Layer):
    """Rows of a [vocab, dim] table picked by integer ids: ids [...] -> [..., dim]."""

    def __init__(self, vocab_size: int, dim: int, initializer=None, name: str = "embedding"):
        super().__init__(name)
        self.vocab_size, self.dim = vocab_size, dim
        self.initializer = initializer or init.normal(0.0, 0.02)

    def __call__(self, ids) -> Tensor:
        ids = as_tensor(ids)
        if not self.built:
            with ids.graph.as_default():
                self.table = Variable(self.initializer, name=f"{self.name}/table", shape=[self.vocab_size, self.dim])
            self.built = True
        return apply_op("Gather", [self.table, ids], {"axis": 0})


def embedding(ids, vocab_size: int, dim: int, initializer=None, name: str = "embedding") -> Tensor:
    return Embedding(vocab_size, dim, initializer, name)(ids)


def dropout(x, rate: float, training: bool = True) -> Tensor:
    """Zeroes each element with probability ``rate`` and scales the rest by 1/(1-rate); identity when not training."""
    x = as_tensor(x)
    if not training or rate == 0.0:
        return x
    if not 0.0 <= rate < 1.0:
        raise GraphBuildError(f"dropout: rate must be in [0, 1), got {rate}")
    u = apply_op("RandomUniformLike", [x], {"low": 0.0, "high": 1.0})
    keep = apply_op("Cast", [u >= rate], {"to": x.dtype.value})
    return x * keep * (1.0 / (1.0 - rate))


# ---- attention ----------------------------------------------------------------------------
def causal_mask_bias(scores: Tensor) -> Tensor:
    """0 where a query may attend (key position <= query position), -1e9 elsewhere; shape [T, T] of scores."""
    g = scores.graph
    tt_shape = apply_op("Slice", [apply_op("Shape", [scores]), _ints(g, [-2], "starts"),
                                  _ints(g, [np.iinfo(np.int64).max], "ends")])
    ones = apply_op("ConstantOfShape", [tt_shape], {"value": np.ones(1, dtype=scores.dtype.np)})
    lower = apply_op("Trilu", [ones], {"upper": 0})
    return (lower - 1.0) * 1e9


class CausalSelfAttention(Layer):
    """Multi-head self-attention where position t sees positions <= t: x [B, T, C] -> [B, T, C]."""

    def __init__(self, n_heads: int, name: str = "attn"):
        super().__init__(name)
        self.n_heads = n_heads

    def __call__(self, x) -> Tensor:
        x = as_tensor(x)
        c = _static_dim(x, -1, f"causal_self_attention '{self.name}'")
        h = self.n_heads
        if c % h:
            raise GraphBuildError(f"causal_self_attention '{self.name}': width {c} is not divisible by "
                                  f"{h} heads")
        if not self.built:
            self.qkv = Dense(3 * c, name=f"{self.name}/qkv")
            self.proj = Dense(c, name=f"{self.name}/proj")
            self.built = True
        d = c // h
        q, k, v = split(self.qkv(x), 3, axis=-1)
        q, k, v = (transpose(reshape(t, [0, 0, h, d]), [0, 2, 1, 3]) for t in (q, k, v))  # [B, H, T, D]
        scores = (q @ transpose(k, [0, 1, 3, 2])) * (1.0 / math.sqrt(d))
        att = softmax(scores + causal_mask_bias(scores), axis=-1)
        y = transpose(att @ v, [0, 2, 1, 3])
        return self.proj(reshape(y, [0, 0, c]))


def causal_self_attention(x, n_heads: int, name: str = "attn") -> Tensor:
    return CausalSelfAttention(n_heads, name)(x)


__all__ = ["BatchNorm", "CausalSelfAttention", "Conv1D", "Conv2D", "Dense", "Embedding", "Layer", "LayerNorm",
           "avg_pool1d", "avg_pool2d", "batch_norm", "binary_cross_entropy", "causal_mask_bias",
           "causal_self_attention", "conv1d", "conv2d", "dense", "dropout", "embedding", "gelu", "layer_norm",
           "leaky_relu", "log_softmax", "max_pool1d", "max_pool2d", "mse", "relu", "sigmoid", "silu", "softmax",
           "softmax_cross_entropy", "softplus", "tanh"]
