"""Compile, here and without a GPU, every kernel the on-device check (scripts/gpu_check.sh) will load, into the
kernel cache it carries: so that the device spends its minutes running kernels, not compiling them.

The plans are prepared exactly as the check prepares them (``CudaBackend.prepare``, the same lowering, in-place
aliasing and launch geometry of an H100) on a device that only collects the kernels it is asked to load; all
of them are then compiled at once (``KernelCache.compile_many``: parallel nvcc runs, one per CPU) for sm_90
with the nvcc on the PATH. What it covers: the GPU tests' cases (tests/cuda/cuda_cases.py), the ONNX node
cases (the largest share: about 1,500 kernel bodies), the models stage (tiny_cnn, squeezenet) and the
kernels benchmark (graphc.bench.cuda_kernels, full and --quick sizes). A kernel it misses is compiled on the
device as usual (the cache is only faster, never required).

    GRAPHC_CACHE_DIR=.gpu_carry/kernel-cache python scripts/gpu_kernels.py [--arch sm_90] [--only NAME,...]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cuda"))  # cuda_cases, cuda_node_cases

import graphc as gc  # noqa: E402
from graphc.compiler import compile as compile_graph  # noqa: E402
from graphc.runtime.cuda import CudaBackend  # noqa: E402
from graphc.runtime.cuda.cache import KernelCache  # noqa: E402
from graphc.runtime.codegen.launch import DeviceProps  # noqa: E402


class CollectingDevice:
    """The device interface with an H100's properties that runs nothing: it records each kernel a plan loads."""

    def __init__(self, props: DeviceProps = DeviceProps()):
        self.props = props
        self.kernels: dict[str, object] = {}
        self._next = 1 << 32

    def alloc(self, nbytes: int) -> int:
        ptr, self._next = self._next, self._next + (int(nbytes) + 511) // 256 * 256
        return ptr

    def free(self, ptr: int) -> None:
        pass

    def htod(self, ptr, array) -> None:
        pass

    def dtoh(self, array, ptr) -> None:
        pass

    def memset(self, ptr, byte, nbytes) -> None:
        pass

    def dtod(self, dst, src, nbytes) -> None:
        pass

    def precompile(self, kernels) -> None:
        for k in kernels:
            self.kernels.setdefault(k.source, k)

    def load(self, kernel):
        self.kernels.setdefault(kernel.source, kernel)
        return lambda grid, block, ptrs: None

    def call(self, call):
        return lambda grid, block, ptrs: None

    def synchronize(self) -> None:
        pass


def _prepare(graph_or_plan, dev, **kw) -> None:
    plan = graph_or_plan if hasattr(graph_or_plan, "memory") else compile_graph(graph_or_plan, level=kw.pop("level", 2))
    CudaBackend.prepare(plan, device=dev, **kw)


def cases(dev) -> None:
    from cuda_cases import all_cases

    for c in all_cases():
        _prepare(gc.import_onnx(c.model), dev, debug=True)


def node_cases(dev) -> None:
    from cuda_node_cases import lowered_node_cases

    for _, plan, _ in lowered_node_cases(dev.props):
        _prepare(plan, dev, debug=True)


def models(dev) -> None:
    """What the models stage runs: ``python -m graphc run MODEL --backend cuda --random-inputs`` (tiny_cnn with
    ``--set N=4``), with and without --tf32 (the CLI's own path, on this device)."""
    import os
    from unittest import mock

    from graphc.cli import main

    os.environ["GRAPHC_CUDA_EMULATE"] = "1"  # get_backend("cuda") then asks for no PyCUDA; the device is ours

    with mock.patch("graphc.runtime.cuda.state.default_device", lambda: dev), \
            mock.patch("graphc.runtime.cuda.executor.default_device", lambda: dev):
        for model in ("tiny_cnn", "squeezenet"):
            path = ROOT / "models" / "data" / f"{model}.onnx"
            if not path.exists():
                from graphc.models.light import path as light_path

                path = Path(light_path(model))
            batch = ["--set", "N=4"] if model == "tiny_cnn" else []
            for extra in ([], ["--tf32"]):
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    if main(["run", str(path), "--backend", "cuda", "--random-inputs", *batch, *extra]) != 0:
                        raise SystemExit(f"graphc run {path} {' '.join(batch + extra)} failed")


def kernels_bench(dev) -> None:
    from graphc.bench.cuda_kernels import chain_model, row_model

    for quick in (False, True):
        n = (4 if quick else 64) << 20
        for level in (2, 1):
            _prepare(gc.import_onnx(chain_model(n)), dev, level=level)
        rows = cols = 1024 if quick else 4096
        for op in ("Softmax", "LayerNormalization"):
            _prepare(gc.import_onnx(row_model(op, rows, cols)), dev)
    _prepare(gc.import_onnx(chain_model(1 << 20)), dev)


SOURCES = {"cases": cases, "node-cases": node_cases, "models": models, "kernels-bench": kernels_bench}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--only", default=",".join(SOURCES), help=f"comma-separated, from {', '.join(SOURCES)}")
    args = ap.parse_args(argv)
    dev = CollectingDevice()
    for name in args.only.split(","):
        t0, before = time.perf_counter(), len(dev.kernels)
        SOURCES[name](dev)
        print(f"{name}: {len(dev.kernels) - before} kernels ({time.perf_counter() - t0:.1f} s)", flush=True)
    cache = KernelCache()
    t0 = time.perf_counter()
    cache.compile_many(list(dev.kernels.values()), args.arch)
    print(f"{len(dev.kernels)} kernels for {args.arch} in {cache.root}: {cache.misses} compiled, {cache.hits} already "
          f"there ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
