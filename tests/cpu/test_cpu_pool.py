"""The CPU backend's thread pool (runtime/cpu/device.py, ``gc_pool_run``): a launch's chunks are taken by the
calling thread and whichever workers are awake, so results never depend on how many threads ran them or when
they arrived; two Python threads launching at once (one runs alone while the other holds the pool), a change of
thread count between runs, and a child process forked after the pool started all finish with the same values."""
from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper

import graphc as gc
from graphc.frontends.onnx import import_model
from graphc.runtime import get_backend
from graphc.runtime.cpu import available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU backend needs a C++ compiler")


def _graph(rows: int = 512, cols: int = 300):
    """Elementwise, row (softmax), reduction and GEMM kernels, each big enough to run on several threads."""
    nodes = [oh.make_node("Tanh", ["x"], ["t"]), oh.make_node("Softmax", ["t"], ["s"], axis=-1),
             oh.make_node("MatMul", ["s", "w"], ["m"]), oh.make_node("ReduceSum", ["m"], ["r"], keepdims=0),
             oh.make_node("Sigmoid", ["m"], ["y"])]
    w = np.random.default_rng(0).standard_normal((cols, 200)).astype(np.float32)
    g = oh.make_graph(nodes, "pool", [oh.make_tensor_value_info("x", TP.FLOAT, [rows, cols])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None), oh.make_tensor_value_info("r", TP.FLOAT, None)],
                      [numpy_helper.from_array(w, "w")])
    return import_model(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)]))


@pytest.fixture
def threads():
    before = gc.get_num_threads()
    yield
    gc.set_num_threads(before)


def test_results_do_not_depend_on_the_thread_count(threads):
    g = _graph()
    x = np.random.default_rng(1).standard_normal((512, 300)).astype(np.float32)
    ref = get_backend("numpy").prepare(g).run({"x": x})
    exe = get_backend("cpu").prepare(g)
    results = []
    for n in (1, 2, 4, 1, 2):
        gc.set_num_threads(n)
        results.append(exe.run({"x": x}))
    for got in results:
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)
    assert exe.device.launches > 0


def test_two_python_threads_launch_at_once(threads):
    gc.set_num_threads(2)
    g = _graph(256, 300)
    exes = [get_backend("cpu").prepare(g) for _ in range(2)]
    xs = [np.random.default_rng(k).standard_normal((256, 300)).astype(np.float32) for k in range(2)]
    want = [get_backend("numpy").prepare(g).run({"x": x}) for x in xs]
    errors = []

    def loop(k):
        try:
            for _ in range(30):
                got = exes[k].run({"x": xs[k]})
                for a, b in zip(got, want[k]):
                    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)
        except Exception as e:  # reported below, from the main thread
            errors.append(e)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts), "a launch never finished"
    assert not errors, errors[0]


def _child(queue):
    g = _graph(256, 300)
    x = np.ones((256, 300), np.float32)
    queue.put(float(get_backend("cpu").prepare(g).run({"x": x})[1].sum()))


def test_a_process_forked_after_the_pool_started_runs(threads):
    gc.set_num_threads(2)
    g = _graph(256, 300)
    x = np.ones((256, 300), np.float32)
    want = float(get_backend("cpu").prepare(g).run({"x": x})[1].sum())  # the pool's workers exist now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0, "the forked child did not finish"
    assert queue.get(timeout=5) == pytest.approx(want, rel=1e-5)
