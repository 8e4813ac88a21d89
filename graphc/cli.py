"""The ``graphc`` command line: compile, show, run, check, profile and benchmark ONNX models.

Errors print as one paragraph and exit with status 2 (``--debug`` shows the traceback);
``graphc check`` exits 1 when the model uses unsupported operators.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

import numpy as np

from .errors import GraphcError, UnsupportedOpError


def parse_sets(items: Sequence[str]) -> dict[str, int]:
    """``--set SYMBOL=SIZE`` arguments as {symbol: size} (GraphcError naming a malformed one)."""
    out = {}
    for it in items or []:
        name, sep, val = it.partition("=")
        if not sep or not name:
            raise GraphcError(f"--set expects SYMBOL=SIZE (e.g. --set N=4), got '{it}'")
        try:
            out[name] = int(val)
        except ValueError:
            raise GraphcError(f"--set {name}: size must be an integer, got '{val}'") from None
        if out[name] < 0:
            raise GraphcError(f"--set {name}: size must be >= 0, got {out[name]}")
    return out


def _parse_shapes(items: Sequence[str]) -> dict[str, list[int]]:
    out = {}
    for it in items or []:
        name, sep, val = it.rpartition("=")
        if not sep or not name:
            raise GraphcError(f"--input-shape expects NAME=D0,D1,... (e.g. data=1,3,224,224), got '{it}'")
        try:
            out[name] = [int(x) for x in val.split(",") if x.strip() != ""]
        except ValueError:
            raise GraphcError(f"--input-shape {name}: dims must be integers, got '{val}'") from None
    return out


def load_graph(path: str, sets: Sequence[str] = (), shapes: Sequence[str] = ()):
    """Import a model, apply --input-shape and --set, and infer types."""
    from graphc.frontends.onnx import import_model

    from .passes import infer_shapes
    from .passes.bind import bind_symbols, set_input_shapes

    graph = import_model(path, infer=False)
    if shapes:
        set_input_shapes(graph, _parse_shapes(shapes))
    if sets:
        bind_symbols(graph, parse_sets(sets))
    try:
        infer_shapes(graph)
    except GraphcError as e:
        raise type(e)(f"{path}: {e}") from None
    return graph


# ---- show -------------------------------------------------------------------------------------
def _type_json(t):
    from .ir import TensorType

    if isinstance(t, TensorType):
        return {"dtype": t.dtype.name if t.dtype else None,
                "shape": None if t.shape is None else list(t.shape)}
    return {"type": str(t) if t is not None else None}


def graph_summary(graph) -> dict:
    """The machine-readable form of ``graphc show --json`` (stable keys)."""
    from .passes.stats import parameter_count

    def val(v):
        d = {"name": v.name}
        d.update(_type_json(v.type))
        return d

    def attr(a):
        if isinstance(a, np.ndarray):
            return {"tensor": {"dtype": str(a.dtype), "shape": list(a.shape)}}
        if isinstance(a, (list, tuple)):
            return [attr(x) for x in a]
        if isinstance(a, (int, float, str)) or a is None:
            return a
        return str(a)

    return {
        "graph": graph.name,
        "opset": {k or "ai.onnx": v for k, v in sorted(graph.opset.items())},
        "inputs": [val(v) for v in graph.inputs],
        "outputs": [val(v) for v in graph.outputs],
        "nodes": [{"name": n.name, "op": n.op_type, "domain": n.domain or "ai.onnx",
                   "inputs": [v.name if v is not None else None for v in n.inputs],
                   "outputs": [val(v) if v is not None else None for v in n.outputs],
                   "attrs": {k: attr(a) for k, a in sorted(n.attrs.items()) if not hasattr(a, "nodes")}}
                  for n in graph.nodes],
        "op_histogram": graph.op_histogram(),
        "node_count": len(graph.nodes),
        "parameter_count": parameter_count(graph),
        "constant_count": len(graph.constants),
        "metadata": dict(sorted(graph.metadata.items())),
    }


def stage_graph(graph, stage: str):
    """The graph at a compiler stage (imported, simplified, fused, planned) and a report to print after it."""
    if stage == "imported":
        return graph, None
    if stage == "simplified":
        from .passes import simplify

        return graph, simplify(graph, level=2)
    from .compiler import compile

    plan = compile(graph, level=2, until=stage)
    return plan.graph, plan.stage_report(stage)


def load_plan_arg(args):
    """The saved plan ``args.model`` names, with --set bound (--input-shape belongs to compiling)."""
    from .plan import load_plan

    if getattr(args, "input_shape", None):
        raise GraphcError(f"{args.model} is a compiled plan: its input shapes were fixed when it was compiled; "
                          f"give --input-shape to `graphc compile` instead")
    plan = load_plan(args.model)
    from .compiler import bind

    return bind(plan, parse_sets(args.set)) if getattr(args, "set", None) else plan


def cmd_show(args) -> int:
    from .plan import is_plan

    fusion = None
    if is_plan(args.model):
        plan = load_plan_arg(args)
        args.stage = "planned"
        graph, stage_report, fusion = plan.graph, plan.stage_report("planned"), plan.fusion
    else:
        graph = load_graph(args.model, args.set, args.input_shape)
        stage = getattr(args, "stage", "imported")
        if stage in ("fused", "planned"):
            from .compiler import compile

            plan = compile(graph, level=2, until=stage)
            graph, stage_report, fusion = plan.graph, plan.stage_report(stage), plan.fusion
        else:
            graph, stage_report = stage_graph(graph, stage)
    if args.format in ("dot", "svg"):
        return _draw_graph(args, graph, fusion)
    if args.json:
        print(json.dumps(graph_summary(graph), indent=1, sort_keys=False))
        return 0
    from .passes.stats import parameter_count

    print(graph)
    print()
    print(f"{len(graph.nodes)} nodes, {len(graph.constants)} constants, {parameter_count(graph):,} parameters")
    print("ops:")
    for op, n in graph.op_histogram().items():
        print(f"  {n:6d}  {op}")
    if stage_report is not None:
        print(f"\nstage {args.stage}:")
        print(stage_report)
    return 0


def _draw_graph(args, graph, fusion) -> int:
    """``show --format dot|svg``: the DOT text always (stdout, or next to the SVG), the SVG where Graphviz is."""
    from .draw import graph_dot, render_svg

    stem = os.path.splitext(os.path.basename(args.model))[0]
    text = graph_dot(graph, fusion, title=f"{stem}: stage {args.stage}")
    if args.format == "dot" and not args.output:
        sys.stdout.write(text)
        return 0
    out = args.output or f"{stem}.{args.stage}.{args.format}"
    dot_path = os.path.splitext(out)[0] + ".dot"
    with open(dot_path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {dot_path}", file=sys.stderr)
    if args.format == "svg":
        svg = render_svg(text)  # DrawError (a GraphcError) says how to get Graphviz; the .dot is written
        with open(out, "w", encoding="utf-8") as f:
            f.write(svg)
        print(f"wrote {out}", file=sys.stderr)
    return 0


# ---- check ------------------------------------------------------------------------------------
def cmd_check(args) -> int:
    from graphc.frontends.onnx import import_model

    try:
        graph = import_model(args.model, infer=True)
    except UnsupportedOpError as e:
        print(f"graphc: {e}", file=sys.stderr)
        return 1
    graph.verify()
    ops = graph.op_histogram()
    print(f"{args.model}: OK: {len(graph.nodes)} nodes, {len(ops)} op types, all supported; "
          f"types inferred for {sum(1 for v in graph.values() if v.type is not None)} values")
    if "expanded_functions" in graph.metadata:
        print(f"  expanded from ONNX function definitions: {graph.metadata['expanded_functions']}")
    return 0


# ---- run --------------------------------------------------------------------------------------
def _load_array(path: str, name: str) -> np.ndarray:
    if not os.path.exists(path):
        raise GraphcError(f"--input {name}: file '{path}' does not exist")
    try:
        if path.endswith(".pb"):
            import onnx
            from onnx import numpy_helper

            t = onnx.TensorProto()
            with open(path, "rb") as f:
                t.ParseFromString(f.read())
            return numpy_helper.to_array(t)
        return np.load(path, allow_pickle=False)
    except GraphcError:
        raise
    except Exception as e:
        raise GraphcError(f"--input {name}: cannot read '{path}' as a .npy or .pb tensor: {e}") from None


def random_feeds(graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random values for every input; symbolic dims must have been bound with --set."""
    from .ir import TensorType
    from .passes.manager import random_feeds as seeded_feeds

    for v in graph.inputs:
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or t.dtype is None:
            raise GraphcError(f"--random-inputs: input '{v.name}' has type {t}; give it with --input")
        unbound = [d for d in t.shape if isinstance(d, str)]
        if unbound:
            raise GraphcError(f"--random-inputs: input '{v.name}' has symbolic dims {', '.join(unbound)} ({t}); "
                              f"bind them with --set, e.g. --set {unbound[0]}=1")
    try:
        return seeded_feeds(graph, seed, int_high=10)
    except GraphcError as e:
        raise GraphcError(f"--random-inputs: {e}") from None


