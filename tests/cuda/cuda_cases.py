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


def conv_case(name, op, x_shape, w_shape, bias=True, dtype=TP.FLOAT, seed=70, relu=False, rtol=1e-4, atol=1e-5,
              **attrs):
    """Conv or ConvTranspose of a fed X with constant W (and B), optionally followed by a Relu (a fused group)."""
    npdt = _NP[dtype]
    w = _x(w_shape, npdt, -1, 1, seed=seed + 1)
    m = w_shape[1] * attrs.get("group", 1) if op == "ConvTranspose" else w_shape[0]
    inits = [oh.make_tensor("w", dtype, list(w_shape), w.reshape(-1).tolist())]
    ins = ["x", "w"]
    if bias:
        inits.append(oh.make_tensor("b", dtype, [m], _x((m,), npdt, -1, 1, seed=seed + 2).tolist()))
        ins.append("b")
    nodes = [oh.make_node(op, ins, ["c" if relu else "y"], **attrs)]
    if relu:
        nodes.append(oh.make_node("Relu", ["c"], ["y"]))
    return Case(name, nodes, [("x", dtype, list(x_shape))], ["y"], {"x": _x(x_shape, npdt, seed=seed)}, inits=inits,
                rtol=rtol, atol=atol)


def conv_cases():
    h = dict(dtype=TP.FLOAT16, rtol=5e-3, atol=5e-3)
    out = [
        conv_case("Conv_3x3_pad_bias_relu", "Conv", (2, 3, 7, 6), (4, 3, 3, 3), pads=[1, 1, 1, 1], relu=True),
        conv_case("Conv_1x1_gemm", "Conv", (2, 5, 4, 3), (6, 5, 1, 1)),
        conv_case("Conv_1x1_groups", "Conv", (1, 6, 3, 3), (4, 3, 1, 1), bias=False, group=2),
        conv_case("Conv_1x1_stride2", "Conv", (2, 4, 5, 5), (3, 4, 1, 1), strides=[2, 2]),
        conv_case("Conv_groups_strides_dilations", "Conv", (2, 6, 9, 8), (6, 2, 3, 2), group=3, strides=[2, 1],
                  dilations=[1, 2], pads=[1, 0, 2, 1]),
        conv_case("Conv_depthwise", "Conv", (2, 4, 6, 6), (4, 1, 3, 3), group=4, pads=[1, 1, 1, 1], strides=[2, 2]),
        conv_case("Conv_depthwise_multiplier_nobias", "Conv", (1, 3, 5, 7), (6, 1, 3, 3), bias=False, group=3,
                  dilations=[2, 1]),
        conv_case("Conv_same_upper", "Conv", (1, 2, 5, 5), (3, 2, 4, 4), auto_pad="SAME_UPPER", strides=[2, 2]),
        conv_case("Conv_1d", "Conv", (2, 3, 11), (4, 3, 3), strides=[2], pads=[1, 2]),
        conv_case("Conv_3d", "Conv", (1, 2, 4, 5, 3), (3, 2, 2, 3, 2), pads=[1, 0, 1, 0, 1, 0]),
        conv_case("Conv_half", "Conv", (2, 3, 6, 6), (4, 3, 3, 3), pads=[1, 1, 1, 1], relu=True, **h),
        conv_case("Conv_half_depthwise", "Conv", (1, 4, 5, 5), (4, 1, 3, 3), group=4, **h),
        conv_case("ConvTranspose_stride_pads", "ConvTranspose", (2, 3, 4, 5), (3, 2, 3, 3), strides=[2, 2],
                  pads=[1, 0, 1, 1]),
        conv_case("ConvTranspose_groups_dilations_output_padding", "ConvTranspose", (1, 4, 3, 4), (4, 3, 2, 3),
                  bias=False, group=2, strides=[3, 2], dilations=[2, 1], output_padding=[1, 1]),
        conv_case("ConvTranspose_1d_output_shape", "ConvTranspose", (2, 2, 5), (2, 3, 3), strides=[2],
                  output_shape=[12]),
        conv_case("ConvTranspose_half", "ConvTranspose", (1, 3, 4, 4), (3, 2, 3, 3), strides=[2, 2], **h),
    ]
    x = _x((2, 3, 7, 8), seed=80)
    x[0, 0, 0, :3] = 5.0  # ties: the first index wins
    for name, attrs, outs in [
            ("MaxPool_pads_strides", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), ["y"]),
            ("MaxPool_indices_ceil_dilations", dict(kernel_shape=[2, 3], strides=[2, 2], dilations=[2, 1],
                                                    ceil_mode=1), ["y", "i"]),
            ("MaxPool_indices_column_major", dict(kernel_shape=[2, 2], storage_order=1, pads=[0, 1, 1, 0]), ["y", "i"]),
            ("AveragePool_exclude_pad_ceil", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                  ceil_mode=1), ["y"]),
            ("AveragePool_include_pad_ceil", dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1], ceil_mode=1,
                                                  count_include_pad=1), ["y"]),
            ("LpPool_p2", dict(kernel_shape=[2, 2], strides=[1, 2], pads=[0, 1, 0, 1]), ["y"]),
            ("LpPool_p3", dict(kernel_shape=[3, 2], p=3), ["y"])]:
        op = name.split("_")[0]
        out.append(Case(name, [oh.make_node(op, ["x"], outs, **attrs)], [("x", TP.FLOAT, [2, 3, 7, 8])], outs, {"x": x},
                        rtol=1e-5, atol=1e-5))
    out.append(Case("MaxPool_1d_uint8", [oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2])],
                    [("x", TP.UINT8, [2, 3, 9])], ["y"], {"x": _x((2, 3, 9), np.uint8, 0, 255, seed=81)}))
    out.append(Case("AveragePool_3d_half", [oh.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2, 2],
                                                         pads=[1, 0, 0, 0, 1, 1])],
                    [("x", TP.FLOAT16, [1, 2, 3, 4, 5])], ["y"], {"x": _x((1, 2, 3, 4, 5), np.float16, seed=82)},
                    rtol=2e-3, atol=2e-3))
    out.append(Case("LRN", [oh.make_node("LRN", ["x"], ["y"], size=3, alpha=2e-2, beta=0.75, bias=1.5)],
                    [("x", TP.FLOAT, [2, 5, 3, 4])], ["y"], {"x": _x((2, 5, 3, 4), seed=83)}))
    out.append(Case("LRN_even_size_half", [oh.make_node("LRN", ["x"], ["y"], size=4, alpha=1e-1)],
                    [("x", TP.FLOAT16, [1, 6, 5])], ["y"], {"x": _x((1, 6, 5), np.float16, seed=84)},
                    rtol=2e-3, atol=2e-3))
    pos = dict(lo=0.5, hi=1.5)
    out.append(Case("BatchNormalization_fed_params", [oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                                                                   epsilon=1e-3)],
                    [("x", TP.FLOAT, [2, 3, 4, 5]), ("s", TP.FLOAT, [3]), ("b", TP.FLOAT, [3]), ("m", TP.FLOAT, [3]),
                     ("v", TP.FLOAT, [3])], ["y"],
                    {"x": _x((2, 3, 4, 5), seed=85), "s": _x((3,), seed=86, **pos), "b": _x((3,), seed=87),
                     "m": _x((3,), seed=88), "v": _x((3,), seed=89, **pos)}))
    out.append(Case("BatchNormalization_half_2d", [oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
                    [("x", TP.FLOAT16, [4, 6]), ("s", TP.FLOAT16, [6]), ("b", TP.FLOAT16, [6]), ("m", TP.FLOAT16, [6]),
                     ("v", TP.FLOAT16, [6])], ["y"],
                    {"x": _x((4, 6), np.float16, seed=90), "s": _x((6,), np.float16, seed=91, **pos),
                     "b": _x((6,), np.float16, seed=92), "m": _x((6,), np.float16, seed=93),
                     "v": _x((6,), np.float16, seed=94, **pos)}, rtol=2e-3, atol=2e-3))
    return out


def training_cases():
    """Ops gradients and training graphs use: scatters (atomics), OneHot, ConstantOfShape, Split."""
    out = []
    dup = np.array([[0, 1, -1, 2, 0], [0, 1, 5, 2, 3], [-6, 4, 5, 2, 0], [3, 1, 5, 2, 0]], np.int64)  # repeats
    data, upd = _x((6, 5), seed=90), _x((4, 5), seed=91)
    for red in ("add", "mul", "max", "min"):
        out.append(Case(f"ScatterElements_{red}_duplicates",
                        [oh.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=0, reduction=red)],
                        [("d", TP.FLOAT, [6, 5]), ("i", TP.INT64, [4, 5]), ("u", TP.FLOAT, [4, 5])], ["y"],
                        {"d": data, "i": dup, "u": upd}))
    out.append(Case("ScatterElements_none_axis1_int32", [oh.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=1)],
                    [("d", TP.FLOAT, [3, 6]), ("i", TP.INT32, [3, 2]), ("u", TP.FLOAT, [3, 2])], ["y"],
                    {"d": _x((3, 6), seed=92), "i": np.array([[5, 0], [-1, 2], [3, 4]], np.int32),
                     "u": _x((3, 2), seed=93)}))
    out.append(Case("ScatterElements_add_int64_data", [oh.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=0,
                                                                    reduction="add")],
                    [("d", TP.INT64, [6, 5]), ("i", TP.INT64, [4, 5]), ("u", TP.INT64, [4, 5])], ["y"],
                    {"d": _x((6, 5), np.int64, -9, 9, seed=94), "i": dup, "u": _x((4, 5), np.int64, -9, 9, seed=95)}))
    out.append(Case("ScatterElements_add_into_constant_zeros",  # the gradient of Gather / MaxPool
                    [oh.make_node("ScatterElements", ["z", "i", "u"], ["y"], axis=0, reduction="add")],
                    [("i", TP.INT64, [12]), ("u", TP.FLOAT, [12])], ["y"],
                    {"i": np.array([0, 3, 3, 7, 1, 0, 0, 9, 9, 9, 2, 3], np.int64), "u": _x((12,), seed=96)},
                    inits=[oh.make_tensor("z", TP.FLOAT, [10], [0.0] * 10)]))
    out.append(Case("ScatterND_add_slices", [oh.make_node("ScatterND", ["d", "i", "u"], ["y"], reduction="add")],
                    [("d", TP.FLOAT, [4, 3, 2]), ("i", TP.INT64, [5, 1]), ("u", TP.FLOAT, [5, 3, 2])], ["y"],
                    {"d": _x((4, 3, 2), seed=97), "i": np.array([[1], [3], [-4], [1], [2]], np.int64),
                     "u": _x((5, 3, 2), seed=98)}))
    out.append(Case("ScatterND_none_k2", [oh.make_node("ScatterND", ["d", "i", "u"], ["y"])],
                    [("d", TP.FLOAT, [4, 3, 2]), ("i", TP.INT64, [3, 2]), ("u", TP.FLOAT, [3, 2])], ["y"],
                    {"d": _x((4, 3, 2), seed=99), "i": np.array([[0, 2], [3, -1], [1, 0]], np.int64),
                     "u": _x((3, 2), seed=100)}))
    out.append(Case("OneHot_axis0_negative_indices", [oh.make_node("OneHot", ["i", "depth", "v"], ["y"], axis=0)],
                    [("i", TP.INT64, [2, 3])], ["y"], {"i": np.array([[0, -1, 4], [2, -5, 7]], np.int64)},
                    inits=[_i64("depth", [5]), oh.make_tensor("v", TP.FLOAT, [2], [-1.0, 3.0])]))
    out.append(Case("OneHot_last_axis_int32", [oh.make_node("OneHot", ["i", "depth", "v"], ["y"])],
                    [("i", TP.INT32, [7])], ["y"], {"i": np.array([0, 9, 3, -2, 10, 5, 5], np.int32)},
                    inits=[_i64("depth", [10]), oh.make_tensor("v", TP.INT64, [2], [0, 1])]))
    out.append(Case("ConstantOfShape_add", [oh.make_node("ConstantOfShape", ["s"], ["c"],
                                                         value=oh.make_tensor("v", TP.FLOAT, [1], [1.5])),
                                            oh.make_node("Add", ["x", "c"], ["y"])],
                    [("x", TP.FLOAT, [64, 80])], ["y"], {"x": _x((64, 80), seed=101)}, inits=[_i64("s", [64, 80])]))
    out.append(Case("Split_uneven_axis1", [oh.make_node("Split", ["x", "sp"], ["a", "b", "c"], axis=1)],
                    [("x", TP.FLOAT, [2, 7, 3])], ["a", "b", "c"], {"x": _x((2, 7, 3), seed=102)},
                    inits=[_i64("sp", [2, 4, 1])]))
    out.append(Case("Split_num_outputs_last_axis_int64", [oh.make_node("Split", ["x"], ["a", "b", "c"], axis=-1,
                                                                       num_outputs=3)],
                    [("x", TP.INT64, [3, 6])], ["a", "b", "c"], {"x": _x((3, 6), np.int64, -50, 50, seed=103)}))
    return out


