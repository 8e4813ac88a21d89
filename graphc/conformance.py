"""Runs the official ONNX node test cases through graphc and reports pass/fail per case.

``python -m graphc.conformance [-k SUBSTRING] [--failures] [--jobs N]`` prints a summary; the
pytest suite (tests/test_onnx_node.py) uses ``run_case`` with the expected-failures list.
"""
from __future__ import annotations

import argparse
import collections
import sys
import warnings


def node_cases() -> list:
    """The node test cases shipped in the installed onnx wheel (kind 'node')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numpy as np

        with np.errstate(all="ignore"):
            from onnx.backend.test.case.node import collect_testcases

            return [c for c in collect_testcases() if c.kind == "node"]


def run_case(case) -> None:
    """Run one case; raises (AssertionError or GraphcError) when graphc does not match the reference."""
    from onnx.backend.test.runner import Runner

    from frontends.onnx.backend import GraphcBackend

    rep = GraphcBackend.prepare(case.model)
    for inputs, ref_outputs in case.data_sets:
        inputs = [_normalize(x) for x in inputs]
        refs = [_normalize(x) for x in ref_outputs]
        outputs = list(rep.run(inputs))
        assert len(outputs) == len(refs), f"{len(outputs)} outputs, expected {len(refs)}"
        for i, (ref, out) in enumerate(zip(refs, outputs)):
            assert_similar(ref, out, case.rtol, case.atol, f"output {i}")
        check_inferred_types(rep.graph, outputs)


def assert_similar(ref, out, rtol: float, atol: float, where: str) -> None:
    """onnx's comparison for tensors; sequences and optionals compared element by element here, since
    onnx's runner assumes every sequence element has a length (it fails on 0-d tensors)."""
    from onnx.backend.test.runner import Runner

    if isinstance(ref, (list, tuple)):
        assert isinstance(out, (list, tuple)), f"{where}: expected a sequence, got {type(out).__name__}"
        assert len(out) == len(ref), f"{where}: sequence of {len(out)} elements, expected {len(ref)}"
        for j, (r, o) in enumerate(zip(ref, out)):
            assert_similar(r, o, rtol, atol, f"{where}[{j}]")
        return
    if ref is None:
        assert out is None, f"{where}: expected an empty optional, got {type(out).__name__}"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Runner.assert_similar_outputs([ref], [out], rtol=rtol, atol=atol)


def check_inferred_types(graph, outputs) -> None:
    """The types shape inference gave the outputs must agree with the arrays that came out."""
    import numpy as np

    from graphc.ir import DType, TensorType

    for v, x in zip(graph.outputs, outputs):
        t = v.type
        if not isinstance(t, TensorType) or not isinstance(x, np.ndarray):
            continue
        got_dtype = DType.string if x.dtype == object else DType.from_np(x.dtype)
        if t.dtype is not None and t.dtype != got_dtype:
            raise AssertionError(f"output '{v.name}': inferred element type {t.dtype}, ran as {got_dtype.name}")
        if t.shape is not None:
            if len(t.shape) != x.ndim or any(isinstance(d, int) and d != n for d, n in zip(t.shape, x.shape)):
                raise AssertionError(f"output '{v.name}': inferred {t}, ran with shape {list(x.shape)}")


def _normalize(x):
    import onnx
    from onnx import numpy_helper

    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, onnx.SequenceProto):
        return numpy_helper.to_list(x)
    if isinstance(x, onnx.OptionalProto):
        return numpy_helper.to_optional(x)
    if isinstance(x, onnx.MapProto):
        return numpy_helper.to_dict(x)
    return x


def _one(case):
    import numpy as np

    try:
        with np.errstate(all="ignore"):
            run_case(case)
        return case.name, None
    except Exception as e:  # report, don't stop
        msg = f"{type(e).__name__}: {e}".replace("\n", " ")
        return case.name, msg[:300]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", action="append", default=[], help="only cases whose name contains this")
    p.add_argument("--failures", action="store_true", help="print each failing case and why")
    p.add_argument("--by-error", action="store_true", help="group failures by error class")
    args = p.parse_args(argv)
    cases = node_cases()
    if args.k:
        cases = [c for c in cases if any(k in c.name for k in args.k)]
    results = [_one(c) for c in cases]
    failed = [(n, m) for n, m in results if m is not None]
    if args.failures:
        for n, m in failed:
            print(f"FAIL {n}: {m}")
    if args.by_error:
        groups = collections.Counter(m.split(":")[0] for _, m in failed)
        for k, v in groups.most_common():
            print(f"{v:5d} {k}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed (of {len(results)} ONNX node cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
