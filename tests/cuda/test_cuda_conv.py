"""Conv, ConvTranspose, pools, LRN and BatchNormalization on the CUDA backend: a parameter grid run on the CPU
emulator against the NumPy backend, the shape of each lowering (1x1 = one GEMM in place, depthwise = one
direct kernel, im2col chunked over the batch through the shared workspace), and every grid kernel through nvcc.

The smaller set in cuda_cases.conv_cases() also runs in test_cuda_emulator.py, test_cuda_nvcc.py and (on a
GPU) test_cuda_gpu.py; this module sweeps the attributes.
"""
from __future__ import annotations

import itertools
import shutil
import subprocess

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from cuda_cases import Case, _x, conv_case
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda import CudaBackend, MissingKernelError
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.codegen.launch import DeviceProps
from graphc.runtime.codegen.lowering import lower

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


def grid_cases():
    out = []
    # (x shape, groups, out channels per group, kernel, strides, dilations, pads)
    geometries = [((2, 4, 7, 7), 1, 3, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
                  ((1, 4, 8, 6), 2, 2, (3, 2), (2, 1), (1, 2), (0, 1, 2, 0)),
                  ((3, 6, 5, 5), 3, 1, (2, 2), (2, 2), (1, 1), (1, 1, 0, 0)),
                  ((2, 6, 9, 7), 6, 1, (3, 3), (2, 1), (2, 1), (2, 1, 2, 1)),  # depthwise
                  ((1, 3, 6, 6), 3, 2, (5, 3), (1, 2), (1, 1), (2, 1, 2, 1)),  # depthwise, multiplier 2
                  ((2, 8, 4, 5), 4, 3, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),  # 1x1 groups
                  ((4, 3, 3, 4), 1, 5, (1, 1), (1, 1), (3, 3), (0, 0, 0, 0)),  # 1x1, batch 4
                  ((1, 4, 10, 3), 1, 2, (4, 1), (3, 1), (2, 1), (3, 0, 1, 0))]
    for k, ((xs, g, mg, ks, st, dl, pd), bias) in enumerate(itertools.product(geometries, (True, False))):
        c = xs[1]
        attrs = dict(group=g, strides=list(st), dilations=list(dl), pads=list(pd))
        out.append(conv_case(f"conv{k}_g{g}_k{'x'.join(map(str, ks))}_s{st[0]}{st[1]}_d{dl[0]}{dl[1]}"
                             f"{'_bias' if bias else ''}", "Conv", xs, (g * mg, c // g) + ks, bias=bias, seed=k,
                             **attrs))
    for k, (xs, g, mg, ks, st, dl, pd, op) in enumerate([
            ((2, 4, 3, 3), 1, 3, (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), (0, 0)),
            ((1, 4, 4, 3), 2, 2, (2, 3), (1, 2), (2, 1), (1, 0, 0, 1), (0, 1)),
            ((2, 3, 3, 2), 3, 1, (3, 2), (3, 2), (1, 1), (1, 1, 1, 1), (2, 1)),  # depthwise transpose
            ((3, 2, 2, 2), 1, 2, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), (0, 0))]):
        attrs = dict(group=g, strides=list(st), dilations=list(dl), pads=list(pd), output_padding=list(op))
        out.append(conv_case(f"convT{k}_g{g}_s{st[0]}{st[1]}", "ConvTranspose", xs, (xs[1], mg) + ks, seed=40 + k,
                             **attrs))
    h = dict(dtype=TP.FLOAT16, rtol=5e-3, atol=5e-3)
    out.append(conv_case("conv_half_groups_batch", "Conv", (3, 4, 6, 5), (6, 2, 3, 3), group=2, strides=[2, 1],
                         pads=[1, 1, 1, 1], **h))
    out.append(conv_case("conv_half_1x1", "Conv", (2, 8, 3, 3), (4, 8, 1, 1), **h))
    out.append(conv_case("conv_double", "Conv", (1, 2, 5, 5), (3, 2, 3, 3), dtype=TP.DOUBLE, rtol=1e-10, atol=1e-12))
    x = _x((2, 3, 9, 9), seed=60)
    for k, (op, attrs) in enumerate([
            ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
            ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])),
            ("MaxPool", dict(kernel_shape=[3, 2], auto_pad="SAME_UPPER", strides=[2, 2])),
            ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
            ("AveragePool", dict(kernel_shape=[2, 3], strides=[2, 2], dilations=[2, 1], pads=[0, 1, 1, 1], ceil_mode=1)),
            ("AveragePool", dict(kernel_shape=[3, 3], auto_pad="SAME_LOWER", strides=[2, 2])),
            ("LpPool", dict(kernel_shape=[2, 2], p=1, strides=[2, 2])),
            ("LpPool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], dilations=[2, 2]))]):
        out.append(Case(f"{op}{k}", [oh.make_node(op, ["x"], ["y"], **attrs)], [("x", TP.FLOAT, [2, 3, 9, 9])], ["y"],
                        {"x": x}, rtol=1e-5, atol=1e-5))
    xn = _x((2, 3, 9, 9), seed=61)
    xn[0, 1, 2, 2] = np.nan
    out.append(Case("MaxPool_nan_propagates", [oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3])],
                    [("x", TP.FLOAT, [2, 3, 9, 9])], ["y"], {"x": xn}))
    return out