def gemm_cases():
    """MatMul and Gemm (cuBLAS calls; NumPy on the emulator) and the epilogue kernels fused after them."""
    out = []
    tol = dict(rtol=1e-5, atol=1e-5)
    for name, sa, sb in [("MatMul_2d", (5, 7), (7, 3)), ("MatMul_batched", (2, 3, 4, 5), (2, 3, 5, 6)),
                         ("MatMul_broadcast_batch_two_calls", (2, 1, 4, 5), (3, 5, 6)),
                         ("MatMul_shared_B_folded", (3, 4, 5), (5, 6)), ("MatMul_shared_A", (4, 5), (3, 5, 6)),
                         ("MatMul_1d_left", (5,), (3, 5, 6)), ("MatMul_1d_right", (3, 4, 5), (5,)),
                         ("MatMul_1d_both", (5,), (5,))]:
        out.append(Case(name, [oh.make_node("MatMul", ["a", "b"], ["y"])],
                        [("a", TP.FLOAT, list(sa)), ("b", TP.FLOAT, list(sb))], ["y"],
                        {"a": _x(sa, seed=100), "b": _x(sb, seed=101)}, **tol))
    for name, dt, t in [("MatMul_double", TP.DOUBLE, dict(rtol=1e-12, atol=1e-12)),
                        ("MatMul_half", TP.FLOAT16, dict(rtol=2e-3, atol=2e-3))]:
        out.append(Case(name, [oh.make_node("MatMul", ["a", "b"], ["y"])], [("a", dt, [2, 6, 8]), ("b", dt, [2, 8, 5])],
                        ["y"], {"a": _x((2, 6, 8), _NP[dt], seed=102), "b": _x((2, 8, 5), _NP[dt], seed=103)}, **t))
    a, b = _x((6, 4), seed=104), _x((5, 6), seed=105)  # transposed: op(A) is 4 x 6, op(B) 6 x 5
    for name, c_shape, attrs in [("Gemm_trans_alpha_beta_row_bias", (5,),
                                  dict(transA=1, transB=1, alpha=1.5, beta=0.5)),
                                 ("Gemm_trans_full_C", (4, 5), dict(transA=1, transB=1)),
                                 ("Gemm_trans_column_C_beta", (4, 1), dict(transA=1, transB=1, beta=-2.0)),
                                 ("Gemm_trans_scalar_C", (), dict(transA=1, transB=1, alpha=0.25)),
                                 ("Gemm_trans_C_beta_zero", (4, 5), dict(transA=1, transB=1, beta=0.0))]:
        out.append(Case(name, [oh.make_node("Gemm", ["a", "b", "c"], ["y"], **attrs)],
                        [("a", TP.FLOAT, [6, 4]), ("b", TP.FLOAT, [5, 6]), ("c", TP.FLOAT, list(c_shape))], ["y"],
                        {"a": a, "b": b, "c": _x(c_shape, seed=106)}, **tol))
    out.append(Case("Gemm_no_C", [oh.make_node("Gemm", ["a", "b"], ["y"], transA=1, alpha=2.0)],
                    [("a", TP.FLOAT, [6, 4]), ("b", TP.FLOAT, [6, 3])], ["y"], {"a": a, "b": _x((6, 3), seed=107)},
                    **tol))
    w, wb = _x((8, 16), seed=108), _x((8,), seed=109)  # a Linear layer: Gemm(x, W, b, transB=1) + Relu
    out.append(Case("Gemm_linear_bias_relu_fused", [oh.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
                                                    oh.make_node("Relu", ["g"], ["y"])],
                    [("x", TP.FLOAT, [5, 16])], ["y"], {"x": _x((5, 16), seed=110)},
                    inits=[oh.make_tensor("w", TP.FLOAT, [8, 16], w.reshape(-1).tolist()),
                           oh.make_tensor("b", TP.FLOAT, [8], wb.tolist())], **tol))
    out.append(Case("MatMul_bias_relu_fused", [oh.make_node("MatMul", ["x", "w"], ["m"]),
                                               oh.make_node("Add", ["m", "b"], ["a"]),
                                               oh.make_node("Relu", ["a"], ["y"])],
                    [("x", TP.FLOAT, [2, 5, 16])], ["y"], {"x": _x((2, 5, 16), seed=111)},
                    inits=[oh.make_tensor("w", TP.FLOAT, [16, 8], w.T.reshape(-1).tolist()),
                           oh.make_tensor("b", TP.FLOAT, [8], wb.tolist())], **tol))
    out.append(Case("MatMul_residual_add_fused", [oh.make_node("MatMul", ["x", "w"], ["m"]),
                                                  oh.make_node("Add", ["m", "r"], ["a"]),
                                                  oh.make_node("Tanh", ["a"], ["y"])],
                    [("x", TP.FLOAT, [3, 4]), ("r", TP.FLOAT, [3, 5])], ["y"],
                    {"x": _x((3, 4), seed=112), "r": _x((3, 5), seed=113)},
                    inits=[oh.make_tensor("w", TP.FLOAT, [4, 5], _x((4, 5), seed=114).reshape(-1).tolist())], **tol))
    out.append(Case("MatMul_residual_relu_vectorized", [oh.make_node("MatMul", ["x", "w"], ["m"]),
                                                        oh.make_node("Add", ["r", "m"], ["a"]),
                                                        oh.make_node("Relu", ["a"], ["y"])],
                    [("x", TP.FLOAT, [4, 8]), ("w", TP.FLOAT, [8, 8]), ("r", TP.FLOAT, [4, 8])], ["y"],
                    {"x": _x((4, 8), seed=120), "w": _x((8, 8), seed=121), "r": _x((4, 8), seed=122)}, **tol))
    out.append(Case("MatMul_cast_epilogue_in_scratch", [oh.make_node("MatMul", ["a", "b"], ["m"]),
                                                         oh.make_node("Cast", ["m"], ["y"], to=TP.FLOAT16)],
                    [("a", TP.FLOAT, [3, 4]), ("b", TP.FLOAT, [4, 6])], ["y"],
                    {"a": _x((3, 4), seed=115), "b": _x((4, 6), seed=116)}, rtol=1e-3, atol=1e-3))
    wh = _x((16, 8), np.float16, -1, 1, seed=117)
    out.append(Case("MatMul_half_bias_sigmoid_fused", [oh.make_node("MatMul", ["x", "w"], ["m"]),
                                                       oh.make_node("Add", ["m", "b"], ["a"]),
                                                       oh.make_node("Sigmoid", ["a"], ["y"])],
                    [("x", TP.FLOAT16, [6, 16])], ["y"], {"x": _x((6, 16), np.float16, seed=118)},
                    inits=[oh.make_tensor("w", TP.FLOAT16, [16, 8], wh.reshape(-1).tolist()),
                           oh.make_tensor("b", TP.FLOAT16, [8], _x((8,), np.float16, seed=119).tolist())],
                    rtol=2e-3, atol=2e-3))
    return out


