"""The command line of the benchmarks (``python -m graphc.bench`` and ``graphc bench``)."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Sequence

from .engines import ENGINES
from .runner import Policy, busy_load, machine_description, run_matrix
from .workloads import QUICK, catalog, custom_model


def build_parser(prog: str = "python -m graphc.bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Benchmark graphc against onnxruntime, tract and onnx's "
                                "ReferenceEvaluator; every engine in its own process, outputs checked first.")
    p.add_argument("models", nargs="*", help="extra .onnx models to benchmark (static input shapes, random feeds)")
    p.add_argument("--quick", action="store_true", help=f"two small workloads ({', '.join(QUICK)}), 1 thread, "
                   "few repeats (seconds)")
    p.add_argument("--workloads", help="comma-separated standard workloads (default: all; 'none' for only MODELS); "
                   f"choose from {', '.join(catalog())}")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help=f"comma-separated engines (default: all): {', '.join(ENGINES)}")
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1,2; --quick: 1)")
    p.add_argument("--budget", type=float, help="seconds of timed runs per engine (default 3; --quick: 0.2)")
    p.add_argument("--max-repeats", type=int, help="most timed runs per engine (default 30; --quick: 5)")
    p.add_argument("--gap", type=float, help="seconds of idle before each timed run (default 0.15; --quick: 0.05)")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="run under load: N busy processes (each a spinning loop, one core's worth) run beside every "
                   "measurement, started before the first and killed after the last (default 0)")
    p.add_argument("--load-pin", action="store_true",
                   help="with --load: pin busy process k to CPU k (default: the scheduler places them)")
    p.add_argument("--markdown", metavar="PATH", help="write the report as Markdown (e.g. bench/RESULTS.md)")
    p.add_argument("--json", metavar="PATH", help="write every raw result as JSON")
    p.add_argument("--workdir", help="where the workload models go (default: a temporary folder, removed after)")
    return p


def _policy(args) -> Policy:
    pol = Policy(min_repeats=3, max_repeats=5, budget_s=0.2, gap_s=0.05, reference_timeout_s=60.0) if args.quick \
        else Policy()
    if args.budget is not None:
        pol.budget_s = args.budget
    if args.max_repeats is not None:
        pol.max_repeats = args.max_repeats
        pol.min_repeats = min(pol.min_repeats, args.max_repeats)
    if args.gap is not None:
        pol.gap_s = args.gap
    return pol


def main(argv: Sequence[str] | None = None, prog: str = "python -m graphc.bench") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    table = catalog()
    if args.workloads:
        names = [] if args.workloads == "none" else [n.strip() for n in args.workloads.split(",") if n.strip()]
    elif args.quick:
        names = list(QUICK)
    else:
        names = [] if args.models else list(table)
    unknown = [n for n in names if n not in table]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if unknown or bad:
        print(f"{prog}: unknown workload(s) {unknown} / engine(s) {bad}; workloads: {', '.join(table)}; "
              f"engines: {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    threads = [int(t) for t in (args.threads or ("1" if args.quick else "1,2")).split(",")]
    if args.load < 0:
        print(f"{prog}: --load takes a number of busy processes (0 or more), got {args.load}", file=sys.stderr)
        return 2
    policy = _policy(args)
    folder = args.workdir or tempfile.mkdtemp(prefix="graphc-bench-")
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    machine = machine_description()
    try:
        workloads = []
        for n in names:
            print(f"building workload {n}", file=sys.stderr)
            workloads.append(table[n](folder))
        workloads += [custom_model(folder, m) for m in args.models]
        log = lambda s: print(s, flush=True)  # noqa: E731
        with busy_load(args.load, pin=args.load_pin, log=log) as load:
            machine["load"] = load
            results = run_matrix(workloads, engines, threads, policy, folder, log=log)
    finally:
        if not args.workdir:
            shutil.rmtree(folder, ignore_errors=True)
    wall = time.perf_counter() - t0
    from .report import markdown, summary

    command = f"{prog} {shlex.join(argv)}".strip()
    text = markdown(results, workloads, machine, command, policy, wall)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
        print(f"wrote {args.markdown}", file=sys.stderr)
    else:
        start = text.index("## Summary against the targets")
        print("\n" + text[start: text.index("## Results per workload")].rstrip())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "machine": machine, "policy": asdict(policy),
                       "summary": summary(results, workloads),
                       "results": [{"workload": r.workload, "engine": r.engine, "threads": r.threads, **r.data}
                                   for r in results]}, f, indent=1)
    failed = [r for r in results if r.data.get("status") in ("wrong",)]
    return 1 if failed else 0
