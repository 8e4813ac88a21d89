"""GPU benchmarks of the CUDA backend's generated kernels, each against a peer measured in the same run.

    python -m graphc.bench.cuda_kernels [--quick | --smoke]

1. A 20-op elementwise chain over 64M float32: one fused kernel vs 20 separate kernels (-O1, unfused) vs a
   device-to-device copy of the same bytes (the bandwidth bound: the fused kernel reads and writes each
   element once, as the copy does).
2. Softmax and LayerNormalization over 4096 rows of 4096 float32 vs the same copy bound.
3. Kernel compilation: cold (empty cache) vs warm (a second process's prepare: cache hits only).

Times are of the launches alone (CUDA events around the prepared launches, feeds already on the device),
median of repeats. Needs PyCUDA and a GPU; not yet run (the session that wrote it had no GPU). ``--smoke`` runs
tiny sizes, and on the CPU emulator (GRAPHC_CUDA_EMULATE=1 or h100) with wall-clock times: the code path only
(scripts/gpu_check.sh --dry-run), no figure to compare.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
from onnx import TensorProto as TP
from onnx import helper as oh

import graphc as gc
from graphc.compiler import compile as compile_graph


def chain_model(n: int, ops: int = 20) -> bytes:
    nodes, prev = [], "x"
    cycle = ["Add", "Mul", "Tanh", "Sub", "Sigmoid"]
    for i in range(ops):
        op = cycle[i % len(cycle)]
        ins = [prev] if op in ("Tanh", "Sigmoid") else [prev, "k"]
        nodes.append(oh.make_node(op, ins, [f"t{i}"]))
        prev = f"t{i}"
    g = oh.make_graph(nodes, "chain", [oh.make_tensor_value_info("x", TP.FLOAT, [n])],
                      [oh.make_tensor_value_info(prev, TP.FLOAT, None)], [oh.make_tensor("k", TP.FLOAT, [], [0.5])])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]).SerializeToString()


def row_model(op: str, rows: int, cols: int) -> bytes:
    if op == "Softmax":
        nodes, inits = [oh.make_node("Softmax", ["x"], ["y"], axis=-1)], []
    else:
        nodes = [oh.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)]
        inits = [oh.make_tensor("g", TP.FLOAT, [cols], np.ones(cols, np.float32).tolist()),
                 oh.make_tensor("b", TP.FLOAT, [cols], np.zeros(cols, np.float32).tolist())]
    g = oh.make_graph(nodes, op.lower(), [oh.make_tensor_value_info("x", TP.FLOAT, [rows, cols])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)], inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)]).SerializeToString()


def _emulated(device) -> bool:
    from .cuda_common import is_emulated

    return device is not None and is_emulated(device)


def time_launches(prepared, repeats: int) -> float:
    """Median seconds of one pass over the prepared launches (CUDA events; wall clock on the emulator)."""
    if _emulated(prepared.device):
        from .cuda_common import median_seconds

        return median_seconds(lambda: [launch(g, b, p) for launch, g, b, p in prepared.launches],
                              prepared.device.synchronize, 1, repeats)
    import pycuda.driver as drv

    for launch, grid, block, ptrs in prepared.launches:  # warm up
        launch(grid, block, ptrs)
    times = []
    for _ in range(repeats):
        start, end = drv.Event(), drv.Event()
        start.record()
        for launch, grid, block, ptrs in prepared.launches:
            launch(grid, block, ptrs)
        end.record()
        end.synchronize()
        times.append(start.time_till(end) / 1e3)
    return statistics.median(times)


def time_copy(nbytes: int, repeats: int, device=None) -> float:
    if _emulated(device):
        from .cuda_common import median_seconds

        a, b = device.alloc(nbytes), device.alloc(nbytes)
        t = median_seconds(lambda: device.dtod(b, a, nbytes), device.synchronize, 1, repeats)
        device.free(a)
        device.free(b)
        return t
    import pycuda.driver as drv

    a, b = drv.mem_alloc(nbytes), drv.mem_alloc(nbytes)
    drv.memcpy_dtod(b, a, nbytes)
    times = []
    for _ in range(repeats):
        start, end = drv.Event(), drv.Event()
        start.record()
        drv.memcpy_dtod(b, a, nbytes)
        end.record()
        end.synchronize()
        times.append(start.time_till(end) / 1e3)
    return statistics.median(times)


def prepared_for(model: bytes, level: int, feeds: dict, device):
    from graphc.runtime.cuda import CudaBackend

    exe = CudaBackend.prepare(compile_graph(gc.import_onnx(model), level=level), device=device)
    p = exe.prepared()
    for ptr, v in p.inputs:  # feeds on the device once: the timed loop is the kernels alone
        device.htod(ptr, feeds[v.name])
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (4M elements, 1024 rows)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 3 repeats: the code path in seconds (the "
                                                          "emulator too)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    from graphc.errors import GraphcError
    from graphc.runtime.cuda.cache import KernelCache

    from .cuda_common import graphc_device

    try:
        device = graphc_device()
    except GraphcError as e:
        print(f"graphc.bench.cuda_kernels: {e}")
        return 2
    if args.smoke:
        args.repeats = min(args.repeats, 3)
    print(f"device: {device.props.name} ({device.props.arch}, {device.props.multiprocessors} SMs)")
    n = 1 << 16 if args.smoke else (4 if args.quick else 64) << 20
    x = np.random.default_rng(0).uniform(-1, 1, n).astype(np.float32)
    copy = time_copy(4 * n, args.repeats, device)  # reads and writes 4n bytes, as the fused chain does
    fused = time_launches(prepared_for(chain_model(n), 2, {"x": x}, device), args.repeats)
    separate = time_launches(prepared_for(chain_model(n), 1, {"x": x}, device), args.repeats)
    gbs = lambda t: 2 * 4 * n / t / 1e9  # noqa: E731
    print(f"20-op chain, {n / 2**20:g}M float32: fused {fused * 1e3:.3f} ms ({gbs(fused):.0f} GB/s), "
          f"20 kernels {separate * 1e3:.3f} ms, copy {copy * 1e3:.3f} ms ({gbs(copy):.0f} GB/s)")
    print(f"  fused vs copy: {fused / copy:.2f}x the copy's time; 20 kernels vs fused: {separate / fused:.1f}x")
    rows = cols = 64 if args.smoke else 1024 if args.quick else 4096
    xr = np.random.default_rng(1).standard_normal((rows, cols)).astype(np.float32)
    copy = time_copy(4 * rows * cols, args.repeats, device)
    for op in ("Softmax", "LayerNormalization"):
        t = time_launches(prepared_for(row_model(op, rows, cols), 2, {"x": xr}, device), args.repeats)
        print(f"{op} {rows}x{cols}: {t * 1e3:.3f} ms vs copy {copy * 1e3:.3f} ms ({t / copy:.2f}x the copy's time)")
    with tempfile.TemporaryDirectory() as tmp:
        from graphc.runtime.cuda import CudaBackend

        plan = compile_graph(gc.import_onnx(chain_model(1 << 20)))
        if _emulated(device):
            from graphc.runtime.cuda.emulator import EmulatedDevice

            fresh = lambda: EmulatedDevice(KernelCache(tmp), props=device.props)  # noqa: E731
        else:
            from graphc.runtime.cuda.device import PyCudaDevice

            fresh = lambda: PyCudaDevice(KernelCache(tmp))  # noqa: E731
        t0 = time.perf_counter()
        CudaBackend.prepare(plan, device=fresh())
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        CudaBackend.prepare(plan, device=fresh())
        warm = time.perf_counter() - t0
        print(f"prepare with kernel compilation: cold {cold * 1e3:.0f} ms, warm cache {warm * 1e3:.0f} ms "
              f"({cold / warm:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
