"""RNN, GRU and LSTM (runtime/codegen/ops/rnn.py) where the ONNX node cases do not reach: both directions with initial states,
peepholes, sequence_lens given at run time or constant, layout 1, clip, per-direction activations with alpha/beta,
input_forget, GRU's linear_before_reset both ways, float16 and float64; on the CPU emulator against the NumPy
backend, and the step kernels through nvcc.

The node cases of these ops (18) run in test_cuda_emulator.py and test_cuda_nvcc.py.
"""
from __future__ import annotations

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
from graphc.runtime.cuda.emulator import EmulatedDevice, combined_source
from graphc.runtime.codegen.launch import DeviceProps
from graphc.runtime.codegen.lowering import MissingKernelError, lower

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
OUTS = {"RNN": ["y", "yh"], "GRU": ["y", "yh"], "LSTM": ["y", "yh", "yc"]}


def _info(name, dtype, shape=None):
    return oh.make_tensor_value_info(name, oh.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def _case(op, *, T=4, B=3, I=5, H=6, dtype=np.float32, direction="forward", layout=0, bias=True, lens=None,
          lens_const=False, h0=False, c0=False, peep=False, seed=0, **attrs):
    """(model, feeds) of one ``op`` node; inputs left out are empty names."""
    rng = np.random.default_rng(seed)
    D, G = (2 if direction == "bidirectional" else 1), GATES[op]
    x_shape = (B, T, I) if layout else (T, B, I)
    s_shape = (B, D, H) if layout else (D, B, H)
    r = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)  # noqa: E731
    feeds, consts = {"x": r(*x_shape), "w": r(D, G * H, I), "r": r(D, G * H, H)}, {}
    names = ["x", "w", "r"]
    opt = [("b", bias, lambda: r(D, 2 * G * H)), ("lens", lens is not None, lambda: np.array(lens, np.int32)),
           ("h0", h0, lambda: r(*s_shape)), ("c0", c0, lambda: r(*s_shape)), ("p", peep, lambda: r(D, 3 * H))]
    for name, present, make in opt:
        if name in ("c0", "p") and op != "LSTM":
            continue
        names.append(name if present else "")
        if present:
            (consts if name == "lens" and lens_const else feeds)[name] = make()
    while names[-1] == "":
        names.pop()
    outs = OUTS[op]
    node = oh.make_node(op, names, outs, hidden_size=H, direction=direction, layout=layout, **attrs)
    g = oh.make_graph([node], "rnn", [_info(k, v.dtype, v.shape) for k, v in feeds.items()],
                      [_info(n, dtype) for n in outs], [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 22)]), feeds


def _agree(model, feeds, tmp_path, atol):
    dev = EmulatedDevice(KernelCache(tmp_path))
    got = CudaBackend.prepare(compile_graph(gc.import_onnx(model)), device=dev, debug=True).run(list(feeds.values()))
    refs = gc.prepare(gc.import_onnx(model), backend="numpy").run(list(feeds.values()))
    assert len(got) == len(refs) == len(model.graph.output)
    for y, ref in zip(got, refs):
        assert y.dtype == ref.dtype and y.shape == ref.shape
        np.testing.assert_allclose(y.astype(np.float64), ref.astype(np.float64), rtol=0, atol=atol)


CONFIGS = {
    "lstm_bidirectional_states_peepholes_lens_at_run_time": dict(
        op="LSTM", direction="bidirectional", h0=True, c0=True, peep=True, lens=[4, 2, 1]),
    "lstm_layout1_input_forget_activations_clip_float16": dict(
        op="LSTM", layout=1, h0=True, c0=True, input_forget=1, clip=1.5, dtype=np.float16,
        activations=["HardSigmoid", "ScaledTanh", "Softsign"], activation_alpha=[0.3, 0.8], activation_beta=[0.4, 1.2]),
    "gru_linear_before_reset_bidirectional_layout1_constant_lens": dict(
        op="GRU", direction="bidirectional", layout=1, h0=True, linear_before_reset=1, lens=[3, 4, 2],
        lens_const=True),
    "gru_reverse_clip_float64_without_bias": dict(op="GRU", direction="reverse", clip=0.7, bias=False, h0=True,
                                                  dtype=np.float64, activations=["Sigmoid", "Softplus"]),
    "gru_bidirectional_without_initial_state": dict(op="GRU", direction="bidirectional", lens=[1, 4, 3]),
    "rnn_bidirectional_activations_per_direction_layout1": dict(
        op="RNN", direction="bidirectional", layout=1, h0=True, activations=["LeakyRelu", "Elu"],
        activation_alpha=[0.2, 0.5]),
    "rnn_thresholded_relu_and_affine_per_direction": dict(
        op="RNN", direction="bidirectional", activations=["ThresholdedRelu", "Affine"], activation_alpha=[0.1, 0.5],
        activation_beta=[0.2], T=2, B=1),
    "rnn_relu_reverse": dict(op="RNN", direction="reverse", activations=["Relu"], h0=True, H=4),
}
ATOL = {np.float16: 2e-2, np.float64: 1e-12}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_recurrent_layers_agree_with_the_numpy_backend(name, tmp_path):
    cfg = dict(CONFIGS[name])
    model, feeds = _case(**cfg)
    _agree(model, feeds, tmp_path, ATOL.get(cfg.get("dtype", np.float32), 2e-5))


def test_an_activation_without_a_kernel_is_reported_missing_by_name():
    model, _ = _case("RNN", activations=["Gelu"])
    with pytest.raises(MissingKernelError, match="RNN: 1 node.*unknown activation .Gelu."):
        lower(compile_graph(gc.import_onnx(model)).graph, DeviceProps())


def test_one_step_kernel_serves_every_time_step():
    """The time step is a scalar parameter: a 4-step LSTM has one gate kernel and 1 + 3 + 4 launches (the input
    projection, the recurrent GEMMs after step 0, the gate kernels)."""
    model, _ = _case("LSTM", T=4)
    steps = lower(compile_graph(gc.import_onnx(model)).graph, DeviceProps()).steps
    assert len({s.kernel.source for s in steps if s.kernel is not None}) == 1
    assert [s.call is not None for s in steps] == [True, False] + [True, False] * 3
    assert [int(s.args[-1]) for s in steps if s.kernel is not None] == [0, 1, 2, 3]


@pytest.mark.nvcc
def test_step_kernels_compile_to_ptx(tmp_path):
    """The kernels of every configuration above, through nvcc (sm_90) as test_cuda_nvcc.py compiles the node cases'."""
    from graphc.runtime.cuda.cache import find_nvcc

    kernels = {}
    for cfg in CONFIGS.values():
        model, _ = _case(**cfg)
        for s in lower(compile_graph(gc.import_onnx(model)).graph, DeviceProps()).steps:
            if s.kernel is not None:
                kernels.setdefault(s.kernel.source, s.kernel)
    src = tmp_path / "rnn.cu"
    src.write_text(combined_source(list(kernels.values())))
    run = subprocess.run([find_nvcc(), "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(tmp_path / "k.ptx"), str(src)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "k.ptx").read_text().count(".entry") == len(kernels) == 10
