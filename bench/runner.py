"""Runs the benchmark matrix: every (workload, engine, thread count) in its own worker process.

onnxruntime at one thread runs first on each workload and saves its outputs; every other engine's
outputs are checked against them before it is timed. Workers run one at a time, so no two engines
ever share the two cores.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .engines import ENGINES, EngineSpec
from .workloads import Workload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Variables this machine sets for OpenBLAS that slow a current NumPy down (they pin an older
#: kernel and cache size): the benchmark's workers run without them and record the kernel that ran.
UNSET_FOR_BENCH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass
class Policy:
    """How long and how often to time each engine (see bench/worker.py for the procedure)."""

    min_repeats: int = 5
    max_repeats: int = 30
    budget_s: float = 3.0
    warmup: int = 1
    gap_s: float = 0.15
    timeout_s: float = 600.0
    tolerance: float = 1e-3
    #: The reference evaluator is slow by design: a run that does not finish in this time is reported
    #: as such and not retried.
    reference_timeout_s: float = 180.0


@dataclass
class Result:
    workload: str
    engine: str
    threads: int
    data: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.data.get("status") == "ok"


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker: thread counts fixed for every library, OpenBLAS overrides removed."""
    env = dict(os.environ)
    for k in UNSET_FOR_BENCH:
        env.pop(k, None)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


#: One busy process of ``--load``: a Python loop that never sleeps (one core's worth of work), checking every
#: million turns that the benchmark that started it still runs, so it ends with it even when killed hard.
BUSY_LOOP = ("import os, sys\nparent = int(sys.argv[1])\n"
             "while os.getppid() == parent:\n    for _ in range(1000000):\n        pass\n")


@contextlib.contextmanager
def busy_load(n: int, pin: bool = False, log=None):
    """Run ``n`` busy processes (each a spinning loop: one core's worth of work) while the block runs; with
    ``pin``, busy process k is pinned to CPU k (mod the CPUs this process may use). They are killed when the
    block ends, also on errors and Ctrl-C; yields what ran, for the report."""
    procs = []
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    where = []
    try:
        for k in range(n):
            p = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid())], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            if pin and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(p.pid, {cpus[k % len(cpus)]})
                where.append(cpus[k % len(cpus)])
        if n:
            time.sleep(0.3)  # running (past Python's start) before the first measurement
        if n and log:
            log(f"load: {n} busy process(es) {'pinned to CPU ' + ', '.join(map(str, where)) if pin else 'unpinned'}"
                f" (pids {', '.join(str(p.pid) for p in procs)})")
        yield {"processes": n, "pinned_cpus": where if pin else None}
    finally:
        for p in procs:
            with contextlib.suppress(OSError):
                p.kill()
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)


def run_worker(w: Workload, spec: EngineSpec, threads: int, policy: Policy, folder: str,
               reference: str | None, save_outputs: str | None) -> Result:
    tag = f"{w.name}.{spec.key}.{threads}t"
    job = {"engine": spec.key, "threads": threads, "model": w.model_path, "reference": reference,
           "save_outputs": save_outputs, "tolerance": policy.tolerance, "warmup": policy.warmup,
           "min_repeats": policy.min_repeats, "max_repeats": policy.max_repeats, "budget_s": policy.budget_s,
           "gap_s": policy.gap_s, "result": os.path.join(folder, tag + ".result.json")}
    job_path = os.path.join(folder, tag + ".job.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    timeout = policy.reference_timeout_s if spec.kind == "reference" else policy.timeout_s
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "graphc.bench.worker", job_path], env=worker_env(threads), cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Result(w.name, spec.key, threads, {"status": "timeout",
                                                   "detail": f"did not finish within {timeout:g} s"})
    if not os.path.exists(job["result"]):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return Result(w.name, spec.key, threads, {"status": "error",
                                                   "detail": f"worker exited {proc.returncode}: " + " | ".join(tail)})
    with open(job["result"]) as f:
        data = json.load(f)
    data["process_s"] = time.perf_counter() - t0
    return Result(w.name, spec.key, threads, data)


def run_matrix(workloads: list[Workload], engines: list[str], threads: list[int], policy: Policy, folder: str,
               log=print) -> list[Result]:
    """Measure every engine at every thread count it honours on every workload."""
    results = []
    order = ["onnxruntime"] + [e for e in engines if e != "onnxruntime"]  # onnxruntime makes the reference
    for w in workloads:
        ref_path = os.path.join(folder, f"{w.name}.onnxruntime.outputs.npz")
        have_ref = False
        for key in order:
            spec = ENGINES[key]
            for t in threads:
                if t not in spec.threads:
                    continue
                if key not in engines and not (key == "onnxruntime" and t == threads[0]):
                    continue
                make_ref = key == "onnxruntime" and not have_ref
                r = run_worker(w, spec, t, policy, folder, reference=ref_path if have_ref else None,
                               save_outputs=ref_path if make_ref else None)
                if make_ref and r.ok:
                    have_ref = True
                if key in engines:
                    results.append(r)
                log(_one_line(r))
    return results


def _one_line(r: Result) -> str:
    d = r.data
    head = f"{r.workload:24s} {r.engine:15s} {r.threads}t "
    if r.ok:
        ts = sorted(d["times_s"])
        return (head + f"median {1e3 * ts[len(ts) // 2]:9.3f} ms  min {1e3 * ts[0]:9.3f} ms  n={len(ts):3d}  "
                f"compile {d['compile_s']:.2f} s  rss {d['peak_rss_bytes'] / 2**20:.0f} MiB")
    return head + f"{d.get('status', '?').upper()}: {d.get('detail', '')}"


def machine_description() -> dict:
    """What the numbers were measured on (CPU model, cores, memory, load, library versions)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for mod in ("numpy", "onnx", "onnxruntime", "tract"):
        try:
            m = __import__(mod)
            versions[mod] = m.version() if mod == "tract" else getattr(m, "__version__", "?")
        except Exception:
            versions[mod] = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "platform": platform.platform(),
            "versions": versions, "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}
