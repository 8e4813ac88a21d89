"""Batch inference of a saved graphc plan on Ray Data: ``PlanPredictor`` for ``Dataset.map_batches``.

    ds = ray.data.from_numpy(images)                          # one column, "data"
    out = gc_ray.map_plan(ds, "squeezenet.gc.onnx", inputs={"data_0": "data"}, batch_size=64, num_workers=2)

Each worker (a Ray actor) loads the plan once, when it starts, then runs every batch it is given
through it: NumPy batches in, one NumPy column per plan output out. Nothing is compiled on the workers:
the plan was optimized once, by ``graphc compile`` or ``graphc.compiler.compile(...).save(path)``.
``map_plan`` reads the plan file on the driver and ships its bytes to the workers, so workers on other
hosts of a cluster need no copy of the file.
Needs Ray Data (``pip install -e '.[dist]'``); importing this module does not import Ray.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from graphc.errors import FeedError, GraphcError


class PlanPredictor:
    """A callable class for ``ray.data.Dataset.map_batches``: one saved plan, loaded once per worker.

    ``plan``: the path of a plan written by ``Plan.save`` / ``graphc compile``, or that file's bytes.
    ``inputs`` maps plan input names to the batch columns that feed them (default: same names);
    ``outputs`` maps plan output names to the columns they become (default: every output, same name);
    ``keep_columns`` are batch columns passed through unchanged (ids, labels).
    """

    def __init__(self, plan: str | os.PathLike | bytes, inputs: Mapping[str, str] | None = None,
                 outputs: Mapping[str, str] | None = None, keep_columns: Sequence[str] = (),
                 backend: str | None = None):
        from graphc.plan import load_plan
        from graphc.runtime import get_backend

        if isinstance(plan, (bytes, bytearray)):
            import onnx

            self.plan_path = f"<plan of {len(plan):,} bytes>"
            try:
                model = onnx.load_from_string(bytes(plan))
            except Exception as e:
                raise GraphcError(f"PlanPredictor: the bytes given are not an ONNX model: {e}") from None
            self.plan = load_plan(model)
        else:
            self.plan_path = os.fspath(plan)
            self.plan = load_plan(self.plan_path)
        graph = self.plan.graph
        names = [v.name for v in graph.inputs]
        self.inputs = dict(inputs) if inputs is not None else {n: n for n in names}
        unknown = sorted(set(self.inputs) - set(names))
        missing = sorted(set(names) - set(self.inputs))
        if unknown or missing:
            raise GraphcError(f"PlanPredictor({self.plan_path}): inputs= must name every input of the plan "
                              f"({', '.join(names)}); " + "; ".join(
                                  ([f"not inputs of the plan: {', '.join(unknown)}"] if unknown else [])
                                  + ([f"not given: {', '.join(missing)}"] if missing else [])))
        out_names = [v.name for v in graph.outputs]
        self.outputs = dict(outputs) if outputs is not None else {n: n for n in out_names}
        bad = sorted(set(self.outputs) - set(out_names))
        if bad:
            raise GraphcError(f"PlanPredictor({self.plan_path}): outputs= names {', '.join(bad)}, which the plan "
                              f"does not produce (its outputs: {', '.join(out_names)})")
        self._out_index = [(out_names.index(n), col) for n, col in self.outputs.items()]
        self.keep_columns = list(keep_columns)
        self.executable = get_backend(backend).prepare(self.plan)
        #: Batches and rows this worker has run (for throughput reports).
        self.batches = self.rows = 0

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = list(self.inputs.values()) + self.keep_columns
        absent = [c for c in wanted if c not in batch]
        if absent:
            raise FeedError(f"PlanPredictor({self.plan_path}): the batch lacks column(s) {', '.join(absent)} "
                            f"(it has {', '.join(batch) or 'none'})")
        feeds = {name: np.ascontiguousarray(batch[col]) for name, col in self.inputs.items()}
        results = self.executable.run(feeds)
        out = {col: np.asarray(results[i]) for i, col in self._out_index}
        for c in self.keep_columns:
            out[c] = batch[c]
        self.batches += 1
        self.rows += len(next(iter(feeds.values()))) if feeds else 0
        return out


def map_plan(dataset, plan_path: str | os.PathLike, *, batch_size: int = 64, num_workers: int = 1,
             inputs: Mapping[str, str] | None = None, outputs: Mapping[str, str] | None = None,
             keep_columns: Sequence[str] = (), backend: str | None = None, num_cpus_per_worker: float = 1):
    """``dataset.map_batches`` with a pool of ``num_workers`` PlanPredictor actors, each holding the plan.

    The plan file is read here and its bytes travel to the workers (with Ray's other arguments).

    Returns the (lazy) mapped Dataset; iterate it, ``materialize()`` it or write it to run the inference.
    Ray gives each worker ``num_cpus_per_worker`` CPUs (and sets its thread count to match).
    """
    from graphc.plan import is_plan

    if batch_size < 1 or num_workers < 1:
        raise GraphcError(f"map_plan: batch_size and num_workers must be >= 1, got {batch_size} and {num_workers}")
    path = os.fspath(plan_path)
    if not is_plan(path):
        raise GraphcError(f"map_plan: {path} is not a plan saved by graphc (compile it: `graphc compile MODEL -o "
                          f"PLAN.gc.onnx`)")
    with open(path, "rb") as f:
        data = f.read()
    from ray.data import ActorPoolStrategy

    return dataset.map_batches(
        PlanPredictor, batch_size=batch_size, batch_format="numpy", compute=ActorPoolStrategy(size=num_workers),
        num_cpus=num_cpus_per_worker,
        fn_constructor_kwargs=dict(plan=data, inputs=inputs, outputs=outputs,
                                   keep_columns=tuple(keep_columns), backend=backend))


__all__ = ["PlanPredictor", "map_plan"]
