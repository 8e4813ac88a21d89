"""Layers that own variables (``gc.layers``, TensorFlow 1's ``tf.layers``): Dense, convolutions, norms,
embedding, attention and recurrent cells.

Each layer exists as an object (``Dense(128)``, callable on several inputs with shared weights: its
variables are created on the first call) and, for the common ones, as a function (``dense(x, 128)``
makes a new layer each call). The layers compute with the functions of tensors in ``gc.nn``
(``gc.nn.conv2d(x, filters, ...)`` is the convolution with a filter tensor you hold). Image layouts
are NCHW, sequence layouts for conv1d NCL, as in ONNX; recurrent inputs are [batch, time, features].
"""
from __future__ import annotations

import math
import numpy as np

from graphc.errors import GraphBuildError
from graphc.ir import DType

from . import initializers as init
from . import nn
from .math import concat, reduce_mean, reshape, sigmoid, split, tanh, transpose, zeros_like
from .tensor import Tensor, apply_op, as_tensor, const_value
from .variables import Variable, assign


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
        """The layer's variables (after its first call), in creation order."""
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
                self.w = Variable(self.kernel_initializer, name=f"{self.name}/w", shape=[n_in, self.units],
                                  dtype=x.dtype)
                self.b = Variable(init.zeros(), name=f"{self.name}/b", shape=[self.units],
                                  dtype=x.dtype) if self.use_bias else None
            self.built = True
        y = x @ self.w
        if self.use_bias:
            y = y + self.b
        return self.activation(y) if self.activation is not None else y


def dense(x, units: int, activation=None, use_bias: bool = True, kernel_initializer=None,
          name: str = "dense") -> Tensor:
    """A new Dense layer applied to x: ``x @ W + b`` (then ``activation``), W of shape [in, units]."""
    return Dense(units, activation, use_bias, kernel_initializer, name)(x)


class _Conv(Layer):
    def __init__(self, rank: int, filters: int, kernel_size, strides=1, padding="valid", dilation=1, groups: int = 1,
                 use_bias: bool = True, causal: bool = False, kernel_initializer=None, name: str = "conv"):
        super().__init__(name)
        self.rank, self.filters, self.groups, self.use_bias, self.causal = rank, filters, groups, use_bias, causal
        self.kernel = nn._tuple(kernel_size, rank, "kernel_size")
        self.strides = nn._tuple(strides, rank, "strides")
        self.dilation = nn._tuple(dilation, rank, "dilation")
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
                                  shape=[self.filters, c_in // self.groups, *self.kernel], dtype=x.dtype)
                self.b = Variable(init.zeros(), name=f"{self.name}/b", shape=[self.filters],
                                  dtype=x.dtype) if self.use_bias else None
            self.built = True
        padding = "causal" if self.causal else self.padding
        return nn._conv(f"conv{self.rank}d layer '{self.name}'", x, self.w, self.b, self.strides, padding,
                        self.dilation, self.groups)


class Conv1D(_Conv):
    """1-D convolution over NCL input; ``causal=True`` pads on the left only; ``groups=C`` is depthwise."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation=1, groups=1, use_bias=True,
                 causal=False, kernel_initializer=None, name="conv1d"):
        super().__init__(1, filters, kernel_size, strides, padding, dilation, groups, use_bias, causal,
                         kernel_initializer, name)


class Conv2D(_Conv):
    """2-D convolution over NCHW input; W is [filters, C/groups, kh, kw]."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation=1, groups=1, use_bias=True,
                 kernel_initializer=None, name="conv2d"):
        super().__init__(2, filters, kernel_size, strides, padding, dilation, groups, use_bias, False,
                         kernel_initializer, name)