def all_cases():
    return unary_cases() + binary_cases() + dtype_cases() + fusion_cases() + reduce_cases() + row_op_cases() + \
        injective_cases() + conv_cases() + training_cases() + gemm_cases() + scan_and_triangle_cases() + \
        attention_cases()


def scan_and_triangle_cases():
    """Ops the DSL emits beyond the three models (test_cuda_dsl_coverage.py): CumSum/CumProd scans (one
    thread per line, NumPy's sequential order) and Trilu (a coordinate mask)."""
    out = []
    for name, shape, axis, attrs, dt in [("CumSum_last_axis", (3, 7), -1, {}, TP.FLOAT),
                                         ("CumSum_middle_axis_exclusive", (2, 5, 3), 1, dict(exclusive=1), TP.FLOAT),
                                         ("CumSum_axis0_reverse", (6, 4), 0, dict(reverse=1), TP.FLOAT),
                                         ("CumSum_exclusive_reverse_int64", (2, 6), 1, dict(exclusive=1, reverse=1),
                                          TP.INT64),
                                         ("CumSum_double_1d", (9,), 0, {}, TP.DOUBLE),
                                         ("CumSum_half", (4, 8), 1, {}, TP.FLOAT16)]:
        out.append(Case(name, [oh.make_node("CumSum", ["x", "a"], ["y"], **attrs)], [("x", dt, list(shape))], ["y"],
                        {"x": _x(shape, _NP[dt], -3, 3, seed=130 + len(name))}, inits=[_i64("a", [axis])],
                        rtol=2e-3 if dt == TP.FLOAT16 else 1e-5, atol=2e-3 if dt == TP.FLOAT16 else 1e-6))
    out.append(Case("CumProd_reverse_exclusive", [oh.make_node("CumProd", ["x", "a"], ["y"], reverse=1, exclusive=1)],
                    [("x", TP.FLOAT, [3, 5])], ["y"], {"x": _x((3, 5), lo=0.5, hi=1.5, seed=140)},
                    inits=[_i64("a", [1])]))
    out.append(Case("CumSum_then_exp_fused_neighbours", [oh.make_node("Mul", ["x", "x"], ["m"]),
                                                          oh.make_node("CumSum", ["m", "a"], ["c"]),
                                                          oh.make_node("Exp", ["c"], ["y"])],
                    [("x", TP.FLOAT, [4, 6])], ["y"], {"x": _x((4, 6), lo=-0.5, hi=0.5, seed=141)},
                    inits=[_i64("a", [1])]))
    for name, shape, upper, k in [("Trilu_lower", (5, 5), 0, None), ("Trilu_upper_k1_batched", (2, 4, 6), 1, 1),
                                  ("Trilu_lower_k_minus2_wide", (3, 7), 0, -2), ("Trilu_upper_k_minus1_tall", (6, 3), 1, -1)]:
        ins = ["x"] if k is None else ["x", "k"]
        out.append(Case(name, [oh.make_node("Trilu", ins, ["y"], upper=upper)], [("x", TP.FLOAT, list(shape))], ["y"],
                        {"x": _x(shape, seed=142 + len(name))},
                        inits=[] if k is None else [oh.make_tensor("k", TP.INT64, [], [k])]))
    out.append(Case("Trilu_runtime_k_int32", [oh.make_node("Trilu", ["x", "k"], ["y"], upper=1)],
                    [("x", TP.INT32, [4, 5]), ("k", TP.INT64, [])], ["y"],
                    {"x": _x((4, 5), np.int32, -9, 9, seed=150), "k": np.array(-1, np.int64)}))
    return out


