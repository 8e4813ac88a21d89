"""The ops of runtime/codegen/ops/reduce.py and index.py where the ONNX node cases do not reach: half and double types, NaN and ties in
Hardmax and TopK, unsigned TopK, negative GatherND indices with batch dims, a broadcast RMSNormalization scale,
a zero LpNormalization line, the row kernels' two strategies (a block per long row, a thread per short one) for
RMSNormalization and LpNormalization; on the CPU emulator against the NumPy backend.

The node cases of these ops (losses, norms, Hardmax, TopK, GatherND) run in test_cuda_emulator.py and
test_cuda_nvcc.py.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from onnx import helper as oh
from onnx import numpy_helper

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda import CudaBackend
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.cuda.emulator import EMULATOR_PROPS, EmulatedDevice, combined_source
from graphc.runtime.codegen.launch import BLOCK_ROW_MIN, DeviceProps
from graphc.runtime.codegen.lowering import lower

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


def _info(name, dtype, shape=None):
    return oh.make_tensor_value_info(name, oh.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def _model(node, feeds: dict, outputs: list[tuple[str, type]], consts: dict | None = None, opset: int = 23):
    consts = consts or {}
    g = oh.make_graph([node], "losses", [_info(k, v.dtype, v.shape) for k, v in feeds.items()],
                      [_info(n, dt) for n, dt in outputs], [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])


def _agree(node, feeds: dict, outputs: list[tuple[str, type]], tmp_path, consts: dict | None = None, atol=0.0,
           opset: int = 23):
    """Run ``node`` on the emulator and on the NumPy backend; same types, shapes, and values within ``atol``."""
    model = _model(node, feeds, outputs, consts, opset)
    dev = EmulatedDevice(KernelCache(tmp_path))
    got = CudaBackend.prepare(compile_graph(gc.import_onnx(model)), device=dev, debug=True).run(list(feeds.values()))
    refs = gc.prepare(gc.import_onnx(model), backend="numpy").run(list(feeds.values()))
    assert len(got) == len(refs) == len(outputs)
    for y, ref in zip(got, refs):
        assert y.dtype == ref.dtype and y.shape == ref.shape
        np.testing.assert_allclose(y.astype(np.float64), ref.astype(np.float64), rtol=0, atol=atol, equal_nan=True)


@pytest.mark.parametrize("dtype,reduction", [(np.float16, "mean"), (np.float64, "sum"), (np.float64, "none")])
def test_softmax_cross_entropy_with_weights_ignore_index_and_log_prob(dtype, reduction, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4)).astype(dtype)
    labels = rng.integers(0, 5, (3, 4)).astype(np.int32)
    labels[0, 0] = -1  # ignored
    w = rng.random(5).astype(dtype)
    node = oh.make_node("SoftmaxCrossEntropyLoss", ["x", "labels", "w"], ["loss", "log_prob"], reduction=reduction,
                        ignore_index=-1)
    _agree(node, {"x": x, "labels": labels, "w": w}, [("loss", dtype), ("log_prob", dtype)], tmp_path,
           atol=2e-2 if dtype == np.float16 else 1e-12)


def test_nll_loss_mean_with_every_target_ignored_is_nan(tmp_path):
    x = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    t = np.array([1, 1], np.int64)
    node = oh.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["loss"], reduction="mean", ignore_index=1)
    _agree(node, {"x": x, "t": t}, [("loss", np.float32)], tmp_path)


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_ties_nan_and_an_inner_axis(largest, tmp_path):
    x = np.array([[3, 1, np.nan, 1], [3, 2, 2, np.nan], [0, 2, 5, 1], [3, 2, 2, 1], [-0.0, 0.0, 7, 1]], np.float32)
    node = oh.make_node("TopK", ["x", "k"], ["v", "i"], axis=0, largest=largest)
    _agree(node, {"x": x}, [("v", np.float32), ("i", np.int64)], tmp_path, consts={"k": np.array([3], np.int64)})


def test_topk_smallest_unsigned_with_ties(tmp_path):
    x = np.array([[7, 255, 0, 7, 0, 3], [1, 1, 1, 1, 1, 1]], np.uint8)
    node = oh.make_node("TopK", ["x", "k"], ["v", "i"], largest=0)
    _agree(node, {"x": x}, [("v", np.uint8), ("i", np.int64)], tmp_path, consts={"k": np.array([4], np.int64)})


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_hardmax_first_maximum_wins_and_nan_is_the_maximum(dtype, tmp_path):
    x = np.array([[[1, 5, 5], [2, np.nan, 9]], [[0, 0, 0], [4, 3, 4]]], dtype)
    node = oh.make_node("Hardmax", ["x"], ["y"], axis=2)
    _agree(node, {"x": x}, [("y", dtype)], tmp_path)


def test_gathernd_negative_indices_with_a_batch_dim(tmp_path):
    data = np.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2).astype(np.float16)
    idx = np.array([[[-1, 0], [0, -4]], [[2, 3], [-3, 1]]], np.int64)  # (2, 2, 2): batch, tuples, depth 2
    node = oh.make_node("GatherND", ["data", "idx"], ["y"], batch_dims=1)
    _agree(node, {"data": data, "idx": idx}, [("y", np.float16)], tmp_path)


def test_rms_normalization_half_input_with_a_broadcast_scale(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4)).astype(np.float16)
    scale = rng.standard_normal((4,)).astype(np.float16)
    node = oh.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=-2, epsilon=1e-3)
    _agree(node, {"x": x, "scale": scale}, [("y", np.float16)], tmp_path, atol=2e-3)


@pytest.mark.parametrize("p", [1, 2])
def test_lp_normalization_of_a_zero_line_gives_zeros(p, tmp_path):
    x = np.array([[0, 0, 0], [3, -4, 0], [1, 2, 2]], np.float16).T.copy()
    node = oh.make_node("LpNormalization", ["x"], ["y"], axis=0, p=p)
    _agree(node, {"x": x}, [("y", np.float16)], tmp_path, atol=1e-3)


def _strategies(node, feeds: dict, outputs: list[tuple[str, type]], props: DeviceProps, opset: int = 23) -> list[str]:
    """How each kernel lowered for ``node`` on ``props`` spreads its rows: its header's "one block of N threads
    per row" / "one thread per row" (or "other" for a kernel that is not a row kernel)."""
    plan = lower(compile_graph(gc.import_onnx(_model(node, feeds, outputs, opset=opset))).graph, props)
    out = []
    for s in plan.steps:
        src = s.kernel.source if s.kernel is not None else ""
        m = re.search(r"one block of \d+ threads per row|one thread per row", src)
        out.append(m.group(0) if m else "other")
    return out


