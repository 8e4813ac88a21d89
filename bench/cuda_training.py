"""Training steps on the GPU: graphc's Session(backend="cuda") against the same models in PyTorch eager on CUDA.

    python -m graphc.bench.cuda_training [--models mlp,mingpt] [--steps 50] [--markdown bench/RESULTS.md]
    GRAPHC_CUDA_EMULATE=1 python -m graphc.bench.cuda_training --smoke   (small batch and GPT, CPU emulator: code path)

The models and their PyTorch twins are bench/training.py's (mlp_digits: batch 128, Adam; mingpt: 2 layers,
width 64, block 32, batch 16, AdamW with clipping). A step is forward, backward and the optimizer update,
and both sides bring the loss back to the host each step (graphc's ``sess.run([step, loss])``, PyTorch's
``loss.item()``), so each step ends synchronized. Both start from the same seeded batch; the first losses
are printed side by side (the initial weights differ, so they agree only roughly). Figure: the median step
time after warm-up steps and the ratio graphc / PyTorch; target <= 1.5x for both models.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from .cuda_common import (NOT_JUDGED, append_markdown, bench_main, failure, log_report, machine_and_judge,
                          markdown_table, median_seconds, Row, torch_device, torch_or_none)

#: the smoke test's minGPT: small enough for the CPU emulator
SMOKE_GPT = dict(vocab=11, block=8, n_layer=1, n_head=2, n_embd=16, batch=2)
TARGET = 1.5


def workloads(smoke: bool) -> dict:
    from . import training as tr

    batch = 8 if smoke else 128
    gpt = SMOKE_GPT if smoke else tr.GPT
    return {
        "mlp": (f"mlp_digits step (batch {batch}, Adam)",
                lambda: tr.graphc_mlp(batch, backend="cuda"), lambda dev: tr.torch_mlp(batch, device=dev)),
        "mingpt": (f"mingpt step ({gpt['n_layer']} layers, width {gpt['n_embd']}, block {gpt['block']}, "
                   f"batch {gpt['batch']}, AdamW + clipping)",
                   lambda: tr.graphc_gpt(backend="cuda", c=gpt), lambda dev: tr.torch_gpt(device=dev, c=gpt)),
    }


def _loss(x) -> float:
    import numpy as np

    if isinstance(x, (list, tuple)):
        x = x[-1]
    return float(np.asarray(x).reshape(-1)[0])


def run(args, log=print) -> list[Row] | None:
    from graphc.errors import GraphcError

    if args.smoke:
        args.steps, args.warmup = min(args.steps, 3), min(args.warmup, 1)
    table = workloads(args.smoke)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in table]
    if unknown:
        raise GraphcError(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(table)}")
    opened = machine_and_judge("graphc.bench.cuda_training")
    if opened is None:
        return None
    machine, judge = opened
    torch = torch_or_none()
    log(machine)
    rows = []
    for key in keys:
        label, ours, theirs = table[key]
        try:
            step = ours()
            first = _loss(step())
            row = Row(label, "graphc", extra={"first_loss": first})
            row.seconds = median_seconds(step, lambda: None, args.warmup, args.steps)
        except Exception as e:  # noqa: BLE001 - reported as the row; the peer still runs
            row = failure(label, "graphc", e)
        rows.append(row)
        if torch is None:
            rows.append(Row(label, "torch-eager", status="unavailable", detail="torch is not installed"))
        else:
            dev = torch_device(torch)
            try:
                step = theirs(dev)
                row = Row(label, "torch-eager", extra={"first_loss": step(), "device": dev})
                row.seconds = median_seconds(step, lambda: None, args.warmup, args.steps)
            except Exception as e:  # noqa: BLE001
                row = failure(label, "torch-eager", e)
            rows.append(row)
        for r in rows[-2:]:
            log(f"  {key:7s} {r.engine:12s} {r.ms:>10s} ms"
                + (f"  first loss {r.extra['first_loss']:.4f}" if "first_loss" in r.extra else "")
                + (f"  {r.detail}" if r.detail else ""))
    header = ["workload", "graphc ms", "torch eager ms", "ratio", "target", ""]
    lines, notes = [], []
    for k in range(0, len(rows), 2):
        g, t = rows[k], rows[k + 1]
        ratio = g.seconds / t.seconds if g.ok and t.ok else None
        lines.append([g.workload, g.ms, t.ms, f"{ratio:.2f}x" if ratio else "–", f"{TARGET}x",
                      ("met" if ratio <= TARGET else "not met") if ratio and judge else ""])
        notes += [f"{r.engine} on {r.workload}: {r.status}: {r.detail}" for r in (g, t) if not r.ok]
    if not judge:
        notes.append(NOT_JUDGED)
    log_report(log, header, lines, notes)
    if args.markdown:
        body = (f"Median of {args.steps} steps after {args.warmup} warm-up steps; each step fetches its loss to "
                f"the host.\n\n" + markdown_table(header, lines) + "\n\n" + "\n".join(f"- {n}" for n in notes))
        append_markdown(args.markdown, "CUDA backend: training steps against PyTorch eager",
                        getattr(args, "command", "python -m graphc.bench.cuda_training"), machine, body)
        log(f"appended to {args.markdown}")
    return rows


def build_parser(prog: str = "python -m graphc.bench.cuda_training") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,mingpt", help="comma-separated: mlp, mingpt")
    ap.add_argument("--steps", type=int, default=50, help="timed steps (median; default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    ap.add_argument("--smoke", action="store_true", help="small batch and GPT, 3 steps: the code path in seconds")
    ap.add_argument("--markdown", metavar="PATH", help="append a section with the table to this file")
    return ap


def main(argv: Sequence[str] | None = None, prog: str = "python -m graphc.bench.cuda_training") -> int:
    return bench_main(build_parser, run, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())
