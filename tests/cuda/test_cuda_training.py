"""Training on the CUDA backend: gc.Session(g, backend="cuda") trains mlp_digits, lenet_digits and mingpt with
the NumPy backend's loss curve, keeps the variables in device memory between steps (only feeds go to the
device and only fetches come back), and its state API (variable, set_variable, save, restore) still works.

Run on the CPU emulator (GRAPHC_CUDA_EMULATE semantics, g++); the same checks over 50 steps of the full
models run on a GPU in the ``cuda``-marked test, and the kernels of the three training plans compile with
nvcc in the ``nvcc``-marked one. Scatter-add kernels sum with float atomics, whose order varies: losses are
compared with a tolerance, not bit for bit.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError, GraphcError
from graphc.runtime.cuda.cache import KernelCache

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


@pytest.fixture
def emulated(monkeypatch, tmp_path_factory):
    """backend="cuda" runs on the CPU emulator; returns the transfer counters of every emulated device."""
    from graphc.runtime.cuda import emulator

    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    counts = {"htod": 0, "dtoh": 0, "dtod": 0}
    cache = KernelCache(tmp_path_factory.getbasetemp() / "training-kernel-cache")
    init, htod, dtoh, dtod = (emulator.EmulatedDevice.__init__, emulator.EmulatedDevice.htod,
                              emulator.EmulatedDevice.dtoh, emulator.EmulatedDevice.dtod)

    def counting(name, fn, nbytes):
        def wrapper(self, *args):
            counts[name] += nbytes(*args)
            return fn(self, *args)
        return wrapper

    monkeypatch.setattr(emulator.EmulatedDevice, "__init__", lambda self, cache_=None, **kw: init(self, cache, **kw))
    monkeypatch.setattr(emulator.EmulatedDevice, "htod", counting("htod", htod, lambda ptr, a: np.asarray(a).nbytes))
    monkeypatch.setattr(emulator.EmulatedDevice, "dtoh", counting("dtoh", dtoh, lambda a, ptr: a.nbytes))
    monkeypatch.setattr(emulator.EmulatedDevice, "dtod", counting("dtod", dtod, lambda dst, src, n: n))
    return counts


# ---- the three models -------------------------------------------------------------------------
def _digits(module, steps, batch, **build):
    from graphc.models.digits_data import batches, load_digits_split

    xtr, ytr, _, _ = load_digits_split(seed=0)
    g, t = module.build(seed=0, **build)
    data = batches(xtr, ytr, batch, np.random.default_rng(0))
    return g, t, [dict(zip((t["x"], t["y"]), next(data))) for _ in range(steps)]


def mlp_digits(steps, batch=32):
    from graphc.models import mlp_digits

    return _digits(mlp_digits, steps, batch)


def lenet_digits(steps, batch=16):
    from graphc.models import lenet_digits

    return _digits(lenet_digits, steps, batch)


def mingpt(steps, batch=4, block=16, layers=1, embd=16, heads=2):
    from graphc.models import mingpt

    text = mingpt.load_text()
    vocab = mingpt.Vocab(text)
    data = vocab.encode(text)
    g, t = mingpt.build(len(vocab.chars), block, layers, heads, embd, steps=steps, seed=0)
    rng = np.random.default_rng(0)
    return g, t, [dict(zip((t["idx"], t["targets"]), mingpt.get_batch(data, block, batch, rng)))
                  for _ in range(steps)]


def train(make, steps, backend, **config):
    g, t, feeds = make(steps, **config)
    sess = gc.Session(g, backend=backend)
    losses = [float(sess.run([t["step"], t["loss"]], f)[1]) for f in feeds]
    return np.array(losses), sess


#: (model, steps in the emulator test): the issue's 50 steps, at small batches (about 4-10 s each).
MODELS = [(mlp_digits, 50), (lenet_digits, 50), (mingpt, 50)]


@pytest.mark.parametrize("make,steps", MODELS, ids=lambda m: getattr(m, "__name__", str(m)))
def test_model_trains_like_numpy_on_the_emulator(make, steps, emulated):
    ref, ref_sess = train(make, steps, "numpy")
    got, sess = train(make, steps, "cuda")
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert got[-1] < got[0]  # it learns
    for name in sorted(ref_sess.state)[:6]:  # the variables moved the same way (read back from the device)
        np.testing.assert_allclose(sess.variable(name), ref_sess.variable(name), rtol=1e-3, atol=1e-5, err_msg=name)


@pytest.mark.cuda
@pytest.mark.parametrize("make", [mlp_digits, lenet_digits, mingpt], ids=lambda m: m.__name__)
def test_model_trains_like_numpy_on_the_gpu_for_50_steps(make, monkeypatch):
    pytest.importorskip("pycuda.driver")
    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    config = {"batch": 128} if make is mlp_digits else {"batch": 64} if make is lenet_digits else \
        {"batch": 16, "block": 32, "layers": 2, "embd": 64, "heads": 4}
    ref, _ = train(make, 50, "numpy", **config)
    got, _ = train(make, 50, "cuda", **config)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-5)


# ---- variables live on the device ---------------------------------------------------------------
def test_variables_stay_on_the_device_between_steps(emulated):
    from graphc.runtime.cuda.state import DeviceState

    g, t, feeds = mlp_digits(6)
    sess = gc.Session(g, backend="cuda")
    assert isinstance(sess.state, DeviceState)
    sess.run([t["step"], t["loss"]], feeds[0])  # prepares: arena, constants and variables go up once
    var_bytes = sum(sess.state.nbytes(n) for n in sess.state)
    for f in feeds[1:]:
        before = dict(emulated)
        _, loss = sess.run([t["step"], t["loss"]], f)
        moved = {k: emulated[k] - before[k] for k in emulated}
        assert moved["htod"] == sum(x.nbytes for x in f.values())  # the feeds, nothing else
        assert moved["dtoh"] == np.asarray(loss).nbytes == 4  # the one fetch
        assert moved["dtod"] == var_bytes  # each Assign's value into its variable's buffer, on the device
    before = emulated["dtoh"]
    w = sess.variable("fc1/w")  # read on demand...
    assert emulated["dtoh"] - before == w.nbytes
    sess.variable("fc1/w")  # ...and kept until the next step writes it
    assert emulated["dtoh"] - before == w.nbytes
    sess.run(t["step"], feeds[0])
    sess.variable("fc1/w")
    assert emulated["dtoh"] - before == 2 * w.nbytes


def test_variables_take_no_place_in_a_plans_arena(emulated):
    """A plan reads the variables in the session's own buffers: its arena has no copy of them."""
    g, t, feeds = mlp_digits(1)
    sess = gc.Session(g, backend="cuda")
    sess.run([t["step"], t["loss"]], feeds[0])
    (plan,) = sess._plans.values()
    (prepared,) = plan.executable._prepared.values()
    variables = [v for v in prepared.graph.inputs if v.name in sess.state]
    assert variables and all(id(v) not in prepared.layout.offsets for v in variables)


