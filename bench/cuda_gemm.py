"""A square matrix product on the GPU: graphc's CUDA backend (cuBLAS through its lowering) against torch.matmul.

    python -m graphc.bench.cuda_gemm [--n 4096] [--repeats 50] [--markdown bench/RESULTS.md]
    GRAPHC_CUDA_EMULATE=1 python -m graphc.bench.cuda_gemm --smoke      (n=64 on the CPU emulator: the code path only)

One ONNX MatMul of two n x n inputs, in three modes measured in the same run: float32 with TF32 off (exact
float32: graphc's default and, here, PyTorch's), float32 with TF32 on (both), and float16 (float32
accumulation). graphc's time is one pass over its prepared launches with the inputs on the device; PyTorch's
is ``torch.matmul(a, b, out=c)``; each the median of ``--repeats`` synchronized runs after warm-up. Before
timing, both results are compared with a float64 product on the host. Target: float32 (TF32 off) graphc
reaches >= 90% of torch.matmul's throughput.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from .cuda_common import (NOT_JUDGED, append_markdown, bench_main, failure, graphc_device, graphc_launches,
                          graphc_prepare, log_report, machine_and_judge, markdown_table, median_seconds, relative_error,
                          Row, set_torch_tf32, torch_device, torch_or_none, torch_sync)

#: (label, element type, TF32, tolerance of max |diff| / max |ref| against the float64 product)
MODES = (("float32", np.float32, False, 1e-4), ("float32 + TF32", np.float32, True, 1e-2),
         ("float16", np.float16, False, 1e-2))


def matmul_model(n: int, dtype) -> bytes:
    from onnx import TensorProto as TP
    from onnx import helper as oh

    et = TP.FLOAT16 if dtype == np.float16 else TP.FLOAT
    g = oh.make_graph([oh.make_node("MatMul", ["a", "b"], ["c"])], f"matmul{n}",
                      [oh.make_tensor_value_info("a", et, [n, n]), oh.make_tensor_value_info("b", et, [n, n])],
                      [oh.make_tensor_value_info("c", et, [n, n])])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)]).SerializeToString()


def run_mode(n: int, label: str, dtype, tf32: bool, tol: float, args, log=print) -> list[Row]:
    import graphc as gc

    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (n, n)).astype(dtype)
    b = rng.uniform(-1, 1, (n, n)).astype(dtype)
    ref = [a.astype(np.float64) @ b.astype(np.float64)]
    rows = []
    try:
        device = graphc_device()
        exe = graphc_prepare(gc.import_onnx(matmul_model(n, dtype)), device, tf32=tf32)
        out = exe.run({"a": a, "b": b})
        row = Row(label, "graphc", error=relative_error(out, ref))
        if row.error > tol:
            row.status = "wrong"
        else:
            row.seconds = median_seconds(graphc_launches(exe, {"a": a, "b": b}), device.synchronize, args.warmup,
                                         args.repeats)
        del exe
    except Exception as e:  # noqa: BLE001 - reported as the row; the peer still runs
        row = failure(label, "graphc", e)
    rows.append(row)
    torch = torch_or_none()
    if torch is None:
        rows.append(Row(label, "torch.matmul", status="unavailable", detail="torch is not installed"))
    else:
        dev = torch_device(torch)
        set_torch_tf32(torch, tf32)
        try:
            ta, tb = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)
            tc = torch.matmul(ta, tb)
            row = Row(label, "torch.matmul", error=relative_error([tc.cpu().numpy()], ref), extra={"device": dev})
            if row.error > tol:
                row.status = "wrong"
            else:
                row.seconds = median_seconds(lambda: torch.matmul(ta, tb, out=tc), torch_sync(torch, dev),
                                             args.warmup, args.repeats)
            del ta, tb, tc
        except Exception as e:  # noqa: BLE001
            row = failure(label, "torch.matmul", e)
        rows.append(row)
    for r in rows:
        log(f"  {label:15s} {r.engine:13s} {r.ms:>10s}" + (f"  error {r.error:.1e}" if r.error is not None else "")
            + (f"  {r.detail}" if r.detail else ""))
    return rows


def table(rows: list[Row], n: int, judge: bool = True) -> tuple[list[str], list[list[str]], list[str]]:
    by = {(r.workload, r.engine): r for r in rows}
    flops = 2 * n ** 3
    header = ["mode", "graphc ms", "torch.matmul ms", "graphc TFLOP/s", "torch TFLOP/s", "graphc / torch throughput"]
    out, notes = [], []
    for label, *_ in MODES:
        g, t = by.get((label, "graphc")), by.get((label, "torch.matmul"))
        if g is None:
            continue
        tf = lambda r: f"{flops / r.seconds / 1e12:.1f}" if r and r.ok else "–"  # noqa: E731
        share = f"{t.seconds / g.seconds:.0%}" if g.ok and t and t.ok else "–"
        out.append([label, g.ms, t.ms if t else "–", tf(g), tf(t), share])
        if label == "float32" and g.ok and t and t.ok and judge:
            notes.append(f"target: float32 {n}^3 graphc >= 90% of torch.matmul: {t.seconds / g.seconds:.0%}: "
                         f"{'met' if t.seconds / g.seconds >= 0.9 else 'not met'}")
    if not judge:
        notes.append(NOT_JUDGED)
    for r in rows:
        if not r.ok:
            notes.append(f"{r.engine}, {r.workload}: {r.status}: "
                         + (f"max relative error {r.error:.2g}" if r.status == "wrong" else r.detail))
    return header, out, notes


def build_parser(prog: str = "python -m graphc.bench.cuda_gemm") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="matrix size (default 4096)")
    ap.add_argument("--modes", default=",".join(m[0] for m in MODES), help="comma-separated, from: "
                    + ", ".join(m[0] for m in MODES))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="n=64, 3 runs: proves the code path in seconds")
    ap.add_argument("--markdown", metavar="PATH", help="append a section with the table to this file")
    return ap


def run(args, log=print) -> list[Row] | None:
    from graphc.errors import GraphcError

    if args.smoke:
        args.n, args.repeats, args.warmup = 64, min(args.repeats, 3), min(args.warmup, 1)
    wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in {x[0] for x in MODES}]
    if unknown:
        raise GraphcError(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(m[0] for m in MODES)}")
    opened = machine_and_judge("graphc.bench.cuda_gemm")
    if opened is None:
        return None
    machine, judge = opened
    log(machine)
    log(f"{args.n} x {args.n} x {args.n} matrix product, median of {args.repeats} runs after {args.warmup}:")
    rows = []
    for label, dtype, tf32, tol in MODES:
        if label in wanted:
            rows += run_mode(args.n, label, dtype, tf32, tol, args, log)
    header, lines, notes = table(rows, args.n, judge)
    log_report(log, header, lines, notes)
    if args.markdown:
        body = (f"{args.n}^3 MatMul, median of {args.repeats} synchronized runs after {args.warmup} warm-up runs, "
                f"inputs on the device.\n\n" + markdown_table(header, lines) + "\n\n"
                + "\n".join(f"- {n}" for n in notes))
        append_markdown(args.markdown, "CUDA backend: matrix product against torch.matmul",
                        getattr(args, "command", "python -m graphc.bench.cuda_gemm"), machine, body)
        log(f"appended to {args.markdown}")
    return rows


def main(argv: Sequence[str] | None = None, prog: str = "python -m graphc.bench.cuda_gemm") -> int:
    return bench_main(build_parser, run, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())
