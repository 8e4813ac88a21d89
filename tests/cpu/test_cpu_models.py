"""The compiled CPU backend on whole models: the nine light CNNs with seeded random weights against
onnxruntime, the tiny CNN through gc.prepare, and training (forward, gradients and optimizer updates as
compiled kernels, the variables in host buffers updated in place) with the NumPy backend's loss curve."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.errors import GraphcWarning
from graphc.frontends.onnx import import_model
from graphc.models.light import NAMES, path, with_random_weights
from graphc.runtime import get_backend
from graphc.runtime.cpu import available
from graphc.runtime.codegen.lowering import HostCall

pytestmark = pytest.mark.skipif(not available(), reason="the CPU backend needs a C++ compiler")


@pytest.mark.parametrize("name", NAMES)
def test_light_model_random_weights_match_onnxruntime_on_the_cpu_backend(name):
    ort = pytest.importorskip("onnxruntime")
    model, feeds = with_random_weights(onnx.load(path(name)), seed=1234)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, dict(zip([i.name for i in sess.get_inputs()], feeds)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphcWarning)  # no fallback to the interpreter
        exe = get_backend("cpu").prepare(import_model(model))
    got = exe.run(feeds)
    steps = exe.prepared().lowered.steps
    assert not [s.node.op_type for s in steps if isinstance(s.call, HostCall)], "ops ran in the interpreter"
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(e).max())))


def test_gc_prepare_takes_the_cpu_backend_and_symbolic_batches():
    g = import_model(onnx.load(str(_tiny_cnn())))
    exe = gc.prepare(g, backend="cpu")
    ref = gc.prepare(g, backend="numpy")
    for n in (1, 4, 7):  # one plan per batch size
        x = np.random.default_rng(n).standard_normal((n, 1, 28, 28)).astype(np.float32)
        np.testing.assert_allclose(exe.run({"image": x})[0], ref.run({"image": x})[0], rtol=1e-5, atol=1e-6)


def _tiny_cnn():
    from pathlib import Path

    import graphc.models

    return Path(graphc.models.__file__).parent / "data" / "tiny_cnn.onnx"


def test_a_sequence_graph_falls_back_to_the_interpreter_with_a_warning():
    from onnx import TensorProto as TP
    from onnx import helper as oh

    g = oh.make_graph([oh.make_node("SequenceConstruct", ["x", "x"], ["s"]),
                       oh.make_node("ConcatFromSequence", ["s"], ["y"], axis=0)], "seq",
                      [oh.make_tensor_value_info("x", TP.FLOAT, [2, 3])], [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    graph = import_model(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))
    with pytest.warns(GraphcWarning, match="NumPy interpreter: value 's' is a"):
        exe = get_backend("cpu").prepare(graph)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(exe.run({"x": x})[0], np.concatenate([x, x]))


def test_a_sequence_at_the_end_runs_after_the_compiled_plan_and_says_so():
    """Nodes that read a sequence (and all after them) run in the interpreter after the compiled head, with
    one warning naming the first; the head stays compiled."""
    from onnx import TensorProto as TP
    from onnx import helper as oh

    g = oh.make_graph([oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Exp", ["r"], ["e"]),
                       oh.make_node("SequenceConstruct", ["r", "e"], ["s"]),
                       oh.make_node("ConcatFromSequence", ["s"], ["y"], axis=0, name="cat")], "seq",
                      [oh.make_tensor_value_info("x", TP.FLOAT, [2, 3])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None), oh.make_tensor_value_info("e", TP.FLOAT, None)])
    graph = import_model(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))
    with pytest.warns(GraphcWarning, match="last 2 node"):
        exe = get_backend("cpu").prepare(graph)
    assert exe.prepared().lowered.steps and not any(isinstance(s.call, HostCall) for s in exe.prepared().lowered.steps)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    y, e = exe.run({"x": x})
    np.testing.assert_allclose(e, np.exp(np.maximum(x, 0)), rtol=1e-6)
    np.testing.assert_allclose(y, np.concatenate([np.maximum(x, 0), e]), rtol=1e-6)


# ---- training ----------------------------------------------------------------------------------------
def _train(make, steps, backend):
    g, t, feeds = make(steps)
    sess = gc.Session(g, backend=backend)
    return np.array([float(sess.run([t["step"], t["loss"]], f)[1]) for f in feeds]), sess


def _mlp(steps):
    from graphc.models import mlp_digits
    from graphc.models.digits_data import batches, load_digits_split

    xtr, ytr, _, _ = load_digits_split(seed=0)
    g, t = mlp_digits.build(seed=0)
    data = batches(xtr, ytr, 32, np.random.default_rng(0))
    return g, t, [dict(zip((t["x"], t["y"]), next(data))) for _ in range(steps)]


def _lenet(steps):
    from graphc.models import lenet_digits
    from graphc.models.digits_data import batches, load_digits_split

    xtr, ytr, _, _ = load_digits_split(seed=0)
    g, t = lenet_digits.build(seed=0)
    data = batches(xtr, ytr, 16, np.random.default_rng(0))
    return g, t, [dict(zip((t["x"], t["y"]), next(data))) for _ in range(steps)]


def _mingpt(steps):
    from graphc.models import mingpt

    text = mingpt.load_text()
    vocab = mingpt.Vocab(text)
    data = vocab.encode(text)
    g, t = mingpt.build(len(vocab.chars), 16, 1, 2, 16, steps=steps, seed=0)
    rng = np.random.default_rng(0)
    return g, t, [dict(zip((t["idx"], t["targets"]), mingpt.get_batch(data, 16, 4, rng))) for _ in range(steps)]


def _mamba(steps):
    from graphc.models import mamba

    g, t = mamba.build(d_model=16, steps=steps, seed=0)
    rng = np.random.default_rng(0)
    return g, t, [dict(zip((t["idx"], t["targets"]), mamba.copying_batch(8, rng))) for _ in range(steps)]


@pytest.mark.parametrize("make", [_mlp, _lenet, _mingpt, _mamba], ids=["mlp_digits", "lenet_digits", "mingpt", "mamba"])
def test_models_train_like_numpy_on_the_cpu_backend(make):
    ref, ref_sess = _train(make, 20, "numpy")
    got, sess = _train(make, 20, "cpu")
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert got[-1] < got[0]
    for name in sorted(ref_sess.state)[:6]:
        np.testing.assert_allclose(sess.variable(name), ref_sess.variable(name), rtol=1e-3, atol=1e-5, err_msg=name)


def test_readme_cpu_backend_command_runs(tmp_path):
    """The command README.md's CPU backend section shows."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    section = (root / "README.md").read_text().split("## CPU backend", 1)[1]
    cmd = section.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert cmd.startswith("graphc run") and "--backend cpu" in cmd
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if shutil.which("graphc", path=env["PATH"]) is None:
        pytest.fail("the graphc console script is not installed next to this Python")
    r = subprocess.run(["bash", "-c", cmd], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "on backend 'cpu'" in r.stdout + r.stderr


def test_a_long_chain_of_small_ops_runs_its_kernels_from_one_call():
    """1,000 small ops at -O0: consecutive kernel launches are batched (gc_run_list), one Python call a run."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [16], name="x")
        y = x
        for i in range(1000):
            y = gc.nn.relu(y * 1.0001) if i % 2 else y + 0.5
    g.outputs.append(y.value)
    plan = gc.compile(g, level=0)
    exe = get_backend("cpu").prepare(plan)
    feeds = {"x": np.linspace(-1, 1, 16, dtype=np.float32)}
    np.testing.assert_array_equal(exe.run(feeds)[0], get_backend("numpy").prepare(plan).run(feeds)[0])
    prepared = exe.prepared()
    kernels = sum(1 for s in prepared.lowered.steps if s.kernel is not None)
    assert kernels >= 1000 and len(prepared.launches) == 1  # every kernel in one batched launch
    before = prepared.device.launches
    exe.run(feeds)
    assert prepared.device.launches - before == kernels


GUARDED_CONCAT = r'''
import ctypes, mmap, sys
import numpy as np
from onnx import TensorProto as TP, helper as oh
import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.cpu import HostDevice, host_props
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.codegen.lowering import lower

g = oh.make_graph([oh.make_node("Concat", ["a", "b"], ["y"], axis=1)], "c",
                  [oh.make_tensor_value_info("a", TP.FLOAT, [1, 128, 28, 28]),
                   oh.make_tensor_value_info("b", TP.FLOAT, [1, 32, 28, 28])],
                  [oh.make_tensor_value_info("y", TP.FLOAT, [1, 160, 28, 28])])
graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))
dev = HostDevice(KernelCache(sys.argv[1]), threads=2)
(step,) = lower(compile_graph(graph).graph, host_props(2)).steps
launch = dev.load(step.kernel)
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
page, nb = mmap.PAGESIZE, 32 * 784 * 4
base = libc.mmap(None, page + nb, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
libc.mprotect(ctypes.c_void_p(base), page, 0)  # the page before b: no access
b = np.ctypeslib.as_array((ctypes.c_float * (32 * 784)).from_address(base + page))
b[:] = 2.0
a = np.ones(128 * 784, np.float32)
y = np.empty(160 * 784, np.float32)
launch(0, 0, [a.ctypes.data, base + page, y.ctypes.data])
assert y[:128 * 784].min() == 1.0 and y[128 * 784:].min() == 2.0
print("ok")
'''


def test_a_concat_input_after_an_unmapped_page_is_read_in_bounds(tmp_path):
    """The C++ the Concat kernel compiles to reads nothing before its inputs (GCC 12's AVX-512 code did: see
    CXX_OPTIONS); in a child process, so that a segfault fails this test instead of killing the run."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", GUARDED_CONCAT, str(tmp_path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, f"exit status {r.returncode}\n{r.stderr[-2000:]}"


def test_a_binding_without_static_shapes_runs_on_the_interpreter_with_one_warning():
    """A size that depends on the data even once the inputs are bound (NonZero's count) cannot be generated:
    that binding of the plan runs on the NumPy interpreter, with a warning naming why, and gives its results."""
    from onnx import TensorProto as TP
    from onnx import helper as oh

    nodes = [oh.make_node("NonZero", ["x"], ["nz"]), oh.make_node("Relu", ["x"], ["r"])]
    g = oh.make_graph(nodes, "dyn", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                      [oh.make_tensor_value_info("nz", TP.INT64, None), oh.make_tensor_value_info("r", TP.FLOAT, None)])
    graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]))
    x = np.array([[0, 1, -2, 0], [3, 0, 0, 4], [0, 0, 5, 0]], np.float32)
    exe = gc.prepare(graph, backend="cpu")
    with pytest.warns(GraphcWarning, match=r"NumPy interpreter \(inputs bound as \{'N': 3\}\): graph 'dyn' uses 1 op\(s\) "
                                         r"the compiled CPU backend has no kernel"):
        nz, r = exe.run({"x": x})
    np.testing.assert_array_equal(nz, np.array(np.nonzero(x)))
    np.testing.assert_array_equal(r, np.maximum(x, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nz, r = exe.run({"x": x})  # the binding is kept: no second warning, same results
    np.testing.assert_array_equal(nz, np.array(np.nonzero(x)))


def test_an_if_on_a_small_input_compiles_once_per_value():
    """silero_vad's shape: the whole net inside an If on the sample rate. The CPU backend compiles one plan per
    value fed (the branch inlined, its ops generated kernels), not the interpreter node by node."""
    from onnx import TensorProto as TP
    from onnx import helper as oh

    def branch(name, op):
        return oh.make_graph([oh.make_node("MatMul", ["x", "w"], ["m"]), oh.make_node(op, ["m"], ["o"])], name, [],
                             [oh.make_tensor_value_info("o", TP.FLOAT, None)])

    w = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    g = oh.make_graph([oh.make_node("Equal", ["sr", "rate"], ["c"]),
                       oh.make_node("If", ["c"], ["y"], then_branch=branch("a", "Tanh"), else_branch=branch("b", "Relu"))],
                      "by_value", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 4]),
                                   oh.make_tensor_value_info("sr", TP.INT64, [])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                      [oh.make_tensor("rate", TP.INT64, [], [16000]), onnx.numpy_helper.from_array(w, "w")])
    graph = import_model(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphcWarning)  # no fallback to the interpreter
        exe = get_backend("cpu").prepare(graph)
        x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
        for sr, fn in ((16000, np.tanh), (8000, lambda v: np.maximum(v, 0)), (16000, np.tanh)):
            y, = exe.run({"x": x, "sr": np.array(sr, np.int64)})
            np.testing.assert_allclose(y, fn(x @ w), rtol=1e-5, atol=1e-6)
    assert sorted(exe.specialized) == [(8000,), (16000,)]
    for one in exe.specialized.values():
        steps = one.prepared({"N": 3}).lowered.steps
        assert steps and not any(isinstance(s.call, HostCall) for s in steps)
