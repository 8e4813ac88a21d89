"""Every op the DSL emits has a CUDA kernel: each public DSL function (math, nn, losses, optimizers,
initializers) as a tiny training graph (forward, gradients w.r.t. its placeholders, an optimizer step;
tests/cuda/dsl_sweep.py) compiles at -O2 and -O0 and lowers with no MissingKernelError; at -O2 one
training step on the CPU emulator equals the NumPy backend's (loss, gradients, updated variables).

Random ops (dropout's RandomUniformLike; RandomNormal, Bernoulli...) draw from Philox, not NumPy's
stream: they are checked by statistics (range, mean and variance within bounds, a fresh draw each run,
seeded determinism, dropout's keep ratio and its one mask shared by the forward and backward passes).
The kernels of the new generators compile with nvcc (marked ``nvcc``); the same checks run on a GPU in
the ``cuda``-marked tests.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from dsl_sweep import CASES, build, feeds_for
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda import CudaBackend
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.cuda.emulator import EMULATOR_PROPS
from graphc.runtime.codegen.lowering import MissingKernelError, lower

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")

#: (case, level) -> why it has no kernel: known gaps, each an xfail that must keep failing (strict).
KNOWN_GAPS = {
    ("math.pad", 0): "at -O0 nothing folds the Pad gradient's shape arithmetic: its pads (Neg of the pads) and the "
                     "unbroadcast axes (NonZero of a shape comparison, a data-dependent size) stay run-time ops, "
                     "and kernels need static shapes and constant pads/axes; -O1 and above fold them",
}
#: Random cases: compared by statistics (below), not with NumPy's stream.
RANDOM_CASES = {"nn.dropout"}
#: Public DSL names whose ops another case's name already covers (re-exports, layer classes, schedules).
COVERED_BY = {
    "math.logical_not": "math.logical_and_or_not", "math.logical_or": "math.logical_and_or_not",
    "math.ones_like": "math.zeros_like_ones_like", "math.squeeze": "math.expand_dims_squeeze",
    "layers.BatchNorm": "layers.batch_norm_training", "layers.CausalSelfAttention": "layers.causal_self_attention",
    "nn.causal_mask_bias": "layers.causal_self_attention", "layers.Conv1D": "layers.conv1d_causal",
    "layers.Conv2D": "layers.conv2d", "layers.Conv3D": "layers.conv3d", "layers.Dense": "layers.dense",
    "layers.Embedding": "layers.embedding", "layers.LayerNorm": "layers.layer_norm",
    "layers.GRUCell": "layers.rnn_GRUCell", "layers.LSTMCell": "layers.rnn_LSTMCell",
    "nn.binary_cross_entropy": "losses.binary_cross_entropy", "nn.mse": "losses.mse",
    "nn.softmax_cross_entropy": "losses.softmax_cross_entropy",
    "nn.softmax_cross_entropy_with_soft_labels": "losses.softmax_cross_entropy_with_soft_labels",
    "nn.sigmoid": "math.sigmoid",
    "nn.tanh": "math.tanh", "optim.Cosine": "optim.SGD_Cosine", "optim.StepDecay": "optim.Adam_StepDecay",
    "optim.Warmup": "optim.Momentum_Warmup_Cosine", "optim.clip_by_global_norm": "optim.SGD_clip_norm",
}
#: Abstract bases: no ops of their own.
BASES = {"layers.Layer", "optim.Optimizer", "optim.Schedule", "initializers.Initializer"}


def _id(c):
    return c.name


# ---- the sweep: every function's forward, backward and optimizer ops lower to kernels ---------------
def test_sweep_covers_every_public_dsl_function():
    from graphc.frontends.dsl import initializers, layers, losses, math, nn, optim

    names = {c.name for c in CASES}
    assert len(names) == len(CASES)
    uncovered = []
    for prefix, mod in [("math", math), ("nn", nn), ("layers", layers), ("losses", losses), ("optim", optim),
                        ("initializers", initializers)]:
        for n in mod.__all__:
            full = f"{prefix}.{n}"
            if full in BASES:
                continue
            case = COVERED_BY.get(full)
            if case is not None:
                assert case in names, (full, case)
            elif not any(c == full or c.startswith(full + "_") for c in names):
                uncovered.append(full)
    assert not uncovered, f"DSL functions with no case in dsl_sweep.py: {uncovered}"


@pytest.mark.parametrize("level", [2, 0], ids=lambda lv: f"O{lv}")
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_dsl_function_lowers_to_cuda_kernels(case, level, request):
    gap = KNOWN_GAPS.get((case.name, level))
    if gap is not None:
        request.applymarker(pytest.mark.xfail(reason=gap, strict=True))
    sub, _, _ = build(case)
    try:
        lower(compile_graph(sub, level=level).graph, EMULATOR_PROPS)
    except MissingKernelError as e:
        pytest.fail(f"{case.name} at -O{level}: no CUDA kernel for {sorted(e.missing)}\n{e}")


def test_known_gaps_are_few_and_named():
    assert all((name, lv) in {(c.name, lv) for c in CASES for lv in (0, 2)} for name, lv in KNOWN_GAPS)
    assert not [k for k in KNOWN_GAPS if k[1] == 2]  # the Session's level has no gap


# ---- one training step on the emulator equals the NumPy backend's -----------------------------------
def _run_feeds(case, sub, g):
    feeds = feeds_for(case, sub)
    feeds.update({n: np.asarray(g.initial_values[n]) for n in g.variables})
    return feeds


@pytest.fixture(scope="module")
def sweep_plans():
    out = {}
    for c in CASES:
        if c.name in RANDOM_CASES:
            continue
        sub, g, _ = build(c)
        out[c.name] = (sub, g, compile_graph(sub, level=2))
    return out


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, sweep_plans):
    from graphc.runtime.cuda.emulator import EmulatedDevice

    dev = EmulatedDevice(KernelCache(tmp_path_factory.mktemp("dsl-sweep-kernels")))
    dev.precompile([s.kernel for _, _, p in sweep_plans.values() for s in lower(p.graph, EMULATOR_PROPS).steps
                    if s.kernel is not None])  # one g++ run for every case (about 15 s)
    return dev


def _same(got, ref, where, rtol=1e-4, atol=1e-5):
    assert len(got) == len(ref), where
    for k, (a, b) in enumerate(zip(got, ref)):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (where, k, a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{where}: output {k}")


@needs_gxx
@pytest.mark.parametrize("case", [c for c in CASES if c.name not in RANDOM_CASES], ids=_id)
def test_training_step_agrees_with_numpy_on_the_emulator(case, emulator, sweep_plans):
    sub, g, plan = sweep_plans[case.name]
    feeds = _run_feeds(case, sub, g)
    ref = gc.prepare(sub, backend="numpy").run(feeds)
    _same(CudaBackend.prepare(plan, device=emulator, debug=True).run(feeds), ref, case.name)


@needs_gxx
@pytest.mark.parametrize("name", ["math.gather", "math.shape", "math.tril", "math.cumsum_exclusive_reverse",
                                  "layers.causal_self_attention", "math.getitem_tensor"])
def test_unfolded_shape_ops_agree_with_numpy_at_O0(name, tmp_path):
    """At -O0 Shape, Size, Range and Trilu stay ops (nothing folds them): their kernels against NumPy."""
    from graphc.runtime.cuda.emulator import EmulatedDevice

    case = next(c for c in CASES if c.name == name)
    sub, g, _ = build(case)
    plan = compile_graph(sub, level=0)
    ops = {n.op_type for n in plan.graph.nodes}
    assert ops & {"Shape", "Range", "Trilu", "CumSum"}, ops
    feeds = _run_feeds(case, sub, g)
    got = CudaBackend.prepare(plan, device=EmulatedDevice(KernelCache(tmp_path)), debug=True).run(feeds)
    _same(got, gc.prepare(sub, backend="numpy").run(feeds), f"{name} -O0")


def _shape_model():
    """Shape (with start/end), Size and Range of a symbolic-batch input: kernels once the batch is bound."""
    nodes = [oh.make_node("Shape", ["x"], ["s"], start=1), oh.make_node("Shape", ["x"], ["t"], start=-2, end=-1),
             oh.make_node("Size", ["x"], ["n"]), oh.make_node("Cast", ["n"], ["nf"], to=TP.FLOAT),
             oh.make_node("Range", ["a", "nf", "d"], ["r"])]
    graph = oh.make_graph(nodes, "shapes", [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 3, 4])],
                          [oh.make_tensor_value_info(n, TP.UNDEFINED, None) for n in ("s", "t", "n", "r")],
                          [oh.make_tensor("a", TP.FLOAT, [], [0.5]), oh.make_tensor("d", TP.FLOAT, [], [2.0])])
    return gc.import_onnx(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 22)]).SerializeToString())


@needs_gxx
def test_shape_size_and_range_kernels_at_O0(tmp_path):
    from graphc.runtime.cuda.emulator import EmulatedDevice

    plan = compile_graph(_shape_model(), level=0, sets={"N": 2})
    assert {"Shape", "Size", "Range"} <= {n.op_type for n in plan.graph.nodes}
    feeds = {"x": np.ones((2, 3, 4), np.float32)}
    got = CudaBackend.prepare(plan, device=EmulatedDevice(KernelCache(tmp_path)), debug=True).run(feeds)
    ref = gc.prepare(_shape_model(), backend="numpy").run(feeds)
    _same(got, ref, "shapes")


# ---- random ops: statistics ------------------------------------------------------------------------
def _random_model(kind: str, seed: float | None = None):
    """One random node, its output fetched (its input 'x' or 'p' where the node takes one)."""
    extra = {} if seed is None else {"seed": seed}
    if kind == "uniform":
        nodes, ins = [oh.make_node("RandomUniform", [], ["y"], shape=[64, 129], low=-1.0, high=3.0, **extra)], []
    elif kind == "normal_like_double":
        nodes = [oh.make_node("RandomNormalLike", ["x"], ["y"], mean=1.0, scale=2.0, dtype=TP.DOUBLE, **extra)]
        ins = [("x", TP.FLOAT, [61, 130])]
    elif kind == "uniform_like_half":
        nodes, ins = [oh.make_node("RandomUniformLike", ["x"], ["y"], **extra)], [("x", TP.FLOAT16, [40, 200])]
    elif kind == "normal":
        nodes, ins = [oh.make_node("RandomNormal", [], ["y"], shape=[7999], **extra)], []
    else:  # bernoulli: rows of probabilities 0.1, 0.5, 0.9 (and 0 and 1 exactly)
        nodes, ins = [oh.make_node("Bernoulli", ["p"], ["y"], dtype=TP.INT32, **extra)], [("p", TP.FLOAT, [5, 3000])]
    graph = oh.make_graph(nodes, kind, [oh.make_tensor_value_info(n, t, s) for n, t, s in ins],
                          [oh.make_tensor_value_info("y", TP.UNDEFINED, None)])
    model = gc.import_onnx(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 22)]).SerializeToString())
    feeds = {n: np.zeros(s, {TP.FLOAT: np.float32, TP.FLOAT16: np.float16}[t]) for n, t, s in ins}
    if kind == "bernoulli":
        feeds["p"] = np.repeat(np.array([0.1, 0.5, 0.9, 0.0, 1.0], np.float32)[:, None], 3000, axis=1)
    return model, feeds


RANDOM_KINDS = ["uniform", "uniform_like_half", "normal", "normal_like_double", "bernoulli"]


def _check_draw(kind: str, y: np.ndarray) -> None:
    """y's statistics against its distribution: means within 5 standard errors, variances within 10%."""
    x = y.astype(np.float64)
    if kind.startswith("uniform"):
        lo, hi = (-1.0, 3.0) if kind == "uniform" else (0.0, 1.0)
        assert x.min() >= lo and x.max() <= hi and x.max() > hi - 0.01 * (hi - lo)
        mean, var = (lo + hi) / 2, (hi - lo) ** 2 / 12
    elif kind.startswith("normal"):
        mean, var = (1.0, 4.0) if kind == "normal_like_double" else (0.0, 1.0)
        assert y.dtype == (np.float64 if kind == "normal_like_double" else np.float32)
        z = (x - mean) / np.sqrt(var)
        assert 0.01 < np.mean(np.abs(z) > 2) < 0.07  # two-sided tail: about 4.6%
    else:
        assert y.dtype == np.int32 and set(np.unique(y)) <= {0, 1}
        freq = x.mean(axis=1)
        assert freq[3] == 0.0 and freq[4] == 1.0
        for f, p in zip(freq[:3], (0.1, 0.5, 0.9)):
            assert abs(f - p) < 5 * np.sqrt(p * (1 - p) / 3000), (f, p)
        return
    n = x.size
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / n), (x.mean(), mean)
    assert abs(x.var() / var - 1) < 0.1, (x.var(), var)


