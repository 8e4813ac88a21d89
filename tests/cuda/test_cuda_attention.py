"""The Attention op on the CUDA backend (runtime/codegen/ops/nn.py) agrees with the NumPy backend: over a
grid of forms (3-D/4-D, GQA, masks, causal, softcap, KV cache, one query) on the CPU emulator, in mingpt's
sampling graph (which the compiler rewrites into an Attention node) on backend="cuda", and, marked ``cuda``,
on a GPU. The ONNX node test cases of Attention run in test_cuda_emulator.py (every lowered node case)."""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda import CudaBackend
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.cuda.emulator import EMULATOR_PROPS
from graphc.runtime.codegen.libcall import Gemm
from graphc.runtime.codegen.lowering import MissingKernelError, lower

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
_DT = {TP.FLOAT: np.float32, TP.FLOAT16: np.float16, TP.DOUBLE: np.float64, TP.BOOL: np.bool_, TP.INT64: np.int64}


def attention_model(rank, hq, hkv, b=2, sq=5, skv=7, dk=8, dv=6, mask=None, past=0, nonpad=False,
                    dtype=TP.FLOAT, outputs=("y",), seed=0, **attrs):
    """(model bytes, feeds) of one Attention node; ``mask``: None or (TensorProto type, shape)."""
    rng = np.random.default_rng(seed)
    if rank == 4:
        shapes = [(b, hq, sq, dk), (b, hkv, skv, dk), (b, hkv, skv, dv)]
    else:
        shapes = [(b, sq, hq * dk), (b, skv, hkv * dk), (b, skv, hkv * dv)]
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
    ins = [(n, dtype, s) for n, s in zip("qkv", shapes)]
    names = ["q", "k", "v", "", "", "", ""]
    if mask is not None:
        ins.append(("mask", *mask))
        names[3] = "mask"
    if past:
        ins += [("past_key", dtype, (b, hkv, past, dk)), ("past_value", dtype, (b, hkv, past, dv))]
        names[4:6] = ["past_key", "past_value"]
    if nonpad:
        ins.append(("nonpad", TP.INT64, (b,)))
        names[6] = "nonpad"
    while names[-1] == "":
        names.pop()
    feeds = {}
    for n, dt, s in ins:
        if dt == TP.BOOL:
            x = rng.random(s) > 0.3
        elif n == "nonpad":
            x = rng.integers(1, past + skv + 1, size=s).astype(np.int64)
        else:
            x = rng.uniform(-2, 2, size=s).astype(_DT[dt])
        feeds[n] = x
    node = oh.make_node("Attention", names, list(outputs), **attrs)
    graph = oh.make_graph([node], "attention", [oh.make_tensor_value_info(n, dt, list(s)) for n, dt, s in ins],
                          [oh.make_tensor_value_info(o, TP.UNDEFINED, None) for o in outputs if o])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 24)]).SerializeToString(), feeds


def _grid():
    """(id, kwargs): every rank x heads x mask, with causal, softcap, one query, KV cache and dtypes varied."""
    out = []
    masks = {"nomask": None, "bool2d": (TP.BOOL, (5, 7)), "float_b1st": (TP.FLOAT, (2, 1, 5, 7)),
             "short_bool": (TP.BOOL, (1, 5, 4))}
    for j, (rank, (hq, hkv), mname) in enumerate(itertools.product((3, 4), ((4, 4), (4, 2), (4, 1)), masks)):
        kw = dict(rank=rank, hq=hq, hkv=hkv, mask=masks[mname], seed=j)
        extra = []
        if j % 2:
            kw["is_causal"] = 1
            extra.append("causal")
        if j % 3 == 1:
            kw["softcap"] = 2.5
            extra.append("softcap")
        if j % 4 == 3 and mname == "nomask":
            kw.update(sq=1)
            extra.append("one_query")
        if j % 5 == 2:
            kw.update(past=3, mask=None if mname == "nomask" else (masks[mname][0], masks[mname][1][:-1] + (10,)),
                      outputs=("y", "present_key", "present_value"))
            extra.append("past")
        if j % 7 == 4:
            kw["scale"] = 0.3
            extra.append("scale")
        out.append((f"{rank}d_h{hq}_{hkv}_{mname}" + "".join("_" + e for e in extra), kw))
    out.append(("4d_gqa_nonpad_causal", dict(rank=4, hq=4, hkv=2, sq=1, skv=9, nonpad=True, is_causal=1, seed=90)))
    out.append(("4d_left_window_qk_softmax", dict(rank=4, hq=2, hkv=2, is_causal=1, left_window_size=2,
                                                  qk_matmul_output_mode=3, outputs=("y", "", "", "qk"), seed=91)))
    out.append(("3d_double_bidirectional_window", dict(rank=3, hq=2, hkv=1, dtype=TP.DOUBLE, left_window_size=1,
                                                       right_window_size=2, seed=92)))
    out.append(("4d_half_gqa_softcap_float_mask", dict(rank=4, hq=4, hkv=2, dtype=TP.FLOAT16, softcap=4.0,
                                                       mask=(TP.FLOAT16, (5, 7)), seed=93)))
    out.append(("4d_long_rows_block_reduction", dict(rank=4, hq=2, hkv=2, b=1, sq=3, skv=300, seed=94)))
    return out


GRID = _grid()


def _tol(feeds):
    return (2e-3, 2e-3) if feeds["q"].dtype == np.float16 else (1e-4, 1e-5)