def _map_text(m: dict, limit: int = 5) -> str:
    items = [f"{k!r}: {v:.5g}" if isinstance(v, float) else f"{k!r}: {v!r}" for k, v in list(m.items())[:limit]]
    return "{" + ", ".join(items) + (", ..." if len(m) > limit else "") + "}"


def _summary(x) -> str:
    if isinstance(x, dict):
        return f"map of {len(x)} entries {_map_text(x)}"
    if isinstance(x, list) and x and all(isinstance(m, dict) for m in x):  # ZipMap's rows of class scores
        return f"sequence of {len(x)} maps; first {_map_text(x[0])}"
    if isinstance(x, list):
        return f"sequence of {len(x)}" + (f"; first: {_summary(x[0])}" if x else "")
    if not isinstance(x, np.ndarray):
        return f"{type(x).__name__}"
    head = f"shape {list(x.shape)}, {x.dtype}"
    if x.size == 0 or x.dtype == object:
        return head
    if x.dtype.kind in "fiub" and x.dtype.kind != "V":
        xf = x.astype(np.float64)
        flat = x.reshape(-1)
        first = ", ".join(f"{e:.5g}" if x.dtype.kind == "f" else str(e) for e in flat[:5].tolist())
        more = ", ..." if x.size > 5 else ""
        s = (f"{head}: min {xf.min():.6g}, max {xf.max():.6g}, mean {xf.mean():.6g}, std {xf.std():.6g}; "
             f"[{first}{more}]")
        if x.ndim >= 1 and x.shape[-1] > 1 and x.dtype.kind == "f":
            am = np.argmax(x, axis=-1).reshape(-1)
            s += f"; argmax over the last axis [{', '.join(map(str, am[:8].tolist()))}{', ...' if am.size > 8 else ''}]"
        return s
    return head


