"""The engines a benchmark compares: each turns a model path into a ``run(feeds) -> list of arrays``.

Every adapter does its whole preparation (load, optimize, plan) in ``prepare``, which the worker
times as the engine's compile time; ``run`` then does only what inference needs each call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Runner = Callable[[dict], list]


@dataclass(frozen=True)
class EngineSpec:
    """An engine at one setting: ``key`` names it in reports (``graphc-O2``, ``onnxruntime``...)."""

    key: str
    kind: str  # graphc | onnxruntime | tract | reference
    level: int = 2  # graphc's optimization level
    backend: str = "numpy"  # graphc's backend
    #: Thread counts this engine honours; others are skipped (tract's Python build runs one thread).
    threads: tuple[int, ...] = (1, 2)


ENGINES: dict[str, EngineSpec] = {
    "onnxruntime": EngineSpec("onnxruntime", "onnxruntime"),
    "graphc-O2": EngineSpec("graphc-O2", "graphc", level=2),
    "graphc-O0": EngineSpec("graphc-O0", "graphc", level=0),
    "graphc-cpu": EngineSpec("graphc-cpu", "graphc", level=2, backend="cpu"),
    "tract": EngineSpec("tract", "tract", threads=(1,)),
    "onnx-reference": EngineSpec("onnx-reference", "reference", threads=(1,)),
}


def prepare(spec: EngineSpec, model_path: str, threads: int, info: dict) -> Runner:
    """Load and optimize a model for one engine; notes about what ran go into ``info``."""
    return _PREPARE[spec.kind](spec, model_path, threads, info)


def _prepare_graphc(spec: EngineSpec, model_path: str, threads: int, info: dict) -> Runner:
    from graphc.frontends.onnx import import_model
    from graphc.cli import prepare_compiled

    exe, how = prepare_compiled(import_model(model_path), spec.level, backend=spec.backend, consume=True)
    if spec.backend != "numpy":
        how += f", backend {spec.backend}"
    info["graphc"] = how
    info["optimized"] = spec.level > 0 and not how.startswith("unoptimized")
    ran = getattr(exe, "graph", None)
    if ran is not None:
        info["steps"] = len(ran.nodes)
    return exe.run


def _prepare_onnxruntime(spec: EngineSpec, model_path: str, threads: int, info: dict) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    info["onnxruntime"] = ort.__version__
    return lambda feeds: sess.run(None, feeds)


def _prepare_tract(spec: EngineSpec, model_path: str, threads: int, info: dict) -> Runner:
    import tract

    # into_model() types the graph; into_runnable() runs tract's declutter + optimize passes.
    runnable = tract.onnx().load(model_path).into_model().into_runnable()
    info["tract"] = tract.version()

    def run(feeds: dict) -> list:
        return [t.to_numpy() for t in runnable.run(list(feeds.values()))]

    return run


def _prepare_reference(spec: EngineSpec, model_path: str, threads: int, info: dict) -> Runner:
    import onnx
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(model_path)
    info["onnx"] = onnx.__version__
    return lambda feeds: ref.run(None, feeds)


_PREPARE = {"graphc": _prepare_graphc, "onnxruntime": _prepare_onnxruntime, "tract": _prepare_tract,
            "reference": _prepare_reference}


def relative_error(got: list, want: list) -> float:
    """max |got - want| over max |want|, across all outputs (inf when shapes or counts differ)."""
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return float("inf")
        if w.size == 0:
            continue
        scale = float(np.max(np.abs(w.astype(np.float64)))) or 1.0
        err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) / scale
        if not np.isfinite(err):
            return float("inf")
        worst = max(worst, err)
    return worst