# the emulator's device has 2 multiprocessors, blocks of 8 threads and warps of 4: a row of BLOCK_ROW_MIN or more
# elements goes to a block, 2 * 32 rows or more of a few elements go one to a thread
LONG = BLOCK_ROW_MIN + 72


@pytest.mark.parametrize("xt,st,stash", [(np.float32, np.float32, 1), (np.float16, np.float32, 11),
                                         (np.float64, np.float16, 1)])
def test_rms_normalization_of_long_rows_is_a_block_per_row(xt, st, stash, tmp_path):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 2, LONG)) * 3).astype(xt)
    x[1, 0] = 0  # a zero row: 0 / sqrt(epsilon)
    scale = rng.standard_normal((2, LONG)).astype(st)  # broadcast over the first dim, varying along the second
    node = oh.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=-1, epsilon=1e-4, stash_type=stash)
    feeds, outs = {"x": x, "scale": scale}, [("y", st)]
    assert _strategies(node, feeds, outs, EMULATOR_PROPS) == ["one block of 8 threads per row"]
    _agree(node, feeds, outs, tmp_path, atol=2e-3 if np.float16 in (xt, st) else 1e-5)


def test_rms_normalization_of_many_short_rows_is_a_thread_per_row(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((70, 2, 3)).astype(np.float32)
    scale = rng.standard_normal((3,)).astype(np.float32)
    node = oh.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=1)
    feeds, outs = {"x": x, "scale": scale}, [("y", np.float32)]
    assert _strategies(node, feeds, outs, EMULATOR_PROPS) == ["one thread per row"]
    _agree(node, feeds, outs, tmp_path, atol=1e-5)


