"""Whole CNNs on the GPU: graphc's CUDA backend against PyTorch eager, torch.compile and onnxruntime's CUDA provider.

    python -m graphc.bench.cuda_models [--models resnet50,squeezenet] [--batch 1,32] [--tf32] [--markdown bench/RESULTS.md]
    python -m graphc.bench.cuda_models MODEL.onnx ...        (graphc bench MODEL.onnx --backend cuda runs this)
    GRAPHC_CUDA_EMULATE=1 python -m graphc.bench.cuda_models --smoke   (tiny CNN, CPU emulator: the code path only)

The nine light CNNs of the onnx wheel get seeded random weights (models.light.with_random_weights), their
BatchNorm parameters become initializers (so graphc may fold them, as PyTorch's peers may) and their batch
dim is set to ``--batch``. Every engine runs the same ONNX graph: graphc through its CUDA backend, PyTorch
through bench/torch_onnx.py (one torch call per ONNX node; eager, and ``torch.compile`` of that module),
onnxruntime through CUDAExecutionProvider when onnxruntime-gpu is installed. Each engine's outputs are first
checked against onnxruntime on the CPU (max |diff| / max |ref| <= 1e-3, 1e-2 with --tf32); then the inputs
stay on the device and the median latency of ``--repeats`` runs is reported (bench/cuda_common.py says how).
TF32 is off for every engine unless ``--tf32`` (then on for all). Target: graphc <= 1.5x PyTorch eager at
batch 32. Needs PyCUDA and a GPU (graphc), torch with CUDA (PyTorch peers), onnxruntime-gpu (its column).
"""
from __future__ import annotations

import argparse
import gc as pygc
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .cuda_common import (NOT_JUDGED, append_markdown, bench_main, failure, graphc_device, graphc_launches,
                          graphc_prepare, log_report, machine_and_judge, markdown_table, median_seconds, relative_error,
                          Row, set_torch_tf32, torch_device, torch_or_none, torch_sync)

LIGHT = ("resnet50", "bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "shufflenet", "squeezenet",
         "vgg19", "zfnet512")
ENGINES = ("graphc", "torch-eager", "torch-compile", "onnxruntime-cuda")


@dataclass
class Workload:
    name: str
    model: object  # onnx.ModelProto
    feeds: dict
    sets: dict | None = None  # symbolic dims bound for graphc (--set); the peers take shapes from the feeds

    def graph(self):
        """The model as graphc imports it, with ``sets`` bound."""
        from graphc.frontends.onnx import import_model
        from graphc.passes import infer_shapes
        from graphc.passes.bind import bind_symbols

        graph = import_model(self.model, infer=not self.sets)
        if self.sets:
            bind_symbols(graph, self.sets)
            infer_shapes(graph)
        return graph


