"""The CUDA backend's test graphs: one small ONNX model per op, dtype and fusion shape, with seeded feeds.

Shared by the codegen tests, the nvcc compile test, the CPU-emulator test and the GPU test, so that the
kernels compiled by nvcc are the ones whose results are checked.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto as TP
from onnx import helper as oh

OPSET = 24
_NP = {TP.FLOAT: np.float32, TP.DOUBLE: np.float64, TP.FLOAT16: np.float16, TP.INT32: np.int32,
       TP.INT64: np.int64, TP.UINT8: np.uint8, TP.INT8: np.int8, TP.BOOL: np.bool_, TP.UINT32: np.uint32}


class Case:
    """A model (bytes) and its feeds; ``rtol``/``atol`` for comparing with the NumPy backend."""

    def __init__(self, name, nodes, inputs, outputs, feeds, inits=(), rtol=1e-5, atol=1e-6):
        self.name = name
        graph = oh.make_graph(nodes, name, [oh.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [oh.make_tensor_value_info(n, TP.UNDEFINED, None) for n in outputs], list(inits))
        self.model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", OPSET)]).SerializeToString()
        self.feeds = feeds
        self.rtol, self.atol = rtol, atol

    def __repr__(self):
        return self.name


def _rng(seed):
    return np.random.default_rng(seed)


def _x(shape, dtype=np.float32, lo=-2.0, hi=2.0, seed=0):
    r = _rng(seed)
    if np.dtype(dtype) == np.bool_:
        return r.random(shape) > 0.5
    if np.dtype(dtype).kind in "iu":
        return r.integers(int(lo), int(hi) + 1, size=shape).astype(dtype)
    return r.uniform(lo, hi, size=shape).astype(dtype)


def _i64(name, vals):
    return oh.make_tensor(name, TP.INT64, [len(vals)], list(vals))


UNARY = {  # op: (attrs, low, high) on float32
    "Abs": ({}, -2, 2), "Acos": ({}, -0.9, 0.9), "Acosh": ({}, 1.1, 3), "Asin": ({}, -0.9, 0.9),
    "Asinh": ({}, -2, 2), "Atan": ({}, -2, 2), "Atanh": ({}, -0.9, 0.9), "Ceil": ({}, -2, 2),
    "Celu": ({"alpha": 0.7}, -2, 2), "Cos": ({}, -2, 2), "Cosh": ({}, -2, 2), "Elu": ({"alpha": 0.5}, -2, 2),
    "Erf": ({}, -2, 2), "Exp": ({}, -2, 2), "Floor": ({}, -2, 2), "Gelu": ({}, -3, 3),
    "HardSigmoid": ({"alpha": 0.3, "beta": 0.4}, -4, 4), "HardSwish": ({}, -4, 4), "Identity": ({}, -2, 2),
    "LeakyRelu": ({"alpha": 0.1}, -2, 2), "Log": ({}, 0.1, 3), "Mish": ({}, -3, 3), "Neg": ({}, -2, 2),
    "Reciprocal": ({}, 0.5, 2), "Relu": ({}, -2, 2), "Round": ({}, -3, 3), "Selu": ({}, -2, 2),
    "Shrink": ({"lambd": 0.6, "bias": 0.2}, -2, 2), "Sigmoid": ({}, -5, 5), "Sign": ({}, -2, 2),
    "Sin": ({}, -2, 2), "Sinh": ({}, -2, 2), "Softplus": ({}, -5, 5), "Softsign": ({}, -2, 2),
    "Sqrt": ({}, 0.1, 3), "Swish": ({"alpha": 1.5}, -3, 3), "Tan": ({}, -1, 1), "Tanh": ({}, -2, 2),
    "ThresholdedRelu": ({"alpha": 0.5}, -2, 2),
}

BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"]
COMPARE = ["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"]


def unary_cases():
    out = []
    for op, (attrs, lo, hi) in UNARY.items():
        x = _x((3, 37), lo=lo, hi=hi, seed=len(op))
        if op == "Round":
            x[0, :4] = [0.5, 1.5, -0.5, 2.5]  # halves round to even
        out.append(Case(f"unary_{op}", [oh.make_node(op, ["x"], ["y"], **attrs)], [("x", TP.FLOAT, [3, 37])],
                        ["y"], {"x": x}, rtol=2e-5, atol=2e-6))
    x = _x((4, 8), lo=-3, hi=3)
    out.append(Case("unary_Gelu_tanh", [oh.make_node("Gelu", ["x"], ["y"], approximate="tanh")],
                    [("x", TP.FLOAT, [4, 8])], ["y"], {"x": x}))
    x = np.array([[1.0, np.inf, -np.inf, np.nan]], np.float32)
    out.append(Case("unary_IsInf_IsNaN", [oh.make_node("IsInf", ["x"], ["a"], detect_negative=0),
                                          oh.make_node("IsNaN", ["x"], ["b"])],
                    [("x", TP.FLOAT, [1, 4])], ["a", "b"], {"x": x}))
    return out


def binary_cases():
    out = []
    for op in BINARY:
        lo = 0.5 if op in ("Div", "Pow") else -2
        out.append(Case(f"binary_{op}_broadcast", [oh.make_node(op, ["a", "b"], ["y"])],
                        [("a", TP.FLOAT, [2, 3, 5]), ("b", TP.FLOAT, [3, 1])], ["y"],
                        {"a": _x((2, 3, 5), lo=lo, seed=1), "b": _x((3, 1), lo=lo, seed=2)}, rtol=1e-5))
    for op in COMPARE:
        a = _x((4, 6), np.int32, -3, 3, seed=3)
        out.append(Case(f"compare_{op}", [oh.make_node(op, ["a", "b"], ["y"])],
                        [("a", TP.INT32, [4, 6]), ("b", TP.INT32, [6])], ["y"],
                        {"a": a, "b": _x((6,), np.int32, -3, 3, seed=4)}))
    for op in ("And", "Or", "Xor"):
        out.append(Case(f"logic_{op}", [oh.make_node(op, ["a", "b"], ["y"]), oh.make_node("Not", ["y"], ["z"])],
                        [("a", TP.BOOL, [3, 4]), ("b", TP.BOOL, [3, 4])], ["z"],
                        {"a": _x((3, 4), np.bool_, seed=5), "b": _x((3, 4), np.bool_, seed=6)}))
    for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        out.append(Case(f"bitwise_{op}", [oh.make_node(op, ["a", "b"], ["c"]), oh.make_node("BitwiseNot", ["c"], ["y"])],
                        [("a", TP.INT32, [10]), ("b", TP.INT32, [10])], ["y"],
                        {"a": _x((10,), np.int32, -100, 100, seed=7), "b": _x((10,), np.int32, -100, 100, seed=8)}))
    out.append(Case("bitshift", [oh.make_node("BitShift", ["a", "b"], ["y"], direction="LEFT")],
                    [("a", TP.UINT32, [8]), ("b", TP.UINT32, [8])], ["y"],
                    {"a": _x((8,), np.uint32, 0, 100, seed=9), "b": _x((8,), np.uint32, 0, 5, seed=10)}))
    a = _x((12,), np.int32, -20, 20, seed=11)
    b = np.array([3, -3, 5, -5, 7, -7, 2, -2, 3, -4, 6, 9], np.int32)
    out.append(Case("mod_int", [oh.make_node("Mod", ["a", "b"], ["y"])], [("a", TP.INT32, [12]), ("b", TP.INT32, [12])],
                    ["y"], {"a": a, "b": b}))
    out.append(Case("mod_fmod", [oh.make_node("Mod", ["a", "b"], ["y"], fmod=1)],
                    [("a", TP.FLOAT, [12]), ("b", TP.FLOAT, [12])], ["y"],
                    {"a": _x((12,), seed=12, lo=-5, hi=5), "b": np.where(b == 0, 1, b).astype(np.float32)}))
    out.append(Case("div_int_truncates", [oh.make_node("Div", ["a", "b"], ["y"])],
                    [("a", TP.INT64, [12]), ("b", TP.INT64, [12])], ["y"], {"a": a.astype(np.int64), "b": b.astype(np.int64)}))
    out.append(Case("sum_mean_variadic", [oh.make_node("Sum", ["a", "b", "c"], ["s"]),
                                          oh.make_node("Mean", ["a", "b", "c"], ["m"])],
                    [("a", TP.FLOAT, [2, 5]), ("b", TP.FLOAT, [5]), ("c", TP.FLOAT, [2, 1])], ["s", "m"],
                    {"a": _x((2, 5), seed=13), "b": _x((5,), seed=14), "c": _x((2, 1), seed=15)}))
    out.append(Case("where_clip_prelu", [oh.make_node("Greater", ["a", "b"], ["c"]),
                                         oh.make_node("Where", ["c", "a", "b"], ["w"]),
                                         oh.make_node("Clip", ["w", "lo", "hi"], ["k"]),
                                         oh.make_node("PRelu", ["k", "s"], ["y"])],
                    [("a", TP.FLOAT, [2, 3, 4]), ("b", TP.FLOAT, [4])], ["y"],
                    {"a": _x((2, 3, 4), seed=16), "b": _x((4,), seed=17)},
                    inits=[oh.make_tensor("lo", TP.FLOAT, [], [-1.0]), oh.make_tensor("hi", TP.FLOAT, [], [1.5]),
                           oh.make_tensor("s", TP.FLOAT, [3, 1], [0.1, 0.2, 0.3])]))
    return out


def dtype_cases():
    out = []
    x = _x((3, 16), seed=20, lo=-50, hi=50)
    out.append(Case("cast_chain", [oh.make_node("Cast", ["x"], ["h"], to=TP.FLOAT16),
                                   oh.make_node("Cast", ["h"], ["f"], to=TP.FLOAT),
                                   oh.make_node("Cast", ["f"], ["i"], to=TP.INT32),
                                   oh.make_node("Cast", ["i"], ["d"], to=TP.DOUBLE),
                                   oh.make_node("Cast", ["x"], ["b"], to=TP.BOOL),
                                   oh.make_node("Cast", ["b"], ["u"], to=TP.UINT8),
                                   oh.make_node("Cast", ["x"], ["bf"], to=TP.BFLOAT16),
                                   oh.make_node("Cast", ["bf"], ["bff"], to=TP.FLOAT)],
                    [("x", TP.FLOAT, [3, 16])], ["h", "d", "u", "bff"], {"x": x}))
    out.append(Case("half_chain", [oh.make_node("Mul", ["a", "b"], ["m"]), oh.make_node("Add", ["m", "a"], ["s"]),
                                   oh.make_node("Tanh", ["s"], ["y"])],
                    [("a", TP.FLOAT16, [4, 8]), ("b", TP.FLOAT16, [8])], ["y"],
                    {"a": _x((4, 8), np.float16, seed=21), "b": _x((8,), np.float16, seed=22)}, rtol=2e-3, atol=2e-3))
    out.append(Case("double_chain", [oh.make_node("Exp", ["a"], ["e"]), oh.make_node("Sub", ["e", "a"], ["y"])],
                    [("a", TP.DOUBLE, [5, 5])], ["y"], {"a": _x((5, 5), np.float64, seed=23)}, rtol=1e-12))
    out.append(Case("int8_wraps", [oh.make_node("Add", ["a", "b"], ["y"]), oh.make_node("Abs", ["y"], ["z"])],
                    [("a", TP.INT8, [16]), ("b", TP.INT8, [16])], ["z"],
                    {"a": _x((16,), np.int8, -120, 120, seed=24), "b": _x((16,), np.int8, -120, 120, seed=25)}))
    out.append(Case("int_pow_relu", [oh.make_node("Pow", ["a", "b"], ["p"]), oh.make_node("Relu", ["p"], ["y"])],
                    [("a", TP.INT64, [8]), ("b", TP.INT64, [8])], ["y"],
                    {"a": _x((8,), np.int64, -4, 4, seed=26), "b": _x((8,), np.int64, 0, 3, seed=27)}))
    return out


def fusion_cases():
    out = []
    nodes, prev = [], "x"
    ops = ["Add", "Mul", "Tanh", "Sub", "Sigmoid", "Mul", "Add", "Relu", "Exp", "Neg"] * 2
    for i, op in enumerate(ops):
        ins = [prev] if op in ("Tanh", "Sigmoid", "Relu", "Exp", "Neg") else [prev, "k" if i % 2 else "x"]
        nodes.append(oh.make_node(op, ins, [f"t{i}"]))
        prev = f"t{i}"
    out.append(Case("chain20_vectorized", nodes, [("x", TP.FLOAT, [8, 64])], [prev], {"x": _x((8, 64), seed=30, lo=-1, hi=1)},
                    inits=[oh.make_tensor("k", TP.FLOAT, [], [0.25])], rtol=1e-4, atol=1e-5))
    out.append(Case("per_channel_bias_relu", [oh.make_node("Mul", ["x", "s"], ["m"]), oh.make_node("Add", ["m", "b"], ["a"]),
                                              oh.make_node("Relu", ["a"], ["y"])],
                    [("x", TP.FLOAT, [2, 3, 4, 5]), ("s", TP.FLOAT, [3, 1, 1]), ("b", TP.FLOAT, [1, 3, 1, 1])], ["y"],
                    {"x": _x((2, 3, 4, 5), seed=31), "s": _x((3, 1, 1), seed=32), "b": _x((1, 3, 1, 1), seed=33)}))
    out.append(Case("outer_product_broadcast", [oh.make_node("Mul", ["a", "b"], ["m"]), oh.make_node("Sqrt", ["m"], ["y"])],
                    [("a", TP.FLOAT, [7, 1]), ("b", TP.FLOAT, [1, 9])], ["y"],
                    {"a": _x((7, 1), seed=34, lo=0.1), "b": _x((1, 9), seed=35, lo=0.1)}))
    out.append(Case("group_two_outputs", [oh.make_node("Exp", ["x"], ["e"]), oh.make_node("Add", ["e", "x"], ["a"]),
                                          oh.make_node("Mul", ["a", "e"], ["y"])],
                    [("x", TP.FLOAT, [3, 5])], ["a", "y"], {"x": _x((3, 5), seed=36)}))
    return out


def reduce_cases():
    out = []
    x = _x((4, 6, 5), seed=40, lo=0.2, hi=1.5)
    for op, axes, keep in [("ReduceSum", [1], 1), ("ReduceMean", [0, 2], 0), ("ReduceMax", None, 1),
                           ("ReduceMin", [-1], 0), ("ReduceProd", [2], 1), ("ReduceL1", [0], 1), ("ReduceL2", [1, 2], 1),
                           ("ReduceSumSquare", [0, 1], 0), ("ReduceLogSum", [2], 1), ("ReduceLogSumExp", [1], 0)]:
        ins = ["x", "axes"] if axes is not None else ["x"]
        inits = [_i64("axes", axes)] if axes is not None else []
        out.append(Case(f"{op}_{'all' if axes is None else '_'.join(map(str, axes))}",
                        [oh.make_node(op, ins, ["y"], keepdims=keep)], [("x", TP.FLOAT, [4, 6, 5])], ["y"], {"x": x},
                        inits=inits, rtol=1e-5, atol=1e-5))
    long = _x((3, 1000), seed=41)
    out.append(Case("ReduceSum_long_rows_block", [oh.make_node("Exp", ["x"], ["e"]),
                                                  oh.make_node("ReduceSum", ["e", "axes"], ["y"], keepdims=0)],
                    [("x", TP.FLOAT, [3, 1000])], ["y"], {"x": long}, inits=[_i64("axes", [1])], rtol=1e-5))
    out.append(Case("ReduceMax_prologue_broadcast", [oh.make_node("Mul", ["x", "s"], ["m"]),
                                                     oh.make_node("ReduceMax", ["m", "axes"], ["y"], keepdims=1)],
                    [("x", TP.FLOAT, [2, 3, 300]), ("s", TP.FLOAT, [3, 1])], ["y"],
                    {"x": _x((2, 3, 300), seed=42), "s": _x((3, 1), seed=43)}, inits=[_i64("axes", [0, 2])]))
    xi = _x((5, 7), np.int32, -50, 50, seed=44)
    out.append(Case("ReduceSum_int32", [oh.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                    [("x", TP.INT32, [5, 7])], ["y"], {"x": xi}, inits=[_i64("axes", [1])]))
    xa = _x((4, 300), seed=45)
    xa[1, 7] = xa[1, 200] = 9.0  # a tie: the first index wins (the last with select_last_index)
    out.append(Case("ArgMax_block", [oh.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=1)],
                    [("x", TP.FLOAT, [4, 300])], ["y"], {"x": xa}))
    out.append(Case("ArgMax_last_index", [oh.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0, select_last_index=1)],
                    [("x", TP.FLOAT, [4, 300])], ["y"], {"x": xa}))
    xs = np.round(_x((6, 5, 4), seed=46) * 2) / 2
    out.append(Case("ArgMin_thread", [oh.make_node("ArgMin", ["x"], ["y"], axis=1, keepdims=0)],
                    [("x", TP.FLOAT, [6, 5, 4])], ["y"], {"x": xs}))
    xg = _x((2, 3, 4, 5), seed=47)
    out.append(Case("GlobalPools", [oh.make_node("GlobalAveragePool", ["x"], ["a"]),
                                    oh.make_node("GlobalMaxPool", ["x"], ["m"])],
                    [("x", TP.FLOAT, [2, 3, 4, 5])], ["a", "m"], {"x": xg}))
    xh = _x((3, 200), np.float16, seed=48)
    out.append(Case("ReduceMean_half", [oh.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)],
                    [("x", TP.FLOAT16, [3, 200])], ["y"], {"x": xh}, inits=[_i64("axes", [1])], rtol=2e-3, atol=2e-3))
    return out


def row_op_cases():
    out = []
    x = _x((4, 300), seed=50, lo=-5, hi=5)
    out.append(Case("Softmax_last", [oh.make_node("Softmax", ["x"], ["y"], axis=-1)], [("x", TP.FLOAT, [4, 300])], ["y"],
                    {"x": x}, rtol=1e-5, atol=1e-7))
    x3 = _x((2, 5, 3), seed=51, lo=-5, hi=5)
    out.append(Case("Softmax_middle_axis", [oh.make_node("Softmax", ["x"], ["y"], axis=1)], [("x", TP.FLOAT, [2, 5, 3])],
                    ["y"], {"x": x3}))
    out.append(Case("LogSoftmax", [oh.make_node("LogSoftmax", ["x"], ["y"], axis=-1)], [("x", TP.FLOAT, [4, 300])], ["y"],
                    {"x": x}, rtol=1e-5, atol=1e-5))
    out.append(Case("Softmax_half", [oh.make_node("Softmax", ["x"], ["y"], axis=-1)], [("x", TP.FLOAT16, [3, 40])], ["y"],
                    {"x": _x((3, 40), np.float16, seed=52)}, rtol=2e-3, atol=1e-3))
    xl = _x((3, 4, 64), seed=53)
    out.append(Case("LayerNorm_last", [oh.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
                    [("x", TP.FLOAT, [3, 4, 64]), ("g", TP.FLOAT, [64]), ("b", TP.FLOAT, [64])], ["y"],
                    {"x": xl, "g": _x((64,), seed=54), "b": _x((64,), seed=55)}, rtol=1e-4, atol=1e-5))
    out.append(Case("LayerNorm_two_axes_stats", [oh.make_node("LayerNormalization", ["x", "g"], ["y", "mean", "inv"],
                                                              axis=1, epsilon=1e-3)],
                    [("x", TP.FLOAT, [3, 4, 64]), ("g", TP.FLOAT, [4, 64])], ["y", "mean", "inv"],
                    {"x": xl, "g": _x((4, 64), seed=56)}, rtol=1e-4, atol=1e-5))
    return out


def injective_cases():
    out = []
    x = _x((2, 3, 4), seed=60)
    out.append(Case("Transpose", [oh.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1])], [("x", TP.FLOAT, [2, 3, 4])],
                    ["y"], {"x": x}))
    out.append(Case("Slice_steps", [oh.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
                    [("x", TP.FLOAT, [2, 3, 4])], ["y"], {"x": x},
                    inits=[_i64("st", [-1, 0]), _i64("en", [-100, 4]), _i64("ax", [2, 1]), _i64("sp", [-2, 2])]))
    out.append(Case("Concat_three", [oh.make_node("Concat", ["a", "b", "c"], ["y"], axis=1)],
                    [("a", TP.FLOAT, [2, 1, 3]), ("b", TP.FLOAT, [2, 4, 3]), ("c", TP.FLOAT, [2, 2, 3])], ["y"],
                    {"a": _x((2, 1, 3), seed=61), "b": _x((2, 4, 3), seed=62), "c": _x((2, 2, 3), seed=63)}))
    out.append(Case("Gather_negative_indices", [oh.make_node("Gather", ["x", "i"], ["y"], axis=1)],
                    [("x", TP.FLOAT, [2, 3, 4]), ("i", TP.INT64, [2, 2])], ["y"],
                    {"x": x, "i": np.array([[0, -1], [2, 1]], np.int64)}))
    out.append(Case("Gather_embedding", [oh.make_node("Gather", ["w", "i"], ["y"], axis=0)],
                    [("i", TP.INT32, [5])], ["y"], {"i": np.array([3, 0, 9, 3, 1], np.int32)},
                    inits=[oh.make_tensor("w", TP.FLOAT, [10, 6], _x((10, 6), seed=64).reshape(-1).tolist())]))
    out.append(Case("GatherElements", [oh.make_node("GatherElements", ["x", "i"], ["y"], axis=2)],
                    [("x", TP.FLOAT, [2, 3, 4]), ("i", TP.INT64, [2, 3, 2])], ["y"],
                    {"x": x, "i": _x((2, 3, 2), np.int64, -4, 3, seed=65)}))
    for mode in ("constant", "edge", "reflect", "wrap"):
        inits = [_i64("pads", [0, 1, 2, 0, 2, 1])]
        ins = ["x", "pads"]
        if mode == "constant":
            inits.append(oh.make_tensor("cv", TP.FLOAT, [], [-7.0]))
            ins.append("cv")
        out.append(Case(f"Pad_{mode}", [oh.make_node("Pad", ins, ["y"], mode=mode)], [("x", TP.FLOAT, [2, 3, 4])], ["y"],
                        {"x": x}, inits=inits))
    out.append(Case("Expand_Tile", [oh.make_node("Expand", ["x", "shape"], ["e"]),
                                    oh.make_node("Tile", ["e", "reps"], ["y"])],
                    [("x", TP.FLOAT, [3, 1])], ["y"], {"x": _x((3, 1), seed=66)},
                    inits=[_i64("shape", [2, 3, 4]), _i64("reps", [1, 2, 1])]))
    out.append(Case("Reshape_Transpose_Flatten", [oh.make_node("Reshape", ["x", "shape"], ["r"]),
                                                  oh.make_node("Transpose", ["r"], ["t"], perm=[1, 0, 2]),
                                                  oh.make_node("Flatten", ["t"], ["y"], axis=1)],
                    [("x", TP.FLOAT, [2, 3, 4])], ["y"], {"x": x}, inits=[_i64("shape", [4, 3, 2])]))
    out.append(Case("Squeeze_Unsqueeze_view", [oh.make_node("Relu", ["x"], ["r"]),
                                               oh.make_node("Unsqueeze", ["r", "ax"], ["u"]),
                                               oh.make_node("Squeeze", ["u", "ax"], ["s"]),
                                               oh.make_node("Softmax", ["s"], ["y"])],
                    [("x", TP.FLOAT, [3, 4])], ["y"], {"x": _x((3, 4), seed=67)}, inits=[_i64("ax", [0])]))
    out.append(Case("Slice_Concat_int64", [oh.make_node("Slice", ["x", "st", "en"], ["a"]),
                                           oh.make_node("Concat", ["a", "x"], ["y"], axis=0)],
                    [("x", TP.INT64, [5, 2])], ["y"], {"x": _x((5, 2), np.int64, -9, 9, seed=68)},
                    inits=[_i64("st", [1]), _i64("en", [3])]))
    return out


def all_cases():
    return unary_cases() + binary_cases() + dtype_cases() + fusion_cases() + reduce_cases() + row_op_cases() + \
        injective_cases()


MISSING = Case("missing_ops", [oh.make_node("MatMul", ["a", "b"], ["m"]), oh.make_node("TopK", ["m", "k"], ["v", "i"]),
                               oh.make_node("Relu", ["v"], ["y"]), oh.make_node("MatMul", ["m", "b"], ["z"])],
               [("a", TP.FLOAT, [4, 4]), ("b", TP.FLOAT, [4, 4])], ["y", "i", "z"],
               {"a": _x((4, 4)), "b": _x((4, 4))}, inits=[_i64("k", [2])])