def _random_checks(device, level: int) -> None:
    for kind in RANDOM_KINDS:
        model, feeds = _random_model(kind)
        exe = CudaBackend.prepare(compile_graph(model, level=level), device=device, debug=True)
        (a,), (b,) = exe.run(feeds), exe.run(feeds)
        ref = gc.prepare(model, backend="numpy").run(feeds)[0]
        assert a.shape == ref.shape and a.dtype == ref.dtype, kind
        _check_draw(kind, a)
        _check_draw(kind, b)
        if kind != "bernoulli":
            assert np.mean(a == b) < 0.01, kind  # a fresh draw each run
            assert np.abs(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1]) < 0.05
        # a seeded node: run k of any executable draws the same values, and runs still differ
        model, feeds = _random_model(kind, seed=7.0)
        one = CudaBackend.prepare(compile_graph(model, level=level), device=device)
        two = CudaBackend.prepare(compile_graph(model, level=level), device=device)
        r1 = [one.run(feeds)[0] for _ in range(2)]
        r2 = [two.run(feeds)[0] for _ in range(2)]
        np.testing.assert_array_equal(r1[0], r2[0], err_msg=kind)
        np.testing.assert_array_equal(r1[1], r2[1], err_msg=kind)
        assert not np.array_equal(r1[0], r1[1]), kind