MISSING = Case("missing_ops", [oh.make_node("MatMul", ["a", "b"], ["m"]),
                               oh.make_node("Compress", ["m", "keep"], ["v"], axis=0),
                               oh.make_node("Relu", ["v"], ["y"]), oh.make_node("MatMul", ["m", "b"], ["z"])],
               [("a", TP.INT32, [4, 4]), ("b", TP.INT32, [4, 4])], ["y", "z"],  # integer MatMul: no cuBLAS
               {"a": _x((4, 4), np.int32), "b": _x((4, 4), np.int32)},
               inits=[oh.make_tensor("keep", TP.BOOL, [4], [1, 0, 1, 1])])


def attention_cases():
    """Attention (runtime/codegen/ops/nn.py): two batched GEMMs around one generated softmax row kernel;
    the ONNX op in its forms (4-D/3-D, GQA, masks, causal, softcap, KV cache, half) and the pattern the compiler
    rewrites into it (mingpt's MatMul + Softmax + MatMul with a constant causal bias)."""
    out = []
    tol = dict(rtol=1e-4, atol=1e-5)
    f = TP.FLOAT

    def att(name, shapes, attrs, outputs=("y",), dtype=f, extra=(), feeds=None, **t):
        names = ["q", "k", "v"] + [n for n, _, _ in extra]
        ins = [(n, dtype, list(s)) for n, s in zip("qkv", shapes)] + [(n, dt, list(s)) for n, dt, s in extra]
        inputs = ["q", "k", "v"] + [n if n in names else "" for n in ("mask", "past_key", "past_value", "nonpad")]
        while inputs[-1] == "":
            inputs.pop()
        feeds = dict(feeds or {})
        for j, (n, dt, s) in enumerate(ins):
            if n not in feeds:
                feeds[n] = _x(tuple(s), _NP[dt], seed=160 + j + len(name))
        out.append(Case(name, [oh.make_node("Attention", inputs, list(outputs), **attrs)], ins,
                        [o for o in outputs if o], feeds, **(t or tol)))

    att("Attention_4d_causal_gqa_softcap", [(2, 4, 5, 8), (2, 2, 7, 8), (2, 2, 7, 6)], dict(is_causal=1, softcap=3.0))
    att("Attention_3d_gqa_bool_mask", [(2, 5, 24), (2, 7, 12), (2, 7, 10)], dict(q_num_heads=4, kv_num_heads=2),
        extra=[("mask", TP.BOOL, (5, 7))])
    att("Attention_4d_past_present_float_mask_scaled", [(2, 2, 4, 8), (2, 2, 3, 8), (2, 2, 3, 8)], dict(scale=0.2),
        outputs=("y", "present_key", "present_value"),
        extra=[("mask", f, (2, 1, 4, 6)), ("past_key", f, (2, 2, 3, 8)), ("past_value", f, (2, 2, 3, 8))])
    att("Attention_3d_decode_gqa_with_past", [(3, 1, 32), (3, 1, 8), (3, 1, 8)],
        dict(q_num_heads=4, kv_num_heads=1, is_causal=1), outputs=("y", "present_key", ""),
        extra=[("past_key", f, (3, 1, 5, 8)), ("past_value", f, (3, 1, 5, 8))])
    att("Attention_4d_many_short_rows_qk_output_mode2", [(2, 4, 8, 4), (2, 4, 8, 4), (2, 4, 8, 4)],
        dict(qk_matmul_output_mode=2), outputs=("y", "", "", "qk"), extra=[("mask", f, (8, 8))])
    att("Attention_4d_half_causal", [(1, 2, 6, 8), (1, 2, 6, 8), (1, 2, 6, 8)], dict(is_causal=1), dtype=TP.FLOAT16,
        rtol=2e-3, atol=2e-3)
    # mingpt's form: softmax(Q @ K^T * c + causal bias) @ V, which the compiler rewrites into one Attention node
    t, d = 6, 8
    bias = np.where(np.tril(np.ones((t, t), bool)), 0.0, -np.inf).astype(np.float32)
    nodes = [oh.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), oh.make_node("MatMul", ["q", "kt"], ["s"]),
             oh.make_node("Mul", ["s", "c"], ["sc"]), oh.make_node("Add", ["sc", "bias"], ["sb"]),
             oh.make_node("Softmax", ["sb"], ["p"], axis=-1), oh.make_node("MatMul", ["p", "v"], ["y"])]
    shapes = {n: (1, 2, t, d) for n in "qkv"}
    out.append(Case("Attention_recognized_mingpt_pattern", nodes, [(n, f, list(s)) for n, s in shapes.items()], ["y"],
                    {n: _x(s, seed=170 + j) for j, (n, s) in enumerate(shapes.items())},
                    inits=[oh.make_tensor("c", f, [], [1.0 / np.sqrt(d)]),
                           oh.make_tensor("bias", f, [t, t], bias.reshape(-1).tolist())], **tol))
    return out
