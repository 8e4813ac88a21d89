"""The fuzzer (graphc/tools/fuzz.py): a bounded slice of cases, its worker pool, and the bugs it found.

The full run is ``python -m graphc.tools.fuzz --cases 10000 --seed 0``; here a few hundred cases run
in-process, a few through the real worker pool, and the pool is shown to report a crash and a hang.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphc as gc
from graphc.tools import fuzz
from graphc.errors import GraphcError, OpAttributeError, ShapeError

SLICE = 1000  # cases run in-process by the CI slice (about 8 s on one core)


@pytest.fixture(scope="module")
def corpus():
    return fuzz.load_corpus()


def test_corpus_holds_node_cases_and_models(corpus):
    names = {s.name for s in corpus}
    assert len(corpus) > 1000
    assert {"tiny_cnn", "built_mlp", "built_if", "test_relu"} <= names


def test_cases_are_reproducible(corpus):
    a, b = fuzz.make_case(corpus, 5, 42), fuzz.make_case(corpus, 5, 42)
    assert a.model == b.model and a.mutations == b.mutations and a.source == b.source
    assert fuzz.make_case(corpus, 5, 43).model != a.model


def test_ci_slice_no_exception_but_graphc_errors(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_MEMORY_LIMIT", fuzz.WORKER_MEMORY_LIMIT)
    outcomes: dict[str, int] = {}
    bad = []
    for i in range(SLICE):
        folder = tmp_path / str(i)
        folder.mkdir()
        r = fuzz.run_case(fuzz.make_case(corpus, 20240, i), str(folder), timeout=20)
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        if r["outcome"] not in ("ok", "refused"):
            bad.append(f"case 20240:{i} ({r['source']}, {r['mutations']}): {r['outcome']} at {r['stage']}: "
                       f"{r['error']}\n{r.get('traceback', '')}")
    assert not bad, "\n".join(bad)
    # both outcomes occur, so the slice exercises running as well as refusing
    assert outcomes.get("ok", 0) > SLICE // 20 and outcomes.get("refused", 0) > SLICE // 4, outcomes


def test_pool_runs_cases_in_workers(tmp_path):
    summary = fuzz.run_pool(range(6), seed=3, jobs=1, timeout=20, out_dir=str(tmp_path))
    assert summary["cases"] == 6 and sum(summary["counts"].values()) == 6
    assert summary["counts"]["failure"] == summary["counts"]["crash"] == summary["counts"]["hang"] == 0


FAKE_WORKER = textwrap.dedent("""
    import json, os, sys, tempfile, time
    work = tempfile.mkdtemp()
    os.makedirs(os.path.join(work, "case"))
    open(os.path.join(work, "case", "model.onnx"), "wb").write(b"model bytes")
    print(json.dumps({"ready": 1, "workdir": work}), flush=True)
    for line in sys.stdin:
        i = int(line)
        if i == 1:
            os.abort()          # an interpreter crash
        if i == 2:
            time.sleep(3600)    # stuck where no signal reaches
        print(json.dumps({"seed": 0, "index": i, "outcome": "ok", "stage": None, "error": None}), flush=True)
""")


def test_pool_reports_crash_and_hang_and_saves_them(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(FAKE_WORKER)
    out = tmp_path / "out"
    summary = fuzz.run_pool(range(5), seed=0, jobs=2, timeout=0.2, out_dir=str(out),
                            worker_cmd=[sys.executable, str(script)])
    assert summary["counts"] == {"ok": 3, "refused": 0, "failure": 0, "hang": 1, "crash": 1}
    crash = out / "crash-0-1"
    assert (crash / "model.onnx").read_bytes() == b"model bytes"
    assert "worker exited with status" in json.loads((crash / "result.json").read_text())["error"]
    assert (out / "hang-0-2" / "result.json").exists()


def test_case_timeout_is_a_hang(corpus, tmp_path, monkeypatch):
    import time

    case = fuzz.make_case(corpus, 0, 0)
    monkeypatch.setattr(gc, "import_onnx", lambda *a, **k: time.sleep(5))
    r = fuzz.run_case(case, str(tmp_path), timeout=0.2)
    assert r["outcome"] == "hang" and r["stage"] == "import"


# ---- regressions: each bug the fuzzer found, as a small model ----------------------------------------
def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "m", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, dtype=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_attribute_moved_to_an_input_must_hold_numbers():
    """Unsqueeze-11 'axes' given as a string crashed the opset upgrade with ValueError."""
    node = helper.make_node("Unsqueeze", ["x"], ["y"], name="u", axes=[0])
    node.attribute[0].CopyFrom(helper.make_attribute("axes", "\x00"))
    with pytest.raises(OpAttributeError, match=r"Unsqueeze node 'u': attribute 'axes' must hold numbers"):
        gc.import_onnx(_model([node], [_vi("x", shape=[2])], [_vi("y")], opset=11))


def test_dft_axis_of_another_type():
    node = helper.make_node("DFT", ["x"], ["y"], name="dft")
    node.attribute.append(helper.make_attribute("axis", "one"))
    with pytest.raises(OpAttributeError, match=r"DFT node 'dft': attribute 'axis' must be of type int"):
        gc.import_onnx(_model([node], [_vi("x", shape=[1, 4, 1])], [_vi("y")], opset=17))


def test_negative_declared_dim_is_an_unknown_dim():
    """A dim_value of -1 (some exporters' 'unknown') crashed ahead-of-time evaluation of Shape."""
    m = _model([helper.make_node("Shape", ["x"], ["y"], name="s")], [_vi("x", shape=[-1, 3])],
               [_vi("y", TensorProto.INT64)])
    g = gc.import_onnx(m)
    assert isinstance(g.inputs[0].type.shape[0], str)
    assert gc.prepare(g).run({"x": np.zeros((2, 3), np.float32)})[0].tolist() == [2, 3]


def test_shape_input_claiming_an_absurd_rank():
    """MaxUnpool's output_shape declared [2**31] made inference create 2**31 symbols (a hang)."""
    node = helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], name="unpool", kernel_shape=[2, 2])
    m = _model([node], [_vi("x", shape=[1, 1, 2, 2]), _vi("i", TensorProto.INT64, [1, 1, 2, 2]),
                        _vi("s", TensorProto.INT64, [2**31])], [_vi("y")])
    with pytest.raises(ShapeError, match=r"MaxUnpool node 'unpool': its outputs would have more than"):
        gc.import_onnx(m)