@needs_gxx
@pytest.mark.parametrize("level", [2, 0])
def test_random_ops_have_the_right_statistics_on_the_emulator(level, tmp_path):
    from graphc.runtime.cuda.emulator import EmulatedDevice

    _random_checks(EmulatedDevice(KernelCache(tmp_path)), level)


def test_random_kernels_advance_a_device_counter_without_host_traffic():
    """Each random node: a one-thread kernel bumps its [key, run] state in device memory, then the draw
    reads it; the state is a constant array of the arena (uploaded once, when the plan is prepared)."""
    model, _ = _random_model("normal", seed=7.0)
    steps = lower(compile_graph(model).graph, EMULATOR_PROPS).steps
    assert len(steps) == 2
    bump, draw = steps
    assert bump.kernel.n_elements == 1 and "st[1] += 1ULL" in bump.kernel.source
    assert bump.args[0] is draw.args[0] and isinstance(draw.args[0], np.ndarray)
    key, run = draw.args[0]
    assert run == 0 and key == np.float64(7.0).view(np.uint64)
    assert "gc_philox" in draw.kernel.source and draw.kernel.n_elements == (7999 + 3) // 4


def _dropout_graph(rate=0.3, shape=(64, 50)):
    g = gc.Graph(seed=0)
    with g.as_default():
        x = gc.placeholder(gc.float32, list(shape), name="x")
        y = gc.nn.dropout(x, rate)
        (dx,) = gc.gradients(gc.reduce_sum(y), [x])
    return g, x, y, dx