def _check(model, feeds, device, where):
    graph = gc.import_onnx(model)
    plan = compile_graph(graph)
    assert [n.op_type for n in plan.graph.nodes] == ["Attention"], where
    got = CudaBackend.prepare(plan, device=device, debug=True).run(feeds)
    ref = gc.prepare(graph, backend="numpy").run(feeds)
    rtol, atol = _tol(feeds)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        r = np.asarray(r)
        assert g.dtype == r.dtype and g.shape == r.shape, where
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=rtol, atol=atol, err_msg=where)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from graphc.runtime.cuda.emulator import EmulatedDevice

    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulator needs g++")
    dev = EmulatedDevice(KernelCache(tmp_path_factory.mktemp("kernel-cache")))
    kernels = [s.kernel for _, kw in GRID for s in lower(compile_graph(gc.import_onnx(attention_model(**kw)[0])).graph,
                                                         EMULATOR_PROPS).steps if s.kernel is not None]
    dev.precompile(kernels)  # one g++ run for the grid
    return dev


@needs_gxx
@pytest.mark.parametrize("name,kw", GRID, ids=[n for n, _ in GRID])
def test_attention_grid_on_the_emulator(name, kw, emulator):
    _check(*attention_model(**kw), emulator, name)


def _steps(**kw):
    return lower(compile_graph(gc.import_onnx(attention_model(**kw)[0])).graph, EMULATOR_PROPS).steps


@pytest.mark.parametrize("rank,hq,hkv,sq,gemms", [(4, 4, 4, 5, 2), (4, 4, 2, 5, 2), (4, 4, 1, 1, 2),
                                                   (3, 4, 4, 5, 4), (3, 4, 1, 1, 2)])
def test_gemms_read_q_k_v_in_place_batched(rank, hq, hkv, sq, gemms):
    """Q @ K^T and P @ V are strided-batched GEMMs over the operands as they are stored (K transposed by the
    call, 3-D heads by a row stride): besides the calls there is only the softmax kernel, no copy. 4-D heads
    (and GQA's query groups, stacked as taller matrices) are one call each; 3-D ones one per batch item."""
    steps = _steps(rank=rank, hq=hq, hkv=hkv, sq=sq, b=2)
    calls = [s.call for s in steps if s.call is not None]
    kernels = [s.kernel.name for s in steps if s.kernel is not None]
    assert len(kernels) == 1 and kernels[0].endswith("_softmax")
    assert all(isinstance(c, Gemm) for c in calls) and len(calls) == gemms
    assert calls[0].trans_b and not calls[0].trans_a and not calls[-1].trans_b
    for first in (True, False):  # Q @ K^T calls, then P @ V ones: each covers every (batch, query head) row once
        part = [c for c in calls if c.trans_b == first]
        assert len(part) == gemms // 2 and sum(c.batch * c.m for c in part) == 2 * hq * sq


def test_half_inputs_scale_q_and_k_as_the_reference_rounds():
    """float16: Q and K times sqrt(scale) each, rounded (two copies), then an unscaled GEMM: what the NumPy
    reference computes, bit for bit in the ONNX fp16 node cases (alpha = scale is 2 ulp off there)."""
    steps = _steps(rank=4, hq=2, hkv=2, dtype=TP.FLOAT16)
    names = [s.kernel.name if s.kernel is not None else "gemm" for s in steps]
    assert names[:2] == ["Attention_0_scale_q", "Attention_0_scale_k"] and names.count("gemm") == 2
    assert all(s.call.alpha == 1.0 for s in steps if s.call is not None)


def test_unsupported_attention_is_reported_by_name():
    model, _ = attention_model(4, 2, 2, qk_matmul_output_mode=7, outputs=("y", "", "", "qk"))
    with pytest.raises(MissingKernelError, match="Attention.*qk_matmul_output_mode 7"):
        lower(compile_graph(gc.import_onnx(model)).graph, EMULATOR_PROPS)


# ---- mingpt: the sampling graph's Attention node on backend="cuda" ------------------------------------------
def _mingpt_generate(backend):
    from graphc.models import mingpt

    vocab = mingpt.Vocab("In the beginning God created the heaven and the earth.")
    g, t = mingpt.build(len(vocab.chars), block_size=8, n_layer=2, n_head=2, n_embd=16, steps=5, seed=3)
    sess = gc.Session(g, backend=backend)
    text = mingpt.generate(sess, t, vocab, "In the b", 4, block=8, seed=1)
    logits = sess.run(t["last_logits"], {t["idx"]: vocab.encode("the eart")[None].astype(np.int64)})
    return sess, text, logits


@needs_gxx
def test_mingpt_generation_on_cuda_emulator_equals_numpy(monkeypatch):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    sess, text, logits = _mingpt_generate("cuda")
    plans = [p.executable.plan.graph for p in sess._plans.values()]
    assert any(n.op_type == "Attention" for g in plans for n in g.nodes)  # the compiler made Attention nodes
    _, ref_text, ref_logits = _mingpt_generate("numpy")
    assert text == ref_text
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)


# ---- on a GPU -----------------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_attention_grid_on_the_gpu(tmp_path):
    from graphc.runtime.cuda.device import PyCudaDevice

    device = PyCudaDevice(KernelCache(tmp_path))
    failures = []
    for name, kw in GRID:
        try:
            _check(*attention_model(**kw), device, name)
        except AssertionError as e:
            failures.append(f"{name}: {str(e)[:300]}")
    assert not failures, "\n".join(failures)
