"""Batch inference of saved plans on Ray: PlanPredictor alone, then map_plan on a local 2-CPU Ray cluster."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.errors import FeedError, GraphcError
from graphc.runtime.ray import PlanPredictor, map_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("plan") / "tiny_cnn.gc.onnx")
    compile_graph(gc.import_onnx(os.path.join(ROOT, "models", "data", "tiny_cnn.onnx"))).save(path)
    return path


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, 1, 28, 28)).astype(np.float32)


def test_plan_predictor_runs_numpy_batches_like_the_plan(plan_path):
    x = _images(5)
    (direct,) = gc.prepare(gc.load_plan(plan_path).graph).run({"image": x})
    with open(plan_path, "rb") as f:
        from_bytes = PlanPredictor(f.read(), inputs={"image": "pixels"}, keep_columns=["id"])
    out = from_bytes({"pixels": x, "id": np.arange(5)})
    assert sorted(out) == ["id", "probs"] and out["id"].tolist() == list(range(5))
    np.testing.assert_array_equal(out["probs"], direct)
    assert (from_bytes.batches, from_bytes.rows) == (1, 5)
    renamed = PlanPredictor(plan_path, outputs={"probs": "p"})({"image": x})
    np.testing.assert_array_equal(renamed["p"], direct)


def test_plan_predictor_names_what_is_wrong(plan_path):
    with pytest.raises(GraphcError, match=r"not inputs of the plan: pixels; not given: image"):
        PlanPredictor(plan_path, inputs={"pixels": "pixels"})
    with pytest.raises(GraphcError, match=r"outputs= names logits, which the plan does not produce \(its outputs: "
                                          r"probs\)"):
        PlanPredictor(plan_path, outputs={"logits": "logits"})
    with pytest.raises(FeedError, match=r"the batch lacks column\(s\) image \(it has pixels\)"):
        PlanPredictor(plan_path)({"pixels": _images(1)})
    with pytest.raises(GraphcError, match="not a plan saved by graphc"):
        map_plan(None, os.path.join(ROOT, "models", "data", "tiny_cnn.onnx"))


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_map_plan_on_a_local_ray_cluster_equals_running_the_plan(plan_path):
    import ray  # in the test and dist extras

    x = _images(600)
    (direct,) = gc.prepare(gc.load_plan(plan_path).graph).run({"image": x})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items([{"id": i, "image": x[i]} for i in range(len(x))], override_num_blocks=6)
        out = map_plan(ds, plan_path, batch_size=64, num_workers=2, keep_columns=["id"])
        rows = out.take_all()
        # The README's example (compiled SqueezeNet over generated images), small, on the same cluster.
        from graphc.models.ray_batch_inference import run

        (example,) = run([2], images=120, size=48, batch_size=40, verbose=False)
    finally:
        ray.shutdown()
    assert example["workers"] == 2 and example["images"] == 120 and example["images_per_s"] > 0
    assert len(rows) == len(x)
    got = np.stack([r["probs"] for r in sorted(rows, key=lambda r: r["id"])])
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-7)  # batches of 64 against one batch of 600
