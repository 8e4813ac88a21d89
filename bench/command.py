"""The ``graphc bench`` subcommand, which the ``graphc`` command line finds through the ``graphc.commands``
entry point group (pyproject.toml): graphc.cli sits below the benchmarks and never imports them.

``graphc bench [--backend numpy|cuda] ARGS`` passes ARGS to ``python -m graphc.bench`` (numpy, the default:
against onnxruntime, tract and onnx's ReferenceEvaluator) or ``python -m graphc.bench.cuda_models`` (cuda: on
the GPU against PyTorch and onnxruntime's CUDA provider). This module stays light: the harness is imported
only when the command runs.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from graphc.errors import GraphcError


def split_backend(argv: Sequence[str]) -> tuple[str, list[str]]:
    """(--backend's value, default numpy; the other arguments) of ``graphc bench``'s arguments."""
    rest, backend, it = [], "numpy", iter(argv)
    for a in it:
        if a == "--backend":
            backend = next(it, "")
        elif a.startswith("--backend="):
            backend = a.split("=", 1)[1]
        else:
            rest.append(a)
    if backend not in ("numpy", "cuda"):
        raise GraphcError(f"graphc bench --backend: expected numpy or cuda, got '{backend}'")
    return backend, rest


def cmd_bench(args) -> int:
    backend, argv = split_backend(args.bench_args)
    if backend == "cuda":  # graphc on the GPU against PyTorch and onnxruntime's CUDA provider
        from .cuda_models import main
    else:
        from .cli import main
    return main(argv, prog="graphc bench" + (" --backend cuda" if backend == "cuda" else ""))


def add_command(sub) -> None:
    """Add ``bench`` to the ``graphc`` command line's subparsers ``sub`` (the graphc.commands entry point)."""
    sp = sub.add_parser("bench", help="benchmark against onnxruntime, tract and onnx's ReferenceEvaluator "
                        "(the options of `python -m graphc.bench`; try `graphc bench --help`); --backend cuda: on the "
                        "GPU against PyTorch and onnxruntime's CUDA provider (`python -m graphc.bench.cuda_models`)",
                        add_help=False,
                        prefix_chars="\0")  # no options of its own: every argument goes on to the harness
    sp.add_argument("bench_args", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_bench)


__all__ = ["add_command", "cmd_bench", "split_backend"]
