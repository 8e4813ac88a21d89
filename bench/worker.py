"""Measures one engine on one workload, alone in its own process: ``python -m graphc.bench.worker JOB.json``.

The parent sets the thread-count variables in this process's environment before start, so they
apply before NumPy, OpenBLAS or onnxruntime load. The job file names the model, the engine and the
timing policy; the result (a JSON object) is written to ``job["result"]``.

Measuring: prepare (timed as compile time), run once and compare every output with onnxruntime's
(a wrong answer is reported and not timed), run ``warmup`` more times, then time single runs until
the time budget or ``max_repeats`` is reached. Before each timed run the process sleeps ``gap``
seconds, longer than OpenBLAS's worker threads (and onnxruntime's pool) keep spinning after a
call, so every run of every engine starts from idle thread pools and no spinning thread left over
from the previous run competes for the second core.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback


#: Engines that are optional packages: without them the engine is reported unavailable, not failed.
OPTIONAL_ENGINES = ("tract", "onnxruntime")


def _blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: d[k] for k in keep if k in d} for d in threadpool_info()]


def peak_rss_bytes() -> int:
    """This process's peak resident memory. /proc's VmHWM starts afresh at exec; ``ru_maxrss`` does
    not on Linux (a child started by a large parent reports the parent's peak), so it is the fallback."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> None:
    """Start the peak (VmHWM) afresh from the current resident size (Linux 4.0+: ``5`` to clear_refs);
    where that is refused the peak keeps counting from the start of the process."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def measure(job: dict) -> dict:
    import numpy as np

    from graphc.bench.engines import ENGINES, prepare, relative_error
    from graphc.bench.workloads import load_feeds

    spec = ENGINES[job["engine"]]
    info: dict = {}
    feeds = load_feeds(job["model"])
    reset_peak_rss()  # load_feeds parsed the whole model: its peak is the harness's, not the engine's
    rss_before = peak_rss_bytes()
    t0 = time.perf_counter()
    run = prepare(spec, job["model"], job["threads"], info)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    outputs = run(feeds)
    first_s = time.perf_counter() - t0
    out = {"status": "ok", "compile_s": compile_s, "first_run_s": first_s, "info": info}
    if job.get("save_outputs"):
        np.savez(job["save_outputs"], *[np.asarray(o) for o in outputs])
        out["is_reference"] = True
    if job.get("reference"):
        with np.load(job["reference"]) as z:
            want = [z[f"arr_{i}"] for i in range(len(z.files))]
        err = relative_error(outputs, want)
        out["error"] = err
        if not err <= job["tolerance"]:
            out["status"] = "wrong"
            out["detail"] = f"outputs differ from onnxruntime's: max relative error {err:.3g} > {job['tolerance']:g}"
    if out["status"] == "ok":
        once = first_s  # the first run may pay one-time costs: the warm-up runs say what a run costs
        for _ in range(job["warmup"]):
            t0 = time.perf_counter()
            run(feeds)
            once = min(once, time.perf_counter() - t0)
        budget, gap = job["budget_s"], job["gap_s"]
        n = int(budget / max(once, 1e-6))
        n = max(job["min_repeats"] if once * job["min_repeats"] <= 3 * budget else 1, min(job["max_repeats"], n))
        wall, cpu = [], []
        for _ in range(n):
            if gap:
                time.sleep(gap)
            c0, w0 = time.process_time(), time.perf_counter()
            run(feeds)
            w1, c1 = time.perf_counter(), time.process_time()
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
        out["times_s"] = wall
        out["cpu_s"] = cpu
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["rss_before_model_bytes"] = rss_before
    out["blas"] = _blas_info()
    return out


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        job = json.load(f)
    try:
        result = measure(job)
    except Exception as e:  # an engine failing is a result to report, not a crash of the benchmark
        result = {"status": "error", "detail": f"{type(e).__name__}: {' '.join(str(e).split())[:500]}",
                  "traceback": traceback.format_exc()[-3000:],
                  "peak_rss_bytes": peak_rss_bytes()}
        if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in OPTIONAL_ENGINES:
            result.update(status="unavailable", detail=f"{e.name} is not installed (pip install -e '.[bench]')")
    result["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    with open(job["result"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