def _dropout_checks(backend: str, rate=0.3) -> None:
    g, x, y, dx = _dropout_graph(rate)
    sess = gc.Session(g, backend=backend)
    xv = np.random.default_rng(0).uniform(1.0, 2.0, size=x.shape).astype(np.float32)  # never 0
    ya, dxa = sess.run([y, dx], {x: xv})
    yb, _ = sess.run([y, dx], {x: xv})
    scale = np.float32(1.0 / (1.0 - rate))
    keep = dxa != 0
    assert set(np.unique(dxa)) <= {0.0, scale}
    np.testing.assert_allclose(ya, np.where(keep, xv * scale, 0.0), rtol=1e-6)  # forward and backward: one mask
    n = keep.size
    assert abs(keep.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n), keep.mean()
    assert not np.array_equal(ya != 0, yb != 0)  # a new mask each step


@needs_gxx
def test_dropout_keeps_one_mask_per_step_on_the_emulator(monkeypatch):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")
    _dropout_checks("cuda")
    _dropout_checks("numpy")  # the same checks hold for the reference


# ---- nvcc: the new generators' kernels compile -------------------------------------------------------
def _new_kernels():
    """Kernels of the random, scan and index (Shape/Size/Range/Trilu) generators, lowered for an H100."""
    from graphc.runtime.codegen.launch import DeviceProps

    graphs = [compile_graph(_random_model(k)[0], level=lv) for k in RANDOM_KINDS for lv in (0, 2)]
    graphs.append(compile_graph(_shape_model(), level=0, sets={"N": 2}))
    for name in ("math.gather", "math.shape", "math.tril", "math.cumsum", "math.cumsum_exclusive_reverse",
                 "layers.causal_self_attention", "nn.dropout"):
        sub, _, _ = build(next(c for c in CASES if c.name == name))
        graphs.append(compile_graph(sub, level=0))
    kernels = {}
    for plan in graphs:
        for s in lower(plan.graph, DeviceProps()).steps:
            if s.kernel is not None and s.node.op_type in {"RandomUniform", "RandomUniformLike", "RandomNormal",
                                                           "RandomNormalLike", "Bernoulli", "CumSum", "Shape",
                                                           "Size", "Range", "Trilu"}:
                kernels.setdefault(s.kernel.source, s.kernel)
    return list(kernels.values())


