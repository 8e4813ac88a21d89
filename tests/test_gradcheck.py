"""Finite-difference gradient checks (float64) for every differentiable op, through graphc.autodiff.gradients.

Each case builds a one-node graph, projects its float outputs onto fixed random weights to get a scalar
loss, asks ``gradients`` for d loss / d inputs, runs the graph with the reference interpreter, and compares
with central differences of the op's own ``eval``. Inputs are drawn away from kinks (Relu at 0, ties of
Max, ...). A registry test fails when an op has a gradient rule but no case here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.autodiff import differentiability, gradients
from graphc.ir import DType, Graph, TensorType
from graphc.ops import REGISTRY, lookup
from graphc.ops.interpret import eval_node, run_graph
from graphc.passes import infer_shapes

RNG = np.random.default_rng(1234)


def rnd(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape)


def away(*shape, gap=0.1, scale=1.0):
    """Random values of magnitude in [gap, scale]: far from the kinks at 0."""
    return RNG.uniform(gap, scale, shape) * RNG.choice([-1.0, 1.0], shape)


def pos(*shape, lo=0.5, hi=2.0):
    return RNG.uniform(lo, hi, shape)


def distinct(*shape, spread=1.0):
    """Values with no two within 0.05 of each other (no ties for Max/Min/pooling)."""
    n = int(np.prod(shape)) if shape else 1
    vals = (np.arange(n) - n / 2) * 0.1 * spread
    return RNG.permutation(vals).reshape(shape)


def i64(values):
    return np.asarray(values, dtype=np.int64)


@dataclass
class Case:
    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    fixed: tuple = ()  # indices of float inputs held constant (not differentiated)
    domain: str = ""
    n_out: int = 1
    loss_outputs: tuple | None = None  # outputs entering the loss (default: every float output)
    rtol: float = 1e-5
    atol: float = 1e-7
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.name}" if self.name else self.op


def _is_diff_input(case: Case, i: int, x) -> bool:
    return x is not None and x.dtype == np.float64 and i not in case.fixed


def _build(case: Case):
    g = Graph("gradcheck")
    g.opset = {"": 23}
    xs, feeds, ins = [], {}, []
    for i, x in enumerate(case.inputs):
        if x is None:
            ins.append(None)
        elif _is_diff_input(case, i, x):
            v = g.add_input(f"x{i}", TensorType(DType.float64, x.shape))
            xs.append(v)
            feeds[v] = x
            ins.append(v)
        else:
            ins.append(g.add_constant(np.asarray(x), f"c{i}"))
    node = g.add_node(case.op, ins, dict(case.attrs), num_outputs=case.n_out, domain=case.domain)
    lookup(case.domain, case.op).complete_attrs(node)
    infer_shapes(g)
    return g, node, xs, feeds


def _weights(case: Case, outs: list) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    which = case.loss_outputs if case.loss_outputs is not None else range(len(outs))
    return {k: rng.uniform(0.5, 1.5, np.shape(outs[k])) for k in which
            if isinstance(outs[k], np.ndarray) and outs[k].dtype == np.float64}


def _numeric_loss(node, inputs, weights) -> float:
    outs = eval_node(node, list(inputs))
    return float(sum(np.sum(outs[k] * w) for k, w in weights.items()))


def _projected(g: Graph, values, weights) -> object:
    """sum_k sum(values[k] * weights[k]) as graph nodes (a scalar)."""
    terms = []
    for k, w in weights.items():
        wv = g.add_constant(w, f"w{k}")
        prod = g.add_node("Mul", [values[k], wv]).outputs[0]
        terms.append(g.add_node("ReduceSum", [prod], {"keepdims": 0}).outputs[0])
    out = terms[0] if len(terms) == 1 else g.add_node("Sum", terms).outputs[0]
    infer_shapes(g)
    return out


def _with_loss(case: Case):
    g, node, xs, feeds = _build(case)
    outs = eval_node(node, list(case.inputs))
    weights = _weights(case, outs)
    assert weights, f"{case.id}: no float output enters the loss"
    return g, node, xs, feeds, _projected(g, node.outputs, weights), weights


def _central_differences(f, feeds: dict, x, eps: float = 1e-6) -> np.ndarray:
    base = dict(feeds)
    arr = np.array(feeds[x], copy=True)
    base[x] = arr
    flat = arr.reshape(-1)
    out = np.zeros(arr.shape)
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + eps
        up = f(base)
        flat[j] = old - eps
        down = f(base)
        flat[j] = old
        out.reshape(-1)[j] = (up - down) / (2 * eps)
    return out


def check_case(case: Case) -> None:
    g, node, xs, feeds, loss, weights = _with_loss(case)
    grads = gradients(g, [loss], xs)
    g.outputs = [loss] + grads
    g.verify()
    got = run_graph(g, feeds)
    assert np.isclose(got[0], _numeric_loss(node, case.inputs, weights))
    eps = 1e-6
    for x, analytic in zip(xs, got[1:]):
        i = next(k for k, v in enumerate(node.inputs) if v is x)
        base = [np.array(a, copy=True) if a is not None else None for a in case.inputs]
        numeric = np.zeros_like(base[i])
        flat = base[i].reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            up = _numeric_loss(node, base, weights)
            flat[j] = old - eps
            down = _numeric_loss(node, base, weights)
            flat[j] = old
            numeric.reshape(-1)[j] = (up - down) / (2 * eps)
        assert analytic.shape == numeric.shape, f"{case.id}: d/d input {i}: shape {analytic.shape} vs {numeric.shape}"
        np.testing.assert_allclose(analytic, numeric, rtol=case.rtol, atol=case.atol,
                                   err_msg=f"{case.id}: gradient wrt input {i}")


# ---- the cases -------------------------------------------------------------------------------------------
def _elementwise_cases() -> list[Case]:
    c = []
    unary_any = ["Neg", "Sin", "Cos", "Atan", "Sinh", "Cosh", "Asinh", "Erf", "Exp", "Sigmoid", "Tanh", "Softplus",
                 "Softsign", "Mish", "HardSwish", "Gelu", "Selu", "Elu", "Celu"]
    for op in unary_any:
        c.append(Case(op, [away(2, 3, gap=0.05, scale=2.0)]))
    c += [
        Case("Abs", [away(2, 3)]),
        Case("Sign", [away(2, 3)]),
        Case("Floor", [rnd(2, 3) + 0.5 + 0.3 * np.arange(6).reshape(2, 3) + 0.01]),
        Case("Ceil", [np.array([0.3, 1.6, -2.4, 4.5])]),
        Case("Round", [np.array([0.3, 1.6, -2.3, 4.2])]),
        Case("Reciprocal", [away(2, 3, gap=0.5)]),
        Case("Log", [pos(2, 3)]),
        Case("Sqrt", [pos(2, 3)]),
        Case("Tan", [rnd(2, 3)]),
        Case("Asin", [rnd(2, 3, lo=-0.8, hi=0.8)]),
        Case("Acos", [rnd(2, 3, lo=-0.8, hi=0.8)]),
        Case("Acosh", [pos(2, 3, lo=1.2, hi=3.0)]),
        Case("Atanh", [rnd(2, 3, lo=-0.8, hi=0.8)]),
        Case("Gelu", [away(2, 3, scale=2.0)], {"approximate": "tanh"}, name="tanh"),
        Case("LeakyRelu", [away(2, 3)], {"alpha": 0.2}),
        Case("Relu", [away(2, 3)]),
        Case("ThresholdedRelu", [np.array([0.2, 1.5, -0.7, 2.5])], {"alpha": 1.0}),
        Case("Shrink", [np.array([0.2, 1.5, -0.7, 2.5, -0.1])], {"lambd": 0.5, "bias": 0.3}),
        Case("HardSigmoid", [np.array([-4.0, -1.0, 0.3, 2.0, 4.0])], {"alpha": 0.2, "beta": 0.5}),
        Case("Swish", [away(2, 3)], {"alpha": 1.5}),
        Case("PRelu", [away(2, 3, 4), away(3, 1)]),
        Case("Add", [rnd(2, 3, 4), rnd(3, 1)]),
        Case("Sub", [rnd(3, 1), rnd(2, 3, 4)]),
        Case("Mul", [rnd(2, 3, 4), rnd(4)]),
        Case("Div", [rnd(2, 1, 4), away(3, 1, gap=0.5)]),
        Case("Pow", [pos(2, 3), rnd(2, 3)]),
        Case("Pow", [pos(2, 3), i64(3)], name="int_exponent"),
        Case("Mod", [pos(2, 3, lo=0.1, hi=0.9) + i64([[1, 2, 3], [4, 5, 6]]), np.full((3,), 0.95)],
             {"fmod": 1}, name="fmod"),
        Case("Mod", [np.array([1.3, -2.6, 3.1]), np.array([1.1, 1.2, -1.25])], name="floor"),
        Case("Sum", [rnd(2, 3), rnd(3), rnd(1, 3)]),
        Case("Mean", [rnd(2, 3), rnd(3), rnd(2, 1)]),
        Case("Max", [distinct(2, 3), distinct(3, spread=1.3)]),
        Case("Min", [distinct(2, 3), distinct(2, 3, spread=0.7), distinct(1, 3, spread=1.1)]),
        Case("Where", [np.array([[True, False, True]]), rnd(2, 3), rnd(3)]),
        Case("Clip", [np.array([-2.0, -0.3, 0.4, 1.7]), np.array(-1.0), np.array(1.0)]),
        Case("Clip", [np.array([-2.0, -0.3, 0.4, 1.7]), None, np.array(0.5)], name="max_only"),
        Case("Cast", [rnd(2, 3)], {"to": DType.float64.value}),
        Case("CastLike", [rnd(2, 3), np.zeros(1)], fixed=(1,)),
    ]
    return c


def _reduce_cases() -> list[Case]:
    c = []
    for op, make in (("ReduceSum", rnd), ("ReduceMean", rnd), ("ReduceMax", distinct), ("ReduceMin", distinct),
                     ("ReduceProd", away), ("ReduceL1", away), ("ReduceL2", rnd), ("ReduceLogSum", pos),
                     ("ReduceLogSumExp", rnd), ("ReduceSumSquare", rnd)):
        c.append(Case(op, [make(2, 3, 4), i64([1])], {"keepdims": 1}, name="axis1_keep"))
        c.append(Case(op, [make(2, 3, 4), i64([0, -1])], {"keepdims": 0}, name="axes0_2"))
        c.append(Case(op, [make(2, 3)], {"keepdims": 0}, name="all"))
    c += [
        Case("ReduceMax", [np.array([[1.0, 3.0, 3.0], [2.0, 0.5, 0.1]]), i64([1])], {"keepdims": 0}, name="tie"),
        Case("Softmax", [rnd(2, 3, 4)], {"axis": 1}),
        Case("LogSoftmax", [rnd(2, 3, 4)], {"axis": -1}),
        Case("Softmax", [rnd(2, 3, 4)], {"axis": 1, "legacy_coerce_2d": 1}, name="legacy_2d"),
        Case("Hardmax", [distinct(2, 3)]),
        Case("CumSum", [rnd(2, 3), i64(1)]),
        Case("CumSum", [rnd(2, 3, 2), i64(1)], {"exclusive": 1, "reverse": 1}, name="exclusive_reverse"),
        Case("CumProd", [away(2, 4, gap=0.3), i64(1)]),
        Case("CumProd", [away(3, 2, gap=0.3), i64(0)], {"exclusive": 1}, name="exclusive"),
        Case("TopK", [distinct(2, 5), i64([3])], {"axis": 1}, n_out=2),
        Case("NegativeLogLikelihoodLoss", [rnd(3, 4), i64([0, 3, 1])]),
        Case("NegativeLogLikelihoodLoss", [rnd(2, 4, 3), i64([[0, 3, 1], [2, 2, 0]]), pos(4)],
             {"reduction": "mean", "ignore_index": 2}, name="weighted_ignore"),
        Case("NegativeLogLikelihoodLoss", [rnd(3, 4), i64([0, 3, 1]), pos(4)], {"reduction": "none"},
             name="none"),
        Case("SoftmaxCrossEntropyLoss", [rnd(3, 4), i64([0, 3, 1])], n_out=2),
        Case("SoftmaxCrossEntropyLoss", [rnd(3, 4, 2), i64([[0, 3], [1, 1], [2, 0]]), pos(4)],
             {"reduction": "sum", "ignore_index": 1}, n_out=2, name="weighted_sum"),
    ]
    return c


def _shape_cases() -> list[Case]:
    return [
        Case("Identity", [rnd(2, 3)]),
        Case("Reshape", [rnd(2, 3, 2), i64([3, -1])]),
        Case("Flatten", [rnd(2, 3, 2)], {"axis": 2}),
        Case("Squeeze", [rnd(2, 1, 3), i64([1])]),
        Case("Unsqueeze", [rnd(2, 3), i64([0, 3])]),
        Case("Transpose", [rnd(2, 3, 4)], {"perm": [1, 2, 0]}),
        Case("Transpose", [rnd(2, 3, 4)], name="reverse"),
        Case("Concat", [rnd(2, 3), rnd(2, 1), rnd(2, 2)], {"axis": 1}),
        Case("Split", [rnd(2, 5), i64([2, 3])], {"axis": 1}, n_out=2),
        Case("Split", [rnd(6, 2)], {"axis": 0, "num_outputs": 3}, n_out=3, loss_outputs=(0, 2), name="unused_part"),
        Case("Slice", [rnd(4, 5), i64([1, 0]), i64([3, 100]), i64([0, 1])]),
        Case("Slice", [rnd(4, 5), i64([-1, 1]), i64([-100, 5]), i64([0, 1]), i64([-2, 2])], name="steps"),
        Case("Gather", [rnd(4, 3), i64([[0, 3], [3, -1]])], {"axis": 0}, name="repeats"),
        Case("Gather", [rnd(2, 4, 3), i64([1, 2, 1])], {"axis": 1}, name="axis1"),
        Case("GatherElements", [rnd(3, 3), i64([[0, 1, 0], [2, 2, 0]])], {"axis": 0}),
        Case("GatherND", [rnd(2, 3, 2), i64([[0, 1], [1, 2], [0, 1]])]),
        Case("Compress", [rnd(3, 4), np.array([True, False, True, True])], {"axis": 1}),
        Case("Tile", [rnd(2, 3), i64([2, 3])]),
        Case("DepthToSpace", [rnd(1, 8, 2, 2)], {"blocksize": 2, "mode": "CRD"}),
        Case("SpaceToDepth", [rnd(1, 2, 4, 4)], {"blocksize": 2}),
        Case("ReverseSequence", [rnd(4, 2, 3), i64([4, 2])], {"batch_axis": 1, "time_axis": 0}),
        Case("CenterCropPad", [rnd(4, 3), i64([2, 5])]),
        Case("Resize", [rnd(1, 1, 2, 3), None, np.array([1.0, 1.0, 2.0, 1.5])], {"mode": "nearest"}, fixed=(2,)),
        Case("Upsample", [rnd(1, 1, 2, 2), np.array([1.0, 1.0, 2.0, 3.0])], {"mode": "nearest"}, fixed=(1,)),
        Case("Pad", [rnd(2, 3), i64([1, 0, 2, 1])], {"mode": "constant"}),
        Case("Pad", [rnd(3, 4), i64([1, -1, 0, 2])], {"mode": "constant"}, name="negative"),
        Case("Pad", [rnd(3, 4), i64([2, 1, 1, 2])], {"mode": "reflect"}, name="reflect"),
        Case("Pad", [rnd(3, 4), i64([1, 1, 2, 2])], {"mode": "edge"}, name="edge"),
        Case("Expand", [rnd(3, 1), i64([2, 3, 4])]),
        Case("Trilu", [rnd(3, 4), i64(1)], {"upper": 0}),
        Case("ScatterElements", [rnd(3, 3), i64([[1, 0, 2], [0, 2, 1]]), rnd(2, 3)], {"axis": 0}),
        Case("ScatterElements", [rnd(3, 3), i64([[1, 1], [0, 0]]), rnd(2, 2)], {"axis": 1, "reduction": "add"},
             name="add"),
        Case("Scatter", [rnd(3, 3), i64([[1, 0, 2]]), rnd(1, 3)], {"axis": 0}),
        Case("ScatterND", [rnd(4, 3), i64([[1], [3]]), rnd(2, 3)]),
    ]


def _linalg_cases() -> list[Case]:
    return [
        Case("MatMul", [rnd(3, 4), rnd(4, 2)]),
        Case("MatMul", [rnd(2, 1, 3, 4), rnd(3, 4, 2)], name="batched_broadcast"),
        Case("MatMul", [rnd(4), rnd(2, 4, 3)], name="vector_matrix"),
        Case("MatMul", [rnd(2, 3, 4), rnd(4)], name="matrix_vector"),
        Case("MatMul", [rnd(4), rnd(4)], name="dot"),
        Case("Gemm", [rnd(3, 4), rnd(4, 2), rnd(2)], {"alpha": 0.7, "beta": 1.3}),
        Case("Gemm", [rnd(4, 3), rnd(2, 4), rnd(3, 1)], {"transA": 1, "transB": 1, "alpha": 1.5}, name="trans"),
        Case("Gemm", [rnd(4, 3), rnd(4, 2)], {"transA": 1}, name="transA_noC"),
        Case("Gemm", [rnd(3, 4), rnd(2, 4), np.array(0.5)], {"transB": 1}, name="transB_scalarC"),
        Case("Einsum", [rnd(2, 3), rnd(3, 4)], {"equation": "ij,jk->ik"}),
        Case("Einsum", [rnd(2, 3, 4), rnd(2, 4, 5)], {"equation": "bij,bjk->bik"}, name="batched"),
        Case("Einsum", [rnd(2, 3), rnd(4)], {"equation": "ij,k->i"}, name="summed_labels"),
        Case("Einsum", [rnd(2, 2, 3), rnd(3, 4)], {"equation": "...j,jk->...k"}, name="ellipsis"),
        Case("Einsum", [rnd(3), rnd(3)], {"equation": "i,i"}, name="implicit_dot"),
    ]


def _conv_cases() -> list[Case]:
    return [
        Case("Conv", [rnd(2, 3, 5, 5), rnd(4, 3, 3, 3), rnd(4)], {"pads": [1, 1, 1, 1]}),
        Case("Conv", [rnd(1, 2, 7, 6), rnd(3, 2, 3, 2)], {"strides": [2, 2], "pads": [1, 0, 0, 1]}, name="strided"),
        Case("Conv", [rnd(1, 2, 7, 7), rnd(2, 2, 2, 2)], {"dilations": [2, 3], "strides": [1, 2]}, name="dilated"),
        Case("Conv", [rnd(2, 4, 5, 5), rnd(6, 2, 3, 3), rnd(6)], {"group": 2, "strides": [2, 2]}, name="groups"),
        Case("Conv", [rnd(1, 3, 5, 5), rnd(3, 1, 3, 3)], {"group": 3, "pads": [1, 1, 1, 1]}, name="depthwise"),
        Case("Conv", [rnd(2, 3, 9), rnd(2, 3, 3), rnd(2)], {"pads": [2, 0], "dilations": [2]}, name="conv1d"),
        Case("Conv", [rnd(1, 2, 5, 4), rnd(2, 2, 3, 3)], {"auto_pad": "SAME_UPPER", "strides": [2, 1]},
             name="same_upper"),
        Case("Conv", [rnd(1, 1, 4, 3, 3), rnd(2, 1, 2, 2, 2)], {"pads": [0, 1, 0, 1, 0, 1]}, name="conv3d"),
        Case("ConvTranspose", [rnd(1, 2, 3, 3), rnd(2, 3, 3, 3), rnd(3)], {"strides": [2, 2], "pads": [1, 1, 0, 0]}),
        Case("ConvTranspose", [rnd(2, 4, 3, 4), rnd(4, 1, 2, 3)],
             {"group": 2, "strides": [2, 1], "output_padding": [1, 0], "dilations": [1, 2]}, name="groups"),
        Case("MaxPool", [distinct(2, 2, 4, 5)], {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 1]}),
        Case("MaxPool", [distinct(1, 2, 5, 5)], {"kernel_shape": [3, 3], "strides": [1, 1]}, name="overlapping"),
        Case("MaxPool", [distinct(1, 2, 7)], {"kernel_shape": [3], "strides": [2], "ceil_mode": 1, "dilations": [2]},
             name="1d_ceil_dilated"),
        Case("AveragePool", [rnd(2, 2, 5, 5)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        Case("AveragePool", [rnd(1, 3, 5, 4)], {"kernel_shape": [2, 3], "pads": [1, 1, 0, 1], "count_include_pad": 1},
             name="include_pad"),
        Case("AveragePool", [rnd(1, 2, 6)], {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}, name="1d_ceil"),
        Case("LpPool", [away(1, 2, 4, 4)], {"kernel_shape": [2, 2], "strides": [2, 1], "p": 3}),
        Case("GlobalAveragePool", [rnd(2, 3, 4, 2)]),
        Case("GlobalMaxPool", [distinct(2, 3, 4)]),
        Case("GlobalLpPool", [away(2, 3, 2, 2)], {"p": 2}),
    ]


def _norm_cases() -> list[Case]:
    bn_params = [pos(3), rnd(3), rnd(3), pos(3)]
    return [
        Case("BatchNormalization", [rnd(2, 3, 2, 2)] + bn_params, {"epsilon": 1e-3}, name="inference"),
        Case("BatchNormalization", [rnd(4, 3, 2)] + bn_params, {"training_mode": 1, "momentum": 0.8}, n_out=3,
             name="training"),
        Case("LayerNormalization", [rnd(2, 3, 4), pos(4), rnd(4)], {"axis": -1}, n_out=3, loss_outputs=(0,)),
        Case("LayerNormalization", [rnd(2, 3, 4), pos(3, 4)], {"axis": 1}, n_out=3, loss_outputs=(0,),
             name="axis1_nobias"),
        Case("RMSNormalization", [rnd(2, 3, 4), pos(4)]),
        Case("InstanceNormalization", [rnd(2, 3, 4), pos(3), rnd(3)]),
        Case("GroupNormalization", [rnd(2, 4, 3), pos(4), rnd(4)], {"num_groups": 2}),
        Case("MeanVarianceNormalization", [rnd(2, 3, 2, 2)]),
        Case("LpNormalization", [away(2, 3)], {"p": 1, "axis": 1}),
        Case("LpNormalization", [rnd(2, 3)], {"p": 2, "axis": 0}, name="p2"),
        Case("LRN", [rnd(2, 4, 3)], {"size": 3, "alpha": 0.1, "beta": 0.75, "bias": 1.5}),
        Case("Dropout", [rnd(3, 4), np.array(0.25), np.array(True)], {"seed": 3}, fixed=(1,)),
        Case("Dropout", [rnd(3, 4)], name="inference"),
    ]


def _nn_cases() -> list[Case]:
    return [
        Case("Attention", [rnd(2, 2, 3, 4), rnd(2, 2, 5, 4), rnd(2, 2, 5, 3)], n_out=1),
        Case("Attention", [rnd(1, 4, 3, 2), rnd(1, 2, 3, 2), rnd(1, 2, 3, 2), rnd(3, 3)],
             {"is_causal": 1, "scale": 0.7, "softcap": 2.0}, n_out=1, name="gqa_causal_mask_softcap"),
        Case("Attention", [rnd(2, 3, 4), rnd(2, 5, 4), rnd(2, 5, 6), np.array([[True, False, True, True, True]] * 3)],
             {"q_num_heads": 2, "kv_num_heads": 2}, n_out=1, name="3d_bool_mask"),
        Case("Attention", [rnd(1, 2, 2, 4), rnd(1, 2, 1, 4), rnd(1, 2, 1, 4), None, rnd(1, 2, 3, 4), rnd(1, 2, 3, 4)],
             {"is_causal": 1}, n_out=3, name="past_kv"),
        Case("SwiGLU", [rnd(2, 3), rnd(2, 3)], {"alpha": 1.2}),
    ]


CASES: list[Case] = (_elementwise_cases() + _reduce_cases() + _shape_cases() + _linalg_cases() + _conv_cases()
                     + _norm_cases() + _nn_cases())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradcheck(case: Case):
    check_case(case)


def check_second_order(case: Case) -> None:
    """Differentiate the gradient again: d/dx of sum(dloss/dx * r) against central differences of it."""
    def first_order():
        g, node, xs, feeds, loss, _ = _with_loss(case)
        grads = gradients(g, [loss], xs)
        rng = np.random.default_rng(11)
        r = {k: rng.uniform(0.5, 1.5, gx.type.shape) for k, gx in enumerate(grads)}
        return g, xs, feeds, _projected(g, grads, r)

    g, xs, feeds, loss2 = first_order()
    hess = gradients(g, [loss2], xs, unconnected="zero")  # e.g. Relu: the gradient is piecewise constant
    g.outputs = hess
    got = run_graph(g, feeds)
    g1, xs1, feeds1, loss2_1 = first_order()
    g1.outputs = [loss2_1]
    for x1, analytic in zip(xs1, got):
        numeric = _central_differences(lambda f: float(run_graph(g1, f)[0]), feeds1, x1)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6, err_msg=f"{case.id}: second order")


SECOND_ORDER = ["Tanh", "Sigmoid", "Exp", "Log", "Sqrt", "Erf", "Gelu", "Mish", "Softplus", "Relu", "Mul", "Div",
                "Pow", "Max", "Where", "MatMul-batched_broadcast", "Gemm-trans", "Einsum-summed_labels", "Softmax",
                "LogSoftmax", "ReduceMean-axes0_2", "ReduceL2-axis1_keep", "ReduceLogSumExp-all", "ReduceMax-all",
                "CumProd", "Gather-repeats", "Slice-steps", "Concat", "Pad-reflect", "Conv-groups",
                "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization-training", "LayerNormalization",
                "SoftmaxCrossEntropyLoss", "Attention-gqa_causal_mask_softcap", "Dropout"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SECOND_ORDER], ids=lambda c: c.id)
def test_second_order(case: Case):
    check_second_order(case)


def test_second_order_list_names_existing_cases():
    assert set(SECOND_ORDER) <= {c.id for c in CASES}


def test_every_differentiable_op_has_a_gradcheck():
    covered = {(c.domain, c.op) for c in CASES}
    missing = sorted(f"{d}.{n}" if d else n for (d, n), op in REGISTRY.items()
                     if op.grad is not None and (d, n) not in covered)
    assert not missing, f"ops with a gradient rule but no gradient check: {', '.join(missing)}"


def test_every_declared_reason_names_an_op_without_rule():
    for (d, n), op in REGISTRY.items():
        assert not (op.grad is not None and op.no_grad), f"{n} has a rule and is declared non-differentiable"
    table = differentiability()
    assert table["Relu"] == "differentiable"
    assert "boolean" in table["Equal"]