def _backend_for(name: str, tf32: bool = False):
    """The backend ``name`` (resolved: ``graphc.runtime.resolve_backend``), checking that it takes the options
    asked for (--tf32: the CUDA backend only)."""
    from graphc.runtime import get_backend

    if tf32 and name != "cuda":
        raise GraphcError(f"--tf32 applies to --backend cuda (TF32 tensor cores), not to backend '{name}'")
    return get_backend(name)


def cmd_run(args) -> int:
    from .plan import is_plan

    if is_plan(args.model):  # a compiled plan runs as saved: nothing is optimized again
        runnable = load_plan_arg(args)
        graph = runnable.graph
    else:
        graph = runnable = load_graph(args.model, args.set, args.input_shape)
    feeds = random_feeds(graph, args.seed) if args.random_inputs else {}
    for item in args.input or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise GraphcError(f"--input expects NAME=FILE.npy, got '{item}'")
        feeds[name] = _load_array(path, name)
    t0 = time.perf_counter()
    options = {"check_memory": True} if args.check_memory else {}
    if args.check_memory and runnable is graph:
        raise GraphcError("--check-memory checks a compiled plan's buffer assignment: run a file written by "
                          "`graphc compile`")
    if args.tf32:
        options["tf32"] = True
    from graphc.runtime import resolve_backend

    args.backend = resolve_backend(args.backend)
    exe = _backend_for(args.backend, args.tf32).prepare(runnable, **options)
    t1 = time.perf_counter()
    outputs = exe.run(feeds)
    t2 = time.perf_counter()
    for v, x in zip(graph.outputs, outputs):
        print(f"{v.name}: {_summary(x)}")
    print(f"prepared in {1e3 * (t1 - t0):.1f} ms, ran in {1e3 * (t2 - t1):.1f} ms on backend '{args.backend}'",
          file=sys.stderr)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        for v, x in zip(graph.outputs, outputs):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in v.name)
            path = os.path.join(args.output_dir, f"{safe}.npy")
            if not isinstance(x, np.ndarray) or x.dtype == object:  # .npy without pickle holds plain arrays only
                print(f"not saved: output '{v.name}' ({_summary(x)}) does not fit a .npy file", file=sys.stderr)
                continue
            np.save(path, x, allow_pickle=False)
            print(f"saved {path}", file=sys.stderr)
    return 0