@pytest.mark.nvcc
def test_new_generator_kernels_compile_with_nvcc(tmp_path):
    from graphc.runtime.cuda.cache import find_nvcc
    from graphc.runtime.cuda.emulator import combined_source

    kernels = _new_kernels()
    ops = {k.group.nodes[0].op_type for k in kernels}
    assert ops == {"RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike", "Bernoulli", "CumSum",
                   "Shape", "Size", "Range", "Trilu"}, ops
    src = tmp_path / "new.cu"
    src.write_text(combined_source(kernels))
    run = subprocess.run([find_nvcc(), "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(tmp_path / "n.ptx"), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "n.ptx").read_text().count(".entry") == len(kernels)


# ---- the same on a GPU ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    from graphc.runtime.cuda.device import PyCudaDevice

    return PyCudaDevice()  # the warm cache ($GRAPHC_CACHE_DIR: scripts/gpu_check.sh carries it)


@pytest.mark.cuda
@pytest.mark.parametrize("case", [c for c in CASES if c.name not in RANDOM_CASES], ids=_id)
def test_training_step_agrees_with_numpy_on_the_gpu(case, gpu):
    sub, g, _ = build(case)
    feeds = _run_feeds(case, sub, g)
    ref = gc.prepare(sub, backend="numpy").run(feeds)
    got = CudaBackend.prepare(compile_graph(sub, level=2), device=gpu, debug=True).run(feeds)
    _same(got, ref, case.name, rtol=2e-4, atol=2e-5)  # the GPU's expf/erff differ in the last bits


@pytest.mark.cuda
@pytest.mark.parametrize("level", [2, 0])
def test_random_ops_have_the_right_statistics_on_the_gpu(level, gpu):
    _random_checks(gpu, level)


@pytest.mark.cuda
def test_dropout_keeps_one_mask_per_step_on_the_gpu(monkeypatch):
    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    _dropout_checks("cuda")
