"""Hash the outputs of every ONNX node case and of the nine light CNNs at -O0 and -O2.

A refactoring that must not change results is checked by running this before and after it and
comparing the two files: ``python scripts/output_hashes.py -o before.json`` on the old commit,
``python scripts/output_hashes.py -o after.json --compare before.json`` on the new one (exit 1 and a
list of the entries that differ when any does).

Each entry is ``case@level`` -> the SHA-256 of the outputs' element types, shapes and bytes, or
``error: <class>`` when the case does not compile or run at that level. Cases that draw random
numbers are hashed like any other (seeded ones repeat; unseeded ones are listed as such in the report
and left out of the comparison). The light CNNs run with seeded random weights
(``graphc.models.light.with_random_weights``). Threads are pinned to 1 so that BLAS sums in one order.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("GRAPHC_NUM_THREADS", "1")

import numpy as np  # noqa: E402

LEVELS = (0, 2)


def _digest(outputs) -> str:
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, (list, tuple)):
            h.update(b"[%d" % len(x))
            for e in x:
                feed(e)
            h.update(b"]")
        elif x is None:
            h.update(b"None")
        elif isinstance(x, dict):
            for k in sorted(x, key=repr):
                h.update(repr(k).encode())
                feed(x[k])
        else:
            a = np.asarray(x)
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(repr(a.tolist()).encode() if a.dtype == object else np.ascontiguousarray(a).tobytes())

    feed(list(outputs))
    return h.hexdigest()


def _light():
    try:
        from graphc.models import light
    except ImportError:  # a checkout from before the one-namespace layout
        import importlib

        light = importlib.import_module("models.light")
    return light


def _conformance():
    """graphc's conformance tools (graphc.tools.conformance; graphc.conformance in older checkouts)."""
    import importlib

    try:
        return importlib.import_module("graphc.tools.conformance")
    except ImportError:
        return importlib.import_module("graphc.conformance")


def _node_cases():
    return _conformance().node_cases()


def _normalize(x):
    return _conformance()._normalize(x)


def _entry(model, datasets, level) -> str:
    import graphc as gc

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            exe = gc.prepare(gc.compile(gc.import_onnx(model), level=level), backend="numpy")
            outs = [list(exe.run([_normalize(x) for x in inputs])) for inputs in datasets]
        return _digest(outs)
    except Exception as e:  # noqa: BLE001 - recorded, compared like a hash
        return f"error: {type(e).__name__}"


def collect(substring: str | None = None, progress=True) -> dict[str, str]:
    out: dict[str, str] = {}
    cases = [c for c in _node_cases() if substring is None or substring in c.name]
    t0 = time.time()
    for k, case in enumerate(cases):
        datasets = [inputs for inputs, _ in case.data_sets]
        for level in LEVELS:
            out[f"{case.name}@O{level}"] = _entry(case.model, datasets, level)
        if progress and k % 200 == 0:
            print(f"  node cases {k}/{len(cases)} ({time.time() - t0:.0f} s)", file=sys.stderr)
    light = _light()
    import onnx

    for name in light.NAMES:
        if substring is not None and substring not in name:
            continue
        model, feeds = light.with_random_weights(onnx.load(light.path(name)), seed=1234)
        for level in LEVELS:
            out[f"light_{name}@O{level}"] = _entry(model, [feeds], level)
        if progress:
            print(f"  light {name} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", required=True, help="JSON file to write")
    p.add_argument("--compare", help="an earlier output: report the entries that differ (exit 1 if any)")
    p.add_argument("-k", help="only cases whose name contains this")
    p.add_argument("--repeat", action="store_true",
                   help="hash twice and leave out entries that differ between the two runs (unseeded random ops)")
    args = p.parse_args(argv)
    hashes = collect(args.k)
    if args.repeat:
        again = collect(args.k, progress=False)
        for key in [k for k in hashes if hashes[k] != again.get(k)]:
            hashes[key] = "nondeterministic"
    total = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    with open(args.output, "w") as f:
        json.dump({"total": total, "entries": hashes}, f, indent=0, sort_keys=True)
    errors = sum(v.startswith("error") for v in hashes.values())
    print(f"{len(hashes)} entries ({errors} errors), total {total}")
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)["entries"]
        diff = sorted(k for k in set(before) | set(hashes)
                      if before.get(k) != hashes.get(k) and "nondeterministic" not in (before.get(k), hashes.get(k)))
        for k in diff:
            print(f"DIFFERS {k}: {before.get(k)} -> {hashes.get(k)}")
        print(f"{len(diff)} entries differ from {args.compare}")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
