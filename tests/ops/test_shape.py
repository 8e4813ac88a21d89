"""Shape/index ops: symbolic inference through shape-computing chains, errors, opset upgrades, values vs ORT."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the ops)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.errors import ExecutionError, ShapeError
from graphc.ir import DType, Graph, TensorType
from graphc.ops import lookup
from graphc.passes import infer_shapes
from oputil import T, infer_one

F32, I64 = DType.float32, DType.int64
RNG = np.random.default_rng(0)

def node(g: Graph, op: str, inputs: list, attrs: dict | None = None, n_out: int = 1):
    """Add a node with attributes completed (as the importer does); returns its outputs."""
    n = g.add_node(op, inputs, attrs or {}, num_outputs=n_out)
    lookup("", op).complete_attrs(n)
    return n.outputs if n_out > 1 else n.outputs[0]


def i64(*v):
    return np.array(v, dtype=np.int64)

def is_fresh(d) -> bool:
    return isinstance(d, str) and d.startswith("unk__")


# ---- inference through shape arithmetic -----------------------------------------------------------
def test_reshape_target_from_shape_gather_concat_keeps_symbol():
    g = Graph("t")
    x = g.add_input("x", T(F32, "N", 3, 4))
    shape = node(g, "Shape", [x])
    n = node(g, "Gather", [shape, g.add_constant(i64(0).reshape(()), "zero")])
    n1 = node(g, "Unsqueeze", [n, g.add_constant(i64(0), "ax")])
    target = node(g, "Concat", [n1, g.add_constant(i64(-1), "m1")], {"axis": 0})
    y = node(g, "Reshape", [x, target])
    g.outputs = [y]
    infer_shapes(g)
    assert shape.type == T(I64, 3)
    assert n.type == T(I64)
    assert y.type == T(F32, "N", 12)


def test_static_tail_of_a_symbolic_shape_becomes_a_known_value():
    # Reshape(x, Concat([-1], Shape(z)[1:])) with z = [M,3,4] and x = [N,12] -> [N,3,4]
    g = Graph("t")
    x = g.add_input("x", T(F32, "N", 12))
    z = g.add_input("z", T(F32, "M", 3, 4))
    tail = node(g, "Slice", [node(g, "Shape", [z]), g.add_constant(i64(1)), g.add_constant(i64(2**62))])
    target = node(g, "Concat", [g.add_constant(i64(-1)), tail], {"axis": 0})
    y = node(g, "Reshape", [x, target])
    g.outputs = [y]
    known = infer_shapes(g)
    assert known[id(tail)].tolist() == [3, 4]
    assert y.type == T(F32, "N", 3, 4)


def test_exported_attention_reshapes_keep_batch_and_sequence_symbols():
    """The Shape/Gather/Unsqueeze/Concat/Reshape pattern of a PyTorch-exported multi-head attention."""
    def const(name, v):
        return oh.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.array(v, np.int64)))

    nodes = [const("i0", 0), const("i1", 1), const("ax", [0]), const("heads", [12]), const("hd", [64]),
             const("width", [768]), const("zero1", [0]), const("one1", [1]),
             oh.make_node("Shape", ["x"], ["s"]),
             oh.make_node("Gather", ["s", "i0"], ["b"]), oh.make_node("Gather", ["s", "i1"], ["t"]),
             oh.make_node("Unsqueeze", ["b", "ax"], ["b1"]), oh.make_node("Unsqueeze", ["t", "ax"], ["t1"]),
             oh.make_node("Concat", ["b1", "t1", "heads", "hd"], ["split_shape"], axis=0),
             oh.make_node("Reshape", ["x", "split_shape"], ["r"]),
             oh.make_node("Transpose", ["r"], ["q"], perm=[0, 2, 1, 3]),
             oh.make_node("Transpose", ["q"], ["back"], perm=[0, 2, 1, 3]),
             oh.make_node("Concat", ["b1", "t1", "width"], ["merge_shape"], axis=0),
             oh.make_node("Reshape", ["back", "merge_shape"], ["y"]),
             oh.make_node("Slice", ["x", "zero1", "t1", "one1"], ["prefix"]),
             oh.make_node("ConstantOfShape", ["s"], ["mask"])]
    outs = ["q", "y", "prefix", "mask"]
    m = oh.make_model(oh.make_graph(nodes, "t", [oh.make_tensor_value_info("x", TP.FLOAT, ["batch", "seq", 768])],
                                    [onnx.ValueInfoProto(name=o) for o in outs]),
                      opset_imports=[oh.make_opsetid("", 21)])
    rep = GraphcBackend.prepare(m)
    assert [str(v.type) for v in rep.graph.outputs] == [
        "float32[batch,12,seq,64]", "float32[batch,seq,768]", "float32[batch,seq,768]", "float32[batch,seq,768]"]
    x = f32(2, 5, 768)
    q, y, prefix, mask = rep.run([x])
    assert q.shape == (2, 12, 5, 64) and np.array_equal(y, x) and np.array_equal(prefix, x) and mask.shape == x.shape


def test_reshape_with_zero_and_minus_one_constants():
    assert infer_one("Reshape", [T(F32, "N", 3, 4), i64(0, -1)]) == [T(F32, "N", 12)]
    assert infer_one("Reshape", [T(F32, "N", 3, 4), i64(-1, 4)])[0].shape[1] == 4
    assert infer_one("Reshape", [T(F32, 2, 3, 4), i64(4, -1)]) == [T(F32, 4, 6)]
    assert infer_one("Reshape", [T(F32, 2, 0), i64(0, 3)], {"allowzero": 1}) == [T(F32, 0, 3)]
    (t,) = infer_one("Reshape", [T(F32, "N", 6), T(I64, 3)])
    assert t.rank == 3 and all(is_fresh(d) for d in t.shape)


def test_expand_and_constant_of_shape_follow_a_symbolic_shape():
    g = Graph("t")
    x = g.add_input("x", T(F32, 1, 3))
    y = g.add_input("y", T(F32, "B", 3))
    e = node(g, "Expand", [x, node(g, "Shape", [y])])
    c = node(g, "ConstantOfShape", [node(g, "Shape", [y])], {"value": np.array([7], np.int32)})
    g.outputs = [e, c]
    infer_shapes(g)
    assert e.type == T(F32, "B", 3)
    assert c.type == T(DType.int32, "B", 3)


def test_range_over_a_symbolic_length():
    g = Graph("t")
    x = g.add_input("x", T(F32, "S", 8))
    s = node(g, "Gather", [node(g, "Shape", [x]), g.add_constant(i64(0).reshape(()))])
    r = node(g, "Range", [g.add_constant(np.array(0, np.int64)), s, g.add_constant(np.array(1, np.int64))])
    g.outputs = [r]
    infer_shapes(g)
    assert r.type == T(I64, "S")


def test_slice_concat_split_shapes():
    assert infer_one("Slice", [T(F32, "N", 10), i64(2), i64(-1), i64(1)]) == [T(F32, "N", 7)]
    assert infer_one("Slice", [T(F32, "N", 10), i64(0), i64(2**63 - 1), i64(0)]) == [T(F32, "N", 10)]
    assert infer_one("Slice", [T(F32, 10), i64(-1), i64(-2**63), i64(0), i64(-3)]) == [T(F32, 4)]
    assert infer_one("Concat", [T(F32, "N", 3), T(F32, "N", 5)], {"axis": -1}) == [T(F32, "N", 8)]
    assert infer_one("Split", [T(F32, "N", 10)], {"axis": 1, "num_outputs": 3}, n_out=3) == \
        [T(F32, "N", 4), T(F32, "N", 4), T(F32, "N", 2)]
    assert infer_one("Split", [T(F32, "N", 10), i64(3, 7)], {"axis": 1}, n_out=2) == [T(F32, "N", 3), T(F32, "N", 7)]


def test_gather_squeeze_unsqueeze_transpose_flatten_shapes():
    assert infer_one("Gather", [T(F32, "V", 16), T(I64, "B", "S")]) == [T(F32, "B", "S", 16)]
    assert infer_one("Gather", [T(F32, 5, "N"), T(I64)], {"axis": 1}) == [T(F32, 5)]
    assert infer_one("GatherND", [T(F32, "B", 4, 5, 6), T(I64, "B", 7, 2)], {"batch_dims": 1}) == \
        [T(F32, "B", 7, 6)]
    assert infer_one("Squeeze", [T(F32, "N", 1, 3), i64(-2)]) == [T(F32, "N", 3)]
    assert infer_one("Unsqueeze", [T(F32, "N", 3), i64(0, -1)]) == [T(F32, 1, "N", 3, 1)]
    assert infer_one("Transpose", [T(F32, "N", 3, 5)], {"perm": [2, 0, 1]}) == [T(F32, 5, "N", 3)]
    assert infer_one("Transpose", [T(F32, "N", 3, 5)]) == [T(F32, 5, 3, "N")]
    assert infer_one("Flatten", [T(F32, "N", 3, 5)], {"axis": 1}) == [T(F32, "N", 15)]
    assert infer_one("Flatten", [T(F32, "N", 3, 5)], {"axis": 0}) == [T(F32, 1, infer_one(
        "Flatten", [T(F32, "N", 3, 5)], {"axis": 0})[0].shape[1])]


def test_pad_tile_resize_depth_to_space_shapes():
    assert infer_one("Pad", [T(F32, "N", 3, 8), i64(1, 2, 3, 4), None, i64(1, 2)]) == [T(F32, "N", 7, 14)]
    assert infer_one("Tile", [T(F32, "N", 3), i64(1, 4)]) == [T(F32, "N", 12)]
    assert infer_one("Resize", [T(F32, "N", 3, 8, 8), None, np.array([2.0, 0.5], np.float32)],
                     {"axes": [2, 3]}) == [T(F32, "N", 3, 16, 4)]
    assert infer_one("Resize", [T(F32, "N", 3, 8, 8), None, None, i64(10, 20)],
                     {"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}) == [T(F32, "N", 3, 10, 10)]
    assert infer_one("DepthToSpace", [T(F32, "N", 8, 3, 5)], {"blocksize": 2}) == [T(F32, "N", 2, 6, 10)]
    assert infer_one("SpaceToDepth", [T(F32, "N", 2, 6, 10)], {"blocksize": 2}) == [T(F32, "N", 8, 3, 5)]


def test_data_dependent_outputs_get_fresh_dims():
    (t,) = infer_one("NonZero", [T(F32, "N", 3)])
    assert t.shape[0] == 2 and is_fresh(t.shape[1])
    y, idx, inv, cnt = infer_one("Unique", [T(F32, "N", 4)], {"axis": 0}, n_out=4)
    assert is_fresh(y.shape[0]) and y.shape[1] == 4 and idx.shape == cnt.shape == (y.shape[0],)
    assert inv == T(I64, "N")


def test_unknown_inputs_do_not_crash():
    unk = TensorType(F32, None)
    for op, ins, attrs in [("Reshape", [unk, T(I64, None)], {}), ("Expand", [unk, T(I64, 2)], {}),
                           ("Slice", [unk, T(I64, 1), T(I64, 1)], {}), ("Concat", [unk, unk], {"axis": 0}),
                           ("Gather", [unk, T(I64, 2)], {}), ("Pad", [unk, T(I64, 4)], {}),
                           ("Resize", [unk, None, T(F32, 4)], {}), ("Shape", [unk], {}),
                           ("Unsqueeze", [unk, T(I64, 1)], {}), ("Tile", [unk, T(I64, 2)], {})]:
        (t,) = infer_one(op, ins, attrs)
        assert isinstance(t, TensorType)


# ---- errors -------------------------------------------------------------------------------------------
def test_errors_name_the_problem():
    with pytest.raises(ShapeError, match=r"Reshape node .*cannot reshape \[2,3\] \(6 elements\) to \[4,2\]"):
        infer_one("Reshape", [T(F32, 2, 3), i64(4, 2)])
    with pytest.raises(ShapeError, match="more than one -1"):
        infer_one("Reshape", [T(F32, 2, 3), i64(-1, -1)])
    with pytest.raises(ShapeError, match=r"Concat node .*dim 0 differs .*\[2,3\] and \[3,3\]"):
        infer_one("Concat", [T(F32, 2, 3), T(F32, 3, 3)], {"axis": 1})
    with pytest.raises(ShapeError, match="same rank"):
        infer_one("Concat", [T(F32, 2, 3), T(F32, 3)], {"axis": 0})
    with pytest.raises(ShapeError, match="cannot squeeze axis 1 of \\[N,3\\]: its size is 3"):
        infer_one("Squeeze", [T(F32, "N", 3), i64(1)])
    with pytest.raises(ShapeError, match="perm \\[0, 0\\] is not a permutation"):
        infer_one("Transpose", [T(F32, 2, 3)], {"perm": [0, 0]})
    with pytest.raises(ShapeError, match="axis 2 is out of range for an input of rank 2"):
        infer_one("Gather", [T(F32, 2, 3), T(I64, 4)], {"axis": 2})
    with pytest.raises(ShapeError, match="index 5 is out of range for axis 0 of size 3"):
        infer_one("Gather", [T(I64, 3), i64(5)])
    with pytest.raises(ShapeError, match=r"split \[3, 3\] adds up to 6, but dim 0 of \[7\] is 7"):
        infer_one("Split", [T(F32, 7), i64(3, 3)], n_out=2)
    with pytest.raises(ShapeError, match="cannot broadcast"):
        infer_one("Expand", [T(F32, 3), i64(2, 4)])
    with pytest.raises(ShapeError, match="channels of \\[1,6,2,2\\] \\(6\\) is not divisible by 4"):
        infer_one("DepthToSpace", [T(F32, 1, 6, 2, 2)], {"blocksize": 2})
    with pytest.raises(ShapeError, match="give scales or sizes, not both"):
        infer_one("Resize", [T(F32, 1, 1, 2, 2), None, np.ones(4, np.float32), i64(1, 1, 4, 4)])


# ---- values against onnxruntime ------------------------------------------------------------------------
def model(op: str, inputs: dict, attrs: dict | None = None, opset: int = 21, n_out: int = 1, consts=None):
    """A one-node model; ``inputs`` maps names to arrays (graph inputs), ``consts`` to initializers."""
    consts = consts or {}
    names = list(inputs) + list(consts)
    order = [n for n in names]
    outs = [f"y{i}" for i in range(n_out)]
    nd = oh.make_node(op, order, outs, **(attrs or {}))
    vis = [oh.make_tensor_value_info(k, oh.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()]
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in consts.items()]
    ovis = [onnx.ValueInfoProto(name=o) for o in outs]
    return oh.make_model(oh.make_graph([nd], "t", vis, ovis, inits), opset_imports=[oh.make_opsetid("", opset)])


def with_input_names(m, names: list[str]):
    """Rewrite a node's inputs to ``names`` ('' for an absent optional input)."""
    del m.graph.node[0].input[:]
    m.graph.node[0].input.extend(names)
    return m