def _linear(seed=0):
    """A tiny regression whose ops need no matrix product: the session mechanism on its own."""
    g = gc.Graph(seed=seed)
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 4], name="x")
        y = gc.placeholder(gc.float32, ["N", 4], name="y")
        w = gc.Variable(gc.initializers.normal(0.0, 1.0), shape=[4], name="w")
        b = gc.Variable(gc.initializers.zeros(), shape=[4], name="b")
        loss = gc.reduce_mean(gc.square(x * w + b - y))
        step = gc.optim.Adam(0.1).minimize(loss)
    return g, dict(x=x, y=y, w=w, b=b, loss=loss, step=step)


def _batches(n, seed=1):
    r = np.random.default_rng(seed)
    return [(r.standard_normal((8, 4)).astype(np.float32), r.standard_normal((8, 4)).astype(np.float32))
            for _ in range(n)]


def test_state_api_works_on_device_state(emulated, tmp_path):
    sessions = {}
    for backend in ("numpy", "cuda"):
        g, t = _linear()
        sessions[backend] = (gc.Session(g, backend=backend), t)
    data = _batches(6)

    def step(i):
        out = {}
        for backend, (s, t) in sessions.items():
            old_w, _, loss = s.run([t["w"], t["step"], t["loss"]], {t["x"]: data[i][0], t["y"]: data[i][1]})
            out[backend] = (old_w, loss)
        np.testing.assert_allclose(out["cuda"][0], out["numpy"][0], rtol=1e-6)  # fetched before the update
        np.testing.assert_allclose(out["cuda"][1], out["numpy"][1], rtol=1e-5)

    step(0)
    step(1)
    new_w = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    down = emulated["dtoh"]
    for s, _ in sessions.values():
        s.set_variable("w", new_w)  # uploaded to the device at once on cuda
    assert emulated["dtoh"] == down  # checking the new value's shape reads nothing back
    with pytest.raises(FeedError, match="variable 'w' has shape \\[4\\], got a value of shape \\[5\\]"):
        sessions["cuda"][0].set_variable("w", np.zeros(5, np.float32))
    np.testing.assert_array_equal(sessions["cuda"][0].variable("w"), new_w)
    step(2)
    cuda_sess = sessions["cuda"][0]
    cuda_sess.save(tmp_path / "v.npz")  # every variable copied back for the file
    step(3)
    cuda_sess.restore(tmp_path / "v.npz")
    sessions["numpy"][0].restore(tmp_path / "v.npz")
    step(4)
    for name in sessions["numpy"][0].state:
        np.testing.assert_allclose(cuda_sess.variable(name), sessions["numpy"][0].variable(name), rtol=1e-5,
                                   err_msg=name)
    with pytest.raises(FeedError, match="shape"):
        cuda_sess.set_variable("w", np.zeros(5, np.float32))
    with pytest.raises(GraphcError, match="lives on the device"):
        cuda_sess.state["w"] = np.zeros(4, np.float64)


