"""What the GPU benchmarks share: graphc's device and PyTorch's, timing, the output check, result rows, Markdown.

Every engine is timed the same way: ``synchronize(); t0 = perf_counter(); run(); synchronize()`` per run, after
warm-up runs, and the median of the runs is reported, so a time is a latency that includes launch overhead
(for graphc and PyTorch eager alike) and inputs already on the device. Before an engine is timed its outputs
are compared with a reference (max |diff| / max |ref|); a wrong answer is reported and not timed.

``--smoke`` (every GPU benchmark has it) runs the same code on tiny sizes; with ``GRAPHC_CUDA_EMULATE=1`` graphc
then runs on the CPU emulator and PyTorch on the CPU, which proves the benchmark's code path, not any speed.
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Row:
    """One engine on one workload: ``status`` is ok, wrong (outputs differ: not timed), error or unavailable."""

    workload: str
    engine: str
    status: str = "ok"
    seconds: float | None = None
    error: float | None = None  # max |diff| / max |ref| against the reference
    detail: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ms(self) -> str:
        return f"{self.seconds * 1e3:.3f}" if self.seconds is not None else self.status

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def median_seconds(run: Callable[[], object], sync: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median wall time of ``run`` with the device synchronized before and after each call."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def relative_error(got, want) -> float:
    """max |got - want| / max |want| over all outputs (inf on a shape mismatch or a NaN)."""
    worst = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        if g.shape != w.shape or not np.isfinite(g).all():
            return float("inf")
        scale = max(float(np.abs(w).max()) if w.size else 0.0, 1e-30)
        worst = max(worst, float(np.abs(g - w).max()) / scale if w.size else 0.0)
    return worst if len(got) == len(want) else float("inf")


# ---- graphc on the device -----------------------------------------------------------------------
def graphc_device():
    """The device graphc's CUDA backend runs on: the GPU through PyCUDA, or the CPU emulator when
    GRAPHC_CUDA_EMULATE=1. Raises CudaUnavailableError (one sentence) without either."""
    from graphc.runtime.cuda.executor import default_device

    return default_device()


def machine_and_judge(prog: str) -> tuple[str, bool] | None:
    """(the machine line of the report, whether targets are judged) for a benchmark about to run; None,
    with the reason printed for ``prog``, when no CUDA device (nor the emulator) opens."""
    from graphc.errors import GraphcError

    try:
        device = graphc_device()
    except GraphcError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return None
    torch = torch_or_none()
    return describe(device, torch), judged(device, torch)


def log_report(log, header: list[str], rows: list[list[str]], notes: list[str]) -> None:
    """The result table as text, then its notes, one a line."""
    log("")
    log(text_table(header, rows))
    for n in notes:
        log(f"- {n}")


def is_emulated(device) -> bool:
    return type(device).__name__ == "EmulatedDevice"


def graphc_prepare(graph, device, tf32: bool = False):
    """CudaBackend.prepare(graph) on ``device``, with TF32 tensor cores allowed when ``tf32``."""
    from graphc.runtime.cuda import CudaBackend

    return CudaBackend.prepare(graph, device=device, tf32=tf32)


def graphc_launches(exe, feeds: dict) -> Callable[[], None]:
    """One pass over the prepared launches of ``exe`` with ``feeds`` already copied to the device."""
    prepared = exe.prepared()
    for ptr, v in prepared.inputs:
        exe.device.htod(ptr, np.ascontiguousarray(feeds[v.name], dtype=v.type.dtype.np))
    launches = prepared.launches

    def run() -> None:
        for launch, grid, block, ptrs in launches:
            launch(grid, block, ptrs)

    return run


# ---- PyTorch ----------------------------------------------------------------------------------------
def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device(torch) -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_sync(torch, device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def set_torch_tf32(torch, on: bool) -> None:
    """TF32 for PyTorch's matrix products and cuDNN convolutions alike (cuDNN's default is on)."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


# ---- reporting -------------------------------------------------------------------------------------
def judged(device, torch=None) -> bool:
    """Whether timings can be held against a target: graphc on a GPU and PyTorch on CUDA (not the emulator)."""
    return not is_emulated(device) and torch is not None and torch_device(torch) == "cuda"


NOT_JUDGED = "targets not judged: graphc on the CPU emulator or PyTorch without CUDA (these times prove the code path only)"


def describe(device, torch=None) -> str:
    """One line: graphc's device, PyTorch's device and versions, the host."""
    props = getattr(device, "props", None)
    what = "CPU emulator (GRAPHC_CUDA_EMULATE=1: no GPU timing)" if is_emulated(device) else \
        f"{props.name} ({props.arch}, {props.multiprocessors} SMs)"
    parts = [f"graphc device: {what}"]
    if torch is not None:
        dev = torch_device(torch)
        name = torch.cuda.get_device_name() if dev == "cuda" else "CPU"
        parts.append(f"torch {torch.__version__} on {name}")
    else:
        parts.append("torch not installed")
    parts.append(f"numpy {np.__version__}, Python {platform.python_version()}, {platform.node() or 'host'} "
                 f"({os.cpu_count()} CPUs)")
    return "; ".join(parts)


def append_markdown(path: str, title: str, command: str, machine: str, body: str) -> None:
    """Append a dated section (title, the command, the machine, then ``body``) to a Markdown file."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d, %H:%M UTC")
    text = f"\n## {stamp}: {title}\n\nMade by `{command}`.\n\n{machine}\n\n{body.rstrip()}\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                              for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def failure(workload: str, engine: str, e: BaseException) -> Row:
    """A row for an engine that raised: its error class and first line."""
    msg = " ".join(str(e).split())
    return Row(workload, engine, status="error", detail=f"{type(e).__name__}: {msg[:300]}",
               extra={"exception": type(e).__name__})


__all__ = ["NOT_JUDGED", "Row", "append_markdown", "bench_main", "log_report", "machine_and_judge", "describe", "failure", "judged", "graphc_device", "graphc_launches", "graphc_prepare",
           "is_emulated", "markdown_table", "median_seconds", "relative_error", "set_torch_tf32", "text_table",
           "torch_device", "torch_or_none", "torch_sync"]


def bench_main(build_parser, run, argv, prog: str) -> int:
    """A CUDA benchmark's command line: parse, run (printing as it goes), exit status 0 when every row is
    ok or its peer unavailable, 1 when a row failed, 2 when nothing could run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    args.command = f"{prog} {shlex.join(argv)}".strip()
    rows = run(args, log=lambda s: print(s, flush=True))
    if rows is None:
        return 2
    return 0 if all(r.status in ("ok", "unavailable") for r in rows) else 1