GRID = grid_cases()


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    from graphc.runtime.cuda.emulator import EMULATOR_PROPS, EmulatedDevice

    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulator needs g++")
    dev = EmulatedDevice(KernelCache(tmp_path_factory.mktemp("kernel-cache")))
    dev.precompile([s.kernel for c in GRID for s in lower(compile_graph(gc.import_onnx(c.model)).graph,
                                                          EMULATOR_PROPS).steps if s.kernel is not None])
    return dev


def run_both(case: Case, device, **prepare):
    graph = gc.import_onnx(case.model)
    exe = CudaBackend.prepare(compile_graph(graph), device=device, debug=True, **prepare)
    outs = exe.run(case.feeds)
    ref = gc.prepare(graph, backend="numpy").run(case.feeds)
    assert len(outs) == len(ref)
    for a, b in zip(outs, ref):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (case.name, a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=case.rtol, atol=case.atol,
                                       err_msg=case.name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=case.name)
    return exe


@needs_gxx
@pytest.mark.parametrize("case", GRID, ids=lambda c: c.name)
def test_grid_agrees_with_numpy_on_the_emulator(case, device):
    run_both(case, device)


def _steps(case: Case):
    return lower(compile_graph(gc.import_onnx(case.model)).graph, DeviceProps()).steps


def _kinds(steps) -> list[str]:
    return ["gemm" if s.call is not None else s.kernel.name.rstrip("_").rsplit("_", 1)[-1] for s in steps]


def test_1x1_conv_is_one_gemm_reading_x_in_place():
    case = conv_case("c", "Conv", (2, 5, 4, 3), (6, 5, 1, 1), bias=False)
    (st,) = _steps(case)
    g = st.call
    assert (g.m, g.n, g.k, g.batch, g.stride_a, g.stride_b, g.stride_c) == (6, 12, 5, 2, 0, 60, 72)
    assert st.args[1].name == "x"


def test_grouped_conv_batches_over_the_larger_of_groups_and_items():
    few_items = conv_case("c", "Conv", (1, 8, 4, 4), (8, 2, 3, 3), bias=False, group=4)
    steps = _steps(few_items)
    assert _kinds(steps) == ["im2col", "gemm"] and steps[1].call.batch == 4  # one call over the 4 groups
    few_groups = conv_case("c", "Conv", (5, 4, 4, 4), (4, 2, 3, 3), group=2, relu=True)
    steps = _steps(few_groups)
    assert _kinds(steps) == ["im2col", "gemm", "gemm", "epilogue"]  # one call per group over the 5 items
    assert all(s.call.batch == 5 and s.call.beta == 0.0 for s in steps[1:3])
    assert "Add" in steps[-1].kernel.source and "Relu" in steps[-1].kernel.source  # the bias joins the Relu