# ---- workloads -----------------------------------------------------------------------------------
def light_model(name: str, batch: int = 1, seed: int = 0) -> Workload:
    """A light CNN with seeded random weights at ``batch``: parameters as initializers, one image input."""
    import onnx
    from onnx import numpy_helper

    from graphc.models.light import path, with_random_weights

    model, values = with_random_weights(onnx.load(path(name)), seed=seed)
    g = model.graph
    inits = {t.name for t in g.initializer}
    data = [vi for vi in g.input if vi.name not in inits]
    images = [(vi, x) for vi, x in zip(data, values) if x.ndim == 4]
    if len(images) != 1:
        raise ValueError(f"light model {name}: expected one 4-D image input, found {len(images)}")
    image, x = images[0]
    for vi, v in zip(data, values):
        if vi is not image:  # BatchNorm scale/bias/mean/var: constants, as in a deployed model
            g.initializer.append(numpy_helper.from_array(v, vi.name))
    keep = [vi for vi in g.input if vi.name == image.name]
    del g.input[:]
    g.input.extend(keep)
    image_dims = g.input[0].type.tensor_type.shape.dim
    image_dims[0].dim_value = batch
    # Reshapes to a constant shape with a leading 1 (flatten before the classifier, channel shuffle) keep
    # the batch dim: ONNX's 0 copies it from the input.
    consts = {t.name: t for t in g.initializer}
    for node in g.node:
        if node.op_type == "Reshape" and node.input[1] in consts:
            shape = numpy_helper.to_array(consts[node.input[1]]).copy()
            if shape.size and shape[0] == 1:
                shape[0] = 0
                consts[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    del g.value_info[:]
    for o in g.output:
        o.type.tensor_type.ClearField("shape")
    rng = np.random.default_rng(seed + batch)
    feed = rng.uniform(0.5, 1.5, size=(batch,) + x.shape[1:]).astype(np.float32)
    return Workload(f"{name} b{batch}", model, {image.name: feed})


def smoke_cnn(batch: int = 2, seed: int = 0) -> Workload:
    """A tiny CNN with the light models' op mix (Conv, grouped Conv, BatchNorm, Relu, pools, Concat, Sum,
    Reshape, Gemm, Softmax): seconds on the CPU emulator."""
    from onnx import TensorProto as TP
    from onnx import helper as oh
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    inits = []

    def w(name, *shape, scale=None):
        fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        arr = (rng.standard_normal(shape) * (scale if scale is not None else 1 / math.sqrt(fan))).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def pos(name, n):
        inits.append(numpy_helper.from_array(rng.uniform(0.5, 1.5, n).astype(np.float32), name))
        return name

    nodes = [
        oh.make_node("Conv", ["x", w("w1", 8, 3, 3, 3), w("b1", 8, scale=0.1)], ["c1"], pads=[1, 1, 1, 1]),
        oh.make_node("BatchNormalization", ["c1", pos("s1", 8), w("o1", 8, scale=0.1), w("m1", 8, scale=0.1),
                                            pos("v1", 8)], ["n1"]),
        oh.make_node("Relu", ["n1"], ["r1"]),
        oh.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        oh.make_node("Conv", ["p1", w("w2", 8, 4, 3, 3)], ["c2"], pads=[1, 1, 1, 1], group=2),
        oh.make_node("Relu", ["c2"], ["r2"]),
        oh.make_node("Conv", ["p1", w("w3", 8, 8, 1, 1)], ["c3"]),
        oh.make_node("Sum", ["r2", "c3"], ["s"]),
        oh.make_node("Concat", ["s", "p1"], ["cat"], axis=1),
        oh.make_node("AveragePool", ["cat"], ["a"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        oh.make_node("GlobalAveragePool", ["a"], ["gap"]),
        oh.make_node("Reshape", ["gap", "flat"], ["f"]),
        oh.make_node("Gemm", ["f", w("wf", 5, 16), w("bf", 5, scale=0.1)], ["logits"], transB=1),
        oh.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat"))
    g = oh.make_graph(nodes, "smoke_cnn", [oh.make_tensor_value_info("x", TP.FLOAT, [batch, 3, 12, 12])],
                      [oh.make_tensor_value_info("probs", TP.FLOAT, None),
                       oh.make_tensor_value_info("logits", TP.FLOAT, None)], inits)
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)])
    x = rng.uniform(0.5, 1.5, (batch, 3, 12, 12)).astype(np.float32)
    return Workload(f"smoke_cnn b{batch}", model, {"x": x})


def user_model(path: str, sets: Sequence[str] = (), seed: int = 0) -> Workload:
    """A model of the user's with seeded random inputs; ``sets`` ("N=4") bind its symbolic dims."""
    import onnx

    from graphc.cli import parse_sets, load_graph, random_feeds

    feeds = random_feeds(load_graph(path, sets), seed)
    return Workload(os.path.basename(path), onnx.load(path), feeds, parse_sets(sets))


# ---- engines -------------------------------------------------------------------------------------
def reference_outputs(w: Workload) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(w.model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, w.feeds)


def run_graphc(w: Workload, ref, args) -> Row:
    try:
        device = graphc_device()
        t0 = time.perf_counter()
        exe = graphc_prepare(w.graph(), device, tf32=args.tf32)
        prepare_s = time.perf_counter() - t0
        outs = exe.run(w.feeds)
    except Exception as e:  # noqa: BLE001 - a failing engine is a row of the report, the others still run
        return failure(w.name, "graphc", e)
    row = Row(w.name, "graphc", error=relative_error(outs, ref), extra={"prepare_s": prepare_s})
    if row.error > args.tolerance:
        row.status = "wrong"
        return row
    row.extra["kernels"] = exe.prepared().kernels
    row.extra["launches"] = len(exe.prepared().launches)
    row.seconds = median_seconds(graphc_launches(exe, w.feeds), device.synchronize, args.warmup, args.repeats)
    row.extra["run_s"] = median_seconds(lambda: exe.run(w.feeds), lambda: None, 1, max(3, args.repeats // 5))
    return row


def run_torch(w: Workload, ref, args, compiled: bool) -> Row:
    engine = "torch-compile" if compiled else "torch-eager"
    torch = torch_or_none()
    if torch is None:
        return Row(w.name, engine, status="unavailable", detail="torch is not installed")
    from .torch_onnx import torch_module

    dev = torch_device(torch)
    set_torch_tf32(torch, args.tf32)
    try:
        module = torch_module(w.model).to(dev).eval()
        names = module.input_names
        inputs = [torch.from_numpy(np.ascontiguousarray(w.feeds[n])).to(dev) for n in names]
        fn = torch.compile(module, backend=args.compile_backend) if compiled else module
        t0 = time.perf_counter()
        with torch.no_grad():
            outs = [o.float().cpu().numpy() for o in fn(*inputs)]
        first_s = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001
        return failure(w.name, engine, e)
    row = Row(w.name, engine, error=relative_error(outs, ref), extra={"first_run_s": first_s, "device": dev})
    if row.error > args.tolerance:
        row.status = "wrong"
        return row

    def run():
        with torch.no_grad():
            fn(*inputs)

    row.seconds = median_seconds(run, torch_sync(torch, dev), args.warmup, args.repeats)
    return row


def run_onnxruntime(w: Workload, ref, args) -> Row:
    engine = "onnxruntime-cuda"
    try:
        import onnxruntime as ort
    except ImportError:
        return Row(w.name, engine, status="unavailable", detail="onnxruntime is not installed")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers, where = [("CUDAExecutionProvider", {"use_tf32": int(args.tf32)}), "CPUExecutionProvider"], "cuda"
    elif args.smoke:  # the code path on the CPU provider (no GPU timing)
        providers, where = ["CPUExecutionProvider"], "cpu"
    else:
        return Row(w.name, engine, status="unavailable",
                   detail="onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    try:
        sess = ort.InferenceSession(w.model.SerializeToString(), providers=providers)
        if sess.get_providers()[0] != ("CUDAExecutionProvider" if where == "cuda" else "CPUExecutionProvider"):
            return Row(w.name, engine, status="unavailable", detail=f"session fell back to {sess.get_providers()}")
        binding = sess.io_binding()  # inputs on the device once, outputs left there: as for the others
        for name, x in w.feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, where, 0))
        for o in sess.get_outputs():
            binding.bind_output(o.name, where)
        sess.run_with_iobinding(binding)
        outs = binding.copy_outputs_to_cpu()
    except Exception as e:  # noqa: BLE001
        return failure(w.name, engine, e)
    row = Row(w.name, engine, error=relative_error(outs, ref), extra={"device": where})
    if row.error > args.tolerance:
        row.status = "wrong"
        return row
    row.seconds = median_seconds(lambda: sess.run_with_iobinding(binding), binding.synchronize_outputs,
                                 args.warmup, args.repeats)
    return row


def run_workload(w: Workload, args, log=print) -> list[Row]:
    ref = reference_outputs(w)
    rows = []
    for engine in args.engines:
        if engine == "graphc":
            r = run_graphc(w, ref, args)
        elif engine in ("torch-eager", "torch-compile"):
            r = run_torch(w, ref, args, compiled=engine == "torch-compile")
        else:
            r = run_onnxruntime(w, ref, args)
        log(f"  {w.name:22s} {engine:17s} {r.ms:>12s}" + (f"  error {r.error:.1e}" if r.error is not None else "")
            + (f"  {r.detail}" if r.detail else ""))
        rows.append(r)
        pygc.collect()  # the engine's model and buffers go before the next engine starts
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


# ---- report --------------------------------------------------------------------------------------
def _ratio(a: Row | None, b: Row | None) -> str:
    return f"{a.seconds / b.seconds:.2f}x" if a and b and a.ok and b.ok and b.seconds else "–"


def report(rows: list[Row], engines: Sequence[str], judge: bool = True) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, table rows, notes): latencies per workload and graphc's ratio to each peer."""
    by = {(r.workload, r.engine): r for r in rows}
    workloads = list(dict.fromkeys(r.workload for r in rows))
    peers = [e for e in engines if e != "graphc"]
    header = ["workload"] + [f"{e} ms" for e in engines] + [f"graphc / {p}" for p in peers] + \
        ["graphc prepare s", "graphc run() ms"]
    table = []
    for wl in workloads:
        g = by.get((wl, "graphc"))
        line = [wl] + [by[(wl, e)].ms if (wl, e) in by else "–" for e in engines]
        line += [_ratio(g, by.get((wl, p))) for p in peers]
        line += [f"{g.extra['prepare_s']:.1f}" if g and "prepare_s" in g.extra else "–",
                 f"{g.extra['run_s'] * 1e3:.3f}" if g and "run_s" in g.extra else "–"]
        table.append(line)
    notes = []
    b32 = [(by.get((wl, "graphc")), by.get((wl, "torch-eager"))) for wl in workloads if wl.endswith(" b32")]
    ratios = [g.seconds / t.seconds for g, t in b32 if g and t and g.ok and t.ok]
    if not judge:
        notes.append(NOT_JUDGED)
    elif ratios:
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        notes.append(f"target: batch 32, graphc / torch eager <= 1.5x: geomean {geo:.2f}x over {len(ratios)} "
                     f"model(s), worst {max(ratios):.2f}x: {'met' if max(ratios) <= 1.5 else 'not met'}")
    for r in rows:
        if r.status in ("wrong", "error", "unavailable"):
            why = f"max relative error {r.error:.2g}" if r.status == "wrong" else r.detail
            notes.append(f"{r.engine} on {r.workload}: {r.status}: {why}")
    return header, table, notes


def build_parser(prog: str = "python -m graphc.bench.cuda_models") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", metavar="MODEL.onnx", help="models of your own (static shapes)")
    ap.add_argument("--models", help=f"comma-separated light CNNs (default: all nine unless MODEL.onnx is "
                    f"given): {', '.join(LIGHT)}")
    ap.add_argument("--set", action="append", default=[], metavar="SYM=SIZE",
                    help="bind a symbolic dim of MODEL.onnx, e.g. N=4")
    ap.add_argument("--batch", default="1,32", help="comma-separated batch sizes of the light CNNs (default 1,32)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from {', '.join(ENGINES)}")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores in every engine (default: off)")
    ap.add_argument("--repeats", type=int, default=50, help="timed runs per engine (median; default 50)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    ap.add_argument("--compile-backend", default=None,
                    help="torch.compile's backend (default inductor; --smoke: eager, which traces without codegen)")
    ap.add_argument("--smoke", action="store_true", help="a tiny CNN, 3 runs: proves the code path in seconds")
    ap.add_argument("--markdown", metavar="PATH", help="append a section with the table to this file "
                    "(e.g. bench/RESULTS.md)")
    return ap


def main(argv: Sequence[str] | None = None, prog: str = "python -m graphc.bench.cuda_models") -> int:
    return bench_main(build_parser, run, argv, prog)


def run(args, log=print) -> list[Row] | None:
    """Run the benchmark ``args`` asks for; print (and append as Markdown) the table; the rows, or None when
    graphc's device is missing (printed)."""
    from graphc.errors import GraphcError

    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in args.engines if e not in ENGINES]
    if bad:
        raise GraphcError(f"unknown engine(s) {', '.join(bad)}: choose from {', '.join(ENGINES)}")
    args.tolerance = 1e-2 if args.tf32 else 1e-3
    if args.smoke:
        args.repeats, args.warmup = min(args.repeats, 3), min(args.warmup, 1)
    args.compile_backend = args.compile_backend or ("eager" if args.smoke else "inductor")
    opened = machine_and_judge("graphc.bench.cuda_models")
    if opened is None:
        return None
    machine, judge = opened
    log(machine)
    if args.smoke:
        builders = [lambda: smoke_cnn(2)]
    else:
        names = [n.strip() for n in args.models.split(",")] if args.models else ([] if args.paths else list(LIGHT))
        unknown = [n for n in names if n not in LIGHT]
        if unknown:
            raise GraphcError(f"unknown light model(s) {', '.join(unknown)}: choose from {', '.join(LIGHT)}")
        batches = [int(b) for b in args.batch.split(",")]
        builders = [lambda n=n, b=b: light_model(n, b) for n in names for b in batches]
        builders += [lambda p=p: user_model(p, args.set) for p in args.paths]
    rows = []
    for build in builders:
        w = build()
        log(f"{w.name}:")
        rows += run_workload(w, args, log)
    header, table, notes = report(rows, args.engines, judge)
    log_report(log, header, table, notes)
    if args.markdown:
        command = getattr(args, "command", "python -m graphc.bench.cuda_models")
        body = (f"Median latency of {args.repeats} runs after {args.warmup} warm-up runs, inputs on the device; "
                f"TF32 {'on' if args.tf32 else 'off'} in every engine; torch.compile backend "
                f"{args.compile_backend}.\n\n" + markdown_table(header, table) + "\n\n"
                + "\n".join(f"- {n}" for n in notes))
        append_markdown(args.markdown, "CUDA backend: whole models against PyTorch and onnxruntime", command,
                        machine, body)
        log(f"appended to {args.markdown}")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