# ---- compile ----------------------------------------------------------------------------------
def cmd_compile(args) -> int:
    from graphc.frontends.onnx import import_model

    from .compiler import compile

    t0 = time.perf_counter()
    graph = import_model(args.model, infer=False)
    try:
        plan = compile(graph, level=args.level, input_shapes=_parse_shapes(args.input_shape),
                       sets=parse_sets(args.set), source=os.path.basename(args.model))
    except GraphcError as e:
        raise type(e)(f"{args.model}: {e}") from None
    plan.save(args.output)
    print(plan.summary())
    if args.memory_chart:
        from .draw import memory_svg

        with open(args.memory_chart, "w", encoding="utf-8") as f:
            f.write(memory_svg(plan.memory, title=f"{os.path.basename(args.model)}: memory plan at -O{args.level}"))
        print(f"wrote {args.memory_chart}", file=sys.stderr)
    if args.explain_fusion:
        print(plan.fusion.explain() if plan.fusion is not None else f"fusion does not run at -O{args.level}")
    print(f"wrote {args.output} ({os.path.getsize(args.output):,} bytes) in {time.perf_counter() - t0:.2f} s",
          file=sys.stderr)
    return 0


# ---- profile and bench ------------------------------------------------------------------------
def prepare_compiled(graph, level: int, backend: str = "numpy", consume: bool = False):
    """(executable, how it was made) for ``graph`` compiled by graphc.compiler at ``level``; a plan's graph
    runs while the backend does not take a Plan. ``consume``: the caller has no other use for ``graph``
    (compiled in place, its replaced weights released)."""
    from graphc.runtime import get_backend

    from .compiler import compile

    plan = compile(graph, level=level, consume=consume)
    try:
        return get_backend(backend).prepare(plan), f"-O{level}"
    except (AttributeError, TypeError):
        return get_backend(backend).prepare(plan.graph), f"-O{level}, plan.graph (the backend does not take a Plan)"


def cmd_profile(args) -> int:
    from .profile import profile

    graph = load_graph(args.model, args.set, args.input_shape)
    feeds = {}
    for item in args.input or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise GraphcError(f"--input expects NAME=FILE.npy, got '{item}'")
        feeds[name] = _load_array(path, name)
    if any(v.name not in feeds for v in graph.inputs):
        feeds = {**random_feeds(graph, args.seed), **feeds}
    exe, how = prepare_compiled(graph, args.level)
    prof = profile(exe, feeds, repeats=args.repeats, warmup=args.warmup,
                   title=f"{os.path.basename(args.model)} ({how}, numpy backend)")
    print(prof.table(top=None if args.top <= 0 else args.top))
    if args.trace:
        prof.write_trace(args.trace)
        print(f"wrote {args.trace} (Chrome trace JSON: open it in ui.perfetto.dev or chrome://tracing)",
              file=sys.stderr)
    return 0


# ---- entry point ------------------------------------------------------------------------------
#: The entry point group of subcommands that other packages add: ``NAME = "module:function"``, where
#: ``function(subparsers)`` adds the subparser NAME and sets its ``fn`` (graphc.bench adds ``bench`` this way,
#: so this module, below the benchmarks, never imports them). A name already taken by a command here is skipped.
COMMANDS_GROUP = "graphc.commands"


