"""Running from several threads at once: prepared executables, the ONNX backend API and the Session.

One prepared executable run from four threads with distinct inputs must give, bit for bit, what it
gives run alone (each run in flight has its own arena). A Session's runs take turns: concurrent
training steps lose no update, and a run re-entered from its own thread is refused with a clear error.
"""
from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.errors import GraphcError
from graphc.frontends.onnx import backend as onnx_backend
from graphc.models.light import path, with_random_weights

THREADS = 4
RUNS = 6  # per thread


def _in_threads(fn, n=THREADS):
    """Run ``fn(k)`` for k in range(n) on n threads started together; re-raise the first error."""
    barrier = threading.Barrier(n)
    errors = []

    def work(k):
        try:
            barrier.wait()
            fn(k)
        except BaseException as e:  # noqa: BLE001  (reported by the main thread)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def squeezenet():
    model, feeds = with_random_weights(onnx.load(path("squeezenet")), seed=3)
    rng = np.random.default_rng(0)
    # distinct inputs: the image differs per run, the other feeds (BatchNorm-like parameters) stay
    inputs = [[rng.standard_normal(f.shape).astype(f.dtype) if i == 0 else f for i, f in enumerate(feeds)]
              for _ in range(THREADS * RUNS)]
    return model, inputs


def _check_concurrent(run, inputs):
    want = [run(x) for x in inputs]  # one thread, one run at a time
    got = [None] * len(inputs)

    def work(k):
        for j in range(k, len(inputs), THREADS):
            got[j] = run(inputs[j])

    _in_threads(work)
    wrong = [j for j, (g, w) in enumerate(zip(got, want))
             if len(g) != len(w) or not all(np.array_equal(a, b) for a, b in zip(g, w))]
    assert not wrong, f"{len(wrong)} of {len(inputs)} concurrent runs differ from the same runs made one at a time"
    assert not all(np.array_equal(want[0][-1], w[-1]) for w in want[1:])  # the inputs do make a difference


@pytest.mark.parametrize("level", [None, 2])
def test_executable_run_from_threads(squeezenet, level):
    model, inputs = squeezenet
    g = gc.import_onnx(model)
    exe = gc.prepare(g if level is None else gc.compile(g, level=level), backend="numpy")
    assert exe.program is not None  # the preallocated fast path, the one whose arena was shared
    _check_concurrent(exe.run, inputs)


def test_backend_api_run_from_threads(squeezenet):
    model, inputs = squeezenet
    rep = onnx_backend.prepare(model)
    _check_concurrent(rep.run, inputs)


def test_runs_in_flight_get_their_own_arena():
    """Each run that starts while another is in flight builds a program of its own; afterwards runs reuse them."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [64, 64], name="x")
        y = gc.tanh(x @ x) * 2.0 + x
    g.outputs = [y.value]
    exe = gc.prepare(g, backend="numpy")
    x0 = np.ones((64, 64), np.float32)
    exe.run([x0])
    assert len(exe._idle) == 1
    inside = threading.Barrier(THREADS)
    seen = []

    def work(k):
        # every thread runs while the others are between runs: all four programs are out at once
        prog = exe._take()
        seen.append(prog)
        inside.wait()
        exe._idle.append(prog)

    _in_threads(work)
    assert len({id(p) for p in seen}) == THREADS and len(exe._idle) == THREADS
    assert len({id(p.arena) for p in seen}) == THREADS
    np.testing.assert_allclose(exe.run([x0])[0], np.tanh(x0 @ x0) * 2.0 + x0, rtol=1e-6)
    assert len(exe._idle) == THREADS  # a run takes one and gives it back


def test_session_runs_from_threads_take_turns():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [3], name="x")
        w = gc.Variable(np.array([0.5, -1.0, 2.0], np.float32), name="w")
        loss = gc.reduce_sum(w * w * w * x + (x + x) * w)
        step = gc.optim.SGD(0.01).minimize(loss)
    feed = np.array([0.3, 0.2, -0.1], np.float32)

    alone = gc.Session(g)
    for _ in range(THREADS * RUNS):
        alone.run(step, {x: feed})

    sess = gc.Session(g)
    _in_threads(lambda k: [sess.run(step, {x: feed}) for _ in range(RUNS)])
    # every step saw the previous step's w: the same sequence of updates as on one thread, bit for bit
    np.testing.assert_array_equal(sess.variable(w), alone.variable(w))

    feeds = [np.full(3, k, np.float32) for k in range(THREADS * RUNS)]
    want = [alone.run(loss, {x: f}) for f in feeds]
    got = [None] * len(feeds)

    def infer(k):
        for j in range(k, len(feeds), THREADS):
            got[j] = sess.run(loss, {x: feeds[j]})

    _in_threads(infer)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.usefixtures("forget_custom_ops")
def test_session_run_reentered_from_its_own_thread_is_refused():
    holder = {}

    def inner_run(a):
        sess = holder["sess"]
        return sess.run(holder["other"], {holder["x"]: a}).astype(a.dtype)

    reenter = gc.custom_op("ReenterSession", numpy_impl=inner_run, infer_shape="same")
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2], name="x")
        other = x * 2.0
        y = reenter(x)
    sess = gc.Session(g)
    holder.update(sess=sess, other=other, x=x)
    with pytest.raises(GraphcError, match="called again from inside a run of the same session"):
        sess.run(y, {x: np.ones(2, np.float32)})
    # the session is usable afterwards
    np.testing.assert_array_equal(sess.run(other, {x: np.ones(2, np.float32)}), [2.0, 2.0])