def test_rms_normalization_over_a_wide_hidden_dim_is_a_block_per_row_on_an_h100():
    x, s = np.zeros((8, 4096), np.float16), np.zeros((4096,), np.float16)
    node = oh.make_node("RMSNormalization", ["x", "s"], ["y"])
    assert _strategies(node, {"x": x, "s": s}, [("y", np.float16)], DeviceProps()) == \
        ["one block of 256 threads per row"]
    many = np.zeros((16384, 64), np.float16)  # many short rows: a thread each
    assert _strategies(node, {"x": many, "s": s[:64]}, [("y", np.float16)], DeviceProps()) == ["one thread per row"]


@pytest.mark.parametrize("p,dtype", [(1, np.float32), (2, np.float16), (2, np.float64)])
def test_lp_normalization_along_a_long_inner_axis_is_a_block_per_row(p, dtype, tmp_path):
    x = np.random.default_rng(6).standard_normal((2, LONG, 3)).astype(dtype)
    x[1, :, 2] = 0  # a zero line gives zeros
    node = oh.make_node("LpNormalization", ["x"], ["y"], axis=1, p=p)
    feeds, outs = {"x": x}, [("y", dtype)]
    assert _strategies(node, feeds, outs, EMULATOR_PROPS) == ["one block of 8 threads per row"]
    _agree(node, feeds, outs, tmp_path, atol=1e-3 if dtype == np.float16 else 1e-6)


def test_lp_normalization_of_many_short_lines_is_a_thread_per_row(tmp_path):
    x = np.random.default_rng(7).standard_normal((80, 5)).astype(np.float32)
    x[3] = 0
    node = oh.make_node("LpNormalization", ["x"], ["y"], p=2)
    feeds, outs = {"x": x}, [("y", np.float32)]
    assert _strategies(node, feeds, outs, EMULATOR_PROPS) == ["one thread per row"]
    _agree(node, feeds, outs, tmp_path, atol=1e-6)