def test_maxunpool_with_output_shape_does_not_build_the_kernel_sized_tensor():
    """A huge kernel_shape with a small output_shape allocated the kernel-sized tensor (a hang)."""
    x = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), "x")
    i = numpy_helper.from_array(np.array([0, 1, 2, 3], np.int64).reshape(1, 1, 2, 2), "i")
    s = numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "s")
    node = helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], name="unpool", kernel_shape=[2**20, 2**20])
    g = gc.import_onnx(_model([node], [], [_vi("y")], [x, i, s]))
    (y,) = gc.prepare(g).run({})
    assert y.shape == (1, 1, 2, 2) and y[0, 0, 0].tolist() == [0.0, 1.0]


def test_lrn_with_a_huge_size():
    """LRN looped once per window position: size=2**62 hung; positions beyond the channels add nothing."""
    x = np.random.default_rng(0).standard_normal((1, 3, 2, 2)).astype(np.float32)
    outs = []
    for size in (5, 2**62 + 1):
        node = helper.make_node("LRN", ["x"], ["y"], name="lrn", size=size)
        g = gc.import_onnx(_model([node], [_vi("x", shape=[1, 3, 2, 2])], [_vi("y")]))
        outs.append(gc.prepare(g).run({"x": x})[0])
    # the window covers every channel in both cases; only alpha/size differs
    assert np.all(np.isfinite(outs[1]))


def test_tfidf_with_a_huge_max_skip_count():
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], name="tfidf", mode="TF", min_gram_length=2,
                            max_gram_length=2, max_skip_count=2**62, ngram_counts=[0, 0],
                            ngram_indexes=[0], pool_int64s=[1, 2])
    g = gc.import_onnx(_model([node], [_vi("x", TensorProto.INT64, [5])], [_vi("y")], opset=17))
    (y,) = gc.prepare(g).run({"x": np.array([1, 2, 9, 1, 2], np.int64)})
    assert y.tolist() == [3.0]  # (1,2) adjacent twice and once with three between


@pytest.mark.parametrize("location", ["../w.bin", "/etc/hostname", "link.bin"])
def test_fuzzer_external_data_cases_are_refused(corpus, tmp_path, location):
    """The fuzzer's hostile external-data cases reach the importer's checks (and nothing else)."""
    import random

    import onnx

    seed = next(s for s in corpus if s.name == "built_mlp")
    model = onnx.ModelProto()
    model.ParseFromString(seed.model)
    case = fuzz.Case(0, 0, seed.name, b"", list(seed.feeds), [])
    kind = {"../w.bin": 0, "/etc/hostname": 1, "link.bin": 2}[location]

    class Fixed(random.Random):
        def randrange(self, *a):
            return kind if a == (7,) else super().randrange(*a)

    fuzz.mutate_external(Fixed(0), model, case)
    case.model = model.SerializeToString()
    r = fuzz.run_case(case, str(tmp_path), timeout=20)
    assert r["outcome"] == "refused" and r["error"].startswith("ExternalDataError"), r
    with pytest.raises(GraphcError):
        gc.import_onnx(os.path.join(str(tmp_path), "model", "model.onnx"))
