"""Scaling-out benchmark: data-parallel step overhead over MPI, and Ray batch-inference throughput, in one run.

    python -m graphc.bench.distributed [--ranks 2] [--steps 300] [--workers 1 2] [--markdown bench/RESULTS.md]

MPI: the mlp_digits training step (Adam, global batch 128) in one process, then with ``mpiexec -n RANKS``
(each rank 128 / RANKS samples and one packed all-reduce of the gradients per step). It reports the
step times, the all-reduce's share of a step (time inside MPI_Allreduce, which includes waiting for the
slower rank), the pure cost of one all-reduce of the same bytes after a barrier, and the MPI calls each
rank made per step. Ray: models.ray_batch_inference over the same dataset with each worker count, and
the throughput ratios. ``--markdown`` appends (or replaces) the "Scaling out" section of that file.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BEGIN, END = "<!-- bench.distributed:begin -->", "<!-- bench.distributed:end -->"
GLOBAL_BATCH = 128


def _step_times(sess, t, xs, ys, batch: int, steps: int, warmup: int = 20) -> list[float]:
    rng = np.random.default_rng(0)
    times = []
    for i in range(warmup + steps):
        idx = rng.integers(0, len(xs), batch)
        t0 = time.perf_counter()
        sess.run(t["step"], {t["x"]: xs[idx], t["y"]: ys[idx]})
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


#: Every measured process computes on one thread, as each rank does (and as a busy 2-core machine allows).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "GRAPHC_NUM_THREADS": "1"}


def single_process(steps: int) -> dict:
    """Median step time of one process on the whole batch and on one rank's share (in a one-thread process)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "single.json")
        r = subprocess.run([sys.executable, "-m", "graphc.bench.distributed", "--single-worker", out, "--steps", str(steps)],
                           capture_output=True, text=True, env=dict(os.environ, **ONE_THREAD), timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"the one-process run failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        with open(out) as f:
            return {int(k): v for k, v in json.load(f).items()}


def single_worker(out_path: str, steps: int) -> None:
    """The one-process figures (run by ``single_process`` in a process of its own), written as JSON."""
    import graphc as gc
    from graphc.models.digits_data import load_digits_split
    from graphc.models.mlp_digits import build

    xtr, ytr, _, _ = load_digits_split()
    out = {}
    for batch in (GLOBAL_BATCH, GLOBAL_BATCH // 2):
        g, t = build()
        out[batch] = statistics.median(_step_times(gc.Session(g), t, xtr, ytr, batch, steps))
    with open(out_path, "w") as f:
        json.dump(out, f)


def mpi_worker(out_path: str, steps: int) -> None:
    """One rank of the measured job (run by ``mpiexec``); rank 0 writes the job's figures as JSON."""
    import graphc as gc
    from graphc.models.digits_data import load_digits_split
    from graphc.models.mlp_digits import build

    comm = gc.distributed.init()
    xtr, ytr, _, _ = load_digits_split()
    xs, ys = gc.distributed.shard(xtr, ytr)
    g, t = build(distributed=True)
    sess = gc.Session(g)
    gc.distributed.broadcast_variables(sess)
    grad_bytes = sum(sess.state[n].nbytes for n in g.trainable)
    _step_times(sess, t, xs, ys, GLOBAL_BATCH // comm.size, 0)  # compile and warm up before counting
    comm.barrier()
    comm.stats.reset()
    times = _step_times(sess, t, xs, ys, GLOBAL_BATCH // comm.size, steps, warmup=0)
    calls = dict(comm.stats.calls)
    in_allreduce = comm.stats.seconds.get("allreduce", 0.0)
    moved = comm.stats.bytes.get("allreduce", 0)
    # The all-reduce alone: ranks aligned by a barrier first, so no waiting for a slower rank is counted.
    buf = np.zeros(grad_bytes // 4, np.float32)
    pure = []
    for _ in range(200):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_sum(buf, kind="probe")
        pure.append(time.perf_counter() - t0)
    report = {"rank": comm.rank, "size": comm.size, "steps": steps, "step_median_s": statistics.median(times),
              "step_total_s": sum(times), "allreduce_s": in_allreduce, "allreduce_calls": calls.get("allreduce", 0),
              "other_calls": {k: v for k, v in calls.items() if k != "allreduce"},
              "bytes_per_step": moved / max(steps, 1), "grad_bytes": grad_bytes,
              "pure_allreduce_median_s": statistics.median(pure)}
    reports = comm.comm.gather(report, root=0)
    if comm.rank == 0:
        with open(out_path, "w") as f:
            json.dump(reports, f)


def mpi_job(ranks: int, steps: int) -> list[dict]:
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "mpi.json")
        env = dict(os.environ, **ONE_THREAD)
        r = subprocess.run([exe, "-n", str(ranks), sys.executable, "-m", "graphc.bench.distributed", "--mpi-worker", out,
                            "--steps", str(steps)], capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"mpiexec -n {ranks} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        with open(out) as f:
            return json.load(f)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def markdown(single: dict, ranks: list[dict], ray: list[dict], args, load_start: str, load_end: str,
             wall: float) -> str:
    n = ranks[0]["size"]
    steps = ranks[0]["steps"]
    step = max(r["step_median_s"] for r in ranks)
    share = [r["allreduce_s"] / r["step_total_s"] for r in ranks]
    pure = statistics.median(r["pure_allreduce_median_s"] for r in ranks)
    calls = [r["allreduce_calls"] / steps for r in ranks]
    lines = [BEGIN, "## Scaling out (`python -m graphc.bench.distributed`)", "",
             f"Made by `python -m graphc.bench.distributed --ranks {args.ranks} --steps {args.steps} --workers "
             f"{' '.join(map(str, args.workers))} --repeat {args.repeat} --images {args.images} "
             f"--markdown bench/RESULTS.md` "
             f"on this {os.cpu_count()}-core machine, shared with other work: load average "
             f"(1, 5, 15 min) {load_start} at the start, {load_end} at the end; {wall:.0f} s in all. "
             f"mpi4py with MPICH (the mpich wheel), one BLAS thread per process.", "",
             "### Data-parallel training over MPI (mlp_digits, Adam, global batch 128)", "",
             "| setting | median step ms |", "|---|---:|",
             f"| 1 process, batch {GLOBAL_BATCH} | {single[GLOBAL_BATCH] * 1e3:.2f} |",
             f"| 1 process, batch {GLOBAL_BATCH // 2} (one rank's compute) | {single[GLOBAL_BATCH // 2] * 1e3:.2f} |",
             f"| {n} ranks x batch {GLOBAL_BATCH // n} (slowest rank) | {step * 1e3:.2f} |", "",
             f"- One packed all-reduce per step: {', '.join(f'{c:g}' for c in calls)} MPI_Allreduce call(s) per "
             f"step on ranks {', '.join(str(r['rank']) for r in ranks)} ({steps} steps counted; "
             f"{ranks[0]['bytes_per_step'] / 1024:.1f} KiB per call = all {ranks[0]['grad_bytes'] / 1024:.1f} KiB "
             f"of gradients; other calls during the steps: {ranks[0]['other_calls'] or 'none'}).",
             f"- All-reduce share of a step (time inside MPI_Allreduce / step time, waiting for the other rank "
             f"included): {', '.join(f'{s * 100:.0f}%' for s in share)} on ranks 0..{n - 1}.",
             f"- One all-reduce of the same bytes after a barrier (the transport alone, shared memory): "
             f"{pure * 1e6:.0f} µs, {pure / step * 100:.1f}% of a step.",
             f"- Step overhead of {n} ranks against one process doing one rank's share: "
             f"{(step / single[GLOBAL_BATCH // 2] - 1) * 100:+.0f}%; against one process on the whole batch: "
             f"{step / single[GLOBAL_BATCH] :.2f}x the time for the same samples per step.", "",
             "### Batch inference on Ray (models.ray_batch_inference: light SqueezeNet plan)", "",
             f"{ray[0]['images']} generated {args.size}x{args.size} images, batch {args.batch_size}, local Ray cluster "
             f"with {os.cpu_count()} CPUs, one CPU per worker.", "",
             f"The worker counts ran in turn ({' '.join(str(r['workers']) for r in ray)}), so that changes in the "
             f"machine's load hit each alike; each run includes starting its actors and loading the plan.", "",
             "Steady images/s leave out the time to the first result (starting the actors, loading the plan, "
             "the first batch).", "",
             "| workers | runs | median s | median images/s | best images/s | vs 1 worker (medians) | "
             "vs 1 worker (bests) | median steady images/s | steady vs 1 worker |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by_workers: dict[int, list[dict]] = {}
    for r in ray:
        by_workers.setdefault(r["workers"], []).append(r)
    first = min(by_workers)
    base_med = statistics.median(r["images_per_s"] for r in by_workers[first])
    base_best = max(r["images_per_s"] for r in by_workers[first])
    base_steady = statistics.median(r["steady_images_per_s"] for r in by_workers[first])
    for n, runs in sorted(by_workers.items()):
        med = statistics.median(r["images_per_s"] for r in runs)
        best = max(r["images_per_s"] for r in runs)
        steady = statistics.median(r["steady_images_per_s"] for r in runs)
        lines.append(f"| {n} | {len(runs)} | {statistics.median(r['seconds'] for r in runs):.2f} | {med:.0f} | "
                     f"{best:.0f} | {med / base_med:.2f}x | {best / base_best:.2f}x | {steady:.0f} | "
                     f"{steady / base_steady:.2f}x |")
    lines += ["", f"Target: 2 workers >= 1.6x {first} worker(s) (same run).", END, ""]
    return "\n".join(lines)


def write_section(path: str, text: str) -> None:
    """Append the section to ``path``, or replace the one a previous run appended."""
    old = open(path).read() if os.path.exists(path) else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3, help="run the Ray worker counts in turn this many times")
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--markdown", metavar="PATH", help="append the section to this file (e.g. bench/RESULTS.md)")
    ap.add_argument("--mpi-worker", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--single-worker", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mpi_worker:
        mpi_worker(args.mpi_worker, args.steps)
        return 0
    if args.single_worker:
        single_worker(args.single_worker, args.steps)
        return 0
    t0 = time.perf_counter()
    load_start = _load()
    single = single_process(args.steps)
    print(f"1 process: median step {single[GLOBAL_BATCH] * 1e3:.2f} ms (batch {GLOBAL_BATCH}), "
          f"{single[GLOBAL_BATCH // 2] * 1e3:.2f} ms (batch {GLOBAL_BATCH // 2})", flush=True)
    ranks = mpi_job(args.ranks, args.steps)
    for r in ranks:
        print(f"rank {r['rank']}/{r['size']}: median step {r['step_median_s'] * 1e3:.2f} ms, all-reduce "
              f"{r['allreduce_s'] / r['step_total_s'] * 100:.0f}% of the step time, "
              f"{r['allreduce_calls'] / r['steps']:g} call(s) per step, pure all-reduce "
              f"{r['pure_allreduce_median_s'] * 1e6:.0f} µs", flush=True)
    from graphc.models.ray_batch_inference import run

    ray = run(args.workers * args.repeat, args.images, args.size, args.batch_size)
    text = markdown(single, ranks, ray, args, load_start, _load(), time.perf_counter() - t0)
    print(text)
    if args.markdown:
        write_section(args.markdown, text)
        print(f"wrote the section into {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