@needs_gxx
def test_bias_computed_at_run_time_is_written_first_and_accumulated_onto(device):
    case = Case("fed_bias", [oh.make_node("Conv", ["x", "w", "b"], ["y"], group=2, pads=[0, 1, 0, 1])],
                [("x", TP.FLOAT, [3, 4, 5, 5]), ("b", TP.FLOAT, [6])], ["y"],
                {"x": _x((3, 4, 5, 5), seed=7), "b": _x((6,), seed=8)},
                inits=[oh.make_tensor("w", TP.FLOAT, [6, 2, 3, 2], _x((6, 2, 3, 2), seed=9).ravel().tolist())],
                rtol=1e-4, atol=1e-5)
    steps = run_both(case, device).prepared().lowered.steps
    assert _kinds(steps) == ["bias", "im2col", "gemm", "gemm"]
    assert all(s.call.beta == 1.0 for s in steps[2:])


def test_depthwise_conv_is_one_direct_kernel():
    steps = _steps(conv_case("c", "Conv", (2, 4, 6, 6), (8, 1, 3, 3), group=4))
    assert _kinds(steps) == ["depthwise"]
    assert "acc +=" in steps[0].kernel.source


@needs_gxx
def test_im2col_is_chunked_over_the_batch_and_shares_the_workspace(device, monkeypatch):
    """With a workspace limit of two items' columns, a batch of 5 takes three im2col+GEMM rounds through one
    workspace, which the next conv reuses; the debug mode (dead inputs filled with NaN after the node's last
    launch) still gives NumPy's result."""
    import graphc.runtime.codegen.ops.conv as cc

    per_item = 4 * 9 * 5 * 5 * 4  # C * K * P * 4 bytes of the first conv
    monkeypatch.setattr(cc, "WORKSPACE_LIMIT", 2 * per_item)
    case = Case("two_convs", [oh.make_node("Relu", ["x"], ["r"]),  # r dies at the first conv: filled after it
                              oh.make_node("Conv", ["r", "w"], ["c"], pads=[1, 1, 1, 1]),
                              oh.make_node("Conv", ["c", "w2"], ["y"], strides=[2, 2])],
                [("x", TP.FLOAT, [5, 4, 5, 5])], ["y"], {"x": _x((5, 4, 5, 5), seed=3)},
                inits=[oh.make_tensor("w", TP.FLOAT, [3, 4, 3, 3], _x((3, 4, 3, 3), seed=4).ravel().tolist()),
                       oh.make_tensor("w2", TP.FLOAT, [2, 3, 2, 2], _x((2, 3, 2, 2), seed=5).ravel().tolist())],
                rtol=1e-4, atol=1e-5)
    exe = run_both(case, device)
    lowered = exe.prepared().lowered
    assert _kinds(lowered.steps).count("im2col") == 3 + 1  # 5 items in chunks of 2; the second conv's fit at once
    assert [v.name for v in lowered.scratch] == ["gc_workspace"]
    assert lowered.scratch[0].type.shape == (2 * per_item,)


def test_training_batchnorm_is_reported_missing():
    from graphc.runtime.cuda.emulator import EMULATOR_PROPS

    node = oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1)
    g = oh.make_graph([node], "bn", [oh.make_tensor_value_info(n, TP.FLOAT, s) for n, s in
                                     [("x", [2, 3, 4]), ("s", [3]), ("b", [3]), ("m", [3]), ("v", [3])]],
                      [oh.make_tensor_value_info(n, TP.FLOAT, None) for n in ("y", "rm", "rv")])
    graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 15)]).SerializeToString())
    with pytest.raises(MissingKernelError, match="BatchNormalization.*training mode"):
        lower(compile_graph(graph).graph, EMULATOR_PROPS)


@pytest.mark.nvcc
def test_grid_kernels_compile_to_ptx(tmp_path):
    from graphc.runtime.cuda.cache import find_nvcc
    from graphc.runtime.cuda.emulator import combined_source

    kernels = list({s.kernel.source: s.kernel for c in GRID for s in _steps(c) if s.kernel is not None}.values())
    src = tmp_path / "conv_kernels.cu"
    src.write_text(combined_source(kernels))
    ptx = tmp_path / "conv_kernels.ptx"
    run = subprocess.run([find_nvcc(), "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(ptx), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert ptx.read_text().count(".entry") == len(kernels) > 25
