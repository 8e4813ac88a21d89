"""The on-disk kernel cache: compiled kernels keyed by source hash, target and compiler version.

A kernel is compiled once per machine: the key hashes the source, the target architecture (e.g.
``sm_90``), the compiler's version string and its options, so a second process (or a second prepare
of the same plan) loads the binary instead of running nvcc. The cache lives in ``$GRAPHC_CACHE_DIR``
(default: ``$XDG_CACHE_HOME/graphc`` or ``~/.cache/graphc``), under ``cuda/``. Files are written to a
temporary name and renamed, so concurrent processes never read half a file.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from graphc.errors import GraphcError

ENV_VAR = "GRAPHC_CACHE_DIR"
#: Bump when the meaning of a cached file changes (a new calling convention, say).
CACHE_FORMAT = 1
#: nvcc options every kernel is compiled with.
NVCC_OPTIONS = ("-O3", "-std=c++17")


class KernelCompileError(GraphcError):
    """nvcc (or the CPU emulator's compiler) rejected a generated kernel; the message holds its errors."""


def cache_root() -> Path:
    """The cache folder: $GRAPHC_CACHE_DIR, else the user's cache folder + ``graphc``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc"


@functools.lru_cache(maxsize=None)
def compiler_version(compiler: str) -> str:
    """The compiler's version line (part of every cache key): ``nvcc --version``'s last line."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KernelCompileError(f"cannot run '{compiler}' to compile CUDA kernels: {e}; install the CUDA toolkit "
                                 f"and put nvcc on the PATH") from None
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    return lines[-1] if lines else out.stderr.strip()


def find_nvcc() -> str:
    nvcc = shutil.which("nvcc") or (os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc")
                                    if os.environ.get("CUDA_HOME") else None)
    if not nvcc or not os.path.exists(nvcc):
        raise KernelCompileError("nvcc was not found on the PATH (nor in $CUDA_HOME/bin): the CUDA backend compiles "
                                 "its kernels with it; install the CUDA toolkit")
    return nvcc


def cache_key(source: str, target: str, version: str, options: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for part in (f"graphc-kernel-cache-{CACHE_FORMAT}", target, version, " ".join(options), source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class KernelCache:
    """Compiled kernels on disk. ``stats`` counts hits and misses (for tests and benchmarks)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else cache_root()
        self.hits = 0
        self.misses = 0

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def get_or_build(self, kind: str, key: str, suffix: str, build: Callable[[Path], None]) -> Path:
        """The cached file for ``key``, building it with ``build(out_path)`` on a miss."""
        path = self.path(kind, key, suffix)
        if path.exists():
            self.hits += 1
            return path
        self.misses += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=suffix, dir=path.parent)
        os.close(fd)
        try:
            build(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def compile_cuda(self, source: str, name: str, arch: str, target: str = "cubin",
                     options: tuple[str, ...] = NVCC_OPTIONS) -> bytes:
        """``source`` compiled by nvcc for ``arch`` (e.g. sm_90) to a cubin (or ``target="ptx"``)."""
        nvcc = find_nvcc()
        key = cache_key(source, f"{target}:{arch}", compiler_version(nvcc), options)

        def build(out: Path) -> None:
            with tempfile.TemporaryDirectory(prefix="graphc-nvcc-") as tmp:
                src = Path(tmp) / f"{name}.cu"
                src.write_text(source)
                cmd = [nvcc, f"--{target}", f"-arch={arch}", *options, "-o", str(out), str(src)]
                run = subprocess.run(cmd, capture_output=True, text=True)
                if run.returncode != 0:
                    kept = self.path("failed", key, ".cu")
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_text(source)
                    raise KernelCompileError(f"nvcc rejected the generated kernel '{name}' (source kept at {kept}):\n"
                                             f"{run.stderr.strip()}")

        return self.get_or_build("cuda", key, f".{target}", build).read_bytes()


__all__ = ["ENV_VAR", "KernelCache", "KernelCompileError", "cache_key", "cache_root", "compiler_version", "find_nvcc"]
