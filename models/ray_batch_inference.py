"""Batch inference of a compiled light SqueezeNet over generated images on a Ray cluster; prints throughput.

    python -m graphc.models.ray_batch_inference [--workers 1 2] [--images 3000] [--size 96] [--batch-size 64]
    python -m graphc.models.ray_batch_inference --address auto      # on the head node of a cluster (`ray start --head`)

Compiles the SqueezeNet the onnx wheel ships (seeded random weights, batch dim ``N``, ``--size`` square
images) into a graphc plan once, generates ``--images`` seeded random images into a Ray dataset and
materializes it, then for each ``--workers`` count runs the plan over the whole dataset with that many
PlanPredictor actors (graphc.runtime.ray) and prints images per second. Without ``--address`` it
starts a local Ray cluster with ``--cpus`` CPUs (default: all of this machine's) and shuts it down after.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import numpy as np

INPUT = "data_0"  # the SqueezeNet input the images feed


def build_plan(path: str, size: int = 96, seed: int = 0) -> str:
    """Compile the light SqueezeNet (random weights, inputs [N, 3, size, size]) and save the plan at ``path``."""
    import onnx

    from graphc.frontends.onnx import import_model
    from graphc.compiler import compile as compile_graph

    from .light import path as light_path
    from .light import with_random_weights

    model, _ = with_random_weights(onnx.load(light_path("squeezenet")), seed=seed)
    data = next(vi for vi in model.graph.input if vi.name == INPUT)
    dims = data.type.tensor_type.shape.dim
    dims[0].dim_param = "N"  # any batch size; the spatial dims as asked
    dims[2].dim_value = dims[3].dim_value = size
    for out in model.graph.output:  # declared for 224x224 inputs: let inference give the shapes
        out.type.tensor_type.ClearField("shape")
    compile_graph(import_model(model), level=2, source="light squeezenet").save(path)
    return path


def make_images(batch: dict, size: int = 96, seed: int = 0) -> dict:
    """Seeded random images, one per row id (the same ids always give the same images)."""
    ids = batch["id"]
    out = np.empty((len(ids), 3, size, size), np.float32)
    for k, i in enumerate(ids):
        out[k] = np.random.default_rng([seed, int(i)]).uniform(0.0, 1.0, (3, size, size))
    return {"id": ids, "image": out}


def run(workers: list[int], images: int = 3000, size: int = 96, batch_size: int = 64, address: str | None = None,
        cpus: int | None = None, plan_path: str | None = None, verbose: bool = True) -> list[dict]:
    """Run the inference once per worker count; returns one record per run (workers, seconds, images/s)."""
    import ray

    from graphc.runtime.ray import map_plan

    tmp = None
    if plan_path is None:
        tmp = tempfile.TemporaryDirectory()
        plan_path = build_plan(os.path.join(tmp.name, "squeezenet.gc.onnx"), size)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else (cpus or os.cpu_count()),
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # one line per run is ours to print
        ds = (ray.data.range(images, override_num_blocks=max(4, images // 250))
              .map_batches(make_images, fn_kwargs={"size": size}, batch_format="numpy")
              .materialize())
        records = []
        for n in workers:
            t0 = time.perf_counter()
            out = map_plan(ds, plan_path, inputs={INPUT: "image"}, outputs={"softmaxout_1": "probs"},
                           keep_columns=["id"], batch_size=batch_size, num_workers=n)
            rows, first_rows, first_at = 0, 0, None
            for b in out.iter_batches(batch_size=None, batch_format="numpy"):
                rows += len(b["id"])
                if first_at is None:  # the workers have started and loaded the plan
                    first_rows, first_at = rows, time.perf_counter()
            end = time.perf_counter()
            seconds = end - t0
            if rows != images:
                raise RuntimeError(f"{rows} rows came back for {images} images")
            steady = (rows - first_rows) / (end - first_at) if rows > first_rows and end > first_at else 0.0
            rec = {"workers": n, "images": rows, "seconds": seconds, "images_per_s": rows / seconds,
                   "first_batch_s": first_at - t0, "steady_images_per_s": steady}
            records.append(rec)
            if verbose:
                print(f"{n} worker(s): {rows} images of {size}x{size} in {seconds:.1f} s: "
                      f"{rec['images_per_s']:.0f} images/s ({steady:.0f} images/s after the first batch, which "
                      f"took {rec['first_batch_s']:.1f} s)", flush=True)
        if verbose and len(records) > 1:
            base = records[0]["images_per_s"]
            print("throughput vs " + f"{records[0]['workers']} worker(s): "
                  + ", ".join(f"{r['workers']}: {r['images_per_s'] / base:.2f}x" for r in records[1:]))
        return records
    finally:
        if started:
            ray.shutdown()
        if tmp is not None:
            tmp.cleanup()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run, one run each")
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=96, help="image side in pixels")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--address", help="an existing Ray cluster ('auto' on one of its nodes); default: start one here")
    ap.add_argument("--cpus", type=int, help="CPUs of the local cluster (default: all)")
    a = ap.parse_args(argv)
    run(a.workers, a.images, a.size, a.batch_size, a.address, a.cpus)


if __name__ == "__main__":
    main()
