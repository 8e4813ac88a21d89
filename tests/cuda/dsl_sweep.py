"""Every public DSL function as a tiny training graph (forward, gradients, an optimizer step), for the CUDA
coverage sweep (test_cuda_dsl_coverage.py) and its emulator checks.

A case is a function building the function's result from placeholders and variables inside a fresh
``gc.Graph``; ``build`` adds the loss (a weighted sum of the result, so that every element's gradient
differs), the gradients w.r.t. the float placeholders, and an optimizer's ``minimize`` step, and returns
the graph the Session would run: placeholders and variables in, loss, gradients and updates out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import graphc as gc
from graphc.ir import Graph as IRGraph

B = 3  # batch
#: The float type of the cases' placeholders and variables (tests/dsl/test_dsl_float64.py sweeps float64).
FLOAT = [gc.float32]


def _p(shape, name="x", dtype=None):
    return gc.placeholder(dtype or FLOAT[0], list(shape), name=name)


def _w(shape, name="w", init=None):
    return gc.Variable(init or gc.initializers.normal(0.0, 1.0), shape=list(shape), name=name, dtype=FLOAT[0])


@dataclass
class SweepCase:
    name: str
    fn: Callable[[], object]  # builds the result (a float tensor depending on a variable) in the default graph
    optimizer: Callable[[], object] = lambda: gc.optim.SGD(0.1)
    #: feeds for the emulator run: placeholder name -> array (float placeholders get normal values otherwise)
    feeds: dict = field(default_factory=dict)


def _ew(op):  # elementwise math of x (placeholder) * w (variable)
    def fn():
        x, w = _p((B, 5)), _w((5,))
        return op(x * w)
    return fn


def _pos(op):
    def fn():
        x, w = _p((B, 5)), _w((5,))
        return op(gc.abs(x * w) + 0.5)
    return fn


def _bin(op, swap=False):
    def fn():
        x, w = _p((B, 5)), _w((5,))
        return op(w, x) if swap else op(x, w)
    return fn


def _red(op, axis, keepdims=False):
    def fn():
        x, w = _p((B, 4, 5)), _w((4, 5))
        return op(x * w, axis, keepdims)
    return fn


def _cases() -> list[SweepCase]:
    m, nn, ly = gc, gc.nn, gc.layers
    c = []
    add = lambda name, fn, **kw: c.append(SweepCase(name, fn, **kw))  # noqa: E731
    # ---- math: elementwise ----------------------------------------------------------------
    for name in ("exp", "sin", "cos", "tanh", "sigmoid", "relu", "erf", "abs", "negative", "square", "floor",
                 "ceil", "sign", "round"):
        add(f"math.{name}", _ew(getattr(m, name)))
    add("math.round_stop_gradient", lambda: (lambda t: t + gc.stop_gradient(m.round(t) - t))(_p((B, 5)) * _w((5,))))
    add("math.round_custom_gradient", lambda: gc.custom_gradient(lambda t: (m.round(t), lambda dy: dy * 0.5))(
        _p((B, 5)) * _w((5,))))
    for name in ("log", "sqrt", "reciprocal", "rsqrt"):
        add(f"math.{name}", _pos(getattr(m, name)))
    for name in ("add", "subtract", "multiply", "divide", "maximum", "minimum"):
        add(f"math.{name}", _bin(getattr(m, name)))
    add("math.pow", lambda: m.pow(gc.abs(_p((B, 5))) + 0.5, _w((5,))))
    add("math.matmul", lambda: m.matmul(_p((B, 4)), _w((4, 6))))
    add("math.matmul_batched", lambda: m.matmul(_p((2, B, 4)), _w((2, 4, 6))))
    for name in ("equal", "less", "greater", "not_equal"):
        add(f"math.{name}", lambda f=getattr(m, name): m.where(f(_p((B, 5)), 0.0), _w((5,)), 0.5 * _w((5,), "w2")))
    add("math.logical_and_or_not",
        lambda: m.cast(m.logical_or(m.logical_and(_p((B, 5)) > 0.0, m.logical_not(_p((B, 5), "a") > 0.0)),
                                    _p((B, 5), "z") < -1.0), FLOAT[0]) * _w((5,)))
    add("math.where", lambda: m.where(_p((B, 5)) > 0.0, _p((B, 5), "a") * _w((5,)), _w((B, 1), "w2")))
    add("math.clip", lambda: m.clip(_p((B, 5)) * _w((5,)), -0.5, 0.7))
    add("math.clip_lower_only", lambda: m.clip(_p((B, 5)) * _w((5,)), -0.5))
    add("math.cast", lambda: m.cast(m.cast(_p((B, 5)) * _w((5,)), gc.float64 if FLOAT[0] == FLOAT[0] else FLOAT[0]),
                                    FLOAT[0]))
    # ---- reductions -----------------------------------------------------------------------
    for name in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_logsumexp"):
        add(f"math.{name}", _red(getattr(m, name), 1))
        add(f"math.{name}_all_keepdims", _red(getattr(m, name), None, True))
    add("math.argmax", lambda: m.cast(m.argmax(_p((B, 5)), -1), FLOAT[0]) * _w((B,)))
    add("math.argmin", lambda: m.cast(m.argmin(_p((B, 5)), 0, True), FLOAT[0]) * _w((1, 5)))
    add("math.cumsum", lambda: m.cumsum(_p((B, 5)) * _w((5,)), 1))
    add("math.cumsum_exclusive_reverse", lambda: m.cumsum(_p((B, 5)) * _w((5,)), 0, exclusive=True, reverse=True))
    # ---- shapes and indexing ----------------------------------------------------------------
    add("math.shape", lambda: m.cast(m.shape(_p((B, 5))), FLOAT[0]) * _w((2,)))
    add("math.reshape", lambda: m.reshape(_p((B, 4)) * _w((4,)), [2, -1, 3]))
    add("math.transpose", lambda: m.transpose(_p((B, 4, 2)) * _w((4, 2)), [2, 0, 1]))
    add("math.swapaxes", lambda: m.swapaxes(_p((B, 4)) * _w((4,)), 0, 1))
    add("math.expand_dims_squeeze", lambda: m.squeeze(m.expand_dims(_p((B, 4)) * _w((4,)), 1), 1))
    add("math.broadcast_to", lambda: m.broadcast_to(_w((1, 4)), [B, 4]) * _p((B, 4)))
    add("math.flatten", lambda: m.flatten(_p((B, 2, 3)) * _w((2, 3))))
    add("math.concat", lambda: m.concat([_p((B, 2)), _w((B, 3))], axis=1))
    add("math.stack", lambda: m.stack([_p((B, 2)), _w((B, 2))], axis=1))
    add("math.split", lambda: (lambda a, b: a * b)(*m.split(_p((B, 4)) * _w((4,)), 2, axis=1)))
    add("math.split_sizes", lambda: m.split(_p((B, 5)) * _w((5,)), [1, 4], axis=1)[1])
    add("math.gather", lambda: m.gather(_w((6, 4)), _p((B, 2), "i", gc.int64), axis=0),
        feeds={"i": np.array([[0, 5], [2, 2], [-1, 3]], np.int64)[:B]})
    add("math.gather_axis1", lambda: m.gather(_w((4, 6)), _p((3,), "i", gc.int64), axis=1),
        feeds={"i": np.array([1, 1, 4], np.int64)})
    add("math.one_hot", lambda: m.one_hot(_p((B,), "i", gc.int64), 5, FLOAT[0]) * _w((5,)),
        feeds={"i": np.array([0, 4, 2], np.int64)[:B]})
    add("math.tile", lambda: m.tile(_p((B, 2)) * _w((2,)), [2, 3]))
    add("math.pad", lambda: m.pad(_p((B, 4)) * _w((4,)), [(1, 0), (2, 1)], 0.5))
    add("math.tril", lambda: m.tril(_p((4, 4)) * _w((4,)), -1))
    add("math.triu", lambda: m.triu(_p((4, 4)) * _w((4,)), 1))
    add("math.zeros_like_ones_like", lambda: (lambda t: m.zeros_like(t) + m.ones_like(t) * t)(_p((B, 4)) * _w((4,))))
    add("math.getitem_slices", lambda: (_p((B, 6)) * _w((6,)))[1:, ::2])
    add("math.getitem_int_none", lambda: (_p((B, 6)) * _w((6,)))[-1, None, 1:5])
    add("math.getitem_negative_step", lambda: (_p((B, 6)) * _w((6,)))[:, ::-2])
    add("math.getitem_tensor", lambda: (_p((B, 6)) * _w((6,)))[:, _p((2,), "i", gc.int64)],
        feeds={"i": np.array([5, 0], np.int64)})
    # ---- nn: activations ----------------------------------------------------------------------
    for name in ("relu", "gelu", "silu", "softplus", "leaky_relu", "softmax", "log_softmax"):
        add(f"nn.{name}", _ew(getattr(nn, name)))
    add("nn.gelu_tanh", _ew(lambda t: nn.gelu(t, "tanh")))
    add("nn.softmax_axis0", _ew(lambda t: nn.softmax(t, 0)))
    # ---- nn: functions of filter tensors, pooling, normalization ----------------------------
    add("nn.conv1d", lambda: nn.conv1d(_p((2, 3, 8)), _w((4, 3, 3)), padding="causal"))
    add("nn.conv2d", lambda: nn.conv2d(_p((2, 3, 6, 6)), _w((4, 3, 3, 3)), padding="SAME"))
    add("nn.conv2d_strided_same", lambda: nn.conv2d(_p((2, 2, 6, 6)), _w((4, 2, 3, 3)), strides=2, padding="same"))
    add("nn.conv3d", lambda: nn.conv3d(_p((2, 2, 4, 4, 4)), _w((3, 2, 2, 2, 2))))
    add("nn.conv2d_transpose", lambda: nn.conv2d_transpose(_p((2, 3, 4, 4)), _w((3, 2, 3, 3)), strides=2,
                                                           padding="SAME"))
    add("nn.max_pool", lambda: nn.max_pool(_p((2, 3, 6, 6)) * _w((3, 1, 1)), 2))
    add("nn.max_pool_overlap_same", lambda: nn.max_pool(_p((2, 3, 6, 6)) * _w((3, 1, 1)), 3, 1, "SAME"))
    add("nn.avg_pool", lambda: nn.avg_pool(_p((2, 3, 6, 6)) * _w((3, 1, 1)), 2))
    add("nn.max_pool_1d", lambda: nn.max_pool(_p((2, 3, 8)) * _w((3, 1)), 2))
    add("nn.avg_pool_1d_same", lambda: nn.avg_pool(_p((2, 3, 8)) * _w((3, 1)), 3, 1, "same"))
    add("nn.bias_add", lambda: nn.bias_add(_p((2, 3, 4)), _w((3,))))
    add("nn.moments", lambda: (lambda mv: mv[0] + mv[1])(nn.moments(_p((B, 4)) * _w((4,)), [0])))
    add("nn.batch_normalization", lambda: (lambda x: nn.batch_normalization(
        x, *nn.moments(x, [0], keepdims=True), _w((4,), "b"), _w((4,), "s"), 1e-3))(_p((B, 4)) * _w((4,))))
    add("nn.dropout", lambda: nn.dropout(_p((B, 8)) * _w((8,)), 0.3))
    # ---- layers ---------------------------------------------------------------------------
    add("layers.dense", lambda: ly.dense(_p((B, 4)), 6, activation=nn.relu))
    add("layers.dense_3d_no_bias", lambda: ly.dense(_p((B, 2, 4)), 6, use_bias=False))
    add("layers.conv2d", lambda: ly.conv2d(_p((2, 3, 6, 6)), 4, 3, padding="same"))
    add("layers.conv2d_strided_dilated", lambda: ly.conv2d(_p((2, 2, 7, 7)), 4, 3, strides=2, dilation=2))
    add("layers.conv2d_groups", lambda: ly.conv2d(_p((2, 4, 5, 5)), 4, 3, groups=2, use_bias=False))
    add("layers.conv3d", lambda: ly.conv3d(_p((2, 2, 4, 4, 4)), 3, 2))
    add("layers.conv1d_causal", lambda: ly.conv1d(_p((2, 3, 8)), 4, 3, causal=True))
    add("layers.conv1d_depthwise", lambda: ly.conv1d(_p((2, 4, 8)), 4, 3, groups=4, padding="same"))
    add("layers.batch_norm_training", lambda: ly.batch_norm(_p((4, 3, 2, 2)) * _w((3, 1, 1)), training=True))
    add("layers.batch_norm_training_2d", lambda: ly.batch_norm(_p((6, 3)) * _w((3,)), training=True))
    add("layers.batch_norm_inference", lambda: ly.batch_norm(_p((4, 3, 2, 2)) * _w((3, 1, 1)), training=False))
    add("layers.layer_norm", lambda: ly.layer_norm(_p((B, 2, 6)) * _w((6,))))
    add("layers.embedding", lambda: ly.embedding(_p((B, 4), "i", gc.int64), 7, 5, dtype=FLOAT[0]),
        feeds={"i": np.array([[0, 6, 6, 1], [2, 3, -1, 0], [5, 5, 5, 4]], np.int64)[:B]})
    add("layers.causal_self_attention", lambda: ly.causal_self_attention(_p((2, 4, 8)), 2))
    add("layers.rnn_GRUCell", lambda: ly.rnn(ly.GRUCell(3), _p((B, 4, 2)))[0])
    add("layers.rnn_LSTMCell", lambda: ly.rnn(ly.LSTMCell(3), _p((B, 4, 2)))[0])
    # ---- losses -----------------------------------------------------------------------------
    add("losses.softmax_cross_entropy",
        lambda: gc.losses.softmax_cross_entropy(_p((B, 5)) * _w((5,)), _p((B,), "y", gc.int64)),
        feeds={"y": np.array([0, 4, 2], np.int64)[:B]})
    add("losses.softmax_cross_entropy_with_soft_labels", lambda: gc.losses.softmax_cross_entropy_with_soft_labels(
        _p((B, 5)) * _w((5,)), gc.nn.softmax(_p((B, 5), "t"))))
    add("losses.mse", lambda: gc.losses.mse(_p((B, 5)) * _w((5,)), _p((B, 5), "t")))
    add("losses.binary_cross_entropy", lambda: gc.losses.binary_cross_entropy(
        gc.sigmoid(_p((B, 5)) * _w((5,))), gc.cast(_p((B, 5), "t") > 0.0, FLOAT[0])))
    add("losses.binary_cross_entropy_logits", lambda: gc.losses.binary_cross_entropy(
        _p((B, 5)) * _w((5,)), gc.cast(_p((B, 5), "t") > 0.0, FLOAT[0]), from_logits=True))
    # ---- optimizers (on a small dense model) ------------------------------------------------
    dense = lambda: ly.dense(_p((B, 4)), 3, activation=nn.tanh)  # noqa: E731
    o = gc.optim
    for name, make in [("SGD_weight_decay", lambda: o.SGD(0.1, weight_decay=0.01)),
                       ("Momentum", lambda: o.Momentum(0.1)), ("Nesterov", lambda: o.Nesterov(0.1)),
                       ("Adam", lambda: o.Adam(0.01)), ("AdamW", lambda: o.AdamW(0.01)),
                       ("RMSProp", lambda: o.RMSProp(0.01)),
                       ("SGD_clip_norm", lambda: o.SGD(0.1, clip_norm=0.5)),
                       ("Adam_StepDecay", lambda: o.Adam(o.StepDecay(0.01, 2, 0.5))),
                       ("SGD_Cosine", lambda: o.SGD(o.Cosine(0.1, 10))),
                       ("Momentum_Warmup_Cosine", lambda: o.Momentum(o.Warmup(o.Cosine(0.1, 10), 3)))]:
        add(f"optim.{name}", dense, optimizer=make)
    # ---- initializers (host-side: variables start from them; no op in the graph) --------------
    for name in ("zeros", "ones", "normal", "uniform", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal"):
        add(f"initializers.{name}", lambda k=getattr(gc.initializers, name): _p((B, 4)) @ _w((4, 2), init=k()))
    add("initializers.constant", lambda: _p((B, 4)) @ _w((4, 2), init=gc.initializers.constant(0.3)))
    return c


CASES = _cases()


def build(case: SweepCase) -> tuple[IRGraph, gc.Graph, list[str]]:
    """(the run graph: placeholders + variables -> loss, placeholder gradients, updates; the DSL graph;
    names of the variables the updates write, in output order after the loss and gradients)."""
    g = gc.Graph(name=case.name.replace(".", "_"), seed=0)
    with g.as_default():
        y = gc.as_tensor(case.fn())
        r = np.random.default_rng(1).uniform(0.5, 1.5, size=tuple(y.shape)).astype(y.dtype.np)
        loss = gc.reduce_sum(y * r)
        xs = [gc.Tensor(g, v) for v in g.inputs if v.type.dtype.is_float]
        gx = [t for t in gc.gradients(loss, xs, unconnected="none") if t is not None] if xs else []
        step = case.optimizer().minimize(loss)
    sub = IRGraph(f"{g.name}_train")
    sub.opset = dict(g.opset)
    sub.inputs = list(g.inputs) + list(g.variables.values())
    sub.nodes = list(g.nodes)
    sub.constants = dict(g.constants)
    sub.outputs = [loss.value] + [t.value for t in gx] + list(step.assigns)
    targets = [a.producer.inputs[0].name for a in step.assigns]
    sub = sub.copy()
    for v in sub.inputs:
        v.producer = None
    return sub, g, targets


def feeds_for(case: SweepCase, graph: IRGraph, seed: int = 0) -> dict[str, np.ndarray]:
    """The case's feeds, normal floats for the other placeholders, and the variables' initial values."""
    r = np.random.default_rng(seed)
    out = {}
    for v in graph.inputs:
        if v.name in case.feeds:
            out[v.name] = case.feeds[v.name]
        elif v.type.dtype.is_float:
            out[v.name] = r.standard_normal(tuple(v.type.shape)).astype(v.type.dtype.np)
    return out


__all__ = ["CASES", "FLOAT", "SweepCase", "build", "feeds_for"]
