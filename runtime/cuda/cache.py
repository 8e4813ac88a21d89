"""The on-disk kernel cache: compiled kernels keyed by source hash, target and compiler version.

A kernel is compiled once per machine: the key hashes the source, the target architecture (e.g.
``sm_90``), the compiler's version string and its options, so a second process (or a second prepare
of the same plan) loads the binary instead of running nvcc. The cache lives in ``$GRAPHC_CACHE_DIR``
(default: ``$XDG_CACHE_HOME/graphc`` or ``~/.cache/graphc``), under ``cuda/``. Files are written to a
temporary name and renamed, so concurrent processes never read half a file.

``compile_many`` compiles all of a plan's uncached kernels at once: kernels that differ only by their name
(and comments: the name embeds the node's) are compiled once, the rest split into one translation unit per
CPU (each kernel in a namespace of its own) compiled by parallel nvcc runs. A kernel's cache entry is then
a small index file (``cuda-index/``, keyed by its name-free body) naming the binary that holds it and its
symbol there, so that another plan, or another process, with the same kernel finds it whatever it is called.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from graphc.errors import GraphcError

ENV_VAR = "GRAPHC_CACHE_DIR"
#: Bump when the meaning of a cached file changes (a new calling convention, say).
CACHE_FORMAT = 1
#: nvcc options every kernel is compiled with. ``-fmad=false``: no multiply-add contraction, which nvcc does by
#: default and g++ on x86-64 (the emulator) and NumPy do not; contracted, ``a * b + c`` differs in the last bit,
#: enough to move a Resize coordinate across an integer under floor/round or to flip a comparison.
NVCC_OPTIONS = ("-O3", "-std=c++17", "-fmad=false")


class KernelCompileError(GraphcError):
    """nvcc (or the CPU emulator's compiler) rejected a generated kernel; the message holds its errors."""


class KernelCompileWarning(UserWarning):
    """nvcc compiled a generated kernel but warned (an integer constant out of range, say); tests make it an error."""


#: The ``.nv.info`` attribute holding a kernel's register count (EIATTR_REGCOUNT), and the format of a sized value.
_EIATTR_REGCOUNT, _EIFMT_SVAL, _EIFMT_HVAL = 0x2F, 0x04, 0x03


#: nvcc warnings that say nothing about a generated kernel's results: a variable declared (#177) or set (#550)
#: but never used (a coordinate a kernel computes and a fused op then does not need).
_HARMLESS_WARNINGS = {"177", "550"}


def _worth_a_warning(stderr: str) -> bool:
    numbers = re.findall(r"warning #(\d+)", stderr)
    return any(n not in _HARMLESS_WARNINGS for n in numbers) or ("warning" in stderr and not numbers)


def registers_of(cubin: Path | bytes, symbol: str) -> int:
    """The registers a thread of kernel ``symbol`` in ``cubin`` uses, read from the ELF file itself (the
    ``.nv.info`` section's REGCOUNT attribute of the kernel's symbol, as cuobjdump -res-usage reports it; no GPU
    and no cuobjdump needed): what the driver's NUM_REGS attribute says on the device."""
    b = cubin if isinstance(cubin, bytes) else Path(cubin).read_bytes()
    if b[:4] != b"\x7fELF" or b[4] != 2:
        raise KernelCompileError(f"not a 64-bit cubin (ELF) file: cannot read the registers of '{symbol}'")
    shoff, = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]

    def cstr(offset: int) -> str:
        return b[offset:b.index(b"\0", offset)].decode()

    names = [cstr(sections[shstrndx][4] + s[0]) for s in sections]
    index = None
    for s in sections:
        if s[1] == 2:  # SHT_SYMTAB: 24-byte entries, names in the section sh_link points to
            strtab = sections[s[6]][4]
            for j in range(s[5] // 24):
                if cstr(strtab + struct.unpack_from("<I", b, s[4] + 24 * j)[0]) == symbol:
                    index = j
    for s, name in zip(sections, names):
        if name != ".nv.info" or index is None:
            continue
        data, i = b[s[4]:s[4] + s[5]], 0
        while i + 4 <= len(data):
            fmt, attr = data[i], data[i + 1]
            if fmt == _EIFMT_SVAL:
                size, = struct.unpack_from("<H", data, i + 2)
                if attr == _EIATTR_REGCOUNT and size == 8:
                    sym, count = struct.unpack_from("<II", data, i + 4)
                    if sym == index:
                        return count
                i += 4 + size
            else:
                i += 4 if fmt == _EIFMT_HVAL else 2
    raise KernelCompileError(f"the cubin holds no register count for kernel '{symbol}'")


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


#: What stands for a kernel's name in its name-free body (``kernel_body``); a source using it is not normalized.
NAME_PLACEHOLDER = "__graphc_kernel_name__"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def kernel_body(source: str, name: str) -> str | None:
    """``source`` without its ``//`` comments and with the identifier ``name`` replaced by a placeholder: two
    kernels with equal bodies compile to the same machine code but for the symbol's name. None (the exact
    source then keys the kernel) where comments cannot be told apart from code by lines alone: string or
    character literals in code (other than ``extern "C"`` and ``#include`` lines), block comments, backslashes."""
    if not _IDENTIFIER.fullmatch(name) or NAME_PLACEHOLDER in source:
        return None
    lines = []
    for line in source.splitlines():
        if line.lstrip().startswith("#include"):
            lines.append(line.strip())
            continue
        code, _, comment = line.partition("//")  # no quote before it: the comment starts there
        if any(c in code.replace('extern "C"', "") for c in "\"'\\") or "/*" in code or comment.endswith("\\"):
            return None
        if code.strip():
            lines.append(code.rstrip())
    return re.sub(rf"\b{name}\b", NAME_PLACEHOLDER, "\n".join(lines))


def combined_unit(parts: list[tuple[str, str]]) -> str:
    """Kernels ``(source, symbol)`` as one CUDA translation unit: each in a namespace of its own (their
    helpers may share names), its kernel renamed to ``symbol`` where that differs from the name it was
    generated with, and its macros undefined after it; ``#include`` lines first."""
    includes, units = [], []
    for j, (source, _) in enumerate(parts):
        body, macros = [], []
        for line in source.splitlines():
            if line.lstrip().startswith("#include"):
                if line.strip() not in includes:
                    includes.append(line.strip())
                continue
            m = re.match(r"\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)", line)
            if m:
                macros.append(m.group(1))
            body.append(line)
        undef = "".join(f"#undef {m}\n" for m in dict.fromkeys(macros))
        units.append(f"namespace gc_unit{j} {{\n" + "\n".join(body) + f"\n}}  // namespace gc_unit{j}\n{undef}")
    return "\n".join(includes) + "\n" + "\n".join(units)


def _cpus() -> int:
    """The CPUs this process may run on (its affinity), the default number of parallel nvcc runs."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CompiledKernel:
    """Where a compiled kernel is: ``path``, a binary that may hold other kernels too, and its ``symbol`` there
    (the name it was compiled under: another kernel with the same body may have given it)."""

    path: Path
    symbol: str

    def read(self) -> bytes:
        return self.path.read_bytes()


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
        self._build(path, build)
        return path

    def _build(self, path: Path, build: Callable[[Path], None]) -> None:
        """``build(tmp)`` then ``tmp`` renamed to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        try:
            build(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def compile_cuda(self, source: str, name: str, arch: str, target: str = "cubin",
                     options: tuple[str, ...] = NVCC_OPTIONS) -> bytes:
        """``source`` compiled by nvcc for ``arch`` (e.g. sm_90) to a cubin (or ``target="ptx"``)."""
        nvcc = find_nvcc()
        key = cache_key(source, f"{target}:{arch}", compiler_version(nvcc), options)

        build = self._nvcc_build(nvcc, source, f"{name}.cu", f"'{name}'", key, arch, target, options)
        return self.get_or_build("cuda", key, f".{target}", build).read_bytes()

    def _nvcc_build(self, nvcc: str, source: str, filename: str, what: str, key: str, arch: str, target: str,
                    options: tuple[str, ...]) -> Callable[[Path], None]:
        """A ``build(out)`` for get_or_build running nvcc on ``source``; on failure the source is kept in
        the cache's ``failed/`` folder and KernelCompileError names ``what`` (the kernels) with nvcc's errors."""

        def build(out: Path) -> None:
            with tempfile.TemporaryDirectory(prefix="graphc-nvcc-") as tmp:
                src = Path(tmp) / filename
                src.write_text(source)
                cmd = [nvcc, f"--{target}", f"-arch={arch}", *options, "-o", str(out), str(src)]
                run = subprocess.run(cmd, capture_output=True, text=True)
                if run.returncode == 0 and _worth_a_warning(run.stderr):  # kept: a warning may be a wrong kernel
                    warnings.warn(f"nvcc warned compiling {what}:\n{run.stderr.strip()[:4000]}", KernelCompileWarning,
                                  stacklevel=2)
                if run.returncode != 0:
                    kept = self.path("failed", key, ".cu")
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_text(source)
                    raise KernelCompileError(f"nvcc rejected the generated kernel {what} (source kept at {kept}):\n"
                                             f"{run.stderr.strip()}")

        return build

    def compile_many(self, kernels: Iterable, arch: str, target: str = "cubin",
                     options: tuple[str, ...] = NVCC_OPTIONS, jobs: int | None = None) -> dict[str, CompiledKernel]:
        """Every kernel (a ``codegen.Kernel``, or anything with ``name`` and ``source``) compiled for ``arch``:
        ``{source: CompiledKernel}``. Cached ones are looked up by their body (``kernel_body``); the others are
        compiled once per body, in up to ``jobs`` (default: the CPUs this process may use) translation units by
        parallel nvcc runs. A kernel whose body cannot be normalized, or whose unit nvcc rejects, is compiled
        alone; nvcc's errors then name it (KernelCompileError)."""
        nvcc = find_nvcc()
        version = compiler_version(nvcc)
        tgt = f"{target}:{arch}"
        out: dict[str, CompiledKernel] = {}
        todo: dict[str, list] = {}  # body key -> the kernels with that body
        alone: set[str] = set()  # keys of kernels that cannot share a unit (their body could not be normalized)
        found: dict[str, CompiledKernel | None] = {}  # body key -> what the index holds
        for k in kernels:
            if k.source in out:
                continue
            body = kernel_body(k.source, k.name)
            key = cache_key(f"body\0{body}" if body is not None else f"source\0{k.source}", tgt, version, options)
            if key in todo:
                todo[key].append(k)
                continue
            if key not in found:
                found[key] = self._indexed(key)
                self.hits += found[key] is not None
            if found[key] is not None:
                out[k.source] = found[key]
                continue
            todo[key] = [k]
            if body is None:
                alone.add(key)
        if not todo:
            return out
        self.misses += len(todo)
        shared = [key for key in todo if key not in alone]
        jobs = max(1, min(jobs or _cpus(), len(shared))) if shared else 1
        # largest first, each to the lightest unit: units of about equal work
        units: list[list[str]] = [[] for _ in range(jobs)]
        work = [0] * jobs
        for key in sorted(shared, key=lambda key: -len(todo[key][0].source)):
            j = work.index(min(work))
            units[j].append(key)
            work[j] += len(todo[key][0].source)
        units = [u for u in units if u] + [[key] for key in alone]

        def build(unit: list[str]) -> dict[str, CompiledKernel]:
            return self._build_unit([(key, todo[key][0]) for key in unit], nvcc, version, target, arch, options)

        with ThreadPoolExecutor(max_workers=max(1, min(len(units), jobs))) as pool:
            futures = [pool.submit(build, u) for u in units]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
        for f in futures:
            for key, compiled in f.result().items():
                for k in todo[key]:
                    out[k.source] = compiled
        return out

    def _indexed(self, key: str) -> CompiledKernel | None:
        """The binary and symbol the index holds for a kernel's key (None: not compiled, or its binary gone)."""
        try:
            entry = json.loads(self.path("cuda-index", key, ".json").read_text())
            path = self.root / entry["binary"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return CompiledKernel(path, entry["symbol"]) if path.exists() else None

    def _build_unit(self, unit: list, nvcc: str, version: str, target: str, arch: str,
                    options: tuple[str, ...]) -> dict[str, CompiledKernel]:
        """Compile ``unit`` ([(key, kernel)]) as one translation unit and index each kernel; a unit nvcc rejects
        is compiled kernel by kernel instead (the failing one is reported alone, the others still cached)."""
        parts, used = [], set()
        for key, k in unit:
            symbol, source = k.name, k.source
            if symbol in used:  # two kernels of one name (from two plans) in a unit: rename the second
                while symbol in used:
                    symbol += "_"
                source = kernel_body(k.source, k.name).replace(NAME_PLACEHOLDER, symbol)
            used.add(symbol)
            parts.append((source, symbol))
        source = combined_unit(parts) if len(unit) > 1 else parts[0][0]
        key = cache_key(f"unit\0{source}", f"{target}:{arch}", version, options)
        names = ", ".join(f"'{k.name}'" for _, k in unit)

        build = self._nvcc_build(nvcc, source, "kernels.cu" if len(unit) > 1 else f"{unit[0][1].name}.cu", names,
                                 key, arch, target, options)
        path = self.path("cuda", key, f".{target}")
        try:
            if not path.exists():  # another process may have built this very unit
                self._build(path, build)
        except KernelCompileError:
            if len(unit) == 1:
                raise
            done, errors = {}, []
            for one in unit:
                try:
                    done.update(self._build_unit([one], nvcc, version, target, arch, options))
                except KernelCompileError as e:
                    errors.append(e)
            if errors:
                raise errors[0]
            return done
        done = {}
        for (k_key, _), (_, symbol) in zip(unit, parts):
            entry = json.dumps({"binary": path.relative_to(self.root).as_posix(), "symbol": symbol})
            self._write(self.path("cuda-index", k_key, ".json"), entry)
            done[k_key] = CompiledKernel(path, symbol)
        return done

    def _write(self, path: Path, text: str) -> None:
        """``text`` to ``path`` by a rename (readers never see half of it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)


__all__ = ["CompiledKernel", "ENV_VAR", "KernelCache", "KernelCompileError", "KernelCompileWarning", "cache_key",
           "cache_root", "combined_unit", "compiler_version", "find_nvcc", "kernel_body", "registers_of"]