def test_gradient_ops_agree_with_numpy(emulated):
    """The gradients autodiff emits for an embedding (scatter-add), a split, a slice and a cross-entropy
    (one-hot), computed by generated kernels, against the NumPy backend."""
    g = gc.Graph(seed=3)
    with g.as_default():
        idx = gc.placeholder(gc.int64, ["B", 5], name="idx")
        target = gc.placeholder(gc.int64, ["B"], name="target")
        emb = gc.layers.Embedding(7, 6, name="emb")
        h = emb(idx)  # [B, 5, 6]
        a, b, c = gc.split(h, 3, axis=-1)
        mixed = a * gc.nn.tanh(b) + c  # [B, 5, 2]
        logits = gc.reshape(mixed[:, 1:4], [-1, 6])  # a Slice: its gradient scatters back
        loss = gc.nn.softmax_cross_entropy(logits, target)
        grads = gc.gradients(loss, [emb.table])
    feeds = {idx: np.array([[0, 3, 3, 6, 1], [3, 3, 2, 0, 5], [-1, 4, 3, 3, 3]], np.int64),
             target: np.array([5, 0, 2], np.int64)}
    ref = gc.Session(g, backend="numpy").run([loss] + grads, feeds)
    got = gc.Session(g, backend="cuda").run([loss] + grads, feeds)
    for r, x in zip(ref, got):
        np.testing.assert_allclose(x, r, rtol=1e-5, atol=1e-7)
    assert np.count_nonzero(got[1]) > 0


# ---- every kernel of the training plans compiles with nvcc ---------------------------------------
@pytest.mark.nvcc
def test_training_plan_kernels_compile_with_nvcc(emulated, tmp_path):
    from graphc.runtime.cuda.cache import find_nvcc
    from graphc.runtime.cuda.emulator import combined_source
    from graphc.runtime.codegen.launch import DeviceProps
    from graphc.runtime.codegen.lowering import lower

    kernels = {}
    for make in (mlp_digits, lenet_digits, mingpt):
        g, t, feeds = make(1)
        sess = gc.Session(g, backend="cuda")
        sess.run([t["step"], t["loss"]], feeds[0])
        for plan in sess._plans.values():  # the plans the session compiled, lowered for an H100
            for s in lower(plan.executable.plan.graph, DeviceProps()).steps:
                if s.kernel is not None:
                    kernels.setdefault(s.kernel.source, s.kernel)
    assert any("atomicAdd" in src for src in kernels) and any("assign" in k.name for k in kernels.values())
    src = tmp_path / "training.cu"
    src.write_text(combined_source(list(kernels.values())))
    run = subprocess.run([find_nvcc(), "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(tmp_path / "t.ptx"), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "t.ptx").read_text().count(".entry") == len(kernels)