@pytest.mark.parametrize("dtype,reduction", [(np.float32, "mean"), (np.float16, "none")])
def test_softmax_cross_entropy_over_many_classes_runs_the_log_softmax_row_kernel(dtype, reduction, tmp_path):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((3, LONG, 2)) * 4).astype(dtype)
    x[2, 5, 1] = 60  # one class far ahead: the max shift keeps exp finite
    labels = rng.integers(0, LONG, (3, 2)).astype(np.int64)
    labels[2, 1] = 5
    node = oh.make_node("SoftmaxCrossEntropyLoss", ["x", "labels"], ["loss", "log_prob"], reduction=reduction)
    feeds, outs = {"x": x, "labels": labels}, [("loss", dtype), ("log_prob", dtype)]
    assert _strategies(node, feeds, outs, EMULATOR_PROPS) == ["one block of 8 threads per row", "other"]
    _agree(node, feeds, outs, tmp_path, atol=2e-2 if dtype == np.float16 else 1e-5)
    without = oh.make_node("SoftmaxCrossEntropyLoss", ["x", "labels"], ["loss"], reduction=reduction)  # to scratch
    _agree(without, feeds, outs[:1], tmp_path, atol=2e-2 if dtype == np.float16 else 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_hardmax_of_long_rows_first_maximum_and_nan_across_threads(dtype, tmp_path):
    x = np.zeros((4, LONG), dtype)
    x[0, [3, 50, 133]] = 7  # tied maxima strided over different threads: the first wins
    x[1, [10, 77]] = np.nan  # the first NaN is the maximum
    x[1, 5] = 9
    x[2] = -np.inf  # all equal: index 0
    x[3, LONG - 1] = 1  # the last element alone
    node = oh.make_node("Hardmax", ["x"], ["y"], axis=1)
    feeds, outs = {"x": x}, [("y", dtype)]
    assert _strategies(node, feeds, outs, EMULATOR_PROPS) == ["one block of 8 threads per row"]
    _agree(node, feeds, outs, tmp_path)


def test_hardmax_of_many_short_lines_is_a_thread_per_row(tmp_path):
    x = np.random.default_rng(9).integers(0, 3, (70, 4)).astype(np.float32)  # many ties
    x[7, 2] = np.nan
    node = oh.make_node("Hardmax", ["x"], ["y"])
    feeds, outs = {"x": x}, [("y", np.float32)]
    assert _strategies(node, feeds, outs, EMULATOR_PROPS) == ["one thread per row"]
    _agree(node, feeds, outs, tmp_path)


@pytest.mark.parametrize("op", ["Hardmax", "Softmax", "LogSoftmax"])
def test_before_opset_13_a_row_is_the_input_flattened_to_2d_at_axis(op, tmp_path):
    x = np.random.default_rng(10).standard_normal((2, 3, 4)).astype(np.float32)
    node = oh.make_node(op, ["x"], ["y"], axis=1)
    _agree(node, {"x": x}, [("y", np.float32)], tmp_path, atol=1e-6, opset=11)


@pytest.mark.nvcc
def test_half_double_and_unsigned_kernels_compile_to_ptx(tmp_path):
    """The types the node cases do not use, through nvcc (sm_90) as test_cuda_nvcc.py compiles the others."""
    from graphc.runtime.cuda.cache import find_nvcc

    h, d = np.zeros((3, 5, 4), np.float16), np.zeros((3, 5, 4), np.float64)
    t = np.zeros((3, 4), np.int32)
    models = [
        _model(oh.make_node("SoftmaxCrossEntropyLoss", ["x", "t", "w"], ["loss"], ignore_index=-1),
               {"x": h, "t": t, "w": np.zeros(5, np.float16)}, [("loss", np.float16)]),
        _model(oh.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["loss"], reduction="sum"), {"x": d, "t": t},
               [("loss", np.float64)]),
        _model(oh.make_node("RMSNormalization", ["x", "s"], ["y"]), {"x": h, "s": np.zeros(4, np.float32)},
               [("y", np.float32)]),
        _model(oh.make_node("LpNormalization", ["x"], ["y"], p=1), {"x": h}, [("y", np.float16)]),
        _model(oh.make_node("Hardmax", ["x"], ["y"]), {"x": d}, [("y", np.float64)]),
        _model(oh.make_node("TopK", ["x", "k"], ["v", "i"], largest=0), {"x": t.astype(np.uint8)},
               [("v", np.uint8), ("i", np.int64)], {"k": np.array([2], np.int64)}),
        _model(oh.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1), {"x": h, "i": np.zeros((3, 2, 1), np.int64)},
               [("y", np.float16)]),
    ]
    kernels = [s.kernel for m in models for s in lower(compile_graph(gc.import_onnx(m)).graph, DeviceProps()).steps
               if s.kernel is not None]
    src = tmp_path / "losses.cu"
    src.write_text(combined_source(kernels))
    run = subprocess.run([find_nvcc(), "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(tmp_path / "k.ptx"), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "k.ptx").read_text().count(".entry") == len(kernels) == 8


def test_layer_normalization_rounds_as_the_reference_in_half_types(tmp_path):
    """With float16 input NumPy rounds the normalized value, its product with the scale and the sum with the
    bias to float16 one after another; the row kernel does the same (it rounded once, at the store, and
    5,582 of these 19,200 values differed). What is left is the float32 statistics' summation order."""
    rng, dtype = np.random.default_rng(0), np.float16
    x = (rng.standard_normal((64, 300)) * 3).astype(dtype)
    scale, bias = rng.standard_normal(300).astype(dtype), rng.standard_normal(300).astype(dtype)
    node = oh.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)
    model = _model(node, {"x": x}, [("y", dtype)], {"s": scale, "b": bias}, opset=17)
    dev = EmulatedDevice(KernelCache(tmp_path))
    (got,) = CudaBackend.prepare(compile_graph(gc.import_onnx(model)), device=dev).run([x])
    (want,) = gc.prepare(gc.import_onnx(model), backend="numpy").run([x])
    assert got.dtype == want.dtype
    differ = np.abs(got.astype(np.float64) - want.astype(np.float64)) > 0
    assert differ.sum() <= 5, differ.sum()  # a last-bit tie flipped by the statistics, now and then
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=0, atol=4e-3)