class Conv3D(_Conv):
    """3-D convolution over NCDHW input; W is [filters, C/groups, kd, kh, kw]."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation=1, groups=1, use_bias=True,
                 kernel_initializer=None, name="conv3d"):
        super().__init__(3, filters, kernel_size, strides, padding, dilation, groups, use_bias, False,
                         kernel_initializer, name)


def conv1d(x, filters: int, kernel_size, strides=1, padding="valid", dilation=1, groups: int = 1,
           use_bias: bool = True, causal: bool = False, kernel_initializer=None, name: str = "conv1d") -> Tensor:
    """A new Conv1D layer applied to x (NCL): ``filters`` output channels, a window of ``kernel_size``."""
    return Conv1D(filters, kernel_size, strides, padding, dilation, groups, use_bias, causal, kernel_initializer,
                  name)(x)


def conv2d(x, filters: int, kernel_size, strides=1, padding="valid", dilation=1, groups: int = 1,
           use_bias: bool = True, kernel_initializer=None, name: str = "conv2d") -> Tensor:
    """A new Conv2D layer applied to x (NCHW): ``filters`` output channels, a window of ``kernel_size``."""
    return Conv2D(filters, kernel_size, strides, padding, dilation, groups, use_bias, kernel_initializer, name)(x)


def conv3d(x, filters: int, kernel_size, strides=1, padding="valid", dilation=1, groups: int = 1,
           use_bias: bool = True, kernel_initializer=None, name: str = "conv3d") -> Tensor:
    """A new Conv3D layer applied to x (NCDHW): ``filters`` output channels, a window of ``kernel_size``."""
    return Conv3D(filters, kernel_size, strides, padding, dilation, groups, use_bias, kernel_initializer, name)(x)


class BatchNorm(Layer):
    """Batch normalization over axis 1 (channels). Training mode normalizes with the batch's statistics
    and adds the running-statistics updates to ``graph.update_ops`` (``minimize`` runs them); inference
    mode uses the running statistics (an ONNX BatchNormalization node). ``training`` is a Python bool or a
    boolean scalar tensor (``gc.placeholder_with_default(False, [])``): then one graph serves both modes.
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, name: str = "batch_norm"):
        super().__init__(name)
        self.momentum, self.epsilon = momentum, epsilon

    def __call__(self, x, training) -> Tensor:
        x = as_tensor(x)
        if not self.built:
            c = _static_dim(x, 1, f"batch_norm '{self.name}'")
            with x.graph.as_default():
                self.gamma = Variable(init.ones(), name=f"{self.name}/gamma", shape=[c], dtype=x.dtype)
                self.beta = Variable(init.zeros(), name=f"{self.name}/beta", shape=[c], dtype=x.dtype)
                self.mean = Variable(init.zeros(), name=f"{self.name}/moving_mean", shape=[c], trainable=False,
                                     dtype=x.dtype)
                self.var = Variable(init.ones(), name=f"{self.name}/moving_var", shape=[c], trainable=False,
                                    dtype=x.dtype)
            self.built = True
        if isinstance(training, Tensor):
            return self._switched(x, training)
        if not training:
            return self._inference(x)
        return self._training(x, lambda old, new: new)

    def _inference(self, x: Tensor) -> Tensor:
        return apply_op("BatchNormalization", [x, self.gamma, self.beta, self.mean, self.var],
                        {"epsilon": self.epsilon})

    def _training(self, x: Tensor, moved) -> Tensor:
        axes = [a for a in range(x.ndim) if a != 1]
        bshape = [1, -1] + [1] * (x.ndim - 2)
        mu = reduce_mean(x, axes, keepdims=True)
        d = x - mu
        var = reduce_mean(d * d, axes, keepdims=True)
        y = d / apply_op("Sqrt", [var + self.epsilon])
        y = y * reshape(self.gamma, bshape) + reshape(self.beta, bshape)
        m = self.momentum
        upd_mean = assign(self.mean, moved(self.mean, self.mean * m + reshape(mu, [-1]) * (1 - m)))
        upd_var = assign(self.var, moved(self.var, self.var * m + reshape(var, [-1]) * (1 - m)))
        x.graph.update_ops.extend([upd_mean, upd_var])
        return y

    def _switched(self, x: Tensor, training: Tensor) -> Tensor:
        """Both modes in one graph: gc.where picks the output, and the running statistics move only when
        ``training`` is true (their update op keeps the old value otherwise)."""
        nn._check_flag(training, f"batch_norm '{self.name}'")
        from .math import where

        trained = self._training(x, lambda old, new: where(training, new, old))
        return where(training, trained, self._inference(x))


def batch_norm(x, training, momentum: float = 0.9, epsilon: float = 1e-5, name: str = "batch_norm") -> Tensor:
    """A new BatchNorm layer applied to x (channels on axis 1); ``training``: a bool or a boolean tensor."""
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
                self.gamma = Variable(init.ones(), name=f"{self.name}/gamma", shape=[c], dtype=x.dtype)
                self.beta = Variable(init.zeros(), name=f"{self.name}/beta", shape=[c], dtype=x.dtype)
            self.built = True
        return apply_op("LayerNormalization", [x, self.gamma, self.beta], {"axis": -1, "epsilon": self.epsilon})


def layer_norm(x, epsilon: float = 1e-5, name: str = "layer_norm") -> Tensor:
    """A new LayerNorm layer applied to x (normalizing over the last axis)."""
    return LayerNorm(epsilon, name)(x)


class Embedding(Layer):
    """Rows of a [vocab, dim] table picked by integer ids: ids [...] -> [..., dim]."""

    def __init__(self, vocab_size: int, dim: int, initializer=None, name: str = "embedding", dtype=DType.float32):
        super().__init__(name)
        self.vocab_size, self.dim, self.dtype = vocab_size, dim, dtype
        self.initializer = initializer or init.normal(0.0, 0.02)

    def __call__(self, ids) -> Tensor:
        ids = as_tensor(ids)
        if not self.built:
            with ids.graph.as_default():
                self.table = Variable(self.initializer, name=f"{self.name}/table", shape=[self.vocab_size, self.dim],
                                      dtype=self.dtype)
            self.built = True
        return apply_op("Gather", [self.table, ids], {"axis": 0})


