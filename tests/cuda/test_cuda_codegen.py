"""CUDA code generation and the runtime's pure-Python parts, without a GPU: source shape and determinism,
launch configuration, the kernel cache's keys, the arena layout and the errors a user sees."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import graphc as gc
from cuda_cases import MISSING, all_cases
from graphc.compiler import compile as compile_graph
from graphc.runtime.cuda.arena import REGION_ALIGNMENT, frees_after, layout_arena
from graphc.runtime.cuda.cache import KernelCache, cache_key, cache_root
from graphc.runtime.codegen.launch import DeviceProps, elementwise_launch, reduction_launch
from graphc.runtime.codegen.lowering import MissingKernelError, lower

H100 = DeviceProps()
CASES = {c.name: c for c in all_cases()}


def kernels(name, props=H100, level=2):
    return lower(compile_graph(gc.import_onnx(CASES[name].model), level=level).graph, props).steps


def test_source_is_deterministic_readable_and_named_after_the_group():
    a = [s.kernel.source for s in kernels("per_channel_bias_relu")]
    b = [s.kernel.source for s in kernels("per_channel_bias_relu")]
    assert a == b and len(a) == 1
    src = a[0]
    assert "// graphc kernel 'fused_Relu_2': Mul + Add + Relu" in src
    assert 'extern "C" __global__ void fused_Relu_2(' in src
    for line in ("// Mul 'Mul_0'", "// Add 'Add_1'", "// Relu 'Relu_2'"):
        assert sum(line in ln for ln in src.splitlines()) == 1, line  # one line per fused op
    # per-channel operands index by the channel coordinate only
    assert "in1[c0]" in src and "in2[c0]" in src and "in0[i]" in src


def test_grid_stride_loop_and_vectorised_loads():
    (step,) = kernels("chain20_vectorized")
    src = step.kernel.source
    assert "i += (int)blockDim.x * gridDim.x" in src
    assert "reinterpret_cast<const float4*>(in0)[i]" in src and "i < 128" in src  # 512 floats as 128 float4
    assert src.count("// ") >= 20
    (bcast,) = kernels("outer_product_broadcast")
    assert "float4" not in bcast.kernel.source  # a broadcast operand is read element by element


def test_scalar_constants_are_literals_and_half_rounds_each_op():
    (step,) = kernels("chain20_vectorized")
    assert "0.25f" in step.kernel.source and len(step.kernel.params) == 2
    (half,) = kernels("half_chain")
    assert half.kernel.source.startswith("// graphc kernel")
    assert "#include <cuda_fp16.h>" in half.kernel.source
    assert half.kernel.source.count("__half2float(__float2half(") == 3  # Mul, Add, Tanh each round to half


def test_reduction_kernels_pick_block_or_thread_per_row():
    (long,) = kernels("ReduceSum_long_rows_block")
    assert "one block of 256 threads per row" in long.kernel.source and "__syncthreads()" in long.kernel.source
    assert "Exp 'Exp_0'" in long.kernel.source  # the prologue is inside the reduction's loop
    (short,) = kernels("ArgMin_thread")
    assert "one thread per row" in short.kernel.source and "__shared__" not in short.kernel.source
    (sm,) = kernels("Softmax_last")
    assert sm.kernel.source.count("__syncthreads();  // every thread") == 2  # max pass, sum pass, then the map


def test_launch_configuration_from_device_properties():
    assert elementwise_launch(10, H100) == (1, 256)
    grid, block = elementwise_launch(64 << 20, H100)
    assert block == 256 and grid == H100.multiprocessors * 8  # fills the device, then strides
    small = DeviceProps(multiprocessors=2, max_threads_per_block=8, max_threads_per_multiprocessor=16, warp_size=4)
    assert elementwise_launch(1000, small) == (4, 8)
    assert reduction_launch(4096, 4096, H100) == ("block", H100.multiprocessors * 8, 256)
    assert reduction_launch(4, 40, H100)[0] == "block" and reduction_launch(4, 40, H100)[2] == 64
    assert reduction_launch(1 << 20, 4, H100)[0] == "thread"


def test_missing_ops_are_listed_in_one_error():
    graph = gc.import_onnx(MISSING.model)
    with pytest.raises(MissingKernelError) as e:
        lower(compile_graph(graph).graph, H100)
    msg = str(e.value)
    assert "MatMul: 2 node(s)" in msg and "Compress: 1 node(s)" in msg and "integer matrix products" in msg
    assert set(e.value.missing) == {"MatMul", "Compress"}


def test_get_backend_cuda_without_pycuda_is_one_sentence(monkeypatch):
    from graphc.runtime import get_backend
    from graphc.runtime.cuda import CudaUnavailableError

    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    monkeypatch.setitem(sys.modules, "pycuda", None)  # import pycuda fails as if it were not installed
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(CudaUnavailableError) as e:
        get_backend("cuda")
    assert "pip install -e '.[cuda]'" in str(e.value) and "\n" not in str(e.value)
    assert get_backend("numpy").name == "numpy"  # the package and the NumPy backend still work


def test_cache_key_and_location(tmp_path, monkeypatch):
    k = cache_key("src", "cubin:sm_90", "V13.0.88")
    assert k == cache_key("src", "cubin:sm_90", "V13.0.88")
    assert len({k, cache_key("src2", "cubin:sm_90", "V13.0.88"), cache_key("src", "cubin:sm_80", "V13.0.88"),
                cache_key("src", "cubin:sm_90", "V12.4")}) == 4
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("GRAPHC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "graphc"


def test_cache_builds_once(tmp_path):
    cache = KernelCache(tmp_path)
    calls = []

    def build(out):
        calls.append(out)
        out.write_bytes(b"binary")

    p1 = cache.get_or_build("cuda", "ab" * 32, ".cubin", build)
    p2 = KernelCache(tmp_path).get_or_build("cuda", "ab" * 32, ".cubin", build)  # a second process
    assert p1 == p2 and p1.read_bytes() == b"binary" and len(calls) == 1
    assert cache.misses == 1 and not any(p.name.startswith(".build-") for p in p1.parent.iterdir())


def test_arena_layout_follows_the_memory_plan():
    case = CASES["group_two_outputs"]
    plan = compile_graph(gc.import_onnx(case.model), level=0)
    low = lower(plan.graph, H100)
    lay = layout_arena(plan.graph, plan.memory, [a for s in low.steps for a in s.args])
    for n in plan.graph.nodes:
        v = n.outputs[0]
        assert lay.offset(v) == plan.memory.offsets[v.name]
    x = plan.graph.inputs[0]
    assert lay.offset(x) >= plan.memory.peak_bytes and lay.offset(x) % REGION_ALIGNMENT == 0
    assert lay.size >= lay.offset(x) + 15 * 4


def test_debug_fills_skip_bytes_a_live_value_holds():
    case = CASES["chain20_vectorized"]
    plan = compile_graph(gc.import_onnx(case.model), level=1)  # unfused: 20 steps, most in place
    mem = plan.memory
    fills = frees_after(mem, len(plan.graph.nodes), {v.name for v in plan.graph.outputs})
    assert len(fills) == len(plan.graph.nodes)
    for step, ranges in enumerate(fills):
        for off, size in ranges:
            for name, (a, b) in mem.lifetimes.items():
                if a <= step < b:
                    o, s = mem.offsets[name], mem.sizes[name]
                    assert not (o < off + size and off < o + s), (step, name)


def test_pointers_that_reach_the_same_bytes_are_not_restrict():
    """An op the memory plan runs in place (Exp over the dying Softmax output) and an epilogue written over
    its GEMM's result get the same buffer twice: neither pointer may be declared __restrict__."""
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as oh

    from graphc.runtime.cuda.emulator import EMULATOR_PROPS

    nodes = [oh.make_node("Softmax", ["x"], ["s"], axis=-1), oh.make_node("Exp", ["s"], ["y"]),
             oh.make_node("MatMul", ["y", "w"], ["m"]), oh.make_node("Relu", ["m"], ["r"])]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, [4, 8])],
                          [oh.make_tensor_value_info("r", TP.FLOAT, None)],
                          [onnx.numpy_helper.from_array(np.ones((8, 8), np.float32), "w")])
    plan = compile_graph(gc.import_onnx(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21)])))
    assert plan.memory.inplace == {"y": "s"}
    steps = lower(plan.graph, EMULATOR_PROPS, inplace=plan.memory.inplace).steps
    heads = {s.kernel.name: next(ln for ln in s.kernel.source.splitlines() if "__global__" in ln)
             for s in steps if s.kernel is not None}
    assert "__restrict__" in heads["Softmax_0"]
    assert "__restrict__" not in heads["Exp_1"]  # in place
    epilogue = next(h for name, h in heads.items() if name.endswith("_epilogue"))
    assert "__restrict__" not in epilogue  # Relu over the MatMul's result, in the output's buffer