def _command_entry_points() -> list:
    from importlib.metadata import entry_points

    seen, out = set(), []
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        if ep.name not in seen:  # one distribution may be visible twice on sys.path
            seen.add(ep.name)
            out.append(ep)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description="graphc: a static-graph compiler and runtime")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument("model", help="path to an .onnx model")
        sp.add_argument("--set", action="append", metavar="SYM=SIZE", help="bind a symbolic dim, e.g. N=4")
        sp.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                        help="fix an input's shape, e.g. data=1,3,224,224")

    sp = sub.add_parser("show", help="print the graph with inferred shapes, an ops histogram and parameter count")
    model_args(sp)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--stage", choices=("imported", "simplified", "fused", "planned"), default="imported",
                    help="show the graph after this compiler stage (default imported)")
    sp.add_argument("--format", choices=("text", "dot", "svg"), default="text",
                    help="text (default); dot: Graphviz DOT with fused groups as boxes, shapes on edges and the "
                    "reason on every unfused edge; svg: the same laid out by Graphviz's dot (the .dot is written too)")
    sp.add_argument("-o", "--output", metavar="FILE", help="with --format dot|svg: where to write (default: dot to "
                    "stdout, svg to MODEL.STAGE.svg)")
    sp.set_defaults(fn=cmd_show)

    sp = sub.add_parser("run", help="run a model on inputs from .npy files or random inputs")
    model_args(sp)
    sp.add_argument("--input", action="append", metavar="NAME=FILE", help="an input from a .npy (or .pb) file")
    sp.add_argument("--random-inputs", action="store_true", help="seeded random values for inputs not given")
    sp.add_argument("--seed", type=int, default=0, help="seed for --random-inputs (default 0)")
    sp.add_argument("--backend", default=None, choices=("auto", "numpy", "cpu", "cuda"),
                    help="runtime backend (default auto: cpu where g++ or clang++ is found, else numpy, or "
                    "$GRAPHC_BACKEND); cpu: compiled C++ kernels; numpy: the interpreter; cuda needs PyCUDA and a "
                    "GPU, or GRAPHC_CUDA_EMULATE=1")
    sp.add_argument("--tf32", action="store_true", help="with --backend cuda: let float32 matrix products and "
                    "convolutions use TF32 tensor cores (default: exact float32)")
    sp.add_argument("--output-dir", help="save each output as NAME.npy here")
    sp.add_argument("--check-memory", action="store_true",
                    help="for a compiled plan: keep every value at its planned arena offset and check the sharing")
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("compile", help="optimize a model into a plan saved as an ONNX file "
                        "(fused groups as graphc-domain nodes, the plan facts in its metadata)")
    model_args(sp)
    sp.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="where to write the plan")
    sp.add_argument("-O", dest="level", type=int, choices=(0, 1, 2), default=2,
                    help="-O0: plan memory only; -O1: also simplify; -O2 (default): also fuse")
    sp.add_argument("--explain-fusion", action="store_true", help="list the groups and why each unfused edge "
                    "stayed (kind, shape, multiple consumers, graph output, size limit)")
    sp.add_argument("--memory-chart", metavar="PLAN.svg", help="draw the memory plan as an SVG: buffer lifetimes "
                    "over the schedule, one row per buffer, the peak marked")
    sp.set_defaults(fn=cmd_compile)

    sp = sub.add_parser("check", help="list every unsupported op at once (exit 1 if any)")
    sp.add_argument("model", help="path to an .onnx model")
    sp.set_defaults(fn=cmd_check)

    sp = sub.add_parser("profile", help="time every step of a model's run: time, share, FLOPs, bytes; "
                        "--trace writes a Chrome trace")
    model_args(sp)
    sp.add_argument("-O", dest="level", type=int, choices=(0, 1, 2), default=2,
                    help="optimization level (-O0, -O1, -O2; default 2)")
    sp.add_argument("--input", action="append", metavar="NAME=FILE", help="an input from a .npy (or .pb) file "
                    "(inputs not given get seeded random values)")
    sp.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default 0)")
    sp.add_argument("--repeats", type=int, default=5, help="profiled runs; each step's median is shown (default 5)")
    sp.add_argument("--warmup", type=int, default=1, help="unprofiled runs first (default 1)")
    sp.add_argument("--top", type=int, default=25, help="show the N slowest steps (0: all; default 25)")
    sp.add_argument("--trace", metavar="OUT.json", help="write every profiled run as Chrome trace JSON (Perfetto)")
    sp.set_defaults(fn=cmd_profile)

    for ep in _command_entry_points():  # more subcommands from other packages (graphc.bench: `graphc bench`)
        if ep.name not in sub.choices:
            ep.load()(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except GraphcError as e:
        if args.debug:
            raise
        print(f"graphc: error: {' '.join(str(e).split()) if not isinstance(e, UnsupportedOpError) else e}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graphc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