def embedding(ids, vocab_size: int, dim: int, initializer=None, name: str = "embedding", dtype=DType.float32) -> Tensor:
    """A new Embedding layer (a [vocab_size, dim] table of ``dtype``) applied to integer ids."""
    return Embedding(vocab_size, dim, initializer, name, dtype)(ids)


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
        att = nn.softmax(scores + nn.causal_mask_bias(scores), axis=-1)
        y = transpose(att @ v, [0, 2, 1, 3])
        return self.proj(reshape(y, [0, 0, c]))


def causal_self_attention(x, n_heads: int, name: str = "attn") -> Tensor:
    """A new CausalSelfAttention layer with ``n_heads`` heads applied to x [B, T, C]."""
    return CausalSelfAttention(n_heads, name)(x)


# ---- recurrent cells ------------------------------------------------------------------------
class _Cell(Layer):
    def __init__(self, units: int, kernel_initializer=None, name: str = "cell"):
        super().__init__(name)
        self.units = units
        self.kernel_initializer = kernel_initializer or init.glorot_uniform()

    def _build(self, x: Tensor, gates: int) -> None:
        if self.built:
            return
        n_in = _static_dim(x, -1, f"{type(self).__name__} '{self.name}'")
        u = self.units
        with x.graph.as_default():
            self.w = Variable(self.kernel_initializer, name=f"{self.name}/w", shape=[n_in, gates * u], dtype=x.dtype)
            self.u = Variable(self.kernel_initializer, name=f"{self.name}/u", shape=[u, gates * u], dtype=x.dtype)
            self.b = Variable(init.zeros(), name=f"{self.name}/b", shape=[gates * u], dtype=x.dtype)
        self.built = True

    def zero_state(self, x) -> Tensor:
        """A zero state [batch, units] for inputs x [batch, features] (batch may be known only at run time)."""
        x = as_tensor(x)
        return zeros_like(x[:, :1]) + Tensor(x.graph, const_value(x.graph, np.zeros(self.units, x.dtype.np)))


class GRUCell(_Cell):
    """A GRU step: ``h' = z * h + (1 - z) * tanh(x Wc + (r * h) Uc + bc)`` with gates
    ``z, r = sigmoid(x W + h U + b)`` (TensorFlow 1's GRUCell). ``cell(x, h) -> h'``; x [B, F], h [B, units]."""

    def __call__(self, x, h) -> Tensor:
        x = as_tensor(x)
        self._build(x, 3)
        wz, wr, wc = split(self.w, 3, axis=1)
        uz, ur, uc = split(self.u, 3, axis=1)
        bz, br, bc = split(self.b, 3, axis=0)
        z = sigmoid(x @ wz + h @ uz + bz)
        r = sigmoid(x @ wr + h @ ur + br)
        c = tanh(x @ wc + (r * h) @ uc + bc)
        return z * h + (1.0 - z) * c

    def initial_state(self, x) -> Tensor:
        """The zero state h for inputs x [batch, features]."""
        return self.zero_state(x)


class LSTMCell(_Cell):
    """An LSTM step with gates i, f, g, o from ``x W + h U + b`` (forget gate biased by ``forget_bias``,
    TensorFlow 1's LSTMCell): ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h' = sigmoid(o) * tanh(c')``.
    ``cell(x, (c, h)) -> (c', h')``."""

    def __init__(self, units: int, forget_bias: float = 1.0, kernel_initializer=None, name: str = "lstm"):
        super().__init__(units, kernel_initializer, name)
        self.forget_bias = forget_bias

    def __call__(self, x, state) -> tuple[Tensor, Tensor]:
        x = as_tensor(x)
        self._build(x, 4)
        c, h = state
        i, f, g, o = split(x @ self.w + h @ self.u + self.b, 4, axis=-1)
        c_new = sigmoid(f + self.forget_bias) * c + sigmoid(i) * tanh(g)
        return c_new, sigmoid(o) * tanh(c_new)

    def initial_state(self, x) -> tuple[Tensor, Tensor]:
        """The zero state (c, h) for inputs x [batch, features]."""
        z = self.zero_state(x)
        return z, z


def rnn(cell, inputs, initial_state=None) -> tuple[Tensor, object]:
    """Run ``cell`` over the time axis of ``inputs`` [batch, time, features] (time must be known while
    building: the loop is unrolled). Returns (outputs [batch, time, units], final state); the state starts
    at ``initial_state`` or zeros."""
    x = as_tensor(inputs)
    t_len = _static_dim(x, 1, "rnn")
    steps = [x[:, t] for t in range(t_len)]
    state = initial_state if initial_state is not None else cell.initial_state(steps[0])
    outs = []
    for xt in steps:
        state = cell(xt, state)
        outs.append(state[1] if isinstance(state, tuple) else state)
    stacked = concat([reshape(o, [0, 1, -1]) for o in outs], axis=1)
    return stacked, state


__all__ = ["BatchNorm", "CausalSelfAttention", "Conv1D", "Conv2D", "Conv3D", "Dense", "Embedding", "GRUCell",
           "LSTMCell", "Layer", "LayerNorm", "batch_norm", "causal_self_attention", "conv1d", "conv2d", "conv3d",
           "dense", "embedding", "layer_norm", "rnn"]
