"""The benchmark harness: workloads that every engine runs, the output check before timing, the workers'
environment, and ``python -m graphc.bench --quick`` end to end."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from graphc.bench import workloads as wl
from graphc.bench.engines import relative_error
from graphc.bench.runner import Policy, run_worker, worker_env
from graphc.bench.engines import ENGINES
from graphc.cli import main as graphc_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TRACT = importlib.util.find_spec("tract") is not None


def _ort(w: wl.Workload) -> list:
    return ort.InferenceSession(w.model_path, providers=["CPUExecutionProvider"]).run(None, w.feeds)


@pytest.mark.parametrize("build", [
    lambda d: wl.mlp(d, batch=4, sizes=(12, 8, 3)),
    lambda d: wl.transformer_block(d, seq=8, d_model=16, heads=2),
    lambda d: wl.elementwise_chain(d, numel=4096),
    lambda d: wl.tiny_op_chain(d, length=40),
], ids=["mlp", "transformer", "elementwise", "chain"])
def test_generated_workloads_are_valid_and_graphc_agrees_with_onnxruntime(tmp_path, build):
    from graphc.frontends.onnx import import_model
    from graphc.runtime import get_backend

    w = build(str(tmp_path))
    onnx.checker.check_model(onnx.load(w.model_path), full_check=True)
    assert list(wl.load_feeds(w.model_path)) == list(w.feeds)  # saved feeds come back under the input names
    want = _ort(w)
    assert all(np.isfinite(x).all() and np.std(x) > 1e-3 for x in want)  # a constant output would check nothing
    got = get_backend("numpy").prepare(import_model(w.model_path)).run(w.feeds)
    assert relative_error(got, want) < 1e-4


def test_transformer_block_is_causal(tmp_path):
    """Changing the last position must leave every earlier position's output alone."""
    w = wl.transformer_block(str(tmp_path), seq=8, d_model=16, heads=2)
    sess = ort.InferenceSession(w.model_path, providers=["CPUExecutionProvider"])
    x = w.feeds["x"].copy()
    (a,) = sess.run(None, {"x": x})
    x[:, -1] += 1.0
    (b,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[:, -1], b[:, -1])


def test_light_cnn_workload_has_random_weights_and_logits(tmp_path):
    w = wl.light_cnn(str(tmp_path), "squeezenet")
    model = onnx.load(w.model_path)
    assert len(model.graph.output) == 2  # probabilities and the logits before the Softmax
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.dims and len(t.dims) == 4]
    assert weights and np.std(weights[0]) > 0.01  # not the shipped constant 0.02
    assert w.feeds[next(iter(w.feeds))].shape == (1, 3, 224, 224)


def test_relative_error():
    a = [np.array([1.0, 2.0, 4.0], np.float32)]
    assert relative_error(a, a) == 0
    assert relative_error([a[0] + np.float32(0.04)], a) == pytest.approx(0.01)
    assert relative_error([a[0][:2]], a) == float("inf")
    assert relative_error(a, a + a) == float("inf")
    assert relative_error([np.array([np.nan, 2, 4], np.float32)], a) == float("inf")


def test_worker_env_sets_threads_and_drops_openblas_overrides(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
    env = worker_env(2)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # only the workers' environment changes


def test_wrong_outputs_are_reported_and_not_timed(tmp_path):
    w = wl.mlp(str(tmp_path), batch=2, sizes=(6, 4, 3))
    bogus = str(tmp_path / "bogus.npz")
    np.savez(bogus, _ort(w)[0] + 1.0)
    policy = Policy(min_repeats=1, max_repeats=2, budget_s=0.01, gap_s=0.0)
    r = run_worker(w, ENGINES["graphc-O0"], 1, policy, str(tmp_path), reference=bogus, save_outputs=None)
    assert r.data["status"] == "wrong", r.data
    assert "times_s" not in r.data and r.data["error"] > policy.tolerance
    good = str(tmp_path / "good.npz")
    np.savez(good, *_ort(w))
    r = run_worker(w, ENGINES["graphc-O0"], 1, policy, str(tmp_path), reference=good, save_outputs=None)
    assert r.ok and r.data["error"] < 1e-5 and 1 <= len(r.data["times_s"]) <= 2
    assert r.data["env"]["OPENBLAS_NUM_THREADS"] == "1" and r.data["env"]["OPENBLAS_CORETYPE"] is None
    assert r.data["peak_rss_bytes"] > 10 * 2**20


def test_quick_benchmark_end_to_end(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out_json), "--markdown",
                           str(out_md)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out_json.read_text())
    status = {(r["workload"], r["engine"]): r for r in data["results"]}
    assert {w for w, _ in status} == set(wl.QUICK)
    for (w, engine), r in status.items():
        if engine == "tract" and not HAS_TRACT:
            assert r["status"] == "unavailable"
            continue
        assert r["status"] == "ok", (w, engine, r.get("detail"))
        assert r.get("is_reference") or r["error"] <= data["policy"]["tolerance"]
        assert len(r["times_s"]) >= 3
        assert r["compile_s"] > 0 and r["peak_rss_bytes"] > 0
        assert any(b.get("user_api") == "blas" for b in r["blas"]) or r["blas"][0].get("note")
    assert data["summary"]["chain_us_per_step"] > 0 and data["summary"]["mlp_1t"] > 0
    md = out_md.read_text()
    assert "python -m graphc.bench --quick" in md and "## Summary against the targets" in md
    assert "| graphc-O2" in md and "| onnxruntime | 1 |" in md


def test_graphc_bench_delegates_to_the_harness(capsys):
    assert graphc_main(["bench", "--workloads", "nonesuch"]) == 2
    assert "unknown workload" in capsys.readouterr().err
