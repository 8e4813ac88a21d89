"""The CUDA backend's kernels run on the CPU emulator (g++, one thread per CUDA thread) agree with the NumPy backend.

Every test graph of cuda_cases.py is compiled -O2, lowered to generated kernels, run through the CUDA
executor (arena, launches, debug mode filling dead bytes with NaN) on the emulated device, and compared
with the NumPy backend on the unoptimized graph. All kernels are compiled in one g++ run.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import graphc as gc
from cuda_cases import all_cases
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda import CudaBackend
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.codegen.lowering import lower

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")

CASES = all_cases()


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    from graphc.runtime.cuda.emulator import EMULATOR_PROPS, EmulatedDevice

    dev = EmulatedDevice(KernelCache(tmp_path_factory.mktemp("kernel-cache")))
    kernels = [s.kernel for c in CASES for s in lower(compile_graph(gc.import_onnx(c.model)).graph, EMULATOR_PROPS).steps
               if s.kernel is not None]  # library calls (GEMM) have none
    dev.precompile(kernels)  # one g++ run for the whole module
    return dev


def assert_same(outs, ref, case):
    assert len(outs) == len(ref)
    for a, b in zip(outs, ref):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (case, a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=case.rtol, atol=case.atol,
                                       err_msg=case.name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=case.name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_emulated_kernels_agree_with_numpy(case, device):
    graph = gc.import_onnx(case.model)
    exe = CudaBackend.prepare(compile_graph(graph), device=device, debug=True)
    ref = gc.prepare(graph, backend="numpy").run(case.feeds)
    assert_same(exe.run(case.feeds), ref, case)
    assert_same(exe.run(case.feeds), ref, case)  # a second run reuses the arena as it is


def test_symbolic_batch_is_prepared_per_binding(device):
    from onnx import TensorProto as TP
    from onnx import helper as oh

    g = oh.make_graph([oh.make_node("Softmax", ["x"], ["s"]), oh.make_node("Mul", ["s", "x"], ["y"])], "sym",
                      [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 6])], [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    graph = gc.import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]).SerializeToString())
    exe = CudaBackend.prepare(graph, device=device)
    for n in (2, 5, 2):
        x = np.random.default_rng(n).standard_normal((n, 6)).astype(np.float32)
        (y,) = exe.run({"x": x})
        (ref,) = gc.prepare(graph, backend="numpy").run({"x": x})
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-7)
    assert len(exe._prepared) == 2


def test_arena_follows_the_memory_plan(device):
    """Two values alive together placed at one offset by a broken plan: the outputs change, so the executor
    really keeps each value at its planned offset."""
    case = next(c for c in CASES if c.name == "group_two_outputs")
    graph = gc.import_onnx(case.model)
    plan = compile_graph(graph, level=0)  # no fusion: Exp, Add, Mul are three steps
    mem = plan.memory
    e_name = plan.graph.nodes[0].outputs[0].name
    a_name = plan.graph.nodes[1].outputs[0].name
    mem.offsets[a_name] = mem.offsets[e_name]  # 'a' overwrites 'e', which Mul still reads
    (a, y) = CudaBackend.prepare(plan, device=device, debug=True).run(case.feeds)
    _, y_ref = gc.prepare(graph, backend="numpy").run(case.feeds)
    assert not np.allclose(y, y_ref, equal_nan=False)


#: What only a GPU (and so the emulator) runs: block barriers, shared memory, atomics, float4 vectors. The other
#: generated kernels are plain loops that the CPU backend runs in the C dialect on every node case
#: (tests/cpu/test_cpu_node_cases.py), so the emulator runs the node cases with one of these.
CUDA_ONLY = ("__syncthreads", "__shared__", "atomic", "float4")
NODE_CASE_CHUNKS = 3


def cuda_only_cases(props):
    """The lowered node cases (for ``props``) with a kernel using a construct of ``CUDA_ONLY``."""
    from cuda_node_cases import lowered_node_cases

    return [c for c in lowered_node_cases(props)
            if any(s.kernel is not None and any(w in s.kernel.source for w in CUDA_ONLY) for s in c[2])]


@pytest.mark.parametrize("geometry", ["small", "h100"])
@pytest.mark.parametrize("chunk", range(NODE_CASE_CHUNKS))
def test_onnx_node_cases_with_cuda_only_kernels_agree_on_the_emulator(chunk, geometry, tmp_path):
    """Every ONNX node test case whose plan has a kernel with a CUDA-only construct (CUDA_ONLY) matches
    onnx's expected outputs on the emulator, with its small launch geometry (8 threads a block: grid-stride
    loops wrap, rows split across few blocks) and with an H100's (blocks of 256 and more, as the GPU runs
    them); in chunks, so that parallel workers share them."""
    from graphc.tools.conformance import _normalize, assert_similar
    from graphc.runtime.cuda.emulator import EMULATOR_PROPS, H100_PROPS, EmulatedDevice

    props = EMULATOR_PROPS if geometry == "small" else H100_PROPS
    cases = cuda_only_cases(props)
    assert len(cases) >= 300, len(cases)
    cases = cases[chunk::NODE_CASE_CHUNKS]
    dev = EmulatedDevice(KernelCache(tmp_path), props=props)
    dev.precompile([s.kernel for _, _, steps in cases for s in steps if s.kernel is not None])
    failures = []
    for case, plan, _ in cases:
        try:
            exe = CudaBackend.prepare(plan, device=dev, debug=True)
            for inputs, refs in case.data_sets:
                outs = exe.run([_normalize(x) for x in inputs])
                for i, (r, o) in enumerate(zip(refs, outs)):
                    assert_similar(_normalize(r), o, case.rtol, case.atol, f"output {i}")
        except Exception as e:  # collected, so that one run lists every failing case
            failures.append(f"{case.name}: {type(e).__name__}: {str(e)[:200]}")
    assert not failures, "\n".join(failures)


def test_the_emulator_subset_is_what_the_gpu_alone_runs():
    """The node cases left to the emulator are those with a CUDA-only construct, and every one of them also
    lowers for the CPU target (so no case is left untested by both)."""
    from cuda_node_cases import lowered_node_cases
    from graphc.runtime.cuda.emulator import EMULATOR_PROPS

    everything = lowered_node_cases(EMULATOR_PROPS)
    subset = cuda_only_cases(EMULATOR_PROPS)
    assert 0 < len(subset) < len(everything)
    names = {c[0].name for c in subset}
    assert "test_argmax_keepdims_example" in names  # a row kernel: barriers and shared memory
    assert "test_relu" in names  # float4 loads
    assert "test_add_bcast" not in names  # a plain broadcast loop: the CPU target's


@pytest.mark.parametrize("name", ["per_channel_bias_relu", "chain20_vectorized", "ReduceMax_prologue_broadcast"])
def test_group_lowered_op_by_op_when_no_generator_takes_it(name, device, monkeypatch):
    """The fallback for a fused group no generator handles: its ops run one kernel each, the values inside
    the group in scratch memory."""
    import graphc.runtime.codegen.lowering as lowering
    from graphc.runtime.codegen.kernel import CodegenUnsupported

    real = lowering.generate

    def only_single_ops(group, props):
        if len(group.nodes) > 1:
            raise CodegenUnsupported(group.nodes[0], "refused by the test")
        return real(group, props)

    monkeypatch.setattr(lowering, "generate", only_single_ops)
    case = next(c for c in CASES if c.name == name)
    graph = gc.import_onnx(case.model)
    plan = compile_graph(graph)
    assert any(n.op_type == "FusedGroup" for n in plan.graph.nodes)
    exe = CudaBackend.prepare(plan, device=device, debug=True)
    prepared = exe.prepared()
    assert prepared.lowered.scratch and len(prepared.launches) > len(plan.graph.nodes)
    assert_same(exe.run(case.feeds), gc.prepare(graph, backend="numpy").run(case.feeds), case)