def compare_ort(m, inputs: dict, rtol=1e-5, atol=1e-6):
    got = GraphcBackend.prepare(m).run(list(inputs.values()))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, inputs)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("mode,ctm,extra", [
    ("linear", "half_pixel", {"antialias": 1}),
    ("cubic", "half_pixel", {"antialias": 1}),
    ("cubic", "align_corners", {"exclude_outside": 1}),
    ("cubic", "pytorch_half_pixel", {"cubic_coeff_a": -0.5}),
    ("nearest", "asymmetric", {"nearest_mode": "ceil"}),
    ("nearest", "half_pixel", {"nearest_mode": "round_prefer_ceil"}),
    ("linear", "half_pixel_symmetric", {}),
])
def test_resize_matches_ort(mode, ctm, extra):
    x = f32(2, 3, 7, 9)
    for scales in (np.array([1, 1, 0.6, 1.7], np.float32), np.array([1, 1, 2.5, 0.4], np.float32)):
        m = model("Resize", {"x": x}, {"mode": mode, "coordinate_transformation_mode": ctm, **extra},
                  consts={"scales": scales})
        m = with_input_names(m, ["x", "", "scales"])
        # The onnx reference is the oracle: onnxruntime differs where float32 rounding lands on a tie
        # (nearest) and in what align_corners divides by when scales, not sizes, are given.
        got = GraphcBackend.prepare(m).run([x])[0]
        np.testing.assert_allclose(got, ReferenceEvaluator(m).run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_resize_tf_crop_and_resize_sizes_and_uint8():
    x = f32(1, 2, 6, 6)
    roi = np.array([0, 0, 0.2, 0.1, 1, 1, 1.3, 0.8], np.float32)
    m = model("Resize", {"x": x}, {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                                   "extrapolation_value": -5.0}, consts={"roi": roi, "sizes": i64(1, 2, 5, 8)})
    compare_ort(with_input_names(m, ["x", "roi", "", "sizes"]), {"x": x}, rtol=1e-4, atol=1e-5)
    xu = RNG.integers(0, 255, (1, 1, 5, 5)).astype(np.uint8)
    m = model("Resize", {"x": xu}, {"mode": "linear"}, consts={"scales": np.array([1, 1, 1.5, 1.5], np.float32)})
    got = GraphcBackend.prepare(with_input_names(m, ["x", "", "scales"])).run([xu])[0]
    want = ReferenceEvaluator(m).run(None, {"x": xu})[0]
    assert got.dtype == np.uint8 and np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_grid_sample_matches_reference(mode, padding):
    x = f32(2, 3, 5, 6)
    grid = (RNG.uniform(-1.3, 1.3, (2, 4, 7, 2))).astype(np.float32)
    for align in (0, 1):
        m = model("GridSample", {"x": x, "grid": grid}, {"mode": mode, "padding_mode": padding,
                                                         "align_corners": align}, opset=20)
        if mode == "cubic" and padding == "border":  # onnxruntime clamps cubic taps differently
            got = GraphcBackend.prepare(m).run([x, grid])[0]
            np.testing.assert_allclose(got, _ref(m, {"x": x, "grid": grid}), rtol=1e-4, atol=1e-4)
        else:
            compare_ort(m, {"x": x, "grid": grid}, rtol=1e-4, atol=1e-4)


def test_grid_sample_volumetric():
    x = f32(1, 2, 3, 4, 5)
    grid = RNG.uniform(-1.1, 1.1, (1, 2, 3, 4, 3)).astype(np.float32)
    m = model("GridSample", {"x": x, "grid": grid}, {"mode": "linear"}, opset=22)
    got = GraphcBackend.prepare(m).run([x, grid])[0]
    np.testing.assert_allclose(got, _ref(m, {"x": x, "grid": grid}), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_with_negative_pads_and_axes(mode):
    x = f32(3, 5, 6)
    m = model("Pad", {"x": x}, {"mode": mode}, opset=19,
              consts={"pads": i64(2, -1, 1, 2), "value": np.array(1.5, np.float32), "axes": i64(0, 2)})
    compare_ort(m, {"x": x})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_reductions_match_ort(reduction):
    data = f32(4, 5, 3)
    idx = np.array([[[0, 1]], [[3, 0]], [[0, 1]]], np.int64)  # repeated targets exercise the reduction
    upd = f32(3, 1, 3)
    if reduction == "none":
        idx = np.array([[[0, 1]], [[3, 0]], [[2, 2]]], np.int64)
    compare_ort(model("ScatterND", {"d": data, "i": idx, "u": upd}, {"reduction": reduction}, opset=18),
                {"d": data, "i": idx, "u": upd})
    ei = np.array([[1, -1, 0], [2, 2, 4]], np.int64).reshape(2, 3, 1).repeat(3, axis=2)
    if reduction == "none":
        ei = np.array([[0, 1, 2], [3, 4, 0]], np.int64).reshape(2, 3, 1).repeat(3, axis=2)
    eu = f32(2, 3, 3)
    compare_ort(model("ScatterElements", {"d": data[:, :, :], "i": ei, "u": eu},
                      {"axis": 1, "reduction": reduction}, opset=18), {"d": data, "i": ei, "u": eu})


def test_gather_family_and_misc_match_ort():
    x = f32(4, 5, 6)
    cases = [
        ("GatherND", {"x": x, "i": np.array([[[1, -1], [0, 2]]] * 4, np.int64).reshape(4, 2, 2)},
         {"batch_dims": 1}),
        ("GatherElements", {"x": x, "i": RNG.integers(-5, 5, (4, 2, 6))}, {"axis": 1}),
        ("Gather", {"x": x, "i": np.array([[-1, 0], [2, 2]], np.int64)}, {"axis": 2}),
        ("Trilu", {"x": x}, {"upper": 0}),
        ("Compress", {"x": x, "c": np.array([1, 0, 1], bool)}, {"axis": 1}),
        ("OneHot", {"i": np.array([[0, -1], [7, 2]], np.int64), "d": np.array(4, np.int64),
                    "v": np.array([-1, 3], np.float32)}, {"axis": 1}),
        ("ReverseSequence", {"x": f32(5, 3, 2), "l": np.array([5, 1, 3], np.int64)},
         {"time_axis": 0, "batch_axis": 1}),
        ("ReverseSequence", {"x": f32(3, 5), "l": np.array([2, 5, 0], np.int64)}, {"time_axis": 1, "batch_axis": 0}),
        ("DepthToSpace", {"x": f32(2, 8, 3, 4)}, {"blocksize": 2, "mode": "CRD"}),
        ("SpaceToDepth", {"x": f32(2, 2, 6, 4)}, {"blocksize": 2}),
        ("EyeLike", {"x": f32(3, 5)}, {"k": -1, "dtype": TP.INT32}),
        ("Tile", {"x": f32(2, 3), "r": np.array([2, 1], np.int64)}, {}),
        ("NonZero", {"x": np.array([[0, 1, 2], [3, 0, 0]], np.int32)}, {}),
    ]
    for op, ins, attrs in cases:
        for k, v in ins.items():
            if v.dtype == np.int64 and op == "GatherElements":
                ins[k] = v.astype(np.int64)
        compare_ort(model(op, ins, attrs, opset=21 if op != "OneHot" else 11), ins)


def test_unique_orders_and_outputs():
    x = np.array([[3, 1], [1, 3], [3, 1], [0, 2]], np.int64)
    for attrs in ({"sorted": 1}, {"sorted": 0}, {"sorted": 0, "axis": 0}, {"sorted": 1, "axis": -1}):
        compare_ort(model("Unique", {"x": x}, attrs, n_out=4), {"x": x})


def test_split_slice_range_eval():
    x = f32(7, 4)
    compare_ort(model("Split", {"x": x}, {"num_outputs": 3}, opset=18, n_out=3), {"x": x})
    compare_ort(model("Slice", {"x": x}, {}, consts={"s": i64(-1, 3), "e": i64(-100, 0), "a": i64(0, 1),
                                                    "st": i64(-2, -1)}), {"x": x})
    got = GraphcBackend.prepare(model("Range", {"a": np.array(1.5, np.float32), "b": np.array(-2, np.float32),
                                                "c": np.array(-0.5, np.float32)}))
    np.testing.assert_allclose(got.run([np.array(1.5, np.float32), np.array(-2, np.float32),
                                        np.array(-0.5, np.float32)])[0], np.arange(1.5, -2, -0.5))


def test_constant_attribute_forms():
    for attr, val, want in [("value_floats", [1.0, 2.5], np.array([1, 2.5], np.float32)),
                            ("value_int", 7, np.array(7, np.int64)),
                            ("value_ints", [1, 2], np.array([1, 2], np.int64)),
                            ("value_float", 0.5, np.array(0.5, np.float32))]:
        m = oh.make_model(oh.make_graph([oh.make_node("Constant", [], ["y"], **{attr: val})], "t", [],
                                        [oh.make_tensor_value_info("y", 0, None)]),
                          opset_imports=[oh.make_opsetid("", 21)])
        rep = GraphcBackend.prepare(m)
        got = rep.run([])[0]
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        assert rep.graph.outputs[0].type == TensorType(DType.from_np(want.dtype), want.shape)


# ---- legacy opsets --------------------------------------------------------------------------------------
def _ref(m, ins):
    return ReferenceEvaluator(m).run(None, ins)[0]


def _ort(m, ins):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, ins)[0]


@pytest.mark.parametrize("op,attrs,opset,ins,want", [
    ("Slice", {"starts": [1, 0], "ends": [3, -1], "axes": [0, 1]}, 9, {"x": f32(4, 5)}, _ref),
    ("Pad", {"pads": [1, 0, 2, 1], "mode": "constant", "value": 2.0}, 2, {"x": f32(3, 4)}, _ref),
    ("Pad", {"pads": [1, 2, 1, 0], "mode": "reflect"}, 2, {"x": f32(3, 4)}, _ref),
    ("Squeeze", {"axes": [1]}, 11, {"x": f32(3, 1, 4)}, _ref),
    ("Unsqueeze", {"axes": [0, 3]}, 11, {"x": f32(3, 4)}, _ref),
    ("Reshape", {"shape": [2, -1]}, 1, {"x": f32(3, 4)}, lambda m, ins: ins["x"].reshape(2, 6)),
    ("Concat", {}, 1, {"a": f32(2, 3), "b": f32(2, 2)}, lambda m, ins: np.concatenate([ins["a"], ins["b"]], 1)),
    ("Upsample", {"scales": [1.0, 1.0, 2.0, 3.0], "mode": "nearest"}, 7, {"x": f32(1, 2, 3, 2)}, _ort),
    ("Upsample", {"scales": [1.0, 1.0, 2.0, 2.0], "mode": "linear"}, 7, {"x": f32(1, 1, 3, 3)}, _ort),
    ("Upsample", {"mode": "nearest"}, 9, {"x": f32(1, 1, 2, 2), "s": np.array([1, 1, 3, 2], np.float32)}, _ort),
    ("Resize", {"mode": "nearest"}, 10, {"x": f32(1, 1, 2, 3), "s": np.array([1, 1, 2, 1.5], np.float32)}, _ort),
    ("Resize", {"mode": "linear"}, 10, {"x": f32(1, 1, 2, 3), "s": np.array([1, 1, 2, 2], np.float32)}, _ort),
])
def test_legacy_opsets_are_upgraded(op, attrs, opset, ins, want):
    m = model(op, ins, attrs, opset=opset)
    got = GraphcBackend.prepare(m).run(list(ins.values()))[0]
    expected = want(m, ins)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_split_attribute_before_opset_13():
    x = f32(6, 2)
    m = model("Split", {"x": x}, {"split": [2, 4]}, opset=11, n_out=2)
    a, b = GraphcBackend.prepare(m).run([x])
    assert np.array_equal(a, x[:2]) and np.array_equal(b, x[2:])


def test_runtime_errors_name_the_node():
    x = f32(3, 4)
    m = model("Gather", {"x": x, "i": np.array([5], np.int64)}, {})
    with pytest.raises(ExecutionError, match="Gather node .*indices contain 5, out of range for a dim of size 3"):
        GraphcBackend.prepare(m).run([x, np.array([5], np.int64)])
