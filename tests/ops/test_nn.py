"""The nn family: attention, rotary embedding, recurrent cells, NMS, random ops, DFT/STFT/windows, strings."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import graphc.ops  # noqa: F401  (registers the operators)
from graphc.frontends.onnx.backend import GraphcBackend
from graphc.errors import ShapeError
from graphc.ir import DType, TensorType
from oputil import infer_one, one_node_model

F32 = DType.float32
OPSET = onnx.defs.onnx_opset_version()


# ---- helpers -----------------------------------------------------------------------------------------
def run_both(op: str, inputs: list, attrs: dict | None = None, n_out: int = 1, rtol=1e-5, atol=1e-6, ort=False):
    """Run one node in graphc and in onnx's ReferenceEvaluator (or onnxruntime); compare every output.

    ``inputs`` may hold None for absent optional inputs.
    """
    opset = 22 if ort else OPSET  # the newest opset onnxruntime is sure to know
    model, feeds = one_node_model(op, inputs, attrs, n_out, opset)
    if ort:  # onnxruntime wants output element types
        for o in model.graph.output:
            o.type.tensor_type.elem_type = model.graph.input[0].type.tensor_type.elem_type
    got = GraphcBackend.prepare(model).run(list(feeds.values()))
    if ort:
        import onnxruntime

        sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, feeds)
    else:
        want = ReferenceEvaluator(model).run(None, feeds)
    for g_, w in zip(got, want):
        assert g_.shape == w.shape
        if g_.dtype == object:  # the reference may give str_ arrays
            assert (g_ == w.astype(object)).all()
            continue
        assert g_.dtype == w.dtype
        if g_.dtype == bool:
            assert (g_ == w).all()
        else:
            np.testing.assert_allclose(g_, w, rtol=rtol, atol=atol)
    return got


rng = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- Attention -----------------------------------------------------------------------------------------
def test_attention_infer_3d_gqa_symbolic():
    q = TensorType(F32, ("B", "S", 64))
    k = TensorType(F32, ("B", "L", 32))
    v = TensorType(F32, ("B", "L", 48))
    y, pk, pv, qk = infer_one("Attention", [q, k, v], {"q_num_heads": 4, "kv_num_heads": 2}, n_out=4)
    assert y == TensorType(F32, ("B", "S", 96))
    assert pk == TensorType(F32, ("B", 2, "L", 16))
    assert pv == TensorType(F32, ("B", 2, "L", 24))
    assert qk == TensorType(F32, ("B", 4, "S", "L"))


def test_attention_infer_4d_with_past_adds_lengths():
    q = TensorType(F32, ("B", 8, 3, 16))
    k = TensorType(F32, ("B", 2, 3, 16))
    v = TensorType(F32, ("B", 2, 3, 8))
    pk = TensorType(F32, ("B", 2, 5, 16))
    pv = TensorType(F32, ("B", 2, 5, 8))
    y, k2, v2, qk = infer_one("Attention", [q, k, v, None, pk, pv], n_out=4)
    assert y.shape == ("B", 8, 3, 8)
    assert k2.shape == ("B", 2, 8, 16) and v2.shape == ("B", 2, 8, 8)
    assert qk.shape == ("B", 8, 3, 8)


def test_attention_infer_errors():
    q, k = TensorType(F32, (1, 4, 3, 16)), TensorType(F32, (1, 4, 3, 8))
    with pytest.raises(ShapeError, match=r"Attention node 'n'.*head size of Q and K: 16 vs 8"):
        infer_one("Attention", [q, k, k])
    q3 = TensorType(F32, (1, 3, 16))
    with pytest.raises(ShapeError, match="need the q_num_heads and kv_num_heads"):
        infer_one("Attention", [q3, q3, q3])
    with pytest.raises(ShapeError, match="multiple of the number of key/value heads 3"):
        infer_one("Attention", [TensorType(F32, (1, 4, 3, 8)), TensorType(F32, (1, 3, 3, 8)),
                                TensorType(F32, (1, 3, 3, 8))])
    with pytest.raises(ShapeError, match="same rank"):
        infer_one("Attention", [q3, k, k])


@pytest.mark.parametrize("attrs,mask", [
    ({"is_causal": 1}, None),
    ({"softcap": 2.0, "qk_matmul_output_mode": 2}, "float"),
    ({"is_causal": 1, "qk_matmul_output_mode": 3}, "bool"),
    ({"left_window_size": 1, "right_window_size": 0, "scale": 0.3}, None),
])
def test_attention_matches_reference_gqa_with_past(attrs, mask):
    q, k, v = randn(2, 4, 3, 8), randn(2, 2, 3, 8), randn(2, 2, 3, 6)
    pk, pv = randn(2, 2, 2, 8), randn(2, 2, 2, 6)
    m = None
    if mask == "float":
        m = randn(3, 5)
    elif mask == "bool":
        m = rng.random((2, 1, 3, 5)) > 0.3
    run_both("Attention", [q, k, v, m, pk, pv], attrs, n_out=4)


def test_attention_3d_and_fully_masked_rows_are_zero():
    q, k, v = randn(1, 4, 16), randn(1, 6, 16), randn(1, 6, 8)
    nonpad = np.array([2], np.int64)  # offset 2 - 4 < 0: the first query rows see no key
    (y,) = run_both("Attention", [q, k, v, None, None, None, nonpad],
                    {"q_num_heads": 2, "kv_num_heads": 2, "is_causal": 1})
    assert y.shape == (1, 4, 8)
    assert np.all(y[0, :2] == 0) and np.any(y[0, 2:] != 0)


# ---- RotaryEmbedding, SwiGLU, CausalConvWithState, LinearAttention ------------------------------------
@pytest.mark.parametrize("interleaved,rd", [(0, 0), (1, 4)])
def test_rotary_embedding_matches_reference(interleaved, rd):
    x = randn(2, 3, 24)  # 3-D: 3 heads of 8
    half = (rd or 8) // 2
    cos, sin = randn(10, half), randn(10, half)
    pos = rng.integers(0, 10, (2, 3)).astype(np.int64)
    run_both("RotaryEmbedding", [x, cos, sin, pos], {"num_heads": 3, "interleaved": interleaved,
                                                     "rotary_embedding_dim": rd})


def test_swiglu_value_and_shape_check():
    a, b = randn(3, 4), randn(3, 4)
    (y,) = run_both("SwiGLU", [a, b], {"alpha": 1.5})
    np.testing.assert_allclose(y, a / (1 + np.exp(-1.5 * a)) * b, rtol=1e-5)
    with pytest.raises(ShapeError, match="dim 1 of A and B: 4 vs 5"):
        infer_one("SwiGLU", [TensorType(F32, (3, 4)), TensorType(F32, (3, 5))])


def test_causal_conv_with_state():
    x, w, b, past = randn(2, 3, 5), randn(3, 1, 4), randn(3), randn(2, 3, 3)
    run_both("CausalConvWithState", [x, w, b, past], {"activation": "silu"}, n_out=2)
    out, state = infer_one("CausalConvWithState", [TensorType(F32, ("B", 3, "T")), TensorType(F32, (3, 1, 4))],
                           n_out=2)
    assert out.shape == ("B", 3, "T") and state.shape == ("B", 3, 3)


@pytest.mark.parametrize("rule", ["linear", "gated_delta"])
def test_linear_attention_gqa(rule):
    b, t, hq, hkv, dk, dv = 2, 4, 4, 2, 3, 5
    q, k, v = randn(b, t, hq * dk), randn(b, t, hkv * dk), randn(b, t, hkv * dv)
    past = randn(b, hkv, dk, dv)
    decay = -np.abs(randn(b, t, hkv)) if rule == "gated_delta" else None
    beta = rng.random((b, t, hkv)).astype(np.float32) if rule == "gated_delta" else None
    run_both("LinearAttention", [q, k, v, past, decay, beta],
             {"q_num_heads": hq, "kv_num_heads": hkv, "update_rule": rule}, n_out=2, rtol=1e-4, atol=1e-5)
    y, s = infer_one("LinearAttention", [TensorType(F32, ("B", "T", 12)), TensorType(F32, ("B", "T", 6)),
                                         TensorType(F32, ("B", "T", 10))],
                     {"q_num_heads": 4, "kv_num_heads": 2, "update_rule": "linear"}, n_out=2)
    assert y.shape == ("B", "T", 20) and s.shape == ("B", 2, 3, 5)


# ---- recurrent cells -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("op,gates,extra", [
    ("RNN", 1, {}), ("GRU", 3, {"linear_before_reset": 1}), ("LSTM", 4, {}),
])
def test_recurrent_bidirectional_seq_lens(op, gates, extra):
    T, N, I, H = 4, 3, 5, 6
    x = randn(T, N, I)
    w, r, b = randn(2, gates * H, I) * 0.5, randn(2, gates * H, H) * 0.5, randn(2, 2 * gates * H)
    lens = np.array([4, 2, 3], np.int32)
    h0 = randn(2, N, H)
    inputs = [x, w, r, b, lens, h0]
    if op == "LSTM":
        inputs += [randn(2, N, H), randn(2, 3 * H)]
    n_out = 3 if op == "LSTM" else 2
    # onnxruntime, not the reference evaluator: the latter ignores sequence_lens
    got = run_both(op, inputs, {"hidden_size": H, "direction": "bidirectional", **extra}, n_out=n_out,
                   rtol=1e-4, atol=1e-5, ort=True)
    assert np.all(got[0][3:, :, 1] == 0)  # past a sequence's length, Y is zero


def test_recurrent_infer_layout_and_errors():
    x = TensorType(F32, ("N", "T", 5))
    w, r = TensorType(F32, (1, 24, 5)), TensorType(F32, (1, 24, 6))
    y, yh, yc = infer_one("LSTM", [x, w, r], {"layout": 1}, n_out=3)
    assert y.shape == ("N", "T", 1, 6) and yh.shape == ("N", 1, 6) and yc.shape == ("N", 1, 6)
    with pytest.raises(ShapeError, match="W's first dim \\(num_directions\\): 1 vs 2"):
        infer_one("GRU", [x, TensorType(F32, (1, 18, 5)), TensorType(F32, (1, 18, 6))],
                  {"direction": "bidirectional"}, n_out=2)
    with pytest.raises(ShapeError, match="hidden_size and W's shape: 4 vs 6"):
        infer_one("RNN", [x, TensorType(F32, (1, 6, 5)), TensorType(F32, (1, 6, 6))], {"hidden_size": 4})


# ---- NonMaxSuppression -----------------------------------------------------------------------------------
def test_nms_matches_reference():
    boxes = rng.random((2, 12, 4)).astype(np.float32)
    scores = rng.random((2, 3, 12)).astype(np.float32)
    (sel,) = run_both("NonMaxSuppression", [boxes, scores, np.array([3], np.int64), np.array([0.3], np.float32),
                                            np.array([0.2], np.float32)])
    assert sel.shape[1] == 3 and sel.dtype == np.int64
    (t,) = infer_one("NonMaxSuppression", [TensorType(F32, ("B", "N", 4)), TensorType(F32, ("B", 2, "N"))])
    assert t.dtype == DType.int64 and t.shape[1] == 3
    with pytest.raises(ShapeError, match="boxes must have shape"):
        infer_one("NonMaxSuppression", [TensorType(F32, (1, 5, 3)), TensorType(F32, (1, 2, 5))])


# ---- random generators ---------------------------------------------------------------------------------
def test_random_ops_shape_dtype_and_seed():
    (t,) = infer_one("RandomNormal", [], {"shape": [2, 3], "dtype": TensorProto.DOUBLE})
    assert t == TensorType(DType.float64, (2, 3))
    (t,) = infer_one("RandomUniformLike", [TensorType(DType.float16, ("N", 4))])
    assert t == TensorType(DType.float16, ("N", 4))
    (t,) = infer_one("Multinomial", [TensorType(F32, ("B", 5))], {"sample_size": 7})
    assert t == TensorType(DType.int32, ("B", 7))
    node = helper.make_node("RandomUniform", [], ["y"], shape=[1000], low=2.0, high=3.0, seed=1.0)
    model = helper.make_model(helper.make_graph([node], "r", [], [helper.make_tensor_value_info("y", 1, None)]),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    a, b = GraphcBackend.prepare(model).run([])[0], GraphcBackend.prepare(model).run([])[0]
    assert a.dtype == np.float32 and a.shape == (1000,) and (a == b).all()
    assert a.min() >= 2.0 and a.max() < 3.0 and abs(a.mean() - 2.5) < 0.05
    probs = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
    (y,) = run_both("Bernoulli", [probs], {"seed": 3.0})  # p in {0, 1}: no randomness left
    assert (y == probs).all()


# ---- signal processing -----------------------------------------------------------------------------------
def test_windows_and_mel_match_reference():
    for op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
        run_both(op, [np.array(10, np.int64)], {"periodic": 0})
    (t,) = infer_one("HannWindow", [TensorType(DType.int64, ())], consts={0: np.array(7, np.int64)})
    assert t == TensorType(F32, (7,))
    run_both("MelWeightMatrix", [np.array(8, np.int64), np.array(64, np.int64), np.array(8000, np.int64),
                                 np.array(0.0, np.float32), np.array(4000.0, np.float32)])


@pytest.mark.parametrize("inverse,onesided,last", [(0, 0, 1), (0, 1, 1), (1, 0, 2), (1, 1, 2)])
def test_dft_matches_reference(inverse, onesided, last):
    x = randn(2, 8, 3, last)
    run_both("DFT", [x, None, np.array(1, np.int64)], {"inverse": inverse, "onesided": onesided},
             rtol=1e-4, atol=1e-5)


def test_dft_and_stft_infer():
    (t,) = infer_one("DFT", [TensorType(F32, ("B", 16, 1)), None, TensorType(DType.int64, ())], {"onesided": 1},
                     consts={2: np.array(-2, np.int64)})
    assert t.shape == ("B", 9, 2)
    with pytest.raises(ShapeError, match="not the last"):
        infer_one("DFT", [TensorType(F32, ("B", 16, 1)), None, TensorType(DType.int64, ())],
                  consts={2: np.array(-1, np.int64)})
    (t,) = infer_one("STFT", [TensorType(F32, ("B", 64, 1)), TensorType(DType.int64, ()), None,
                              TensorType(DType.int64, ())], consts={1: np.array(8, np.int64),
                                                                    3: np.array(16, np.int64)})
    assert t.shape == ("B", 7, 9, 2)
    x = randn(2, 64, 1)
    run_both("STFT", [x, np.array(8, np.int64), np.hanning(16).astype(np.float32)], rtol=1e-4, atol=1e-4)


# ---- strings ---------------------------------------------------------------------------------------------
def strings(*xs):
    return np.array(xs, dtype=object)


def test_string_ops():
    y, z = run_both("StringSplit", [strings("a,b,,c", "", "x")], {"delimiter": ","}, n_out=2)
    assert y.shape == (3, 4) and list(z) == [4, 1, 1]
    (c,) = run_both("StringConcat", [strings("a", "bb"), strings("!")])
    assert list(c) == ["a!", "bb!"]
    (m,) = run_both("RegexFullMatch", [strings("abc@x.com", "nope", "q@y.org")], {"pattern": r"\w+@\w+\.(com|org)"})
    assert list(m) == [True, False, True]
    (n,) = run_both("StringNormalizer", [strings("The", "cat", "THE")],
                    {"stopwords": ["the"], "case_change_action": "UPPER"})
    assert list(n) == ["CAT"]
    with pytest.raises(ShapeError, match=r"\[C\] or \[1, C\]"):
        infer_one("StringNormalizer", [TensorType(DType.string, (2, 3))])


def test_tfidf_matches_reference():
    x = np.array([[1, 1, 3, 3, 3, 7, 5, 6], [8, 6, 7, 5, 6, 8, 5, 6]], np.int32)
    attrs = dict(mode="TFIDF", min_gram_length=1, max_gram_length=2, max_skip_count=2, ngram_counts=[0, 4],
                 ngram_indexes=[0, 1, 2, 3, 4, 5, 6], pool_int64s=[2, 3, 5, 4, 5, 6, 7, 8, 6, 7],
                 weights=[1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 1.0])
    (y,) = run_both("TfIdfVectorizer", [x], attrs)
    assert y.shape == (2, 7) and y.sum() > 0
    (t,) = infer_one("TfIdfVectorizer", [TensorType(DType.int64, ("N", "C"))], attrs)
    assert t == TensorType(F32, ("N", 7))
